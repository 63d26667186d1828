use linkrt::{
    Config,
    lifecycle::{self, Attach},
    state::{Lock, Store},
};

use super::{CmdResult, Failure};
use crate::cli::{KillArgs, RenameArgs, RmArgs, StartArgs, StopArgs, WaitArgs};

fn start_one(cfg: &Config, what: &str, attach: Attach) -> Result<i32, Failure> {
    let store = Store::new(cfg);
    let lock = Lock::acquire(cfg)?;
    let mut snap = lifecycle::reconcile(&store, &lock)?;
    let mut c = snap.find(what)?.clone();
    // A start by hand resets the restart manager (Docker's ResetRestartManager(true)).
    c.restart_count = 0;
    c.restart_backoff_ms = 0;
    Ok(lifecycle::start(&store, lock, &mut snap, &mut c, attach)?)
}

pub fn start(cfg: &Config, a: StartArgs) -> CmdResult {
    let attach = if a.attach || a.interactive {
        Attach::Foreground
    } else {
        Attach::Detached
    };
    let names = if a.restartable {
        lifecycle::restart::restartable(cfg)?
    } else {
        a.containers.clone()
    };
    let mut failed = Vec::new();
    for what in &names {
        match start_one(cfg, what, attach) {
            Ok(c) if attach == Attach::Foreground => return Ok(c),
            Ok(_) => println!("{what}"),
            Err(f) => {
                eprintln!("Error response from daemon: {}", f.msg);
                failed.push(what.as_str());
            }
        }
    }
    if !failed.is_empty() {
        // Docker's CLI: the containers that failed, exit 1.
        eprintln!("Error: failed to start containers: {}", failed.join(", "));
        return Ok(1);
    }
    Ok(0)
}

pub fn stop(cfg: &Config, a: StopArgs, restart: bool) -> CmdResult {
    let mut failed = false;
    for what in &a.containers {
        let r = lifecycle::stop(cfg, what, a.time).and_then(|_| {
            if restart {
                let store = Store::new(cfg);
                let lock = Lock::acquire(cfg)?;
                let mut snap = lifecycle::reconcile(&store, &lock)?;
                let mut c = snap.find(what)?.clone();
                // Docker's restart resets the restart manager: RestartCount counts the
                // policy's restarts only.
                c.restart_count = 0;
                c.restart_backoff_ms = 0;
                lifecycle::start(&store, lock, &mut snap, &mut c, Attach::Detached).map(|_| ())
            } else {
                Ok(())
            }
        });
        match r {
            Ok(()) => println!("{what}"),
            // Docker's daemon: `Cannot restart container NAME: why`.
            Err(e) if restart => {
                eprintln!("Error response from daemon: Cannot restart container {what}: {e}");
                failed = true;
            }
            Err(e) => {
                eprintln!("Error response from daemon: {e}");
                failed = true;
            }
        }
    }
    Ok(if failed { 1 } else { 0 })
}

pub fn rm(cfg: &Config, a: RmArgs) -> CmdResult {
    let mut failed = false;
    for what in &a.containers {
        let r = if a.link {
            lifecycle::remove_link(cfg, what)
        } else {
            lifecycle::remove(cfg, what, a.force)
        };
        match r {
            Ok(()) => println!("{what}"),
            Err(e) => {
                eprintln!("Error response from daemon: {e}");
                failed = true;
            }
        }
    }
    Ok(if failed { 1 } else { 0 })
}

pub fn kill(cfg: &Config, a: KillArgs) -> CmdResult {
    let mut failed = false;
    for what in &a.containers {
        match lifecycle::kill(cfg, what, a.signal.as_deref()) {
            Ok(()) => println!("{what}"),
            Err(e) => {
                // The API's wrapping (postContainersKill).
                eprintln!("Error response from daemon: cannot kill container: {what}: {e}");
                failed = true;
            }
        }
    }
    Ok(if failed { 1 } else { 0 })
}

pub fn wait(cfg: &Config, a: WaitArgs) -> CmdResult {
    let mut failed = false;
    for what in &a.containers {
        match lifecycle::wait(cfg, what) {
            Ok(code) => println!("{code}"),
            Err(e) => {
                eprintln!("Error response from daemon: {e}");
                failed = true;
            }
        }
    }
    Ok(if failed { 1 } else { 0 })
}

pub fn rename(cfg: &Config, a: RenameArgs) -> CmdResult {
    match lifecycle::rename(cfg, &a.container, &a.new_name) {
        Ok(()) => Ok(0),
        Err(e) => {
            eprintln!("Error response from daemon: {e}");
            Ok(1)
        }
    }
}
