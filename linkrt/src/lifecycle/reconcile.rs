//! Repair, level-triggered, at the start of every command that changes state: what an
//! interrupted command left is finished or undone, exits that supervisors could not record
//! are recorded, the index is rebuilt from the records when it was lost, and a dead record
//! keeps (and, if its index entry is gone too, recovers) what its container holds.
use super::{
    finish::{self, ExitRecord},
    policy,
    start::upsert,
    teardown,
};
use crate::{
    error::Result,
    network,
    state::{self, Container, Lock, MacAddr, Snapshot, State, Status, Store, index},
};

fn warn(what: &str, id: &str, r: Result<()>) {
    if let Err(e) = r {
        log::warn!("repairing {what} of {id}: {e}");
    }
}

/// Repairs and returns the fresh snapshot. Failures to repair one container are logged and
/// leave it for the next command: they never stop the command that found them.
pub fn reconcile(store: &Store, lock: &Lock) -> Result<Snapshot> {
    reconcile_on(store, lock, network::system().as_ref())
}

/// [`reconcile`] with the host's network reached through `net`.
pub fn reconcile_on(store: &Store, lock: &Lock, net: &dyn network::Network) -> Result<Snapshot> {
    let cfg = &store.cfg;
    // A `create` killed before its record: nothing was made but the directory.
    for id in store.leftovers() {
        if id.len() == 64 {
            let c = placeholder(&id);
            warn("the half-made container", &id, teardown::process(cfg, &c));
            warn("the half-made container", &id, teardown::network(cfg, net, &c));
            warn("the half-made container", &id, teardown::files(store, lock, &c));
        }
    }
    let mut snap = store.snapshot()?;
    if let Some(why) = snap.index_error.take() {
        log::warn!("the index was unreadable ({why}): rebuilt from the records");
        snap.index = index::Index::default();
    }
    let ids: Vec<String> = snap.containers.iter().map(|c| c.id.clone()).collect();
    for id in ids {
        let Some(mut c) = snap.get(&id).cloned() else { continue };
        if c.state.status == Status::Dead {
            // Never release what it holds; recover it when the index lost it too.
            if !snap.index.containers.contains_key(&id) {
                let netns = network::netns_name(c.short_id());
                match net.endpoint_ipv4(&netns) {
                    Ok(ip) => {
                        c.state.ip = ip;
                        c.state.mac = ip.map(|i| MacAddr(network::mac_for(i)));
                        c.state.veth = ip.map(|_| network::veth_name(c.short_id()));
                    }
                    Err(e) => log::warn!("recovering the address of dead container {id}: {e}"),
                }
                if let Some((sup, pid)) = state::read_pids(cfg, &id) {
                    c.state.supervisor_pid = sup;
                    c.state.pid = pid;
                }
                upsert(&mut snap, &c);
            }
            continue;
        }

        // An exit the supervisor saw but could not record (full disk, killed mid-way).
        if let Some(e) = state::exit::read(cfg, &id)
            && (c.state.status == Status::Running || c.state.veth.is_some())
            && !teardown::pid_alive(c.state.supervisor_pid)
        {
            // Its supervisor may have died before the runtime's delete was done.
            warn("the process", &id, teardown::process(cfg, &c));
            warn("the exit", &id, finish::apply_exit(store, lock, &mut snap, &mut c, &e));
            continue;
        }
        // A start interrupted after the container's process began, before it was recorded:
        // stop that process (its supervisor then records the exit).
        if c.state.status != Status::Running
            && let Some((sup, pid1)) = state::read_pids(cfg, &id)
        {
            if teardown::pid_alive(sup) && teardown::pid_alive(pid1) {
                warn(
                    "the unrecorded process",
                    &id,
                    super::stop::signal(
                        &Container {
                            state: State {
                                pid: pid1,
                                ..c.state.clone()
                            },
                            ..c.clone()
                        },
                        nix::sys::signal::Signal::SIGKILL,
                    ),
                );
                continue;
            }
            // A start whose command died before its go: its supervisor deletes what the
            // runtime created and ends; let it, so that no delete here races its own (PID 1 is
            // 0 until the process runs).
            if pid1 == 0 && teardown::pid_alive(sup) && !super::stop::wait_gone(sup, std::time::Duration::from_secs(10))
            {
                log::warn!("the supervisor {sup} of the canceled start of {id} is still running");
                continue;
            }
            if !teardown::pid_alive(sup) {
                warn(
                    "the pids file",
                    &id,
                    teardown::remove_if_exists(&state::pids_path(cfg, &id)),
                );
            }
        }
        if c.state.restarting && !teardown::pid_alive(c.state.supervisor_pid) {
            // The supervisor that waited for a restart is gone (a reboot): not restarting.
            c.state.restarting = false;
            c.state.supervisor_pid = 0;
            warn("the record", &id, store.save(lock, &c));
            upsert(&mut snap, &c);
            continue;
        }
        if c.state.status == Status::Running && !teardown::pid_alive(c.state.supervisor_pid) {
            // The supervisor died without a word (killed, a reboot): the container is gone.
            if teardown::pid_alive(c.state.pid)
                && let Err(e) = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(c.state.pid),
                    nix::sys::signal::Signal::SIGKILL,
                )
            {
                log::warn!("killing PID {} of {id}: {e}", c.state.pid);
            }
            warn("the process", &id, teardown::process(cfg, &c));
            let e = ExitRecord {
                code: 137,
                oom_killed: false,
                finished_at: state::now_rfc3339(),
            };
            warn("the exit", &id, finish::apply_exit(store, lock, &mut snap, &mut c, &e));
            if let Some(c) = snap.containers.iter_mut().find(|x| x.id == id) {
                c.state.error = "supervisor died".into();
                let c = c.clone();
                warn("the record", &id, store.save(lock, &c));
            }
        } else if c.state.status != Status::Running && (c.state.veth.is_some() || c.state.ip.is_some()) {
            // An interrupted start: remove what it made and forget it, so that no later repair
            // touches resources (ports, addresses) another container may have taken since.
            warn("the process", &id, teardown::process(cfg, &c));
            let torn = teardown::network(cfg, net, &c);
            if torn.is_err() {
                // Its address stays held (and its veth named) until a repair succeeds: an
                // address freed while its namespace lives would answer for the next owner.
                warn("the network", &id, torn);
                continue;
            }
            c.state.ip = None;
            c.state.mac = None;
            c.state.veth = None;
            c.state.ports.clear();
            warn("the record", &id, store.save(lock, &c));
            upsert(&mut snap, &c);
        }
    }
    // The index is what the snapshot says every container holds (a dead record's entry, kept
    // or recovered, included): rewritten when it differs (lost, stale, or a torn update).
    let want = index::Index {
        containers: snap
            .containers
            .iter()
            .map(|c| (c.id.clone(), index::Entry::of(c)))
            .collect(),
    };
    if index::Index::load(cfg).ok().as_ref() != Some(&want) {
        warn("the index", "the state directory", want.save(cfg));
    }
    snap.index = want;
    // The datapath outlives the CLI in bpffs pins: put back whatever was lost, before any
    // other work (issue 11).
    match crate::bpf::Wanted::from_containers(cfg, &snap.containers) {
        Ok(want) => warn("the datapath", "the host", crate::bpf::heal(cfg, &want).map(drop)),
        Err(e) => log::warn!("reading what the datapath should hold: {e}"),
    }
    warn("the link policy", "the datapath", policy::sync(cfg, &snap.containers));
    Ok(snap)
}

