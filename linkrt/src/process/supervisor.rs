//! The supervisor (`linkrt __supervise ID`): the one process that starts a container through
//! the OCI runtime, owns its PID 1 (as a child subreaper, like containerd's shim), copies its
//! output to the logs and to an attached client, waits for its exit, and records it.
//!
//! It runs in its own session with no terminal. The runtime creates the container at once; its
//! process starts when the starting command says go on fd 5, once the container's network is
//! ready ([`super::sync::wait_go`]). It reports the start once on fd 3
//! ([`super::sync::Report`]); a foreground client is connected on fd 4 ([`super::attach`]).
//! Its own failures go to `supervisor.log` in the container's state directory.
use std::{
    fs::{File, OpenOptions},
    io::Write,
    os::{
        fd::{AsRawFd, FromRawFd, OwnedFd},
        unix::net::UnixStream as StdUnixStream,
    },
    path::PathBuf,
    process::Stdio,
    time::Duration,
};

use bytes::{Bytes, BytesMut};
use nix::{
    sys::{
        signal::{Signal, kill},
        wait::{WaitPidFlag, WaitStatus, waitpid},
    },
    unistd::Pid,
};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt, Interest, unix::AsyncFd},
    net::{
        UnixStream,
        unix::pipe::{Receiver, Sender},
    },
};

use super::{
    attach::Frame,
    console,
    logfile::RotatingLog,
    sync::{self, GO_FD, Report},
};
use crate::{
    config::Config,
    error::{Error, Result},
    lifecycle,
    oci::{cgroup, runtime::Runtime},
    state::{self, Store},
};

/// The file descriptor of the attach stream, when a client is connected.
pub const ATTACH_FD: i32 = 4;
/// The file descriptor of the start report.
pub const REPORT_FD: i32 = 3;

/// A `log` backend writing to the container's `supervisor.log`.
struct FileLog {
    file: std::sync::Mutex<File>,
}

impl log::Log for FileLog {
    fn enabled(&self, m: &log::Metadata) -> bool {
        m.level() <= log::Level::Info
    }

    fn log(&self, r: &log::Record) {
        if self.enabled(r.metadata())
            && let Ok(mut f) = self.file.lock()
        {
            // Nowhere else to report a failed log write.
            let _ = writeln!(f, "{} {} {}", state::now_rfc3339(), r.level(), r.args());
        }
    }

    fn flush(&self) {}
}

/// Where a container's supervisor logs its own errors (shown by `linkrt logs` on failure).
pub fn supervisor_log(store: &Store, id: &str) -> PathBuf {
    store.dir(id).join("supervisor.log")
}

fn init_log(path: &PathBuf) {
    if let Ok(f) = OpenOptions::new().create(true).append(true).open(path) {
        let l = Box::new(FileLog {
            file: std::sync::Mutex::new(f),
        });
        if log::set_boxed_logger(l).is_ok() {
            log::set_max_level(log::LevelFilter::Info);
        }
    }
}

pub fn log_paths(store: &Store, id: &str) -> (PathBuf, PathBuf) {
    let d = store.dir(id);
    (d.join("stdout.log"), d.join("stderr.log"))
}

fn open_log(p: &PathBuf, opts: crate::state::LogOpts) -> Result<RotatingLog> {
    RotatingLog::open(p, opts).map_err(|e| Error::io("opening", p, e))
}

fn pipe() -> Result<(OwnedFd, OwnedFd)> {
    nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(|e| Error::io("creating", "a pipe", e.into()))
}

/// `linkrt __supervise ID`.
pub fn supervise_main(cfg: &Config, id: &str) -> i32 {
    let store = Store::new(cfg);
    init_log(&supervisor_log(&store, id));
    // Ours alone: not inherited by the runtime, nor by anything it runs.
    for fd in [REPORT_FD, GO_FD, ATTACH_FD] {
        if let Err(e) = nix::fcntl::fcntl(fd, nix::fcntl::FcntlArg::F_SETFD(nix::fcntl::FdFlag::FD_CLOEXEC))
            && fd != ATTACH_FD
        {
            log::error!("fd {fd}: {e}");
        }
    }
    // SAFETY: fd 3 is the report pipe the starting command gave us.
    let mut report = unsafe { File::from_raw_fd(REPORT_FD) };
    // SAFETY: fd 5 is the go socket the starting command gave us.
    let go = unsafe { StdUnixStream::from_raw_fd(GO_FD) };
    let attach = std::env::var_os("LINKRT_ATTACH").map(|_| {
        // SAFETY: fd 4 is the attach socket the starting command gave us.
        unsafe { StdUnixStream::from_raw_fd(ATTACH_FD) }
    });
    match supervise(cfg, &store, id, &mut report, go, attach) {
        Ok(None) => 0,
        Ok(Some(delay)) => {
            // The restart policy's restart, once every resource of this run is released:
            // through the normal start path (a new supervisor); this one then ends.
            drop(report);
            std::thread::sleep(delay);
            match lifecycle::restart::restart_now(cfg, id) {
                Ok(()) => 0,
                Err(e) => {
                    log::error!("restarting {id}: {e}");
                    1
                }
            }
        }
        Err(e) => {
            log::error!("supervisor of {id}: {e}");
            // Tell the starting command, if it still waits; it records the failure.
            if let Err(w) = (Report::Failed {
                code: 125,
                msg: e.to_string(),
            })
            .write(&mut report)
            {
                log::error!("reporting the failure: {w}");
            }
            1
        }
    }
}

