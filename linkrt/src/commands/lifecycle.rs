use linkrt::{
    Config,
    lifecycle::{self, Attach},
    state::{Lock, Store},
};

use super::{CmdResult, Failure};
use crate::cli::{RmArgs, StartArgs, StopArgs};

fn start_one(cfg: &Config, what: &str, attach: Attach) -> Result<i32, Failure> {
    let store = Store::new(cfg);
    let lock = Lock::acquire(cfg)?;
    let mut snap = lifecycle::reconcile(&store, &lock)?;
    let mut c = snap.find(what)?.clone();
    Ok(lifecycle::start(&store, lock, &mut snap, &mut c, attach)?)
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
        let r = lifecycle::stop(cfg, what, a.time).and_then(|_| {
            if restart {
                let store = Store::new(cfg);
                let lock = Lock::acquire(cfg)?;
                let mut snap = lifecycle::reconcile(&store, &lock)?;
                let mut c = snap.find(what)?.clone();
                c.restart_count += 1;
                lifecycle::start(&store, lock, &mut snap, &mut c, Attach::Detached).map(|_| ())
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
        match lifecycle::remove(cfg, what, a.force) {
            Ok(()) => println!("{what}"),
            Err(e) => {
                eprintln!("Error response from daemon: {e}");
                failed = true;
            }
        }
    }
    Ok(if failed { 1 } else { 0 })
}
