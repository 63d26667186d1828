//! `start`: the address and the veth, the files, the root and the bundle; then the supervisor
//! through the one launch path, whose runtime creates the container while this command wires
//! its network into the datapath (programs, published ports, link policy); then the go, and
//! the container's process runs. Write-ahead: the record names what is about to exist before
//! it is made, so an interrupted start is repaired by the next command; a failed start undoes
//! everything at once, its policy entries included.
use std::net::Ipv4Addr;

use super::{etc_files, policy, publish, teardown};
use crate::{
    bpf,
    config::Config,
    error::{Error, Result},
    image, network, oci,
    process::{launch, sync::Report},
    state::{self, Container, Lock, MacAddr, Snapshot, State, Status, Store},
};

/// Docker's exit code of a start that failed before the process ran (`exitUnknown`).
pub const EXIT_UNKNOWN: i32 = 128;

/// How a start is attached to the caller.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Attach {
    /// `-d`: the supervisor runs in the background; output goes to the log files only.
    Detached,
    /// Foreground: output goes to our stdout/stderr too, our stdin to the container with -i.
    Foreground,
}

/// Replaces (or adds) `c` in the snapshot.
pub fn upsert(snap: &mut Snapshot, c: &Container) {
    match snap.containers.iter_mut().find(|x| x.id == c.id) {
        Some(x) => *x = c.clone(),
        None => snap.containers.push(c.clone()),
    }
}

/// The lowest address of the subnet that no container holds (a dead record's included).
fn allocate_ip(snap: &Snapshot, subnet: &network::Subnet, id: &str) -> Result<Ipv4Addr> {
    let held: std::collections::BTreeSet<Ipv4Addr> = snap
        .containers
        .iter()
        .filter(|c| c.id != id)
        .filter_map(|c| c.state.ip)
        .chain(
            snap.index
                .addresses()
                .filter(|(_, owner)| *owner != id)
                .map(|(ip, _)| ip),
        )
        .collect();
    subnet
        .hosts()
        .find(|ip| !held.contains(ip))
        .ok_or_else(|| Error::user("no available IPv4 addresses on this network's address pools: bridge"))
}

/// Docker's `setupLinkedContainers`: every link source must be running (a removed source
/// counts as not running, its dangling entry kept). Checked at start and exec.
pub fn check_links(c: &Container, all: &[Container]) -> Result<()> {
    for l in &c.spec.links {
        let (name, running) = match all.iter().find(|s| s.id == l.source_id) {
            Some(s) => (s.name.as_str(), s.state.status == Status::Running),
            None => (l.source_name.as_str(), false),
        };
        if !running {
            return Err(Error::user(format!(
                "Cannot link to a non running container: /{name} AS /{}/{}",
                c.name, l.alias
            )));
        }
    }
    Ok(())
}

/// Sets up the address and veth, the files, the root and the bundle of `c`. On error
/// everything made here is undone.
pub fn prepare(store: &Store, lock: &Lock, snap: &mut Snapshot, c: &mut Container) -> Result<()> {
    prepare_on(store, lock, snap, c, network::system().as_ref())
}

/// [`prepare`] with the host's network reached through `net`.
pub fn prepare_on(
    store: &Store,
    lock: &Lock,
    snap: &mut Snapshot,
    c: &mut Container,
    net: &dyn network::Network,
) -> Result<()> {
    check_links(c, &snap.containers)?;
    let env = super::env::process_env(c, &snap.containers, c.spec.tty);
    super::env::check_exec_size(c, &snap.containers, &c.spec.cmd, &env)?;
    let r = prepare_inner(store, lock, snap, c, net);
    if let Err(e) = &r {
        // Undo whatever was made; the start's own error is what the user needs to see.
        let undo = teardown::network(&store.cfg, net, c).and(oci::rootfs::unmount(&store.cfg, &c.id));
        if let Err(t) = undo {
            log::warn!("undoing the failed start of {} ({e}): {t}", c.short_id());
        }
    }
    r
}