/// A stand-in for a container known only by its ID.
pub fn placeholder(id: &str) -> Container {
    Container {
        id: id.to_string(),
        name: String::new(),
        created: String::new(),
        spec: Default::default(),
        state: State::default(),
        restart_count: 0,
        restart_backoff_ms: 0,
    }
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use super::*;
    use crate::{
        config::Config,
        network::{EndpointSpec, Network, Subnet, fake::FakeNetwork},
    };

    /// A private instance in a temporary directory (no bpffs: nothing here loads programs).
    fn instance(tag: &str) -> (Store, std::path::PathBuf) {
        let (cfg, d) = Config::scratch(&format!("reconcile-{tag}"));
        (Store::new(&cfg), d)
    }

    fn id(n: u8) -> String {
        format!("{n:02x}").repeat(32)
    }

    /// A network with the bridge and the endpoint a start of `c` made.
    fn network_with_endpoint(c: &Container, ip: Ipv4Addr) -> FakeNetwork {
        let net = FakeNetwork::new();
        let subnet = Subnet::parse("172.17.0.0/16").unwrap();
        net.ensure_bridge(&subnet).unwrap();
        net.create_endpoint(&EndpointSpec {
            netns: network::netns_name(c.short_id()),
            veth: network::veth_name(c.short_id()),
            ip,
            mac: network::mac_for(ip),
            subnet,
        })
        .unwrap();
        net
    }

    #[test]
    fn an_interrupted_start_loses_its_endpoint_and_its_address() {
        let (store, dir) = instance("start");
        let lock = Lock::acquire(&store.cfg).unwrap();
        // What a start killed after creating the endpoint leaves: the write-ahead record.
        let mut c = placeholder(&id(1));
        c.name = "web".into();
        let ip = Ipv4Addr::new(172, 17, 0, 2);
        c.state.status = Status::Created;
        c.state.ip = Some(ip);
        c.state.mac = Some(MacAddr(network::mac_for(ip)));
        c.state.veth = Some(network::veth_name(c.short_id()));
        store.save(&lock, &c).unwrap();
        let net = network_with_endpoint(&c, ip);
        let netns = network::netns_name(c.short_id());
        assert!(net.netns_exists(&netns).unwrap(), "the probe: the endpoint is there");

        let snap = reconcile_on(&store, &lock, &net).unwrap();
        assert!(!net.netns_exists(&netns).unwrap(), "the namespace was deleted");
        assert!(
            !net.state().host.ifaces.contains_key(&network::veth_name(c.short_id())),
            "and the veth with it"
        );
        let after = snap.get(&c.id).expect("the container stays");
        assert_eq!(after.state.status, Status::Created);
        assert_eq!(
            (after.state.ip, after.state.veth.as_deref()),
            (None, None),
            "its address is free"
        );
        assert_eq!(store.load(&c.id).unwrap().state.ip, None, "and the record says so");
        assert!(snap.index.addresses().next().is_none(), "the index holds no address");
        // Repair is level-triggered: a second pass finds nothing to do.
        let calls = net.calls().len();
        reconcile_on(&store, &lock, &net).unwrap();
        assert!(
            !net.calls()[calls..]
                .iter()
                .any(|c| matches!(c, network::fake::Call::DeleteEndpoint { .. })),
            "nothing torn down twice: {:?}",
            &net.calls()[calls..]
        );
        drop(lock);
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn a_create_killed_before_its_record_leaves_nothing() {
        let (store, dir) = instance("create");
        let lock = Lock::acquire(&store.cfg).unwrap();
        let half = id(2);
        std::fs::create_dir_all(store.dir(&half)).unwrap();
        let net = FakeNetwork::new();
        let snap = reconcile_on(&store, &lock, &net).unwrap();
        assert!(snap.containers.is_empty());
        assert!(!store.dir(&half).exists(), "the directory is gone");
        let short = &half[..12];
        assert!(
            net.calls().contains(&network::fake::Call::DeleteEndpoint {
                netns: network::netns_name(short),
                veth: network::veth_name(short),
            }),
            "its network (named after the ID) was removed: {:?}",
            net.calls()
        );
        drop(lock);
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn a_failed_repair_keeps_the_address_held_and_the_next_command_repairs() {
        let (store, dir) = instance("retry");
        let lock = Lock::acquire(&store.cfg).unwrap();
        let mut c = placeholder(&id(3));
        c.name = "db".into();
        let ip = Ipv4Addr::new(172, 17, 0, 3);
        c.state.status = Status::Created;
        c.state.ip = Some(ip);
        c.state.veth = Some(network::veth_name(c.short_id()));
        store.save(&lock, &c).unwrap();
        let net = network_with_endpoint(&c, ip);
        let netns = network::netns_name(c.short_id());
        net.fail_next("delete_endpoint", libc::EBUSY);
        // The failure is logged and the command goes on; the address stays held.
        let snap = reconcile_on(&store, &lock, &net).unwrap();
        assert!(net.netns_exists(&netns).unwrap(), "the failed delete changed nothing");
        assert_eq!(snap.get(&c.id).unwrap().state.ip, Some(ip), "the address stays held");
        assert_eq!(store.load(&c.id).unwrap().state.ip, Some(ip));
        assert!(snap.index.addresses().any(|(a, _)| a == ip), "in the index too");
        // The next command repairs it.
        let snap = reconcile_on(&store, &lock, &net).unwrap();
        assert!(!net.netns_exists(&netns).unwrap());
        assert_eq!(snap.get(&c.id).unwrap().state.ip, None);
        drop(lock);
        std::fs::remove_dir_all(dir).unwrap();
    }
}
