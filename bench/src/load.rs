//! A small load generator: one server (TCP request/response, connect/request/response/close,
//! bulk sink; UDP echo) and a client that measures one workload for a fixed time.
use std::{
    io::{Read, Write},
    net::{Shutdown, SocketAddr, TcpListener, TcpStream, UdpSocket},
    time::{Duration, Instant},
};

use serde::{Deserialize, Serialize};

/// The server: TCP on `port` (the first byte of a connection picks the workload) and UDP echo.
pub fn serve(port: u16) -> anyhow::Result<()> {
    let udp = UdpSocket::bind(("0.0.0.0", port))?;
    std::thread::spawn(move || {
        let mut buf = [0u8; 2048];
        while let Ok((n, from)) = udp.recv_from(&mut buf) {
            let _ = udp.send_to(&buf[..n], from);
        }
    });
    let l = TcpListener::bind(("0.0.0.0", port))?;
    for s in l.incoming() {
        let Ok(mut s) = s else { continue };
        let _ = s.set_nodelay(true);
        let mut mode = [0u8; 1];
        if s.read_exact(&mut mode).is_err() {
            continue;
        }
        match mode[0] {
            // connect/request/response/close: answered inline, no thread per connection.
            b'C' => {
                let _ = s.write_all(b"c");
            }
            b'R' => {
                std::thread::spawn(move || {
                    let mut b = [0u8; 1];
                    while s.read_exact(&mut b).is_ok() {
                        if s.write_all(&b).is_err() {
                            break;
                        }
                    }
                });
            }
            b'B' => {
                std::thread::spawn(move || {
                    let mut buf = vec![0u8; 256 * 1024];
                    let mut total: u64 = 0;
                    while let Ok(n) = s.read(&mut buf) {
                        if n == 0 {
                            break;
                        }
                        total += n as u64;
                    }
                    let _ = s.write_all(&total.to_le_bytes());
                });
            }
            _ => {}
        }
    }
    Ok(())
}

/// The result of one client run.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Sample {
    /// Transactions (rr, crr), datagrams echoed (udp) or bytes (bulk).
    pub ops: u64,
    pub secs: f64,
    pub p50_us: f64,
    pub p99_us: f64,
    /// Busy CPU time of the whole machine per transaction (µs), from /proc/stat.
    pub cpu_us_per_op: f64,
    pub errors: u64,
}

impl Sample {
    pub fn rate(&self) -> f64 {
        if self.secs > 0.0 {
            self.ops as f64 / self.secs
        } else {
            0.0
        }
    }
}

fn busy_jiffies() -> u64 {
    let s = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let f: Vec<u64> = s
        .lines()
        .next()
        .unwrap_or("")
        .split_whitespace()
        .skip(1)
        .filter_map(|x| x.parse().ok())
        .collect();
    // user nice system idle iowait irq softirq steal
    f.iter()
        .enumerate()
        .filter(|(i, _)| *i != 3 && *i != 4)
        .map(|(_, v)| *v)
        .sum()
}

fn percentile(sorted: &[u32], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i] as f64 / 1000.0
}

/// Runs one workload (`rr`, `crr`, `bulk`, `udp`) against `addr` for `secs` seconds.
pub fn client(mode: &str, addr: SocketAddr, secs: f64) -> anyhow::Result<Sample> {
    let dur = Duration::from_secs_f64(secs);
    let cpu0 = busy_jiffies();
    let start = Instant::now();
    let mut lat: Vec<u32> = Vec::new();
    let mut ops = 0u64;
    let mut errors = 0u64;
    match mode {
        "rr" => {
            let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(3))?;
            s.set_nodelay(true)?;
            s.write_all(b"R")?;
            let mut b = [0u8; 1];
            while start.elapsed() < dur {
                let t = Instant::now();
                s.write_all(b"x")?;
                s.read_exact(&mut b)?;
                lat.push(t.elapsed().as_nanos() as u32);
                ops += 1;
            }
        }
        "crr" => {
            let mut b = [0u8; 1];
            while start.elapsed() < dur {
                let t = Instant::now();
                let r = (|| -> std::io::Result<()> {
                    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(3))?;
                    s.set_nodelay(true)?;
                    s.write_all(b"C")?;
                    s.read_exact(&mut b)?;
                    // Close with RST (SO_LINGER 0): no TIME_WAIT, no ephemeral port exhaustion.
                    let lg = libc::linger {
                        l_onoff: 1,
                        l_linger: 0,
                    };
                    use std::os::fd::AsRawFd;
                    // SAFETY: valid socket and option buffer.
                    unsafe {
                        libc::setsockopt(
                            s.as_raw_fd(),
                            libc::SOL_SOCKET,
                            libc::SO_LINGER,
                            (&lg as *const libc::linger).cast(),
                            std::mem::size_of::<libc::linger>() as u32,
                        )
                    };
                    Ok(())
                })();
                match r {
                    Ok(()) => {
                        lat.push(t.elapsed().as_nanos() as u32);
                        ops += 1;
                    }
                    Err(_) => errors += 1,
                }
            }
        }
        "bulk" => {
            let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(3))?;
            s.write_all(b"B")?;
            let buf = vec![0x5au8; 128 * 1024];
            while start.elapsed() < dur {
                s.write_all(&buf)?;
            }
            s.shutdown(Shutdown::Write)?;
            let mut n = [0u8; 8];
            s.read_exact(&mut n)?;
            ops = u64::from_le_bytes(n);
        }
        "udp" => {
            let s = UdpSocket::bind("0.0.0.0:0")?;
            s.connect(addr)?;
            s.set_read_timeout(Some(Duration::from_millis(100)))?;
            let msg = [0x5au8; 64];
            let window = 32;
            for _ in 0..window {
                s.send(&msg)?;
            }
            let mut buf = [0u8; 2048];
            while start.elapsed() < dur {
                match s.recv(&mut buf) {
                    Ok(_) => {
                        ops += 1;
                        s.send(&msg)?;
                    }
                    Err(_) => {
                        // Lost datagrams: refill the window.
                        errors += 1;
                        for _ in 0..window {
                            s.send(&msg)?;
                        }
                    }
                }
            }
        }
        m => anyhow::bail!("unknown mode {m}"),
    }
    let secs = start.elapsed().as_secs_f64();
    let cpu = busy_jiffies().saturating_sub(cpu0) as f64 * 1e6 / clk_tck();
    lat.sort_unstable();
    Ok(Sample {
        ops,
        secs,
        p50_us: percentile(&lat, 0.5),
        p99_us: percentile(&lat, 0.99),
        cpu_us_per_op: if ops > 0 && mode != "bulk" {
            cpu / ops as f64
        } else {
            0.0
        },
        errors,
    })
}

fn clk_tck() -> f64 {
    // SAFETY: sysconf has no preconditions.
    (unsafe { libc::sysconf(libc::_SC_CLK_TCK) }).max(1) as f64
}
