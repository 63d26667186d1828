//! The supervisor: the process that owns a running container's PID 1, copies its output to
//! the log files (and the terminal in the foreground), waits for it and records its exit.
//!
//! `run -d`/`start` re-execute the linkrt binary as `linkrt __supervise ID` in its own session;
//! a foreground `run` is its own supervisor.
use std::{
    fs::{File, OpenOptions},
    io::{Read, Write},
    os::{
        fd::{AsRawFd, FromRawFd, OwnedFd, RawFd},
        unix::process::CommandExt,
    },
    path::PathBuf,
    process::{Command, Stdio as PStdio},
    sync::atomic::{AtomicI32, Ordering},
};

use nix::unistd::Pid;

use crate::{
    config::Config,
    container::{self, Prepared},
    error::{Error, Result},
    init::{self, Process, StartError, Stdio},
    state::{Container, Lock, Store},
};

/// Binds every published host port for the container's lifetime (as Docker 28 does), so that
/// no host process can take a port whose traffic the datapath sends to the container.
/// TCP sockets are bound, not listening: the datapath answers before the socket layer.
pub fn reserve_ports(maps: &[crate::ports::Mapping]) -> Vec<OwnedFd> {
    use nix::sys::socket::{AddressFamily, SockFlag, SockType, SockaddrIn, bind, socket};
    // One descriptor per port: large ranges need more than the default soft limit.
    if let Ok((_, hard)) = nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE) {
        let _ = nix::sys::resource::setrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE, hard, hard);
    }
    let mut v = Vec::new();
    for m in maps {
        let ty = match m.container.proto {
            crate::ports::Proto::Tcp => SockType::Stream,
            crate::ports::Proto::Udp => SockType::Datagram,
            crate::ports::Proto::Sctp => continue,
        };
        let Ok(ip) = m.host_ip.parse::<std::net::Ipv4Addr>() else {
            continue;
        };
        if let Ok(fd) = socket(AddressFamily::Inet, ty, SockFlag::SOCK_CLOEXEC, None)
            && bind(
                fd.as_raw_fd(),
                &SockaddrIn::from(std::net::SocketAddrV4::new(ip, m.host_port)),
            )
            .is_ok()
        {
            v.push(fd);
        }
    }
    v
}

/// How a start is attached to the caller.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Attach {
    /// `-d`: the supervisor runs in the background; output goes to the log files only.
    Detached,
    /// Foreground: output goes to our stdout/stderr too, and our stdin to the container with -i.
    Foreground,
}

pub fn log_paths(store: &Store, id: &str) -> (PathBuf, PathBuf) {
    let d = store.dir(id);
    (d.join("stdout.log"), d.join("stderr.log"))
}

fn open_log(p: &PathBuf) -> Result<File> {
    OpenOptions::new()
        .create(true)
        .append(true)
        .open(p)
        .map_err(|e| Error::io("opening", p, e))
}

/// The result line the background supervisor writes on its status pipe.
fn encode(r: &std::result::Result<Pid, StartError>) -> String {
    match r {
        Ok(pid) => format!("OK {}\n", pid.as_raw()),
        Err(e) => format!("ERR {} {}\n", e.code, e.msg),
    }
}

/// Starts `c` (the caller holds `lock`). Detached: returns once PID 1 runs. Foreground: returns
/// the container's exit code after it exits; the lock is released while it runs.
pub fn start(cfg: &Config, store: &Store, c: &mut Container, attach: Attach, lock: Lock) -> Result<i32> {
    let prep = container::prepare_start(store, c)?;
    match attach {
        Attach::Detached => start_detached(cfg, store, c, lock),
        Attach::Foreground => run_foreground(cfg, store, c, prep, lock),
    }
}