/// What the container's output and input are connected to.
enum Io {
    Pipes {
        stdout: OwnedFd,
        stderr: OwnedFd,
        stdin: Option<OwnedFd>,
    },
    Pty {
        master: OwnedFd,
    },
}

fn supervise(
    cfg: &Config,
    store: &Store,
    id: &str,
    report: &mut File,
    go: StdUnixStream,
    attach: Option<StdUnixStream>,
) -> Result<Option<Duration>> {
    nix::sys::prctl::set_child_subreaper(true).map_err(|e| Error::io("prctl", "PR_SET_CHILD_SUBREAPER", e.into()))?;
    let c = store.load(id)?;
    let rt = Runtime::for_container(cfg, &c.spec.runtime)?;
    let bundle = store.dir(id).join("bundle");
    let null = || File::open("/dev/null").map_err(|e| Error::io("opening", "/dev/null", e));
    let (stdio, io, console_path) = if c.spec.tty {
        let path = cfg.run_root.join(format!("{}.console", c.short_id()));
        let listener = console::console_socket(&path)?;
        (
            [Stdio::from(null()?), Stdio::from(null()?), Stdio::from(null()?)],
            Err(listener),
            Some(path),
        )
    } else {
        let (out_r, out_w) = pipe()?;
        let (err_r, err_w) = pipe()?;
        let (stdin, in_w) = if attach.is_some() && c.spec.interactive {
            let (r, w) = pipe()?;
            (Stdio::from(r), Some(w))
        } else {
            (Stdio::from(null()?), None)
        };
        (
            [stdin, Stdio::from(out_w), Stdio::from(err_w)],
            Ok(Io::Pipes {
                stdout: out_r,
                stderr: err_r,
                stdin: in_w,
            }),
            None,
        )
    };
    let created = rt.create(id, &bundle, console_path.as_deref(), stdio)?;
    let pid = match created {
        Ok(pid) => pid,
        Err(msg) => {
            if let Some(p) = &console_path
                && let Err(e) = std::fs::remove_file(p)
            {
                log::warn!("removing {}: {e}", p.display());
            }
            return did_not_start(&rt, id, &msg, report);
        }
    };
    let io = match io {
        Ok(io) => io,
        Err(listener) => {
            let m = console::receive_master(&listener, Duration::from_secs(10));
            if let Some(p) = &console_path
                && let Err(e) = std::fs::remove_file(p)
            {
                log::warn!("removing {}: {e}", p.display());
            }
            match m {
                Ok(master) => Io::Pty { master },
                Err(e) => {
                    if let Err(k) = rt.delete(id, true) {
                        log::error!("{k}");
                    }
                    return Err(e);
                }
            }
        }
    };
    // The container exists, its process not yet: it starts once its network is ready.
    if !sync::wait_go(go) {
        log::info!("{id}: the start was canceled before the process ran");
        return rt.delete(id, true).map(|()| None);
    }
    if let Err(msg) = rt.start(id, &bundle)? {
        return did_not_start(&rt, id, &msg, report);
    }
    state::write_atomic(
        &state::pids_path(cfg, id),
        format!("{} {pid}", std::process::id()).as_bytes(),
    )?;
    (Report::Started { pid })
        .write(report)
        .map_err(|e| Error::io("writing", "the start report", e))?;
    state::failpoint("supervisor-started");
    let (out_p, err_p) = log_paths(store, id);
    let logs = (open_log(&out_p, c.spec.log)?, open_log(&err_p, c.spec.log)?);
    let rt_async = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .enable_time()
        .build()
        .map_err(|e| Error::io("starting", "the supervisor's event loop", e))?;
    let (code, attach) = rt_async.block_on(event_loop(Pid::from_raw(pid), io, logs, attach))?;
    let oom = cgroup::Layout::detect().oom_killed(&cgroup::container_path(&cfg.cgroup_parent, id));
    // The runtime deletes its container (cgroup, state) while the network is torn down; the
    // exit is recorded once both are done.
    let deleting = rt.spawn_delete(id, true).inspect_err(|e| log::error!("{e}")).ok();
    let restart = match lifecycle::finish(cfg, id, code, oom, deleting) {
        Ok(d) => d,
        Err(e) => {
            log::error!("recording the exit of {id} (code {code}): {e}");
            None
        }
    };
    if let Some(mut a) = attach {
        // The client may be gone (killed, or its terminal closed): nothing to do then.
        if let Err(e) = std::io::Write::write_all(&mut a, &Frame::Exit(code).to_bytes()) {
            log::info!("attached client gone: {e}");
        }
    }
    Ok(restart)
}

