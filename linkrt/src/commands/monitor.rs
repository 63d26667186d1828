//! `linkrt monitor`: datapath events (and with `--debug`, the programs' aya-log lines), one
//! tokio loop waiting on both ring buffers through `AsyncFd`.
use std::{
    io::Write,
    time::{Duration, Instant},
};

use linkrt::{
    Config,
    bpf::{DebugLog, EventReader},
};
use tokio::io::unix::AsyncFd;

use super::{CmdResult, Failure};
use crate::cli::MonitorArgs;

/// What the loop prints, counted for `-n`.
struct Out {
    seen: usize,
    limit: Option<usize>,
}

impl Out {
    /// Prints one line; `true` when `-n` is reached (or stdout is gone).
    fn line(&mut self, l: &str) -> bool {
        let mut o = std::io::stdout().lock();
        if writeln!(o, "{l}").and_then(|()| o.flush()).is_err() {
            return true;
        }
        self.seen += 1;
        self.limit.is_some_and(|n| self.seen >= n)
    }
}

pub fn monitor(cfg: &Config, a: MonitorArgs) -> CmdResult {
    let debug = a.debug || std::env::var("LINKRT_LOG").is_ok_and(|v| v.eq_ignore_ascii_case("debug"));
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .enable_time()
        .build()
        .map_err(|e| Failure::cli(linkrt::Error::io("starting", "the monitor's event loop", e)))?;
    // Opened before the loop starts: finding the programs may take netlink calls, which block.
    let events = EventReader::open(cfg).map_err(Failure::cli)?;
    let logs = match debug {
        true => Some(DebugLog::open(cfg).map_err(Failure::cli)?),
        false => None,
    };
    rt.block_on(run(events, logs, a))
}

async fn run(events: EventReader, logs: Option<DebugLog>, a: MonitorArgs) -> CmdResult {
    // SAFETY (both registrations): the reader owns its ring buffer's fd and the debug log owns
    // aya-log's; each stays open, the same fd, for as long as the AsyncFd that holds it.
    let events = unsafe { AsyncFd::register(events) }.map_err(|e| {
        Failure::cli(linkrt::Error::io(
            "watching",
            "the datapath's event ring buffer",
            e.into_parts().1,
        ))
    })?;
    // Dropped at the end of this function (also on Ctrl-C or SIGTERM): logging goes off again.
    let logs = match logs {
        Some(l) => Some(unsafe { AsyncFd::register(l) }.map_err(|e| {
            Failure::cli(linkrt::Error::io(
                "watching",
                "the datapath's debug logs",
                e.into_parts().1,
            ))
        })?),
        None => None,
    };
    let deadline = a.timeout.map(|t| Instant::now() + Duration::from_secs(t));
    let mut out = Out {
        seen: 0,
        limit: a.count,
    };
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .map_err(|e| Failure::cli(linkrt::Error::io("handling", "SIGTERM", e)))?;
    let mut events = events;
    let mut logs = logs;
    loop {
        let until = async {
            match deadline {
                Some(d) => tokio::time::sleep_until(d.into()).await,
                None => std::future::pending().await,
            }
        };
        let log_ready = async {
            match logs.as_mut() {
                Some(l) => l.readable_mut().await.map(Some),
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            r = events.readable_mut() => {
                let mut g = r.map_err(|e| Failure::cli(linkrt::Error::io("watching", "the datapath's event ring buffer", e)))?;
                let batch = g.get_inner_mut().drain();
                g.clear_ready();
                for ev in batch {
                    if out.line(&ev.to_string()) {
                        return Ok(0);
                    }
                }
            }
            r = log_ready => {
                if let Some(mut g) = r.map_err(|e| Failure::cli(linkrt::Error::io("watching", "the datapath's debug logs", e)))? {
                    let lines = g.get_inner_mut().drain();
                    g.clear_ready();
                    for l in lines {
                        if out.line(&format!("debug {l}")) {
                            return Ok(0);
                        }
                    }
                }
            }
            () = until => return Ok(0),
            r = tokio::signal::ctrl_c() => {
                r.map_err(|e| Failure::cli(linkrt::Error::io("handling", "SIGINT", e)))?;
                return Ok(130);
            }
            _ = term.recv() => return Ok(143),
        }
    }
}
