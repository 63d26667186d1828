//! Starting a container's supervisor, and the client side of a foreground container: the one
//! launch path of `run`, `run -d`, `start` and `start -a`.
use std::{
    fs::File,
    io::{Read, Write},
    os::{
        fd::AsRawFd,
        unix::{net::UnixStream as StdUnixStream, process::CommandExt},
    },
    process::{Command, Stdio},
};

use bytes::BytesMut;
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::UnixStream,
    signal::unix::{SignalKind, signal},
    sync::mpsc,
};

use super::{
    attach::Frame,
    console,
    supervisor::{ATTACH_FD, REPORT_FD},
    sync::{self, GO_FD, Report},
};
use crate::{
    config::Config,
    error::{Error, Result},
};

/// A started supervisor: its PID, its report, and the attach stream of a foreground start.
pub struct Launched {
    pub supervisor: i32,
    pub report: Option<Report>,
    pub attach: Option<StdUnixStream>,
}

/// A supervisor whose runtime is creating the container: its process starts on [`Pending::go`].
pub struct Pending {
    pub supervisor: i32,
    report: File,
    go: StdUnixStream,
    attach: Option<StdUnixStream>,
}

impl Pending {
    /// The container's network is ready: its process may start. Waits for the start report.
    pub fn go(self) -> Launched {
        if let Err(e) = sync::send_go(&self.go) {
            // It is gone; its report, or its absence, says why.
            log::info!("the supervisor of this start is gone: {e}");
        }
        drop(self.go);
        Launched {
            supervisor: self.supervisor,
            report: Report::read(self.report),
            attach: self.attach,
        }
    }

    /// The start failed before its process ran: the supervisor deletes what the runtime
    /// created and ends. Waits for that, so that nothing of the container outlives the undo.
    pub fn cancel(self) {
        drop(self.go);
        if let Some(r) = Report::read(self.report) {
            log::info!("the supervisor of a canceled start: {r:?}");
        }
    }
}

/// Starts `linkrt __supervise ID` in its own session: the runtime creates the container from
/// its bundle meanwhile; [`Pending::go`] starts its process.
pub fn spawn_supervisor(cfg: &Config, id: &str, foreground: bool) -> Result<Pending> {
    let (r, w) =
        nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(|e| Error::io("creating", "a pipe", e.into()))?;
    let (go, go_theirs) = StdUnixStream::pair().map_err(|e| Error::io("creating", "the go socket", e))?;
    let pair = if foreground {
        Some(StdUnixStream::pair().map_err(|e| Error::io("creating", "the attach socket", e))?)
    } else {
        None
    };
    let exe = std::env::current_exe().map_err(|e| Error::io("finding", "/proc/self/exe", e))?;
    let mut cmd = Command::new(exe);
    cmd.arg("__supervise")
        .arg(id)
        .env("LINKRT_ROOT", &cfg.root)
        .env("LINKRT_RUN_ROOT", &cfg.run_root)
        .env("LINKRT_BPFFS", &cfg.bpffs)
        .env("LINKRT_CGROUP_PARENT", &cfg.cgroup_parent)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    if let Some(cg) = &cfg.cgroup {
        cmd.env("LINKRT_CGROUP", cg);
    }
    let wfd = w.as_raw_fd();
    let gfd = go_theirs.as_raw_fd();
    let afd = pair.as_ref().map(|(_, s)| s.as_raw_fd());
    if afd.is_some() {
        cmd.env("LINKRT_ATTACH", "1");
    }
    let fds = [(Some(wfd), REPORT_FD), (Some(gfd), GO_FD), (afd, ATTACH_FD)];
    // SAFETY: only async-signal-safe calls between fork and exec.
    unsafe {
        cmd.pre_exec(move || {
            libc::setsid();
            // Each end is first copied above the targets (closed on exec), so that no dup2
            // overwrites an end that is still to be moved.
            let mut high = [-1; 3];
            for (i, (from, _)) in fds.iter().enumerate() {
                if let Some(f) = from {
                    high[i] = libc::fcntl(*f, libc::F_DUPFD_CLOEXEC, 10);
                    if high[i] < 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                }
            }
            for (i, (_, to)) in fds.iter().enumerate() {
                if high[i] >= 0 && libc::dup2(high[i], *to) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
            }
            Ok(())
        });
    }
    let child = cmd
        .spawn()
        .map_err(|e| Error::io("starting the supervisor", "linkrt", e));
    drop(w);
    drop(go_theirs);
    let (cli, sup) = match pair {
        Some((c, s)) => (Some(c), Some(s)),
        None => (None, None),
    };
    drop(sup);
    let child = child?;
    let supervisor = child.id() as i32;
    // The supervisor outlives a detached command; init (or our own exit) reaps it.
    std::mem::forget(child);
    Ok(Pending {
        supervisor,
        report: File::from(r),
        go,
        attach: cli,
    })
}

fn write_out(fd: &mut dyn Write, data: &[u8]) {
    // Our own stdout closed (`| head`): the container goes on, its output is in the log.
    if let Err(e) = fd.write_all(data).and_then(|_| fd.flush()) {
        log::debug!("client output closed: {e}");
    }
}