/// A start the runtime refused (at create or at start): what it made is deleted, and the
/// starting command gets Docker's exit code and the runtime's reason.
fn did_not_start(rt: &Runtime, id: &str, msg: &str, report: &mut File) -> Result<Option<Duration>> {
    let (code, msg) = crate::oci::runtime::start_error(msg);
    log::info!("{id} did not start: {msg}");
    if let Err(e) = rt.delete(id, true) {
        log::error!("{e}");
    }
    (Report::Failed { code, msg })
        .write(report)
        .map(|()| None)
        .map_err(|e| Error::io("writing", "the start report", e))
}

/// Docker's exit code of a wait status (128 + signal when killed).
fn exit_code(st: WaitStatus) -> Option<(Pid, i32)> {
    match st {
        WaitStatus::Exited(p, c) => Some((p, c)),
        WaitStatus::Signaled(p, s, _) => Some((p, 128 + s as i32)),
        _ => None,
    }
}

/// Reaps every exited child (PID 1, and whatever was reparented to us); PID 1's code if it
/// is among them.
fn reap(pid1: Pid) -> Option<i32> {
    let mut code = None;
    loop {
        match waitpid(None, Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::StillAlive) | Err(_) => return code,
            Ok(st) => {
                if let Some((p, c)) = exit_code(st)
                    && p == pid1
                {
                    code = Some(c);
                }
            }
        }
    }
}

async fn send(attach: &mut Option<UnixStream>, f: Frame) {
    if let Some(a) = attach.as_mut()
        && let Err(e) = a.write_all(&f.to_bytes()).await
    {
        log::info!("attached client gone: {e}");
        *attach = None;
    }
}

async fn read_pty(m: &AsyncFd<OwnedFd>, buf: &mut [u8]) -> std::io::Result<usize> {
    loop {
        let mut g = m.readable().await?;
        match g.try_io(|fd| nix::unistd::read(fd.as_raw_fd(), buf).map_err(std::io::Error::from)) {
            Ok(r) => return r,
            Err(_would_block) => continue,
        }
    }
}

async fn write_pty(m: &AsyncFd<OwnedFd>, mut data: &[u8]) -> std::io::Result<()> {
    while !data.is_empty() {
        let mut g = m.writable().await?;
        match g.try_io(|fd| nix::unistd::write(fd.get_ref(), data).map_err(std::io::Error::from)) {
            Ok(Ok(n)) => data = &data[n..],
            Ok(Err(e)) => return Err(e),
            Err(_would_block) => continue,
        }
    }
    Ok(())
}

