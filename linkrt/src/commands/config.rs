use linkrt::{
    Config, lifecycle,
    lifecycle::policy::Settings,
    state::{Lock, Store},
};

use super::CmdResult;
use crate::cli::ConfigArgs;

/// `linkrt config [--icc BOOL]`: prints the settings, or changes them and applies them.
pub fn config(cfg: &Config, a: ConfigArgs) -> CmdResult {
    let Some(icc) = a.icc else {
        println!("icc: {}", Settings::load(cfg)?.icc);
        return Ok(0);
    };
    let lock = Lock::acquire(cfg)?;
    let mut s = Settings::load(cfg)?;
    s.icc = icc;
    s.save(cfg, &lock)?;
    // The datapath follows at once.
    lifecycle::reconcile(&Store::new(cfg), &lock)?;
    Ok(0)
}
