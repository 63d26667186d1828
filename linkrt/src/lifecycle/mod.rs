//! The container lifecycle, one file per use case. Each command takes the write [`Lock`]
//! (a value that proves it), repairs and loads one [`Snapshot`] ([`reconcile`]), then acts
//! on it; read-only commands read a snapshot without the lock.
//!
//! [`Lock`]: crate::state::Lock
//! [`Snapshot`]: crate::state::Snapshot
pub mod create;
pub mod env;
pub mod etc_files;
pub mod finish;
pub mod kill;
pub mod policy;
pub mod publish;
pub mod reconcile;
pub mod remove;
pub mod rename;
pub mod restart;
pub mod start;
pub mod stop;
pub mod teardown;

pub use create::{CreateOptions, create};
pub use env::{link_strings, parse_env_opt, process_env};
pub use finish::finish;
pub use kill::{kill, wait};
pub use reconcile::reconcile;
pub use remove::{remove, remove_link};
pub use rename::rename;
pub use start::{Attach, check_links, start};
pub use stop::stop;

use crate::{
    config::Config,
    error::Result,
    state::{Lock, Snapshot, Store},
};

/// The snapshot a read-only command shows: repaired first when the write lock is free at once
/// (never waiting for it: a stuck writer cannot block `ps`), else as it stands.
pub fn read_snapshot(cfg: &Config) -> Result<Snapshot> {
    let store = Store::new(cfg);
    match Lock::try_acquire(cfg) {
        Ok(Some(lock)) => reconcile(&store, &lock),
        // Busy, or the state directory cannot even take a lock file (a full disk, read-only).
        Ok(None) | Err(_) => store.snapshot(),
    }
}
