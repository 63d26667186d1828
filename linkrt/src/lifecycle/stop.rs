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
    signal_raw(c, sig as i32)
}

/// Sends signal number `sig` (real-time ones included) to the container's PID 1.
pub fn signal_raw(c: &Container, sig: i32) -> Result<()> {
    if !pid_alive(c.state.pid) {
        return Ok(());
    }
    // SAFETY: kill(2) with a PID and a signal number has no memory effects.
    let r = unsafe { libc::kill(c.state.pid, sig) };
    let r = if r == 0 { Ok(()) } else { Err(nix::errno::Errno::last()) };
    match r {
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

/// Waits until process `pid` is gone, up to `timeout`; whether it is.
pub fn wait_gone(pid: i32, timeout: Duration) -> bool {
    let start = Instant::now();
    while pid_alive(pid) {
        if start.elapsed() > timeout {
            return false;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    true
}

/// `docker stop`: SIGTERM, then SIGKILL after `timeout` seconds; returns when cleaned up.
pub fn stop(cfg: &Config, what: &str, timeout: u64) -> Result<()> {
    let store = Store::new(cfg);
    let c = {
        let lock = Lock::acquire(cfg)?;
        let snap = super::reconcile::reconcile(&store, &lock)?;
        let mut c = snap.find(what)?.clone();
        if c.state.restarting {
            // Docker cancels the restart manager: the container stays stopped.
            c.state.restarting = false;
            c.state.manually_stopped = true;
            store.save(&lock, &c)?;
            return Ok(());
        }
        if !c.can_stop() {
            return Ok(());
        }
        // Docker's HasBeenManuallyStopped, and the restart manager canceled: no restart
        // policy restarts this exit.
        c.state.manually_stopped = true;
        c.state.restart_canceled = true;
        // Best effort: on a full state disk `stop` must still work.
        if let Err(e) = store.save(&lock, &c) {
            log::warn!("recording the stop of {}: {e}", c.short_id());
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
