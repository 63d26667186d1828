//! `stop` and `kill`: a signal to PID 1, then a wait (without the lock) until the supervisor
//! recorded the exit.
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;

use super::teardown::pid_alive;
use crate::{
    config::Config,
    error::{Error, Result},
    state::{Container, Lock, Status, Store},
};

/// Sends `sig` to the container's PID 1 (caller holds the lock).
pub fn signal(c: &Container, sig: Signal) -> Result<()> {
    if !pid_alive(c.state.pid) {
        return Ok(());
    }
    match nix::sys::signal::kill(nix::unistd::Pid::from_raw(c.state.pid), sig) {
        Ok(()) | Err(nix::errno::Errno::ESRCH) => Ok(()),
        Err(e) => Err(Error::io(
            "signalling",
            format!("PID {} of {}", c.state.pid, c.short_id()),
            e.into(),
        )),
    }
}

/// Waits (without the lock) until the supervisor of `id` recorded the exit, up to `timeout`.
pub fn wait_stopped(store: &Store, id: &str, timeout: Duration) -> bool {
    let start = Instant::now();
    loop {
        match store.load(id) {
            Ok(c) if c.state.status == Status::Running && pid_alive(c.state.supervisor_pid) => {}
            _ => return true,
        }
        if start.elapsed() > timeout {
            return false;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// `docker stop`: SIGTERM, then SIGKILL after `timeout` seconds; returns when cleaned up.
pub fn stop(cfg: &Config, what: &str, timeout: u64) -> Result<()> {
    let store = Store::new(cfg);
    let c = {
        let lock = Lock::acquire(cfg)?;
        let snap = super::reconcile::reconcile(&store, &lock)?;
        let c = snap.find(what)?.clone();
        if !c.can_stop() {
            return Ok(());
        }
        signal(&c, Signal::SIGTERM)?;
        c
    };
    if !wait_stopped(&store, &c.id, Duration::from_secs(timeout)) {
        {
            let _lock = Lock::acquire(cfg)?;
            if let Ok(c) = store.load(&c.id) {
                signal(&c, Signal::SIGKILL)?;
            }
        }
        if !wait_stopped(&store, &c.id, Duration::from_secs(30)) {
            return Err(Error::sys(format!("container {} did not stop", c.short_id())));
        }
    }
    Ok(())
}
