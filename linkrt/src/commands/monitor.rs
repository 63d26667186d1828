use std::{
    io::Write,
    time::{Duration, Instant},
};

use linkrt::{Config, bpf::EventReader};

use super::{CmdResult, Failure};
use crate::cli::MonitorArgs;

pub fn monitor(cfg: &Config, a: MonitorArgs) -> CmdResult {
    let mut r = EventReader::open(cfg).map_err(Failure::cli)?;
    let start = Instant::now();
    let mut seen = 0usize;
    let mut out = std::io::stdout();
    loop {
        for ev in r.next_events(Duration::from_millis(200)).map_err(Failure::cli)? {
            let _ = writeln!(out, "{ev}");
            seen += 1;
            if a.count.is_some_and(|n| seen >= n) {
                return Ok(0);
            }
        }
        let _ = out.flush();
        if a.timeout.is_some_and(|t| start.elapsed() >= Duration::from_secs(t)) {
            return Ok(0);
        }
    }
}