fn prepare_inner(
    store: &Store,
    lock: &Lock,
    snap: &mut Snapshot,
    c: &mut Container,
    net: &dyn network::Network,
) -> Result<()> {
    let cfg = &store.cfg;
    let subnet = network::Subnet::from_env()?;
    net.ensure_bridge(&subnet)?;
    let local = net.local_addrs()?;
    c.state.ports = publish::allocate(cfg, c, &snap.containers, &local)?;
    let ip = allocate_ip(snap, &subnet, &c.id)?;
    let veth = network::veth_name(c.short_id());
    // Write-ahead: the record names what is about to exist, so that a command killed from
    // here on leaves state that `reconcile` can tear down.
    c.state.ip = Some(ip);
    c.state.mac = Some(MacAddr(network::mac_for(ip)));
    c.state.veth = Some(veth.clone());
    store.save(lock, c)?;
    upsert(snap, c);
    net.create_endpoint(&network::EndpointSpec {
        netns: network::netns_name(c.short_id()),
        veth: veth.clone(),
        ip,
        mac: network::mac_for(ip),
        subnet,
    })?;
    for l in &c.spec.links {
        if let Some(ip) = snap.get(&l.source_id).and_then(|s| s.state.ip) {
            c.state.link_ips.insert(l.source_id.clone(), ip);
        }
    }
    etc_files::write_all(store, c, &snap.containers)?;
    store.save(lock, c)?;
    upsert(snap, c);
    let img = image::for_container(cfg, &c.spec.image, &c.spec.image_id)?;
    let root = oci::rootfs::prepare(cfg, &c.id, &img, c.spec.rootfs.as_deref(), &c.spec.workdir)?;
    oci::write_bundle(
        cfg,
        store,
        c,
        super::env::process_env(c, &snap.containers, c.spec.tty),
        &root,
    )
}

/// Wires the prepared container's network into the datapath: the programs on its veth and on
/// every uplink, the socket hooks, its published ports, and the link policy of every
/// container. Runs while the runtime creates the container; its process starts only after.
fn wire(cfg: &Config, snap: &Snapshot, c: &Container, net: &dyn network::Network) -> Result<()> {
    let (Some(ip), Some(veth)) = (c.state.ip, c.state.veth.as_deref()) else {
        return Err(Error::sys(format!("{}: started without an address", c.short_id())));
    };
    let mut dp = bpf::Datapath::load(cfg)?;
    dp.attach(veth, bpf::Role::Container)?;
    for up in bpf::uplinks(cfg, net)? {
        dp.attach(&up, bpf::Role::Uplink)?;
    }
    bpf::set_local_addrs(cfg, &net.addrs_by_link()?)?;
    if let Some(cg) = cfg.cgroup_dir() {
        dp.attach_cgroup(&cg)?;
    }
    bpf::publish(cfg, &c.state.ports, &ip.to_string())?;
    policy::sync(cfg, &snap.containers)?;
    state::failpoint("start-network");
    Ok(())
}

/// Starts `c` (the caller holds `lock`, released once the container runs). Detached: returns
/// once PID 1 runs. Foreground: returns the container's exit code after it exits.
pub fn start(store: &Store, lock: Lock, snap: &mut Snapshot, c: &mut Container, attach: Attach) -> Result<i32> {
    if c.state.status == Status::Dead {
        return Err(Error::user(format!(
            "container {} is dead ({}): remove it with `linkrt rm -f`",
            c.id, c.state.error
        )));
    }
    if !c.can_start() {
        return Ok(0);
    }
    policy::apply_env(&store.cfg, &lock)?;
    if let Err(e) = prepare(store, &lock, snap, c) {
        // Recorded as Docker records a failed start: Created, with the error and the exit
        // code (the process's 126/127, else Docker's exitUnknown, 128).
        let code = match &e {
            Error::Start { code, .. } => *code,
            _ => EXIT_UNKNOWN,
        };
        if let Err(m) = mark_start_failed(store, &lock, snap, c, code, &e.to_string()) {
            log::warn!("recording the failed start of {}: {m}", c.short_id());
        }
        return Err(e);
    }
    let cfg = &store.cfg;
    let pending = match launch::spawn_supervisor(cfg, &c.id, attach == Attach::Foreground) {
        Ok(p) => p,
        Err(e) => {
            if let Err(m) = mark_start_failed(store, &lock, snap, c, 125, &e.to_string()) {
                log::warn!("recording the failed start of {}: {m}", c.short_id());
            }
            return Err(e);
        }
    };
    // The supervisor, before its process runs (PID 0): what the next command waits for if
    // this one dies before the go (the supervisor then cancels).
    let wired = state::write_atomic(
        &state::pids_path(cfg, &c.id),
        format!("{} 0", pending.supervisor).as_bytes(),
    )
    .and_then(|()| wire(cfg, snap, c, network::system().as_ref()));
    if let Err(e) = wired {
        pending.cancel();
        if let Err(m) = mark_start_failed(store, &lock, snap, c, EXIT_UNKNOWN, &e.to_string()) {
            log::warn!("recording the failed start of {}: {m}", c.short_id());
        }
        return Err(e);
    }
    let l = pending.go();
    let (code, msg) = match l.report {
        Some(Report::Started { pid }) => {
            state::failpoint("start-spawned");
            mark_running(store, &lock, snap, c, pid, l.supervisor)?;
            drop(lock);
            let Some(sock) = l.attach else { return Ok(0) };
            return match launch::attach_client(sock, c.spec.tty, c.spec.interactive)? {
                Some(code) => Ok(code),
                // The supervisor ended without a word: what it recorded is the answer.
                None => Ok(match store.load(&c.id) {
                    Ok(r) if r.state.status == Status::Exited => r.state.exit_code,
                    _ => 125,
                }),
            };
        }
        Some(Report::Failed { code, msg }) => (code, msg),
        None => (
            125,
            format!(
                "the supervisor exited before starting the container (see {})",
                crate::process::supervisor::supervisor_log(store, &c.id).display()
            ),
        ),
    };
    let e = Error::Start { code, msg };
    mark_start_failed(store, &lock, snap, c, code, &e.to_string())?;
    Err(e)
}

