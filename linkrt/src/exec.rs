//! `linkrt exec`: a process in a running container's namespaces.
use std::{
    fs::File,
    io::{Read, Write},
    os::fd::AsRawFd,
};

use crate::{
    config::Config,
    container,
    error::{Error, Result},
    init::{self, Process, Stdio},
    links,
    state::{Lock, Status, Store},
};

pub struct ExecOptions {
    pub cmd: Vec<String>,
    pub env: Vec<String>,
    pub workdir: Option<String>,
    pub interactive: bool,
    pub tty: bool,
    pub detach: bool,
}

/// Runs the command; returns its exit code (0 when detached).
pub fn exec(cfg: &Config, what: &str, o: &ExecOptions) -> Result<i32> {
    let store = Store::new(cfg);
    let (c, env) = {
        let _lock = Lock::acquire(cfg)?;
        container::reconcile(&store)?;
        let c = store.find(what)?;
        if c.state.status != Status::Running {
            return Err(Error::user(format!("container {} is not running", c.id)));
        }
        let all = store.all()?;
        // Link variables are recomputed from the sources' current state (Docker does too).
        let mut env = container::process_env(&c, &all, o.tty);
        let mut extra = Vec::new();
        for e in &o.env {
            extra.extend(container::parse_env_opt(e)?);
        }
        links::merge_env(&mut env, &extra);
        (c, env)
    };
    let null = File::open("/dev/null").map_err(|e| Error::io("opening", "/dev/null", e))?;
    let pty = if o.tty && !o.detach {
        Some(nix::pty::openpty(None, None).map_err(|e| Error::sys(format!("openpty: {e}")))?)
    } else {
        None
    };
    let stdio = match (&pty, o.detach) {
        (Some(p), _) => Stdio::Pty {
            slave: p.slave.as_raw_fd(),
        },
        (None, true) => Stdio::Fds {
            stdin: null.as_raw_fd(),
            stdout: null.as_raw_fd(),
            stderr: null.as_raw_fd(),
        },
        (None, false) => Stdio::Fds {
            stdin: if o.interactive { 0 } else { null.as_raw_fd() },
            stdout: 1,
            stderr: 2,
        },
    };
    let proc_ = Process {
        args: o.cmd.clone(),
        env,
        cwd: o.workdir.clone().unwrap_or(c.spec.workdir.clone()),
        stdio,
    };
    let pid = match init::spawn_exec(c.state.pid, &proc_)? {
        Ok(pid) => pid,
        Err(e) => {
            return Err(Error::Start {
                code: e.code,
                msg: e.msg,
            });
        }
    };
    drop(proc_);
    if o.detach {
        return Ok(0);
    }
    if let Some(p) = pty {
        drop(p.slave);
        let master = p.master;
        if o.interactive {
            let m2 = master.try_clone().map_err(|e| Error::sys(format!("dup: {e}")))?;
            std::thread::spawn(move || {
                let mut w = File::from(m2);
                let mut buf = [0u8; 4096];
                let mut stdin = std::io::stdin();
                while let Ok(n) = stdin.read(&mut buf) {
                    if n == 0 || w.write_all(&buf[..n]).is_err() {
                        break;
                    }
                }
            });
        }
        let mut m = File::from(master);
        let mut buf = [0u8; 8192];
        let mut out = std::io::stdout();
        while let Ok(n) = m.read(&mut buf) {
            if n == 0 {
                break;
            }
            let _ = out.write_all(&buf[..n]);
            let _ = out.flush();
        }
    }
    Ok(init::wait_exit(pid))
}
