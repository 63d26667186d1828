//! `linkrt exec`: a process in a running container, started by the container's OCI runtime
//! (`exec --detach`) with the container's own capabilities and user. This command becomes a
//! child subreaper, so the process is reparented to it once the runtime has started it, and
//! waits for it: the runtime's own errors never mix with the process's output.
use std::{
    fs::File,
    io::{Read, Write},
    os::fd::OwnedFd,
    process::Stdio,
    time::Duration,
};

use nix::{
    sys::wait::{WaitStatus, waitpid},
    unistd::Pid,
};

use crate::{
    config::Config,
    error::{Error, Result},
    lifecycle, links, oci,
    process::console,
    state::{Status, Store},
};

pub struct ExecOptions {
    pub cmd: Vec<String>,
    pub env: Vec<String>,
    pub workdir: Option<String>,
    pub user: Option<String>,
    pub interactive: bool,
    pub tty: bool,
    pub detach: bool,
}

fn pipe() -> Result<(OwnedFd, OwnedFd)> {
    nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(|e| Error::io("creating", "a pipe", e.into()))
}

/// Runs the command; returns its exit code (0 when detached).
pub fn exec(cfg: &Config, what: &str, o: &ExecOptions) -> Result<i32> {
    let store = Store::new(cfg);
    let (c, process) = {
        let snap = lifecycle::read_snapshot(cfg)?;
        let c = snap.find(what)?.clone();
        if c.state.status != Status::Running {
            return Err(Error::user(format!("container {} is not running", c.id)));
        }
        // Docker's exec computes the link variables too, and refuses a stopped source.
        lifecycle::check_links(&c, &snap.containers)?;
        // Link variables are recomputed from the sources' current state (Docker does too).
        let mut env = lifecycle::process_env(&c, &snap.containers, o.tty);
        let mut extra = Vec::new();
        for e in &o.env {
            extra.extend(lifecycle::parse_env_opt(e)?);
        }
        links::merge_env(&mut env, &extra);
        let cwd = o.workdir.clone().unwrap_or(c.spec.workdir.clone());
        let p = oci::exec_process(
            &store,
            &c,
            o.cmd.clone(),
            env,
            cwd,
            o.tty && !o.detach,
            o.user.as_deref(),
        )?;
        (c, p)
    };
    let rt = oci::runtime::Runtime::for_container(cfg, &c.spec.runtime)?;
    let dir = cfg.run_root.join("exec");
    crate::state::create_private_dir(&dir)?;
    let tag = format!("{}-{}", c.short_id(), std::process::id());
    let proc_json = dir.join(format!("{tag}.json"));
    let log = dir.join(format!("{tag}.log"));
    let pid_file = dir.join(format!("{tag}.pid"));
    let console_path = dir.join(format!("{tag}.sock"));
    let cleanup = || {
        for p in [&proc_json, &log, &pid_file, &console_path] {
            if let Err(e) = std::fs::remove_file(p)
                && e.kind() != std::io::ErrorKind::NotFound
            {
                log::warn!("removing {}: {e}", p.display());
            }
        }
    };
    let r = (|| {
        crate::state::write_atomic(
            &proc_json,
            &serde_json::to_vec(&process).map_err(|e| Error::sys(format!("serializing the exec process: {e}")))?,
        )?;
        nix::sys::prctl::set_child_subreaper(true)
            .map_err(|e| Error::io("prctl", "PR_SET_CHILD_SUBREAPER", e.into()))?;
        run(&rt, &c.id, o, &proc_json, &log, &pid_file, &console_path)
    })();
    cleanup();
    r
}

fn null() -> Result<File> {
    File::open("/dev/null").map_err(|e| Error::io("opening", "/dev/null", e))
}

fn run(
    rt: &oci::runtime::Runtime,
    id: &str,
    o: &ExecOptions,
    proc_json: &std::path::Path,
    log: &std::path::Path,
    pid_file: &std::path::Path,
    console_path: &std::path::Path,
) -> Result<i32> {
    let tty = o.tty && !o.detach;
    let listener = if tty {
        Some(console::console_socket(console_path)?)
    } else {
        None
    };
    let mut cmd = rt.exec_command(id, proc_json, pid_file, tty.then_some(console_path), log);
    // Without a terminal the process gets our stdin (with -i) and stdout directly; its stderr
    // goes through a pipe that is read only once the runtime is gone, so that a start error the
    // runtime prints there is never shown as the process's output.
    let (err_r, err_w) = pipe()?;
    if o.detach || tty {
        cmd.stdin(null()?).stdout(null()?).stderr(Stdio::from(err_w));
    } else {
        cmd.stdin(if o.interactive {
            Stdio::inherit()
        } else {
            Stdio::from(null()?)
        })
        .stdout(Stdio::inherit())
        .stderr(Stdio::from(err_w));
    }
    let st = cmd.status().map_err(|e| Error::io("running", &rt.binary, e))?;
    drop(cmd);
    if !st.success() {
        let msg = oci::runtime::runtime_error(&std::fs::read_to_string(log).unwrap_or_default());
        let (code, msg) = oci::runtime::start_error(&msg);
        return Err(Error::Start {
            code: if code == 125 { 126 } else { code },
            msg,
        });
    }
    let pid: i32 = std::fs::read_to_string(pid_file)
        .map_err(|e| Error::io("reading", pid_file, e))?
        .trim()
        .parse()
        .map_err(|_| Error::sys(format!("{}: not a pid", pid_file.display())))?;
    if o.detach {
        return Ok(0);
    }
    let relay = std::thread::spawn(move || {
        let mut r = File::from(err_r);
        let mut buf = [0u8; 8192];
        let mut out = std::io::stderr();
        while let Ok(n) = r.read(&mut buf) {
            if n == 0 || out.write_all(&buf[..n]).is_err() {
                break;
            }
        }
    });
    let bridge = match listener {
        Some(l) => {
            let master = console::receive_master(&l, Duration::from_secs(10))?;
            Some(console::bridge_local(master, o.interactive)?)
        }
        None => None,
    };
    let code = wait(Pid::from_raw(pid));
    if let Some(b) = bridge {
        b.finish();
    }
    if relay.join().is_err() {
        log::warn!("the stderr relay panicked");
    }
    Ok(code)
}

/// Waits for `pid` (reparented to us) and returns Docker's exit code (128 + signal).
fn wait(pid: Pid) -> i32 {
    loop {
        match waitpid(pid, None) {
            Ok(WaitStatus::Exited(_, c)) => return c,
            Ok(WaitStatus::Signaled(_, s, _)) => return 128 + s as i32,
            Ok(_) | Err(nix::errno::Errno::EINTR) => continue,
            // Not our child (the runtime did not hand it over): poll until it is gone.
            Err(_) => {
                while nix::sys::signal::kill(pid, None).is_ok() {
                    std::thread::sleep(Duration::from_millis(20));
                }
                return 0;
            }
        }
    }
}
