//! An exit: the supervisor first writes it to the run directory (tmpfs, so that a full state
//! disk cannot lose it), then records it under the lock; whoever finds an exit file that was
//! not yet recorded (the next command) records it.
use super::{policy, start::upsert, teardown};
use crate::{
    config::Config,
    error::{Error, Result},
    network, oci,
    state::{self, Container, Lock, Snapshot, Status, Store},
};

pub use crate::state::exit::ExitRecord;

pub fn exit_path(cfg: &Config, id: &str) -> std::path::PathBuf {
    state::exit::path(cfg, id)
}

/// Records an exit in `c` (under the lock): network torn down, root unmounted, status
/// `Exited`; removed with `--rm`. The exit and pids files go once the record is written.
pub fn apply_exit(store: &Store, lock: &Lock, snap: &mut Snapshot, c: &mut Container, e: &ExitRecord) -> Result<()> {
    apply_exit_after(store, lock, snap, c, e, None)
}

/// [`apply_exit`] while the runtime's `deleting` of the container runs: it is waited for
/// before the record says `Exited`, so that a start that follows never meets the old one.
fn apply_exit_after(
    store: &Store,
    lock: &Lock,
    snap: &mut Snapshot,
    c: &mut Container,
    e: &ExitRecord,
    deleting: Option<oci::runtime::Deleting>,
) -> Result<()> {
    let cfg = &store.cfg;
    let r = teardown::network(cfg, network::system().as_ref(), c).and(oci::rootfs::unmount(cfg, &c.id));
    if let Some(d) = deleting {
        // Reported, not returned: the exit is recorded whatever the runtime says.
        if let Err(e) = d.wait() {
            log::error!("{e}");
        }
    }
    state::failpoint("finish");
    c.state.status = Status::Exited;
    c.state.exit_code = e.code;
    c.state.oom_killed = e.oom_killed;
    c.state.pid = 0;
    c.state.supervisor_pid = 0;
    c.state.finished_at = Some(e.finished_at.clone());
    c.state.ip = None;
    c.state.mac = None;
    c.state.veth = None;
    c.state.ports.clear();
    if c.spec.auto_remove {
        teardown::process(cfg, c)?;
        teardown::files(store, lock, c)?;
        snap.containers.retain(|x| x.id != c.id);
    } else {
        store.save(lock, c)?;
        upsert(snap, c);
    }
    teardown::remove_if_exists(&exit_path(cfg, &c.id))?;
    teardown::remove_if_exists(&state::pids_path(cfg, &c.id))?;
    policy::sync(cfg, &snap.containers)?;
    r
}

/// The supervisor's end: the exit is kept in the run directory first, then recorded. Returns
/// the delay after which the restart policy restarts the container (the supervisor waits it,
/// then calls `restart::restart_now`).
pub fn finish(
    cfg: &Config,
    id: &str,
    code: i32,
    oom_killed: bool,
    deleting: Option<oci::runtime::Deleting>,
) -> Result<Option<std::time::Duration>> {
    let e = ExitRecord {
        code,
        oom_killed,
        finished_at: state::now_rfc3339(),
    };
    state::exit::write(cfg, id, &e)?;
    let lock = Lock::wait(cfg)?;
    let store = Store::new(cfg);
    let mut snap = store.snapshot()?;
    // (`deleting`, dropped on an early return, is waited for there.)
    let Some(mut c) = snap.get(id).cloned() else {
        // Removed meanwhile (`rm -f`): nothing to record.
        drop(deleting);
        return teardown::remove_if_exists(&exit_path(cfg, id)).map(|()| None);
    };
    if c.state.status == Status::Dead {
        drop(deleting);
        // The record cannot be written: the exit stays in the run directory for `rm -f`.
        return Err(Error::sys(format!(
            "the record of {id} is unreadable; its exit ({code}) is kept in {}",
            exit_path(cfg, id).display()
        )));
    }
    apply_exit_after(&store, &lock, &mut snap, &mut c, &e, deleting)?;
    if c.spec.auto_remove {
        return Ok(None);
    }
    let delay = super::restart::after_exit(&store, &lock, &mut snap, &mut c)?;
    if delay.is_some() {
        // This supervisor waits for the restart: the one to find if it dies meanwhile.
        c.state.supervisor_pid = std::process::id() as i32;
        store.save(&lock, &c)?;
    }
    Ok(delay)
}
