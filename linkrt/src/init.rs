//! Creating the container's processes: namespaces, root filesystem, and the final `execve`.
//!
//! The calling process (the supervisor) becomes a child subreaper and forks once; that child
//! joins the container's netns, unshares mnt/uts/ipc/pid and forks the container's PID 1,
//! reports its PID and exits. PID 1 builds the root filesystem (overlay of the host's `/` or
//! of `--rootfs`, with an upper layer on tmpfs), pivots into it and executes the command.
//! Errors before `execve` travel back through a close-on-exec pipe, so the caller can tell a
//! missing command (exit 127) from a started container.
//!
//! The caller must be single-threaded when calling [`spawn_init`] or [`spawn_exec`].
use std::{
    ffi::CString,
    fs,
    io::{Read, Write},
    os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd},
    path::{Path, PathBuf},
};

use nix::{
    fcntl::OFlag,
    mount::{MntFlags, MsFlags, mount, umount2},
    sched::{CloneFlags, setns, unshare},
    sys::wait::{WaitStatus, waitpid},
    unistd::{ForkResult, Pid, fork, pipe2},
};

use crate::error::{Error, Result};

/// What the container's process gets as standard input, output and error.
pub enum Stdio {
    /// Three descriptors (dup2'ed to 0, 1, 2).
    Fds { stdin: RawFd, stdout: RawFd, stderr: RawFd },
    /// The slave side of a pty, which also becomes the controlling terminal.
    Pty { slave: RawFd },
}

/// The process to execute, inside the container's root.
pub struct Process {
    pub args: Vec<String>,
    pub env: Vec<String>,
    pub cwd: String,
    pub stdio: Stdio,
}

