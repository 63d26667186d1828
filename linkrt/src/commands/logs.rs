use std::io::Write;

use linkrt::{
    Config,
    process::logfile::{self, Stream},
    state::{Status, Store},
};

use super::{CmdResult, Failure};
use crate::cli::LogsArgs;

pub fn logs(cfg: &Config, a: LogsArgs) -> CmdResult {
    let store = Store::new(cfg);
    let c = linkrt::lifecycle::read_snapshot(cfg)
        .map_err(Failure::cli)?
        .find(&a.container)
        .map_err(Failure::cli)?
        .clone();
    let (out_p, err_p) = linkrt::process::supervisor::log_paths(&store, &c.id);
    let running = || matches!(store.load(&c.id), Ok(now) if now.state.status == Status::Running);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .map_err(|e| Failure::cli(linkrt::Error::io("starting", "the log reader", e)))?;
    let (mut stdout, mut stderr) = (std::io::stdout(), std::io::stderr());
    let mut sink = |s: Stream, data: &[u8]| {
        let w: &mut dyn Write = match s {
            Stream::Stdout => &mut stdout,
            Stream::Stderr => &mut stderr,
        };
        // A closed stdout (`| head`) ends us by SIGPIPE, as other CLIs.
        if w.write_all(data).and_then(|_| w.flush()).is_err() {
            std::process::exit(0);
        }
    };
    rt.block_on(logfile::read_logs(
        &out_p,
        &err_p,
        &c.spec.log,
        a.follow,
        &running,
        &mut sink,
    ));
    Ok(0)
}