/// Copies output until PID 1 exits and its output ends; handles the client's input, sizes and
/// signals. Returns PID 1's exit code and the attach stream (to send the exit on).
async fn event_loop(
    pid1: Pid,
    io: Io,
    (mut out_log, mut err_log): (RotatingLog, RotatingLog),
    attach: Option<StdUnixStream>,
) -> Result<(i32, Option<StdUnixStream>)> {
    let ioe = |e: std::io::Error| Error::io("supervising", "the container's output", e);
    let mut sigchld = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::child()).map_err(ioe)?;
    let mut attach = match attach {
        Some(a) => {
            a.set_nonblocking(true).map_err(ioe)?;
            Some(UnixStream::from_std(a).map_err(ioe)?)
        }
        None => None,
    };
    let (mut stdout, mut stderr, mut stdin, master) = match io {
        Io::Pipes { stdout, stderr, stdin } => (
            Some(Receiver::from_owned_fd(stdout).map_err(ioe)?),
            Some(Receiver::from_owned_fd(stderr).map_err(ioe)?),
            stdin.map(Sender::from_owned_fd).transpose().map_err(ioe)?,
            None,
        ),
        Io::Pty { master } => {
            nix::fcntl::fcntl(
                master.as_raw_fd(),
                nix::fcntl::FcntlArg::F_SETFL(nix::fcntl::OFlag::O_NONBLOCK),
            )
            .map_err(|e| ioe(e.into()))?;
            // SAFETY: the descriptor is ours and stays open while registered.
            let m = unsafe { AsyncFd::register_with_interest(master, Interest::READABLE | Interest::WRITABLE) };
            (None, None, None, Some(m.map_err(|e| ioe(e.into_parts().1))?))
        }
    };
    let mut pty_open = master.is_some();
    let mut exit = reap(pid1);
    let mut out_buf = vec![0u8; 32 * 1024];
    let mut err_buf = vec![0u8; 32 * 1024];
    let mut pty_buf = vec![0u8; 32 * 1024];
    let mut in_buf = BytesMut::with_capacity(8 * 1024);
    // Output may outlive PID 1 briefly (a descendant holding the pipe until the PID namespace
    // is torn down): wait at most this long for it once PID 1 is gone.
    let drain = tokio::time::sleep(Duration::from_secs(3600));
    tokio::pin!(drain);
    loop {
        if exit.is_some() && stdout.is_none() && stderr.is_none() && !pty_open {
            break;
        }
        tokio::select! {
            r = async { stdout.as_mut().unwrap().read(&mut out_buf).await }, if stdout.is_some() => match r {
                Ok(0) | Err(_) => stdout = None,
                Ok(n) => {
                    out_log.write(&out_buf[..n]);
                    send(&mut attach, Frame::Stdout(Bytes::copy_from_slice(&out_buf[..n]))).await;
                }
            },
            r = async { stderr.as_mut().unwrap().read(&mut err_buf).await }, if stderr.is_some() => match r {
                Ok(0) | Err(_) => stderr = None,
                Ok(n) => {
                    err_log.write(&err_buf[..n]);
                    send(&mut attach, Frame::Stderr(Bytes::copy_from_slice(&err_buf[..n]))).await;
                }
            },
            r = async { read_pty(master.as_ref().unwrap(), &mut pty_buf).await }, if pty_open => match r {
                // EIO: every slave side is closed (the container's processes are gone).
                Ok(0) | Err(_) => pty_open = false,
                Ok(n) => {
                    out_log.write(&pty_buf[..n]);
                    send(&mut attach, Frame::Stdout(Bytes::copy_from_slice(&pty_buf[..n]))).await;
                }
            },
            r = async { attach.as_mut().unwrap().read_buf(&mut in_buf).await }, if attach.is_some() => {
                match r {
                    Ok(0) | Err(_) => {
                        // The client went away: the container goes on (as with `docker run`
                        // when its client is killed); its input ends.
                        attach = None;
                        stdin = None;
                    }
                    Ok(_) => loop {
                        match Frame::decode(&mut in_buf) {
                            Ok(Some(Frame::Stdin(data))) => {
                                if let Some(m) = &master {
                                    if let Err(e) = write_pty(m, &data).await {
                                        log::info!("writing to the container's terminal: {e}");
                                    }
                                } else if let Some(s) = stdin.as_mut()
                                    && s.write_all(&data).await.is_err()
                                {
                                    stdin = None;
                                }
                            }
                            Ok(Some(Frame::StdinEof)) => stdin = None,
                            Ok(Some(Frame::Resize { rows, cols })) => {
                                if let Some(m) = &master
                                    && let Err(e) = console::set_winsize(m.get_ref().as_raw_fd(), rows, cols)
                                {
                                    log::info!("{e}");
                                }
                            }
                            Ok(Some(Frame::Signal(s))) => {
                                if let Ok(sig) = Signal::try_from(s)
                                    && exit.is_none()
                                    && let Err(e) = kill(pid1, sig)
                                {
                                    log::info!("forwarding signal {s}: {e}");
                                }
                            }
                            Ok(Some(other)) => log::info!("unexpected frame from the client: {other:?}"),
                            Ok(None) => break,
                            Err(e) => {
                                log::error!("attach stream: {e}");
                                attach = None;
                                break;
                            }
                        }
                    },
                }
            },
            _ = sigchld.recv() => {
                if exit.is_none() {
                    exit = reap(pid1);
                    if exit.is_some() {
                        drain.as_mut().reset(tokio::time::Instant::now() + Duration::from_secs(2));
                    }
                } else {
                    reap(pid1);
                }
            },
            _ = tokio::time::sleep(Duration::from_secs(1)), if exit.is_none() => {
                // SIGCHLD can be missed before the handler exists: look again now and then.
                exit = reap(pid1);
                if exit.is_some() {
                    drain.as_mut().reset(tokio::time::Instant::now() + Duration::from_secs(2));
                }
            },
            _ = &mut drain, if exit.is_some() => break,
        }
    }
    let code = exit.unwrap_or(255);
    let attach = match attach {
        Some(a) => {
            let s = a.into_std().map_err(ioe)?;
            s.set_nonblocking(false).map_err(ioe)?;
            Some(s)
        }
        None => None,
    };
    Ok((code, attach))
}
