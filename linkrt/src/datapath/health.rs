//! The self-healing datapath. The datapath lives in bpffs pins; if they are lost (the bpffs
//! unmounted, a pin deleted), the TCX links die with them and isolation and published ports
//! vanish (netlink filters survive, but their programs then use maps nobody can reach: stale). Every command first [`check`]s that each running container's veth and every uplink
//! have their links, that the programs on them use the pinned maps, and that the socket
//! hooks are attached, and [`heal`]s what is missing before any other work.
//! `linkrt status` shows the [`Health`] and changes nothing.
use std::{collections::BTreeSet, fmt, net::Ipv4Addr, path::PathBuf};

use aya::programs::{links::PinnedLink, loaded_programs};
use linkrt_common::maps;

use super::{
    loader::{Datapath, Hook, Role, attached_program, cgroup_pin, is_bpffs},
    maps::{publish, set_local_addrs},
    programs,
};
use crate::{
    config::Config,
    error::{Error, Result},
    network,
    ports::Mapping,
    state::{Container, Status},
};

/// A running container as the datapath needs it.
#[derive(Clone, Debug)]
pub struct WantedEndpoint {
    pub veth: String,
    pub ip: Ipv4Addr,
    pub mappings: Vec<Mapping>,
}

/// What the datapath must have right now.
#[derive(Clone, Debug, Default)]
pub struct Wanted {
    pub endpoints: Vec<WantedEndpoint>,
    /// The host's uplinks (every interface but loopback, the bridge and its ports).
    pub uplinks: Vec<String>,
    /// Where the socket hooks go.
    pub cgroup: Option<PathBuf>,
}

impl Wanted {
    /// From the containers' records: those running, with their network (the calling thread
    /// must be in the host namespace, for the uplinks).
    pub fn from_containers(cfg: &Config, all: &[Container]) -> Result<Wanted> {
        let endpoints: Vec<WantedEndpoint> = all
            .iter()
            // A dead record's container may still run: its network is kept whole too.
            .filter(|c| matches!(c.state.status, Status::Running | Status::Dead))
            .filter_map(|c| {
                Some(WantedEndpoint {
                    veth: c.state.veth.clone()?,
                    ip: c.state.ip?,
                    mappings: c.state.ports.clone(),
                })
            })
            .collect();
        let uplinks = if endpoints.is_empty() {
            Vec::new()
        } else {
            uplinks(cfg, network::system().as_ref())?
        };
        Ok(Wanted {
            endpoints,
            uplinks,
            cgroup: cfg.cgroup_dir(),
        })
    }
}

/// The host's uplinks as the datapath sees them: every interface but loopback, linkrt's
/// bridge and its ports, and the container veths of `linkrt-cni` attachments.
pub fn uplinks(cfg: &Config, net: &dyn network::Network) -> Result<Vec<String>> {
    let cni = crate::state::cni::host_veths(cfg);
    Ok(net
        .uplinks()?
        .into_iter()
        .filter(|u| !cni.iter().any(|(v, _)| v == u))
        .collect())
}

/// A piece of the datapath that is not there.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Missing {
    /// The bpffs holding the pins is not mounted.
    Bpffs(PathBuf),
    /// A map pin.
    Map(&'static str),
    /// The TC link of an interface (a container veth or an uplink).
    Link { ifname: String, hook: &'static str },
    /// The programs on an interface use maps other than the pinned ones.
    StaleMaps { ifname: String },
    /// A socket hook on the cgroup.
    SocketHook(&'static str),
}

impl fmt::Display for Missing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Missing::Bpffs(p) => write!(f, "bpffs {}", p.display()),
            Missing::Map(n) => write!(f, "map {n}"),
            Missing::Link { ifname, hook } => write!(f, "link {ifname}/{hook}"),
            Missing::StaleMaps { ifname } => write!(f, "maps of {ifname}"),
            Missing::SocketHook(n) => write!(f, "hook {n}"),
        }
    }
}

/// The result of a [`check`]: nothing missing means healthy.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Health {
    pub missing: Vec<Missing>,
}

impl Health {
    pub fn ok(&self) -> bool {
        self.missing.is_empty()
    }
}

