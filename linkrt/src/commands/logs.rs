use std::{
    fs::File,
    io::{Read, Seek, SeekFrom, Write},
    time::Duration,
};

use linkrt::{
    Config,
    state::{Status, Store},
};

use super::{CmdResult, Failure};
use crate::cli::LogsArgs;

pub fn logs(cfg: &Config, a: LogsArgs) -> CmdResult {
    let store = Store::new(cfg);
    let c = store.find(&a.container).map_err(Failure::cli)?;
    let (out_p, err_p) = linkrt::process::supervisor::log_paths(&store, &c.id);
    let mut out = File::open(&out_p).ok();
    let mut err = File::open(&err_p).ok();
    let mut pos = [0u64; 2];
    loop {
        for (i, (f, w)) in [
            (&mut out, &mut std::io::stdout() as &mut dyn Write),
            (&mut err, &mut std::io::stderr()),
        ]
        .into_iter()
        .enumerate()
        {
            if let Some(f) = f {
                let _ = f.seek(SeekFrom::Start(pos[i]));
                let mut buf = Vec::new();
                if let Ok(n) = f.read_to_end(&mut buf) {
                    pos[i] += n as u64;
                    let _ = w.write_all(&buf);
                    let _ = w.flush();
                }
            }
        }
        if !a.follow {
            return Ok(0);
        }
        // Follow while the container runs (one last read above caught its final output).
        match store.load(&c.id) {
            Ok(now) if now.state.status == Status::Running => {}
            _ => return Ok(0),
        }
        if out.is_none() {
            out = File::open(&out_p).ok();
        }
        if err.is_none() {
            err = File::open(&err_p).ok();
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}