/// How to build the container's root filesystem.
pub struct RootFs {
    pub hostname: String,
    pub netns: PathBuf,
    /// Lower layer: the host's `/` or a `--rootfs` directory.
    pub lower: PathBuf,
    pub upper: PathBuf,
    pub work: PathBuf,
    pub merged: PathBuf,
    /// Files bind-mounted over `/etc/hosts`, `/etc/hostname`, `/etc/resolv.conf`.
    pub etc_files: Vec<(PathBuf, &'static str)>,
    /// Files to create in the container (only if missing): (path, content or symlink target).
    pub image_files: Vec<(String, ImageFile)>,
    pub dirs: Vec<String>,
}

pub enum ImageFile {
    Content(&'static str),
    Symlink(String),
}

/// An exec failure reported by the child, with Docker's exit code.
#[derive(Debug)]
pub struct StartError {
    pub code: i32,
    pub msg: String,
}

fn pipe() -> Result<(OwnedFd, OwnedFd)> {
    pipe2(OFlag::O_CLOEXEC).map_err(|e| Error::sys(format!("pipe: {e}")))
}

/// Reads the child's error report; empty means the exec succeeded.
fn read_report(r: OwnedFd) -> Option<StartError> {
    let mut s = String::new();
    let _ = fs::File::from(r).read_to_string(&mut s);
    let (code, msg) = s.split_once(' ')?;
    Some(StartError {
        code: code.parse().unwrap_or(125),
        msg: msg.to_string(),
    })
}

fn report_and_exit(w: RawFd, code: i32, msg: &str) -> ! {
    // SAFETY: w is our error pipe; we exit right after.
    let mut f = unsafe { fs::File::from_raw_fd(w) };
    let _ = write!(f, "{code} {msg}");
    unsafe { libc::_exit(code) }
}

/// Forks twice: the first child runs `enter` (join or create namespaces; it reports failures
/// itself), forks the final process, which runs `run` (and never returns), reports that
/// process's PID and exits. A PID namespace only applies to children, hence the second fork.
/// Returns the final process's PID (a child of the caller, made a subreaper) or the error it
/// reported before its `execve`. `code` is the exit code of setup failures.
fn double_fork(
    code: i32,
    enter: impl FnOnce(RawFd),
    run: impl FnOnce(RawFd),
) -> Result<std::result::Result<Pid, StartError>> {
    nix::sys::prctl::set_child_subreaper(true).map_err(|e| Error::sys(format!("prctl: {e}")))?;
    let (err_r, err_w) = pipe()?;
    let (pid_r, pid_w) = pipe()?;
    // SAFETY: the caller is single-threaded (documented requirement).
    match unsafe { fork() }.map_err(|e| Error::sys(format!("fork: {e}")))? {
        ForkResult::Child => {
            drop(err_r);
            drop(pid_r);
            let ew = err_w.as_raw_fd();
            enter(ew);
            match unsafe { fork() } {
                Ok(ForkResult::Child) => {
                    drop(pid_w);
                    run(ew);
                    // `run` ends in execve or reports and exits; never here.
                    unsafe { libc::_exit(code) }
                }
                Ok(ForkResult::Parent { child }) => {
                    let _ = fs::File::from(pid_w).write_all(&child.as_raw().to_ne_bytes());
                    unsafe { libc::_exit(0) }
                }
                Err(e) => report_and_exit(ew, code, &format!("fork: {e}")),
            }
        }
        ForkResult::Parent { child } => {
            drop(err_w);
            drop(pid_w);
            let mut buf = [0u8; 4];
            let got = fs::File::from(pid_r).read_exact(&mut buf);
            let _ = waitpid(child, None);
            match (got, read_report(err_r)) {
                (Ok(()), None) => Ok(Ok(Pid::from_raw(i32::from_ne_bytes(buf)))),
                (Ok(()), Some(e)) => {
                    let _ = waitpid(Pid::from_raw(i32::from_ne_bytes(buf)), None);
                    Ok(Err(e))
                }
                (Err(_), Some(e)) => Ok(Err(e)),
                (Err(e), None) => Err(Error::sys(format!("process setup failed: {e}"))),
            }
        }
    }
}

/// Starts the container's PID 1. Returns its PID (a child of the caller, which is made a
/// subreaper), or the reason it could not start.
pub fn spawn_init(root: &RootFs, proc_: &Process) -> Result<std::result::Result<Pid, StartError>> {
    let netns = fs::File::open(&root.netns).map_err(|e| Error::io("opening", &root.netns, e))?;
    let enter = |ew: RawFd| {
        if let Err(e) = setns(&netns, CloneFlags::CLONE_NEWNET) {
            report_and_exit(ew, 125, &format!("joining the network namespace: {e}"));
        }
        let flags =
            CloneFlags::CLONE_NEWNS | CloneFlags::CLONE_NEWUTS | CloneFlags::CLONE_NEWIPC | CloneFlags::CLONE_NEWPID;
        if let Err(e) = unshare(flags) {
            report_and_exit(ew, 125, &format!("creating namespaces: {e}"));
        }
    };
    double_fork(125, enter, |ew| container_init(root, proc_, ew))
}

/// Runs a process inside the namespaces of the running container whose PID 1 is `pid`.
/// Returns the process's PID (a child of the caller) or why it could not start.
pub fn spawn_exec(pid: i32, proc_: &Process) -> Result<std::result::Result<Pid, StartError>> {
    let mut nss = Vec::new();
    for (ns, flag) in [
        ("ipc", CloneFlags::CLONE_NEWIPC),
        ("uts", CloneFlags::CLONE_NEWUTS),
        ("net", CloneFlags::CLONE_NEWNET),
        ("pid", CloneFlags::CLONE_NEWPID),
        ("mnt", CloneFlags::CLONE_NEWNS),
    ] {
        let p = format!("/proc/{pid}/ns/{ns}");
        nss.push((fs::File::open(&p).map_err(|e| Error::io("opening", p, e))?, flag));
    }
    let enter = |ew: RawFd| {
        for (f, flag) in &nss {
            if let Err(e) = setns(f, *flag) {
                report_and_exit(ew, 126, &format!("joining the container's namespaces: {e}"));
            }
        }
    };
    double_fork(126, enter, |ew| exec_process(proc_, ew))
}

fn container_init(root: &RootFs, proc_: &Process, ew: RawFd) -> ! {
    if let Err(msg) = build_root(root) {
        report_and_exit(ew, 125, &msg);
    }
    exec_process(proc_, ew)
}

fn m(
    src: Option<&str>,
    target: &Path,
    fstype: Option<&str>,
    flags: MsFlags,
    data: Option<&str>,
) -> std::result::Result<(), String> {
    mount(src, target, fstype, flags, data).map_err(|e| {
        format!(
            "mounting {} on {}: {e}",
            fstype.or(src).unwrap_or("?"),
            target.display()
        )
    })
}

fn build_root(r: &RootFs) -> std::result::Result<(), String> {
    nix::unistd::sethostname(&r.hostname).map_err(|e| format!("sethostname: {e}"))?;
    m(None, Path::new("/"), None, MsFlags::MS_REC | MsFlags::MS_PRIVATE, None)?;
    let opts = format!(
        "lowerdir={},upperdir={},workdir={}",
        r.lower.display(),
        r.upper.display(),
        r.work.display()
    );
    m(
        Some("overlay"),
        &r.merged,
        Some("overlay"),
        MsFlags::empty(),
        Some(&opts),
    )?;
    let t = &r.merged;
    for d in &r.dirs {
        let _ = fs::create_dir_all(t.join(d.trim_start_matches('/')));
    }
    for (path, f) in &r.image_files {
        let p = t.join(path.trim_start_matches('/'));
        if p.symlink_metadata().is_ok() {
            continue;
        }
        if let Some(parent) = p.parent() {
            let _ = fs::create_dir_all(parent);
        }
        match f {
            ImageFile::Content(c) => fs::write(&p, c).map_err(|e| format!("writing {path}: {e}"))?,
            ImageFile::Symlink(target) => {
                std::os::unix::fs::symlink(target, &p).map_err(|e| format!("symlink {path}: {e}"))?
            }
        }
    }
    // /tmp comes from the lower layer like the rest of the filesystem (copy-on-write), as in a
    // Docker image; /run is private (the host's holds runtime state such as /run/netns).
    for d in ["proc", "sys", "dev", "run", "etc"] {
        let _ = fs::create_dir_all(t.join(d));
    }
    m(
        Some("proc"),
        &t.join("proc"),
        Some("proc"),
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
        None,
    )?;
    m(
        Some("sysfs"),
        &t.join("sys"),
        Some("sysfs"),
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC | MsFlags::MS_RDONLY,
        None,
    )?;
    m(
        Some("/dev"),
        &t.join("dev"),
        None,
        MsFlags::MS_BIND | MsFlags::MS_REC,
        None,
    )?;
    m(
        Some("tmpfs"),
        &t.join("run"),
        Some("tmpfs"),
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
        Some("mode=755"),
    )?;
    for (src, name) in &r.etc_files {
        let dst = t.join("etc").join(name);
        if dst
            .symlink_metadata()
            .map(|m| m.file_type().is_symlink())
            .unwrap_or(false)
        {
            let _ = fs::remove_file(&dst);
        }
        if !dst.exists() {
            fs::write(&dst, "").map_err(|e| format!("creating /etc/{name}: {e}"))?;
        }
        m(Some(&src.to_string_lossy()), &dst, None, MsFlags::MS_BIND, None)?;
    }
    std::env::set_current_dir(t).map_err(|e| format!("chdir {}: {e}", t.display()))?;
    nix::unistd::pivot_root(".", ".").map_err(|e| format!("pivot_root: {e}"))?;
    umount2(".", MntFlags::MNT_DETACH).map_err(|e| format!("unmounting the old root: {e}"))?;
    std::env::set_current_dir("/").map_err(|e| format!("chdir /: {e}"))?;
    Ok(())
}

/// Looks `cmd` up in the PATH of `env` (inside the container), as Docker's runtime does.
fn resolve(cmd: &str, env: &[String]) -> std::result::Result<String, (i32, String)> {
    let not_found = || (127, format!("exec: \"{cmd}\": executable file not found in $PATH"));
    if cmd.contains('/') {
        return match fs::metadata(cmd) {
            Ok(md) if md.is_dir() => Err((126, format!("exec: \"{cmd}\": is a directory"))),
            Ok(_) => Ok(cmd.to_string()),
            Err(_) => Err((127, format!("exec: \"{cmd}\": stat {cmd}: no such file or directory"))),
        };
    }
    let path = env
        .iter()
        .find_map(|v| v.strip_prefix("PATH="))
        .unwrap_or("/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin");
    for dir in path.split(':') {
        let p = Path::new(if dir.is_empty() { "." } else { dir }).join(cmd);
        if let Ok(md) = fs::metadata(&p) {
            use std::os::unix::fs::PermissionsExt;
            if md.is_file() && md.permissions().mode() & 0o111 != 0 {
                return Ok(p.to_string_lossy().into_owned());
            }
        }
    }
    Err(not_found())
}

fn exec_process(p: &Process, ew: RawFd) -> ! {
    // SAFETY: single-threaded child; plain syscalls on descriptors we own.
    unsafe {
        libc::setsid();
        match p.stdio {
            Stdio::Fds { stdin, stdout, stderr } => {
                libc::dup2(stdin, 0);
                libc::dup2(stdout, 1);
                libc::dup2(stderr, 2);
            }
            Stdio::Pty { slave } => {
                libc::dup2(slave, 0);
                libc::dup2(slave, 1);
                libc::dup2(slave, 2);
                libc::ioctl(0, libc::TIOCSCTTY, 0);
            }
        }
        // Close everything else but the error pipe (close-on-exec).
        let maxfd = libc::sysconf(libc::_SC_OPEN_MAX).clamp(256, 65536) as i32;
        for fd in 3..maxfd {
            if fd != ew {
                libc::close(fd);
            }
        }
    }
    if std::env::set_current_dir(&p.cwd).is_err() {
        let _ = fs::create_dir_all(&p.cwd);
        if let Err(e) = std::env::set_current_dir(&p.cwd) {
            report_and_exit(
                ew,
                125,
                &format!("chdir to cwd (\"{}\") set in config.json failed: {e}", p.cwd),
            );
        }
    }
    let path = match resolve(&p.args[0], &p.env) {
        Ok(path) => path,
        Err((code, msg)) => report_and_exit(ew, code, &msg),
    };
    let c = |s: &str| CString::new(s).unwrap_or_else(|_| CString::new("?").unwrap());
    let argv: Vec<CString> = p.args.iter().map(|a| c(a)).collect();
    let envp: Vec<CString> = p.env.iter().map(|a| c(a)).collect();
    // Default signal dispositions for the container (the supervisor may ignore some).
    unsafe {
        for s in [
            libc::SIGINT,
            libc::SIGTERM,
            libc::SIGPIPE,
            libc::SIGHUP,
            libc::SIGQUIT,
            libc::SIGCHLD,
        ] {
            libc::signal(s, libc::SIG_DFL);
        }
    }
    let e = nix::unistd::execve(&c(&path), &argv, &envp).unwrap_err();
    let code = if e == nix::errno::Errno::EACCES || e == nix::errno::Errno::ENOEXEC {
        126
    } else {
        127
    };
    report_and_exit(
        ew,
        code,
        &format!("exec: \"{}\": {}", p.args[0], e.desc().to_lowercase()),
    )
}

/// Waits for `pid` and returns Docker's exit code (128 + signal when killed).
pub fn wait_exit(pid: Pid) -> i32 {
    loop {
        match waitpid(pid, None) {
            Ok(WaitStatus::Exited(_, code)) => return code,
            Ok(WaitStatus::Signaled(_, sig, _)) => return 128 + sig as i32,
            Ok(_) => continue,
            Err(nix::errno::Errno::EINTR) => continue,
            Err(_) => return 255,
        }
    }
}
