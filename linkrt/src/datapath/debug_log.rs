//! `linkrt monitor --debug`: the programs' aya-log debug lines (each drop with its reason and
//! tuple, each new translated flow), read from aya-log's ring buffer.
//!
//! The programs write them only while `CONFIG_LOG` is 1: a [`DebugLog`] sets it when it opens
//! and clears it when it is dropped, so that with nobody reading, logging costs one array
//! lookup per drop or new flow and writes nothing.
use std::{
    os::fd::{AsRawFd, RawFd},
    sync::mpsc,
};

use aya_log::EbpfLogger;
use linkrt_common::{DropReason, config::CONFIG_LOG};

use super::{
    Hook,
    loader::{attached_interfaces, attached_program},
    maps::Pinned,
};
use crate::{
    config::Config,
    error::{Error, Result},
};

/// The name of aya-log's ring buffer in the object (pinned beside linkrt's maps).
pub const LOG_MAP: &str = "AYA_LOGS";

/// Collects the formatted lines aya-log decodes (the library never prints).
struct Lines(mpsc::Sender<String>);

impl log::Log for Lines {
    fn enabled(&self, _: &log::Metadata<'_>) -> bool {
        true
    }

    fn log(&self, record: &log::Record<'_>) {
        // The receiver lives as long as the DebugLog that owns this logger.
        if self.0.send(named(&format!("{}", record.args()))).is_err() {}
    }

    fn flush(&self) {}
}

/// A drop's line as the programs write it, `drop CODE ...` (a number keeps the verifier's work
/// small), with the reason's name instead: `drop_policy ...`. Other lines are left alone.
fn named(line: &str) -> String {
    let Some(rest) = line.strip_prefix("drop ") else {
        return line.to_string();
    };
    let (code, tail) = rest.split_once(' ').unwrap_or((rest, ""));
    match code.parse().ok().and_then(DropReason::from_code) {
        Some(r) if tail.is_empty() => r.name().to_string(),
        Some(r) => format!("{} {tail}", r.name()),
        None => line.to_string(),
    }
}

/// A reader of the datapath's debug logs; while it exists the programs write them.
pub struct DebugLog {
    logger: EbpfLogger<Lines>,
    lines: mpsc::Receiver<String>,
    cfg: Config,
}

impl DebugLog {
    /// Turns the debug logs on and attaches to them through one of linkrt's TC programs
    /// (every program that logs shares the pinned log buffer).
    pub fn open(cfg: &Config) -> Result<Self> {
        let prog = tc_program(cfg).ok_or_else(|| {
            Error::sys(format!(
                "the datapath is not attached anywhere (no TC program under {}); start a container first",
                cfg.links_dir().display()
            ))
        })?;
        let (tx, lines) = mpsc::channel();
        let logger = EbpfLogger::init_from_id_with_logger(prog, Lines(tx))
            .map_err(|e| Error::sys(format!("attaching to the datapath's logs (program {prog}): {e}")))?;
        Pinned::new(cfg).set_config(CONFIG_LOG, 1)?;
        Ok(DebugLog {
            logger,
            lines,
            cfg: cfg.clone(),
        })
    }

    /// Decodes what the programs wrote since the last call.
    pub fn drain(&mut self) -> Vec<String> {
        self.logger.flush();
        self.lines.try_iter().collect()
    }
}

/// The program of one of linkrt's TC attachments (the socket hooks log nothing, so their
/// programs do not use the log buffer).
fn tc_program(cfg: &Config) -> Option<u32> {
    attached_interfaces(cfg)
        .iter()
        .find_map(|i| attached_program(cfg, i, Hook::Ingress))
}

impl AsRawFd for DebugLog {
    fn as_raw_fd(&self) -> RawFd {
        self.logger.as_raw_fd()
    }
}

impl Drop for DebugLog {
    fn drop(&mut self) {
        // Best effort: a datapath removed meanwhile has no CONFIG to clear.
        if Pinned::new(&self.cfg).set_config(CONFIG_LOG, 0).is_err() {}
    }
}

#[cfg(test)]
mod tests {
    use super::named;

    #[test]
    fn drop_lines_name_their_reason() {
        assert_eq!(
            named("drop 5 proto 6 172.17.0.3:40000 -> 172.17.0.2:7001 ethertype 800"),
            "drop_policy proto 6 172.17.0.3:40000 -> 172.17.0.2:7001 ethertype 800"
        );
        assert_eq!(named("drop 15 proto 47"), "drop_nat_proto proto 47");
        assert_eq!(named("dnat proto 6 a => b"), "dnat proto 6 a => b");
        assert_eq!(named("drop 99 proto 6"), "drop 99 proto 6", "an unknown code is kept");
    }
}
