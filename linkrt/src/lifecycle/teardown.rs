//! Undoing what a start made: the network (datapath entries, veth, netns; the address is
//! released with the record), the runtime's container and cgroup, the root's mount, and the
//! container's files. Every function is idempotent and reports every failure.
use std::path::Path;

use crate::{
    bpf,
    config::Config,
    error::{Error, Result},
    network, oci,
    state::{Container, Lock, Store},
};

fn collect(errs: Vec<Error>) -> Result<()> {
    if errs.is_empty() {
        Ok(())
    } else {
        Err(Error::Multiple(errs))
    }
}

/// Removes the network of `c`: its published ports and tracked flows, its datapath links, its
/// veth and netns (through `net`). The names come from the ID, so this works from a
/// placeholder too.
pub fn network(cfg: &Config, net: &dyn network::Network, c: &Container) -> Result<()> {
    let mut errs = Vec::new();
    let veth = network::veth_name(c.short_id());
    let ip = c.state.ip.map(|i| i.to_string());
    if (!c.state.ports.is_empty() || ip.is_some())
        && cfg.maps_dir().join(linkrt_common::maps::PORTMAP).exists()
        && let Err(e) = bpf::unpublish(cfg, &c.state.ports, ip.as_deref())
    {
        errs.push(e);
    }
    if let Err(e) = bpf::detach(cfg, &veth) {
        errs.push(e);
    }
    if let Err(e) = net.delete_endpoint(&network::netns_name(c.short_id()), &veth) {
        errs.push(e);
    }
    collect(errs)
}

/// Removes what the OCI runtime holds of `c` (its process, record and cgroup) and unmounts its
/// root.
pub fn process(cfg: &Config, c: &Container) -> Result<()> {
    let mut errs = Vec::new();
    match oci::runtime::Runtime::for_container(cfg, &c.spec.runtime) {
        // A container its supervisor already deleted (the usual case): no runtime call.
        Ok(rt) if !rt.knows(&c.id) => {}
        Ok(rt) => {
            if let Err(e) = rt.delete(&c.id, true) {
                errs.push(e);
            }
        }
        Err(e) => errs.push(e),
    }
    oci::cgroup::remove(
        &oci::cgroup::Layout::detect(),
        &oci::cgroup::container_path(&cfg.cgroup_parent, &c.id),
    );
    if let Err(e) = oci::rootfs::unmount(cfg, &c.id) {
        errs.push(e);
    }
    collect(errs)
}

pub fn remove_if_exists(p: &Path) -> Result<()> {
    match std::fs::remove_file(p) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(Error::io("removing", p, e)),
    }
}

/// Deletes the container's root layers, its state directory and index entry, and the
/// supervisor's files in the run directory.
pub fn files(store: &Store, lock: &Lock, c: &Container) -> Result<()> {
    oci::rootfs::remove(&store.cfg, &c.id)?;
    crate::state::failpoint("rm");
    store.remove(lock, &c.id)?;
    remove_if_exists(&crate::state::pids_path(&store.cfg, &c.id))?;
    remove_if_exists(&super::finish::exit_path(&store.cfg, &c.id))
}

/// Whether `pid` is a live process (a zombie whose parent never reaps it counts as dead).
pub fn pid_alive(pid: i32) -> bool {
    if pid <= 0 || nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None).is_err() {
        return false;
    }
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => !matches!(
            stat.rsplit_once(") ").and_then(|(_, rest)| rest.chars().next()),
            Some('Z' | 'X')
        ),
        Err(_) => false,
    }
}