impl fmt::Display for Health {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.ok() {
            return write!(f, "ok");
        }
        let parts: Vec<String> = self.missing.iter().map(|m| m.to_string()).collect();
        write!(f, "degraded (missing: {})", parts.join(", "))
    }
}

/// What is missing from the datapath that `want` needs. Reads only.
pub fn check(cfg: &Config, want: &Wanted) -> Health {
    let mut missing = Vec::new();
    if want.endpoints.is_empty() {
        return Health { missing };
    }
    if !is_bpffs(&cfg.bpffs).unwrap_or(false) {
        missing.push(Missing::Bpffs(cfg.bpffs.clone()));
        return Health { missing };
    }
    for name in maps::ALL_MAPS {
        if programs::map_id(cfg, name).is_none() {
            missing.push(Missing::Map(name));
        }
    }
    // A program must use the pinned maps: any linkrt map it uses that is not the pinned one
    // (a pin deleted and made again, another bpffs) makes it stale.
    let pinned: BTreeSet<u32> = maps::ALL_MAPS
        .iter()
        .chain(std::iter::once(&super::debug_log::LOG_MAP))
        .filter_map(|n| programs::map_id(cfg, n))
        .collect();
    let ifaces = want.endpoints.iter().map(|e| &e.veth).chain(want.uplinks.iter());
    let mut progs: Vec<(String, u32)> = Vec::new();
    for ifname in ifaces {
        for hook in Hook::ALL {
            // A pinned TCX link, or linkrt's recorded netlink filter.
            match attached_program(cfg, ifname, hook) {
                Some(id) => progs.push((ifname.clone(), id)),
                None => missing.push(Missing::Link {
                    ifname: ifname.clone(),
                    hook: hook.suffix(),
                }),
            }
        }
    }
    let ids: BTreeSet<u32> = progs.iter().map(|(_, id)| *id).collect();
    let mut stale = BTreeSet::new();
    for info in loaded_programs().flatten().filter(|i| ids.contains(&i.id())) {
        if programs::uses_stale_maps(&info, &pinned) {
            stale.insert(info.id());
        }
    }
    let mut seen = BTreeSet::new();
    for (ifname, id) in &progs {
        if stale.contains(id) && seen.insert(ifname.clone()) {
            missing.push(Missing::StaleMaps { ifname: ifname.clone() });
        }
    }
    if want.cgroup.is_some() {
        for name in maps::SOCK_PROGRAMS {
            if PinnedLink::from_pin(cgroup_pin(cfg, name)).is_err() {
                missing.push(Missing::SocketHook(name));
            }
        }
    }
    Health { missing }
}

/// Checks, and when anything is missing, loads the datapath again (re-creating and pinning
/// lost maps), re-attaches every running container's veth, every uplink and the socket
/// hooks, and re-publishes every running container's ports. Returns what was missing.
/// The link policy is the caller's next step (`sync_policy`), as after any change.
pub fn heal(cfg: &Config, want: &Wanted) -> Result<Health> {
    let h = check(cfg, want);
    if h.ok() {
        return Ok(h);
    }
    let mut dp = Datapath::load(cfg)?;
    let mut errs = Vec::new();
    for ep in &want.endpoints {
        // A veth that is gone belongs to a container whose supervisor is about to record
        // its exit; nothing to attach to.
        if nix::net::if_::if_nametoindex(ep.veth.as_str()).is_ok()
            && let Err(e) = dp.attach(&ep.veth, Role::Container)
        {
            errs.push(e);
        }
    }
    for up in &want.uplinks {
        // An uplink may vanish meanwhile (a namespace going away takes its veth along).
        if let Err(e) = dp.attach(up, Role::Uplink)
            && nix::net::if_::if_nametoindex(up.as_str()).is_ok()
        {
            errs.push(e);
        }
    }
    set_local_addrs(cfg, &network::system().addrs_by_link()?)?;
    if let Some(cg) = &want.cgroup {
        dp.attach_cgroup(cg)?;
    }
    for ep in &want.endpoints {
        publish(cfg, &ep.mappings, &ep.ip.to_string())?;
    }
    match errs.len() {
        0 => Ok(h),
        _ => Err(Error::Multiple(errs)),
    }
}