/// Records a start: running, with its PIDs.
pub fn mark_running(
    store: &Store,
    lock: &Lock,
    snap: &mut Snapshot,
    c: &mut Container,
    pid: i32,
    supervisor: i32,
) -> Result<()> {
    c.state.status = Status::Running;
    c.state.pid = pid;
    c.state.supervisor_pid = supervisor;
    c.state.exit_code = 0;
    c.state.oom_killed = false;
    c.state.manually_stopped = false;
    c.state.restarting = false;
    c.state.restart_canceled = false;
    c.state.error.clear();
    c.state.started_at = Some(state::now_rfc3339());
    c.state.finished_at = None;
    store.save(lock, c)?;
    upsert(snap, c);
    etc_files::refresh_recipients(store, lock, snap, c)?;
    policy::sync(&store.cfg, &snap.containers)
}

/// Undoes a failed start: network and process removed, policy resynced at once, status
/// `Created` (or `Exited` for a container that ran before) with the exit code and error. Removes the container when it was run with `--rm`.
pub fn mark_start_failed(
    store: &Store,
    lock: &Lock,
    snap: &mut Snapshot,
    c: &mut Container,
    code: i32,
    msg: &str,
) -> Result<()> {
    let r = teardown::network(&store.cfg, network::system().as_ref(), c).and(teardown::process(&store.cfg, c));
    // Docker's state word: `created` until a start succeeded once, `exited` after.
    let ran = c.state.started_at.is_some();
    c.state = State {
        status: if ran { Status::Exited } else { Status::Created },
        exit_code: code,
        error: msg.to_string(),
        started_at: c.state.started_at.take(),
        finished_at: c.state.finished_at.take(),
        ..State::default()
    };
    if c.spec.auto_remove {
        teardown::files(store, lock, c)?;
        snap.containers.retain(|x| x.id != c.id);
    } else {
        store.save(lock, c)?;
        upsert(snap, c);
    }
    policy::sync(&store.cfg, &snap.containers)?;
    r
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        config::Config,
        network::{
            Network,
            fake::{Call, FakeNetwork},
        },
    };

    #[test]
    fn a_start_whose_endpoint_cannot_be_made_undoes_it_and_names_what_to_repair() {
        let (cfg, d) = Config::scratch("start");
        let store = Store::new(&cfg);
        let lock = Lock::acquire(&cfg).unwrap();
        let mut snap = store.snapshot().unwrap();
        let mut c = super::super::reconcile::placeholder(&"ab".repeat(32));
        c.name = "web".into();
        store.save(&lock, &c).unwrap();
        let net = FakeNetwork::new();
        net.fail_next("create_endpoint", libc::EEXIST);

        let e = prepare_on(&store, &lock, &mut snap, &mut c, &net).unwrap_err();
        assert!(e.to_string().contains("File exists"), "the endpoint's own error: {e}");
        // Write-ahead: the record named the address and veth before the endpoint was made...
        let rec = store.load(&c.id).unwrap();
        assert_eq!(rec.state.ip, Some(std::net::Ipv4Addr::new(172, 17, 0, 2)));
        assert_eq!(
            rec.state.veth.as_deref(),
            Some(network::veth_name(c.short_id()).as_str())
        );
        // ...and the undo removed whatever part of it existed, by those names.
        let calls = net.calls();
        let methods: Vec<&str> = calls.iter().map(Call::method).collect();
        assert_eq!(
            methods,
            ["ensure_bridge", "local_addrs", "create_endpoint", "delete_endpoint"],
            "{calls:?}"
        );
        assert!(!net.netns_exists(&network::netns_name(c.short_id())).unwrap());
        assert!(net.state().host.ifaces.keys().all(|n| !n.starts_with("veth")));
        drop(lock);
        std::fs::remove_dir_all(d).unwrap();
    }
}
