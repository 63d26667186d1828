use linkrt::{
    Config,
    container::{self, Attach},
    state::{Lock, Status, Store},
};

use super::{CmdResult, Failure};
use crate::cli::{RmArgs, StartArgs, StopArgs};

fn start_one(cfg: &Config, what: &str, attach: Attach) -> Result<i32, Failure> {
    let store = Store::new(cfg);
    let lock = Lock::acquire(cfg)?;
    container::reconcile(&store)?;
    let mut c = store.find(what)?;
    if c.state.status == Status::Running {
        return Ok(0);
    }
    Ok(container::start(cfg, &store, &mut c, attach, lock)?)
}

pub fn start(cfg: &Config, a: StartArgs) -> CmdResult {
    let attach = if a.attach || a.interactive {
        Attach::Foreground
    } else {
        Attach::Detached
    };
    let mut code = 0;
    for what in &a.containers {
        match start_one(cfg, what, attach) {
            Ok(c) if attach == Attach::Foreground => return Ok(c),
            Ok(_) => println!("{what}"),
            Err(f) => {
                eprintln!("Error response from daemon: {}", f.msg);
                code = f.code.max(1);
            }
        }
    }
    if code != 0 {
        return Err(Failure {
            code,
            msg: "failed to start containers: ".to_string() + &a.containers.join(", "),
        });
    }
    Ok(0)
}

pub fn stop(cfg: &Config, a: StopArgs, restart: bool) -> CmdResult {
    let mut failed = false;
    for what in &a.containers {
        let r = container::stop(cfg, what, a.time).and_then(|_| {
            if restart {
                let store = Store::new(cfg);
                let lock = Lock::acquire(cfg)?;
                let mut c = store.find(what)?;
                c.restart_count += 1;
                container::start(cfg, &store, &mut c, Attach::Detached, lock).map(|_| ())
            } else {
                Ok(())
            }
        });
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

pub fn rm(cfg: &Config, a: RmArgs) -> CmdResult {
    let mut failed = false;
    for what in &a.containers {
        match container::remove(cfg, what, a.force) {
            Ok(()) => println!("{what}"),
            Err(e) => {
                eprintln!("Error response from daemon: {e}");
                failed = true;
            }
        }
    }
    Ok(if failed { 1 } else { 0 })
}