/// Runs the client of a foreground container until it exits: its output to ours, our input
/// (with `-i`) and terminal size (with `-t`) to it, our signals to its PID 1 (without `-t`,
/// like Docker's `--sig-proxy`). Returns its exit code, or `None` if the supervisor went
/// away without one.
pub fn attach_client(sock: StdUnixStream, tty: bool, interactive: bool) -> Result<Option<i32>> {
    let ioe = |e: std::io::Error| Error::io("attaching to", "the container", e);
    let _raw = if tty && interactive {
        console::RawMode::enter(0)
    } else {
        None
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .build()
        .map_err(ioe)?;
    rt.block_on(async move {
        sock.set_nonblocking(true).map_err(ioe)?;
        let mut s = UnixStream::from_std(sock).map_err(ioe)?;
        if tty && let Some((rows, cols)) = console::winsize(0).or_else(|| console::winsize(1)) {
            s.write_all(&Frame::Resize { rows, cols }.to_bytes())
                .await
                .map_err(ioe)?;
        }
        // Standard input is read on a thread: it may be a file or a terminal, neither of which
        // a reactor can always watch.
        let (tx, mut rx) = mpsc::channel::<Option<Vec<u8>>>(16);
        if interactive {
            std::thread::spawn(move || {
                let mut stdin = std::io::stdin();
                let mut buf = vec![0u8; 8192];
                loop {
                    match stdin.read(&mut buf) {
                        Ok(0) | Err(_) => {
                            let _ = tx.blocking_send(None);
                            return;
                        }
                        Ok(n) => {
                            if tx.blocking_send(Some(buf[..n].to_vec())).is_err() {
                                return;
                            }
                        }
                    }
                }
            });
        } else {
            drop(tx);
        }
        let mut stdin_open = interactive;
        let mut sigs = Vec::new();
        if tty {
            sigs.push(signal(SignalKind::window_change()).map_err(ioe)?);
        } else {
            for k in [
                SignalKind::interrupt(),
                SignalKind::terminate(),
                SignalKind::hangup(),
                SignalKind::quit(),
                SignalKind::user_defined1(),
                SignalKind::user_defined2(),
            ] {
                sigs.push(signal(k).map_err(ioe)?);
            }
        }
        let nums: Vec<i32> = if tty {
            vec![libc::SIGWINCH]
        } else {
            vec![
                libc::SIGINT,
                libc::SIGTERM,
                libc::SIGHUP,
                libc::SIGQUIT,
                libc::SIGUSR1,
                libc::SIGUSR2,
            ]
        };
        let mut buf = BytesMut::with_capacity(64 * 1024);
        let mut stdout = std::io::stdout();
        let mut stderr = std::io::stderr();
        loop {
            let sig_wait = async {
                let futs: Vec<_> = sigs.iter_mut().map(|s| Box::pin(s.recv())).collect();
                let (_, i, _) = futures_select_all(futs).await;
                i
            };
            tokio::select! {
                r = s.read_buf(&mut buf) => {
                    match r {
                        Ok(0) | Err(_) => return Ok(None),
                        Ok(_) => loop {
                            match Frame::decode(&mut buf) {
                                Ok(Some(Frame::Stdout(d))) => write_out(&mut stdout, &d),
                                Ok(Some(Frame::Stderr(d))) => write_out(&mut stderr, &d),
                                Ok(Some(Frame::Exit(code))) => return Ok(Some(code)),
                                Ok(Some(_)) => {}
                                Ok(None) => break,
                                Err(e) => return Err(Error::sys(format!("attach stream: {e}"))),
                            }
                        },
                    }
                }
                m = rx.recv(), if stdin_open => {
                    let f = match m {
                        Some(Some(d)) => Frame::Stdin(d.into()),
                        _ => {
                            stdin_open = false;
                            Frame::StdinEof
                        }
                    };
                    if s.write_all(&f.to_bytes()).await.is_err() {
                        return Ok(None);
                    }
                }
                i = sig_wait => {
                    let f = if tty {
                        match console::winsize(0).or_else(|| console::winsize(1)) {
                            Some((rows, cols)) => Frame::Resize { rows, cols },
                            None => continue,
                        }
                    } else {
                        Frame::Signal(nums[i])
                    };
                    if s.write_all(&f.to_bytes()).await.is_err() {
                        return Ok(None);
                    }
                }
            }
        }
    })
}

/// The first of several futures to finish (with its index), without another dependency.
async fn futures_select_all<F: std::future::Future + Unpin>(mut futs: Vec<F>) -> (F::Output, usize, Vec<F>) {
    std::future::poll_fn(move |cx| {
        for (i, f) in futs.iter_mut().enumerate() {
            if let std::task::Poll::Ready(v) = std::pin::Pin::new(f).poll(cx) {
                return std::task::Poll::Ready((v, i, Vec::new()));
            }
        }
        std::task::Poll::Pending
    })
    .await
}
