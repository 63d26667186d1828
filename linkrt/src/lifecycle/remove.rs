//! `rm [-f]`: a stopped container's files go at once; a running one is killed first (with
//! `-f`) and removed once its supervisor recorded the exit. A dead record is torn down from
//! what can be recovered: its netns and veth (named after its ID), its supervisor's pid file,
//! the runtime's container.
use std::time::Duration;

use nix::sys::signal::Signal;

use super::{stop, teardown};
use crate::{
    config::Config,
    error::{Error, Result},
    network,
    state::{self, Container, Lock, Status, Store},
};

fn running_error(c: &Container) -> Error {
    Error::user(format!(
        "cannot remove container \"/{}\": container is running: stop the container before removing or force remove",
        if c.name.is_empty() { c.short_id() } else { &c.name }
    ))
}

/// Tears a dead record's container down and removes it (caller holds the lock).
fn remove_dead(store: &Store, lock: &Lock, c: &Container, force: bool) -> Result<()> {
    let pids = state::read_pids(&store.cfg, &c.id);
    let alive = pids.is_some_and(|(sup, pid)| teardown::pid_alive(sup) || teardown::pid_alive(pid));
    if alive && !force {
        return Err(running_error(c));
    }
    if let Some((_, pid1)) = pids
        && teardown::pid_alive(pid1)
        && let Err(e) = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid1), Signal::SIGKILL)
    {
        log::warn!("killing PID {pid1} of dead container {}: {e}", c.short_id());
    }
    let mut errs = Vec::new();
    for r in [
        teardown::process(&store.cfg, c),
        teardown::network(&store.cfg, network::system().as_ref(), c),
    ] {
        if let Err(e) = r {
            errs.push(e);
        }
    }
    teardown::files(store, lock, c)?;
    if errs.is_empty() {
        Ok(())
    } else {
        Err(Error::Multiple(errs))
    }
}

/// `docker rm [-f]`.
pub fn remove(cfg: &Config, what: &str, force: bool) -> Result<()> {
    let store = Store::new(cfg);
    let c = {
        let lock = Lock::acquire(cfg)?;
        let snap = super::reconcile::reconcile(&store, &lock)?;
        let c = snap.find(what)?.clone();
        match c.state.status {
            Status::Dead => return remove_dead(&store, &lock, &c, force),
            Status::Running if !force => return Err(running_error(&c)),
            Status::Running => {
                // No restart policy brings back a container being removed.
                let mut c = c;
                c.state.restart_canceled = true;
                // Best effort: on a full state disk `rm -f` must still work.
                if let Err(e) = store.save(&lock, &c) {
                    log::warn!("recording the removal of {}: {e}", c.short_id());
                }
                stop::signal(&c, Signal::SIGKILL)?;
                c
            }
            _ => return teardown::files(&store, &lock, &c),
        }
    };
    if !stop::wait_stopped(&store, &c.id, Duration::from_secs(30)) {
        return Err(Error::sys(format!("container {} did not stop", c.short_id())));
    }
    let lock = Lock::acquire(cfg)?;
    let mut snap = super::reconcile::reconcile(&store, &lock)?;
    match snap.get(&c.id).cloned() {
        Some(c) if c.state.status == Status::Dead => remove_dead(&store, &lock, &c, true),
        Some(mut c) => {
            // Normally recorded by the supervisor; a full disk may have left it to us.
            if c.state.veth.is_some() {
                teardown::network(cfg, network::system().as_ref(), &c)?;
                c.state.veth = None;
            }
            teardown::process(cfg, &c)?;
            teardown::files(&store, &lock, &c)?;
            snap.containers.retain(|x| x.id != c.id);
            super::policy::sync(cfg, &snap.containers)
        }
        None => Ok(()),
    }
}

/// `docker rm --link /RECIPIENT/ALIAS`: removes the link (its /etc/hosts line and its policy
/// entries; the variables of running processes stay, as in Docker). The name is looked up
/// first, as Docker's `rm` does (a link name resolves to its source): an unknown one is "No
/// such container", a container's own name "cannot remove the default link name".
pub fn remove_link(cfg: &Config, what: &str) -> Result<()> {
    let store = Store::new(cfg);
    let lock = Lock::acquire(cfg)?;
    let mut snap = super::reconcile::reconcile(&store, &lock)?;
    let full = format!("/{}", what.strip_prefix('/').unwrap_or(what));
    let (parent, _) = full.rsplit_once('/').expect("starts with /");
    let found = snap.containers.iter().enumerate().find_map(|(i, r)| {
        let j = r
            .spec
            .links
            .iter()
            .position(|l| format!("/{}/{}", r.name, l.alias) == full)?;
        Some((i, j))
    });
    let Some((i, j)) = found else {
        snap.find(what)?;
        return Err(Error::user(
            "Conflict, cannot remove the default link name of the container",
        ));
    };
    if parent.is_empty() {
        return Err(Error::user(
            "Conflict, cannot remove the default link name of the container",
        ));
    }
    if format!("/{}", snap.containers[i].name) != parent {
        return Err(Error::user(format!("Cannot get parent {parent} for link name {full}")));
    }
    let r = &mut snap.containers[i];
    let l = r.spec.links.remove(j);
    if !r.spec.links.iter().any(|x| x.source_id == l.source_id) {
        r.state.link_ips.remove(&l.source_id);
    }
    let r = r.clone();
    store.save(&lock, &r)?;
    if r.state.status == Status::Running {
        super::etc_files::rewrite_in_place(
            &store.dir(&r.id).join("hosts"),
            &super::etc_files::render_hosts(&r, &snap.containers),
        )?;
    }
    super::policy::sync(cfg, &snap.containers)
}