fn start_detached(cfg: &Config, store: &Store, c: &mut Container, lock: Lock) -> Result<i32> {
    let (r, w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(|e| Error::sys(format!("pipe: {e}")))?;
    let exe = std::env::current_exe().map_err(|e| Error::io("finding", "/proc/self/exe", e))?;
    let wfd = w.as_raw_fd();
    let mut cmd = Command::new(exe);
    cmd.arg("__supervise")
        .arg(&c.id)
        .env("LINKRT_ROOT", &cfg.root)
        .env("LINKRT_RUN_ROOT", &cfg.run_root)
        .env("LINKRT_BPFFS", &cfg.bpffs)
        .stdin(PStdio::null())
        .stdout(PStdio::null())
        .stderr(PStdio::null());
    // SAFETY: only async-signal-safe calls between fork and exec.
    unsafe {
        cmd.pre_exec(move || {
            libc::setsid();
            if libc::dup2(wfd, 3) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let child = cmd.spawn();
    drop(w);
    let mut child = match child {
        Ok(ch) => ch,
        Err(e) => {
            let _ = container::mark_start_failed(store, c, 125, &e.to_string());
            return Err(Error::io("starting the supervisor", "linkrt", e));
        }
    };
    let mut line = String::new();
    let _ = File::from(r).read_to_string(&mut line);
    let sup_pid = child.id() as i32;
    let result = if let Some(rest) = line.strip_prefix("OK ") {
        rest.trim().parse::<i32>().map_err(|_| StartError {
            code: 125,
            msg: "bad supervisor report".into(),
        })
    } else if let Some(rest) = line.strip_prefix("ERR ") {
        let (code, msg) = rest.trim_end().split_once(' ').unwrap_or(("125", rest));
        let _ = child.wait();
        Err(StartError {
            code: code.parse().unwrap_or(125),
            msg: msg.to_string(),
        })
    } else {
        let _ = child.wait();
        Err(StartError {
            code: 125,
            msg: "the supervisor exited before starting the container".into(),
        })
    };
    // The supervisor outlives us; it is reaped by init.
    std::mem::forget(child);
    match result {
        Ok(pid) => {
            crate::state::failpoint("start-spawned");
            container::mark_running(store, c, pid, sup_pid)?;
            drop(lock);
            Ok(0)
        }
        Err(e) => {
            container::mark_start_failed(store, c, e.code, &e.msg)?;
            Err(Error::Start {
                code: e.code,
                msg: e.msg,
            })
        }
    }
}

/// `linkrt __supervise ID`: the background supervisor. Status goes to fd 3.
pub fn supervise_main(cfg: &Config, id: &str) -> i32 {
    // SAFETY: fd 3 was set up by start_detached.
    let mut status = unsafe { File::from_raw_fd(3) };
    let store = Store::new(cfg);
    let fail = |status: &mut File, msg: String| {
        let _ = writeln!(status, "ERR 125 {msg}");
        125
    };
    let c = match store.load(id) {
        Ok(c) => c,
        Err(e) => return fail(&mut status, e.to_string()),
    };
    // Rebuild what prepare_start computed (the CLI holds the lock and saved the record).
    let prep = match container::prepared_for(&store, &c) {
        Ok(p) => p,
        Err(e) => return fail(&mut status, e.to_string()),
    };
    let (out_p, err_p) = log_paths(&store, id);
    let (out, err) = match (open_log(&out_p), open_log(&err_p)) {
        (Ok(o), Ok(e)) => (o, e),
        (Err(e), _) | (_, Err(e)) => return fail(&mut status, e.to_string()),
    };
    let null = match File::open("/dev/null") {
        Ok(f) => f,
        Err(e) => return fail(&mut status, e.to_string()),
    };
    let pty = if c.spec.tty {
        match nix::pty::openpty(None, None) {
            Ok(p) => Some(p),
            Err(e) => return fail(&mut status, format!("openpty: {e}")),
        }
    } else {
        None
    };
    let stdio = match &pty {
        Some(p) => Stdio::Pty {
            slave: p.slave.as_raw_fd(),
        },
        None => Stdio::Fds {
            stdin: null.as_raw_fd(),
            stdout: out.as_raw_fd(),
            stderr: err.as_raw_fd(),
        },
    };
    let proc_ = Process {
        args: c.spec.cmd.clone(),
        env: prep.env,
        cwd: c.spec.workdir.clone(),
        stdio,
    };
    let r = match init::spawn_init(&prep.rootfs, &proc_) {
        Ok(r) => r,
        Err(e) => return fail(&mut status, e.to_string()),
    };
    if let Ok(pid) = &r {
        let _ = crate::state::write_atomic(
            &crate::state::pids_path(cfg, id),
            format!("{} {}", std::process::id(), pid.as_raw()).as_bytes(),
        );
    }
    let _ = status.write_all(encode(&r).as_bytes());
    drop(status);
    let Ok(pid) = r else { return 0 };
    let _reserved = reserve_ports(&c.state.ports);
    drop(proc_);
    drop(null);
    let copier = pty.map(|p| {
        drop(p.slave);
        let mut out = out;
        std::thread::spawn(move || copy_until_eof(p.master, &mut [&mut out as &mut dyn Write]))
    });
    let code = init::wait_exit(pid);
    if let Some(t) = copier {
        let _ = t.join();
    }
    let _ = container::finish(cfg, id, code);
    0
}

/// Copies from `src` to every writer until EOF or EIO (a pty whose slave side closed).
fn copy_until_eof(src: OwnedFd, dsts: &mut [&mut dyn Write]) {
    let mut f = File::from(src);
    let mut buf = [0u8; 8192];
    loop {
        match f.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                for d in dsts.iter_mut() {
                    let _ = d.write_all(&buf[..n]);
                    let _ = d.flush();
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(_) => break,
        }
    }
}

static FG_PID: AtomicI32 = AtomicI32::new(0);

extern "C" fn forward_signal(sig: libc::c_int) {
    let pid = FG_PID.load(Ordering::SeqCst);
    if pid > 0 {
        // SAFETY: kill is async-signal-safe.
        unsafe { libc::kill(pid, sig) };
    }
}

/// Restores the terminal mode on drop.
struct RawMode {
    fd: RawFd,
    saved: nix::sys::termios::Termios,
}

impl RawMode {
    fn enter(fd: RawFd) -> Option<RawMode> {
        // SAFETY: fd 0 stays open for our lifetime.
        let bfd = unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) };
        let saved = nix::sys::termios::tcgetattr(bfd).ok()?;
        let mut raw = saved.clone();
        nix::sys::termios::cfmakeraw(&mut raw);
        nix::sys::termios::tcsetattr(bfd, nix::sys::termios::SetArg::TCSANOW, &raw).ok()?;
        Some(RawMode { fd, saved })
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        let bfd = unsafe { std::os::fd::BorrowedFd::borrow_raw(self.fd) };
        let _ = nix::sys::termios::tcsetattr(bfd, nix::sys::termios::SetArg::TCSANOW, &self.saved);
    }
}

fn winsize(fd: RawFd) -> Option<libc::winsize> {
    let mut ws: libc::winsize = unsafe { std::mem::zeroed() };
    // SAFETY: TIOCGWINSZ fills ws.
    (unsafe { libc::ioctl(fd, libc::TIOCGWINSZ, &mut ws) } == 0).then_some(ws)
}

fn run_foreground(cfg: &Config, store: &Store, c: &mut Container, prep: Prepared, lock: Lock) -> Result<i32> {
    let (out_p, err_p) = log_paths(store, &c.id);
    let out_log = open_log(&out_p)?;
    let err_log = open_log(&err_p)?;
    let null = File::open("/dev/null").map_err(|e| Error::io("opening", "/dev/null", e))?;
    let stdin_fd = if c.spec.interactive { 0 } else { null.as_raw_fd() };
    let pty = if c.spec.tty {
        let ws = winsize(0).or_else(|| winsize(1));
        Some(nix::pty::openpty(ws.as_ref(), None).map_err(|e| Error::sys(format!("openpty: {e}")))?)
    } else {
        None
    };
    let (out_r, out_w) =
        nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(|e| Error::sys(format!("pipe: {e}")))?;
    let (err_r, err_w) =
        nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(|e| Error::sys(format!("pipe: {e}")))?;
    let stdio = match &pty {
        Some(p) => Stdio::Pty {
            slave: p.slave.as_raw_fd(),
        },
        None => Stdio::Fds {
            stdin: stdin_fd,
            stdout: out_w.as_raw_fd(),
            stderr: err_w.as_raw_fd(),
        },
    };
    let proc_ = Process {
        args: c.spec.cmd.clone(),
        env: prep.env.clone(),
        cwd: c.spec.workdir.clone(),
        stdio,
    };
    let r = init::spawn_init(&prep.rootfs, &proc_);
    drop(proc_);
    drop(out_w);
    drop(err_w);
    let pid = match r {
        Ok(Ok(pid)) => pid,
        Ok(Err(e)) => {
            container::mark_start_failed(store, c, e.code, &e.msg)?;
            return Err(Error::Start {
                code: e.code,
                msg: e.msg,
            });
        }
        Err(e) => {
            container::mark_start_failed(store, c, 125, &e.to_string())?;
            return Err(e);
        }
    };
    crate::state::write_atomic(
        &crate::state::pids_path(cfg, &c.id),
        format!("{} {}", std::process::id(), pid.as_raw()).as_bytes(),
    )?;
    crate::state::failpoint("start-spawned");
    container::mark_running(store, c, pid.as_raw(), std::process::id() as i32)?;
    let _reserved = reserve_ports(&c.state.ports);
    drop(lock);
    FG_PID.store(pid.as_raw(), Ordering::SeqCst);
    // SAFETY: installing a plain handler that only calls kill.
    unsafe {
        for s in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP, libc::SIGQUIT] {
            libc::signal(s, forward_signal as *const () as libc::sighandler_t);
        }
    }
    let mut threads = Vec::new();
    let _raw;
    match pty {
        Some(p) => {
            drop(p.slave);
            drop(out_r);
            drop(err_r);
            _raw = if c.spec.interactive && nix::unistd::isatty(0).unwrap_or(false) {
                RawMode::enter(0)
            } else {
                None
            };
            let master = p.master;
            if c.spec.interactive {
                let m2 = master.try_clone().map_err(|e| Error::sys(format!("dup: {e}")))?;
                // Not joined: it blocks on our stdin until the user types or it closes.
                std::thread::spawn(move || {
                    let mut stdin = std::io::stdin();
                    let mut w = File::from(m2);
                    let mut buf = [0u8; 4096];
                    while let Ok(n) = stdin.read(&mut buf) {
                        if n == 0 || w.write_all(&buf[..n]).is_err() {
                            break;
                        }
                    }
                });
            }
            let mut log = out_log;
            threads.push(std::thread::spawn(move || {
                let mut stdout = std::io::stdout();
                copy_until_eof(master, &mut [&mut stdout as &mut dyn Write, &mut log]);
            }));
        }
        None => {
            let mut ol = out_log;
            let mut el = err_log;
            threads.push(std::thread::spawn(move || {
                let mut stdout = std::io::stdout();
                copy_until_eof(out_r, &mut [&mut stdout as &mut dyn Write, &mut ol]);
            }));
            threads.push(std::thread::spawn(move || {
                let mut stderr = std::io::stderr();
                copy_until_eof(err_r, &mut [&mut stderr as &mut dyn Write, &mut el]);
            }));
        }
    }
    let code = init::wait_exit(pid);
    FG_PID.store(0, Ordering::SeqCst);
    for t in threads {
        let _ = t.join();
    }
    drop(null);
    container::finish(cfg, &c.id, code)?;
    Ok(code)
}
