//! Exit files: what a supervisor saw when its container's PID 1 exited, written to the run
//! directory (tmpfs) before it is recorded, so that a full state disk or a killed supervisor
//! never loses an exit.
use serde::{Deserialize, Serialize};

use crate::{config::Config, error::Result};

/// PID 1's exit code, whether the OOM killer acted, and when.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExitRecord {
    pub code: i32,
    pub oom_killed: bool,
    pub finished_at: String,
}

pub fn path(cfg: &Config, id: &str) -> std::path::PathBuf {
    cfg.run_root.join("exit").join(format!("{id}.json"))
}

pub fn write(cfg: &Config, id: &str, e: &ExitRecord) -> Result<()> {
    let p = path(cfg, id);
    super::create_private_dir(p.parent().expect("has a parent"))?;
    super::write_atomic(&p, &serde_json::to_vec(e).expect("serializable"))
}

pub fn read(cfg: &Config, id: &str) -> Option<ExitRecord> {
    serde_json::from_slice(&std::fs::read(path(cfg, id)).ok()?).ok()
}
