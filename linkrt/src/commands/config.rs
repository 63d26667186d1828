use linkrt::{
    Config, lifecycle,
    lifecycle::policy::Settings,
    state::{Lock, Store},
};

use super::CmdResult;
use crate::cli::ConfigArgs;

/// `linkrt config [--icc BOOL] [--ip-masq BOOL] [--masq-ports FIRST-LAST]`: prints the
/// settings, or changes them and applies them.
pub fn config(cfg: &Config, a: ConfigArgs) -> CmdResult {
    if a.icc.is_none() && a.ip_masq.is_none() && a.masq_ports.is_none() {
        let s = Settings::load(cfg)?;
        println!("icc: {}", s.icc);
        println!("ip-masq: {}", s.ip_masq);
        println!("masq-ports: {}-{}", s.masq_ports.0, s.masq_ports.1);
        return Ok(0);
    }
    let lock = Lock::acquire(cfg)?;
    let mut s = Settings::load(cfg)?;
    s.icc = a.icc.unwrap_or(s.icc);
    s.ip_masq = a.ip_masq.unwrap_or(s.ip_masq);
    s.masq_ports = a.masq_ports.unwrap_or(s.masq_ports);
    s.save(cfg, &lock)?;
    // The datapath follows at once.
    lifecycle::reconcile(&Store::new(cfg), &lock)?;
    Ok(0)
}
