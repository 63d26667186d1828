//! The state directory's write lock: one writer at a time, a bounded wait, and the holder's
//! identity in the error when the wait runs out. Readers never take it.
use std::{
    fs::{File, OpenOptions},
    os::unix::fs::OpenOptionsExt,
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use nix::fcntl::{Flock, FlockArg};

use crate::{
    config::Config,
    error::{Error, Result},
};

/// Opens (creating, 0600, close-on-exec) a file that serves as a flock(2) lock.
pub(crate) fn open_lock_file(path: &Path) -> Result<File> {
    OpenOptions::new()
        .create(true)
        .truncate(false)
        .read(true)
        .write(true)
        .mode(0o600)
        .custom_flags(libc::O_CLOEXEC)
        .open(path)
        .map_err(|e| Error::io("opening", path, e))
}

/// Held while a command changes state; released on drop (and by the kernel if it dies).
pub struct Lock {
    _flock: Flock<File>,
    owner: PathBuf,
}

fn timeout() -> Duration {
    std::env::var("LINKRT_LOCK_TIMEOUT")
        .ok()
        .and_then(|s| s.parse::<f64>().ok())
        .filter(|s| *s >= 0.0)
        .map(Duration::from_secs_f64)
        .unwrap_or(Duration::from_secs(10))
}

fn owner_path(cfg: &Config) -> PathBuf {
    // On the run directory (tmpfs): it is written even when the state disk is full.
    cfg.run_root.join("lock.owner")
}

/// "pid N: argv" of the current holder, as it recorded itself.
fn holder(cfg: &Config) -> String {
    std::fs::read_to_string(owner_path(cfg))
        .ok()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "pid unknown".into())
}

impl Lock {
    fn open(cfg: &Config) -> Result<File> {
        for d in [&cfg.root, &cfg.root.join("containers"), &cfg.run_root] {
            super::create_private_dir(d)?;
        }
        open_lock_file(&cfg.root.join("lock"))
    }

    fn took(cfg: &Config, flock: Flock<File>) -> Lock {
        let owner = owner_path(cfg);
        let argv: Vec<String> = std::env::args().collect();
        // Who holds the lock is a courtesy for the next command's error message: a failed write
        // (a full run directory) changes nothing about the lock itself.
        if let Err(e) = std::fs::write(&owner, format!("pid {}: {}", std::process::id(), argv.join(" "))) {
            log::warn!("recording the lock holder in {}: {e}", owner.display());
        }
        Lock { _flock: flock, owner }
    }

    /// The lock if nobody holds it, without waiting.
    pub fn try_acquire(cfg: &Config) -> Result<Option<Lock>> {
        match Flock::lock(Lock::open(cfg)?, FlockArg::LockExclusiveNonblock) {
            Ok(f) => Ok(Some(Lock::took(cfg, f))),
            Err((_, nix::errno::Errno::EWOULDBLOCK)) => Ok(None),
            Err((_, e)) => Err(Error::io("locking", cfg.root.join("lock"), e.into())),
        }
    }

    /// Waits up to `LINKRT_LOCK_TIMEOUT` seconds (default 10) for the lock; then fails naming
    /// the command that holds it.
    pub fn acquire(cfg: &Config) -> Result<Lock> {
        Lock::acquire_within(cfg, timeout())
    }

    pub fn acquire_within(cfg: &Config, limit: Duration) -> Result<Lock> {
        let start = Instant::now();
        loop {
            if let Some(l) = Lock::try_acquire(cfg)? {
                return Ok(l);
            }
            if start.elapsed() >= limit {
                return Err(Error::user(format!(
                    "another linkrt command ({}) holds the state lock; waited {:.1} s",
                    holder(cfg),
                    limit.as_secs_f64()
                )));
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// Waits for the lock however long it takes (the supervisor recording an exit), logging
    /// who holds it now and then.
    pub fn wait(cfg: &Config) -> Result<Lock> {
        let mut waited = Duration::ZERO;
        loop {
            match Lock::acquire_within(cfg, Duration::from_secs(5)) {
                Ok(l) => return Ok(l),
                Err(Error::User(msg)) => {
                    waited += Duration::from_secs(5);
                    log::warn!("{msg} (waiting for {} s)", waited.as_secs());
                }
                Err(e) => return Err(e),
            }
        }
    }
}

impl Drop for Lock {
    fn drop(&mut self) {
        // The next holder overwrites it anyway; a stale name is only shown if nobody holds it.
        if let Err(e) = std::fs::remove_file(&self.owner)
            && e.kind() != std::io::ErrorKind::NotFound
        {
            log::warn!("removing {}: {e}", self.owner.display());
        }
    }
}
