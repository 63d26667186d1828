//! The CNI operations on linkrt's datapath.
//!
//! Every entry the plugin makes (a `PORTMAP` entry, the TC links of a container's host-side
//! veth) is owned by one attachment, (network name, container ID, ifname), whose record in
//! the state directory is written before the entries exist and removed after they are gone.
//! DEL, CHECK and GC act on records, so they touch only their own entries.
use std::{net::Ipv4Addr, path::Path};

use linkrt::{
    Config,
    datapath::{self as bpf, Datapath, Role},
    network::{self, netns},
    state::cni::{Attachment, CniPort, Store, StoreLock},
};
use linkrt_common::maps;
use rscni_plugin::{
    error::Error,
    types::{Args, CNIResult, GcAttachment},
};

use crate::conf::{Options, port_mappings};

/// linkrt-cni's own error codes (the spec leaves 100 and up to plugins).
pub const CODE_PORT_ALLOCATED: u32 = 100;
pub const CODE_CHECK_FAILED: u32 = 101;

/// A library error as a CNI error result (an I/O failure: maps, pins, netlink, state).
pub fn sys(e: linkrt::Error) -> Error {
    Error::IOFailure(e.to_string())
}

struct Who<'a> {
    network: &'a str,
    container_id: &'a str,
    ifname: &'a str,
}

fn who(args: &Args) -> Result<Who<'_>, Error> {
    let container_id = args
        .container_id()
        .map(|c| &**c)
        .ok_or_else(|| Error::missing_env(&["CNI_CONTAINERID"]))?;
    let ifname = args
        .ifname()
        .map(|i| &**i)
        .ok_or_else(|| Error::missing_env(&["CNI_IFNAME"]))?;
    let network = args.config().name.as_str();
    for (what, v) in [
        ("network name", network),
        ("container ID", container_id),
        ("interface name", ifname),
    ] {
        if !linkrt::state::cni::valid_component(v) {
            return Err(Error::InvalidNetworkConfig(format!("invalid {what} {v:?}")));
        }
    }
    Ok(Who {
        network,
        container_id,
        ifname,
    })
}

fn store(o: &Options) -> (Store, Result<StoreLock, Error>) {
    let s = Store::new(&o.state_dir);
    let l = s.lock().map_err(sys);
    (s, l)
}

/// The container's IPv4 address: the first `ips` entry of the `prevResult` interface named
/// `ifname` in the sandbox `netns` (an entry without an interface index counts when the
/// result has no interfaces at all, as IPAM-only chains give).
fn container_ip(prev: &CNIResult, ifname: &str, netns: &Path) -> Result<Ipv4Addr, Error> {
    let same_ns = |s: &Option<String>| s.as_deref().is_some_and(|s| Path::new(s) == netns || !s.is_empty());
    let idx = prev
        .interfaces
        .iter()
        .enumerate()
        .filter(|(_, i)| i.name == ifname)
        .find(|(_, i)| same_ns(&i.sandbox))
        .map(|(n, _)| n as u32);
    let ip = prev
        .ips
        .iter()
        .filter(|c| match (idx, c.interface) {
            (Some(i), Some(ci)) => i == ci,
            (_, None) => prev.interfaces.is_empty(),
            (None, Some(_)) => false,
        })
        .find_map(|c| match c.address.addr() {
            std::net::IpAddr::V4(a) => Some(a),
            std::net::IpAddr::V6(_) => None,
        });
    ip.ok_or_else(|| {
        Error::InvalidNetworkConfig(format!(
            "prevResult has no IPv4 address for interface {ifname} in {}: linkrt-cni publishes IPv4 ports only",
            netns.display()
        ))
    })
}

/// The host side of the container's veth: the peer of `ifname` inside `netns` (the name is
/// checked against the host interfaces of `prevResult` when it lists any).
fn host_veth(prev: &CNIResult, ifname: &str, netns_path: &Path) -> Result<(String, u32), Error> {
    let idx = network::netlink::veth_peer_index(netns_path, ifname)
        .map_err(sys)?
        .ok_or_else(|| {
            Error::InvalidNetworkConfig(format!(
                "{ifname} in {} is not a veth: linkrt-cni needs the veth of a bridge or ptp plugin",
                netns_path.display()
            ))
        })?;
    let name = nix::net::if_::if_indextoname(idx)
        .map_err(|e| Error::IOFailure(format!("the host side of {ifname} (ifindex {idx}): {e}")))?
        .to_string_lossy()
        .into_owned();
    let host_ifs: Vec<&str> = prev
        .interfaces
        .iter()
        .filter(|i| i.sandbox.as_deref().is_none_or(str::is_empty))
        .map(|i| i.name.as_str())
        .collect();
    if !host_ifs.is_empty() && !host_ifs.contains(&name.as_str()) {
        return Err(Error::InvalidNetworkConfig(format!(
            "the host side of {ifname} is {name}, which prevResult does not list ({})",
            host_ifs.join(", ")
        )));
    }
    Ok((name, idx))
}

fn require_netns(args: &Args) -> Result<&Path, Error> {
    let p = args
        .netns()
        .map(|p| p.as_path())
        .ok_or_else(|| Error::missing_env(&["CNI_NETNS"]))?;
    match netns::probe(p).map_err(sys)? {
        netns::Found::Live => Ok(p),
        _ => Err(Error::NotExist(format!(
            "CNI_NETNS {}: no such network namespace",
            p.display()
        ))),
    }
}

fn key(p: &CniPort) -> (Ipv4Addr, u16, u8) {
    (p.host_ip, p.host_port, p.proto.number())
}

fn addr(p: &CniPort) -> String {
    format!("{}:{}/{}", p.host_ip, p.host_port, p.proto.as_str())
}

/// Reserves the host endpoints of `want` for `me`: refused when any is already published,
/// by linkrt's CLI or by another attachment (`0.0.0.0` overlaps every host address). One
/// lookup per endpoint (and per host address for `0.0.0.0`) in linkrt's `PORTMAP`, the
/// table the CLI's reservation fills too.
// When the cgroup bind hooks land, a reservation is also what refuses a host process's
// bind() to the port; this is the one place that decides.
fn reserve(cfg: &Config, me: &Attachment, others: &[Attachment], local: &[Ipv4Addr]) -> Result<(), Error> {
    for p in &me.ports {
        let proto = p.proto.number();
        let mut probe = vec![p.host_ip];
        if p.host_ip.is_unspecified() {
            probe.extend(local.iter().copied());
            probe.push(Ipv4Addr::LOCALHOST);
        } else {
            probe.push(Ipv4Addr::UNSPECIFIED);
        }
        for ip in probe {
            let Some(backend) = bpf::published(cfg, ip, p.host_port, proto).map_err(sys)? else {
                continue;
            };
            let taken = CniPort { host_ip: ip, ..*p };
            let owner = others.iter().find(|a| {
                a.ip == backend.0
                    && a.ports
                        .iter()
                        .any(|q| key(q) == key(&taken) && q.container_port == backend.1)
            });
            let by = match owner {
                Some(a) => format!(
                    "published by CNI attachment {}/{}/{} ({}:{})",
                    a.network, a.container_id, a.ifname, backend.0, backend.1
                ),
                None => format!("published by linkrt to {}:{}", backend.0, backend.1),
            };
            let at = if ip.is_unspecified() { p.host_ip } else { ip };
            return Err(Error::Custom(
                CODE_PORT_ALLOCATED,
                format!("Bind for {at}:{} failed: port is already allocated", p.host_port),
                format!("host port {} is {by}", addr(&taken)),
            ));
        }
    }
    Ok(())
}

/// Makes the entries of `a`: the veth's programs, the uplinks', the socket hooks, the ports.
fn apply(
    o: &Options,
    dp: &mut Datapath,
    a: &Attachment,
    others: &[Attachment],
    local: &[(u32, Ipv4Addr)],
) -> Result<(), Error> {
    let cfg = &o.cfg;
    dp.attach(&a.host_veth, Role::Container).map_err(sys)?;
    let net = network::system();
    for up in net.uplinks().map_err(sys)? {
        if up == a.host_veth || others.iter().any(|x| x.host_veth == up) {
            continue;
        }
        // An uplink may vanish meanwhile (another container's veth going away).
        if let Err(e) = dp.attach(&up, Role::Uplink)
            && nix::net::if_::if_nametoindex(up.as_str()).is_ok()
        {
            return Err(sys(e));
        }
    }
    bpf::set_local_addrs(cfg, local).map_err(sys)?;
    if let Some(cg) = cfg.cgroup_dir() {
        dp.attach_cgroup(&cg).map_err(sys)?;
    }
    for p in &a.ports {
        let (ip, port, proto) = key(p);
        bpf::publish_one(cfg, ip, port, proto, (a.ip, p.container_port)).map_err(sys)?;
    }
    Ok(())
}

/// Removes the entries of `a` that are still its own. Missing maps or links are not errors
/// (the datapath may be gone; DEL must still succeed).
fn undo(o: &Options, a: &Attachment, others: &[Attachment]) -> Result<(), Error> {
    let cfg = &o.cfg;
    let maps_there = cfg.maps_dir().join(maps::PORTMAP).exists();
    if maps_there {
        for p in &a.ports {
            let (ip, port, proto) = key(p);
            bpf::unpublish_one(cfg, ip, port, proto, (a.ip, p.container_port)).map_err(sys)?;
        }
    }
    // Another attachment on the same veth (a re-used name) keeps the links.
    if !others.iter().any(|x| x.host_veth == a.host_veth) {
        bpf::detach(cfg, &a.host_veth).map_err(sys)?;
    }
    if maps_there && cfg.maps_dir().join(maps::CT).exists() && !others.iter().any(|x| x.ip == a.ip) {
        bpf::forget_flows(cfg, a.ip).map_err(sys)?;
    }
    Ok(())
}

fn others_than(all: Vec<Attachment>, w: &Who<'_>) -> Vec<Attachment> {
    all.into_iter()
        .filter(|a| !(a.network == w.network && a.container_id == w.container_id && a.ifname == w.ifname))
        .collect()
}

pub fn add(args: &Args) -> Result<CNIResult, Error> {
    let conf = args.config();
    let o = Options::from_conf(conf)?;
    let ports = port_mappings(conf)?;
    let prev = conf.prev_result.clone().ok_or_else(|| {
        Error::InvalidNetworkConfig("linkrt-cni must be called as a chained plugin: prevResult is missing".into())
    })?;
    let w = who(args)?;
    let ns = require_netns(args)?;
    let ip = container_ip(&prev, w.ifname, ns)?;
    let (st, lock) = store(&o);
    let lock = lock?;
    let others = others_than(st.all().map_err(sys)?, &w);
    if ports.is_empty() {
        // Nothing to publish: nothing is made, nothing is recorded (DEL and CHECK find no
        // record); what an earlier ADD of the same attachment made goes.
        if let Some(old) = st.get(w.network, w.container_id, w.ifname).map_err(sys)? {
            undo(&o, &old, &others)?;
            st.remove(&lock, w.network, w.container_id, w.ifname).map_err(sys)?;
        }
        return Ok(prev);
    }
    let (veth, ifindex) = host_veth(&prev, w.ifname, ns)?;
    let me = Attachment {
        network: w.network.into(),
        container_id: w.container_id.into(),
        ifname: w.ifname.into(),
        netns: ns.to_path_buf(),
        ip,
        host_veth: veth,
        host_ifindex: ifindex,
        ports,
    };
    let mut dp = Datapath::load(&o.cfg).map_err(sys)?;
    let by_link = network::system().addrs_by_link().map_err(sys)?;
    let local: Vec<Ipv4Addr> = by_link.iter().map(|(_, a)| *a).collect();
    // A repeated ADD of the same attachment: its old entries first (they are its own).
    if let Some(old) = st.get(w.network, w.container_id, w.ifname).map_err(sys)? {
        undo(&o, &old, &others)?;
        st.remove(&lock, w.network, w.container_id, w.ifname).map_err(sys)?;
    }
    reserve(&o.cfg, &me, &others, &local)?;
    st.put(&lock, &me).map_err(sys)?;
    if let Err(e) = apply(&o, &mut dp, &me, &others, &by_link) {
        // Leave nothing half made: the entries, then the record.
        let cleanup =
            undo(&o, &me, &others).and_then(|()| st.remove(&lock, w.network, w.container_id, w.ifname).map_err(sys));
        if let Err(u) = cleanup {
            return Err(Error::IOFailure(format!("{}; undoing: {}", e.details(), u.details())));
        }
        return Err(e);
    }
    Ok(prev)
}

pub fn del(args: &Args) -> Result<(), Error> {
    let o = Options::from_conf(args.config())?;
    let w = who(args)?;
    let (st, lock) = store(&o);
    let lock = lock?;
    let Some(me) = st.get(w.network, w.container_id, w.ifname).map_err(sys)? else {
        return Ok(());
    };
    let others = others_than(st.all().map_err(sys)?, &w);
    undo(&o, &me, &others)?;
    st.remove(&lock, w.network, w.container_id, w.ifname).map_err(sys)
}

fn check_failed(msg: impl Into<String>, details: impl Into<String>) -> Error {
    Error::Custom(CODE_CHECK_FAILED, msg.into(), details.into())
}

pub fn check(args: &Args) -> Result<(), Error> {
    let conf = args.config();
    let o = Options::from_conf(conf)?;
    let ports = port_mappings(conf)?;
    let prev = conf.prev_result.as_ref().ok_or_else(|| {
        Error::InvalidNetworkConfig("linkrt-cni must be called as a chained plugin: prevResult is missing".into())
    })?;
    let w = who(args)?;
    let ns = require_netns(args)?;
    let ip = container_ip(prev, w.ifname, ns)?;
    let (st, lock) = store(&o);
    let _lock = lock?;
    let rec = st.get(w.network, w.container_id, w.ifname).map_err(sys)?;
    let Some(me) = rec else {
        return if ports.is_empty() {
            Ok(())
        } else {
            Err(check_failed(
                "attachment not found",
                format!(
                    "linkrt-cni has no record of {}/{}/{}",
                    w.network, w.container_id, w.ifname
                ),
            ))
        };
    };
    if me.ip != ip || me.ports != ports {
        return Err(check_failed(
            "attachment changed",
            format!(
                "recorded {} with {} port mappings, asked for {ip} with {}",
                me.ip,
                me.ports.len(),
                ports.len()
            ),
        ));
    }
    let (veth, ifindex) = host_veth(prev, w.ifname, ns)?;
    if (veth.as_str(), ifindex) != (me.host_veth.as_str(), me.host_ifindex) {
        return Err(check_failed(
            "veth changed",
            format!(
                "recorded {} (ifindex {}), found {veth} (ifindex {ifindex})",
                me.host_veth, me.host_ifindex
            ),
        ));
    }
    datapath_present(&o.cfg).map_err(|d| check_failed("datapath missing", d))?;
    if !bpf::attached_interfaces(&o.cfg).contains(&me.host_veth) {
        return Err(check_failed(
            "veth not attached",
            format!("{} has no linkrt programs", me.host_veth),
        ));
    }
    for p in &me.ports {
        let (hip, port, proto) = key(p);
        let got = bpf::published(&o.cfg, hip, port, proto).map_err(sys)?;
        if got != Some((me.ip, p.container_port)) {
            return Err(check_failed(
                "port mapping missing",
                format!(
                    "{} should go to {}:{}, the datapath has {}",
                    addr(p),
                    me.ip,
                    p.container_port,
                    got.map(|(i, p)| format!("{i}:{p}")).unwrap_or_else(|| "nothing".into())
                ),
            ));
        }
    }
    Ok(())
}

/// Every map pin, or what is missing.
fn datapath_present(cfg: &Config) -> Result<(), String> {
    let missing: Vec<&str> = maps::ALL_MAPS
        .iter()
        .copied()
        .filter(|m| aya::maps::MapData::from_pin(cfg.maps_dir().join(m)).is_err())
        .collect();
    if missing.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "pinned maps missing under {}: {}",
            cfg.maps_dir().display(),
            missing.join(", ")
        ))
    }
}

pub fn status(args: &Args) -> Result<(), Error> {
    let o = Options::from_conf(args.config())?;
    linkrt::datapath::object().map_err(|e| Error::PluginNotAvailable(e.to_string()))?;
    let recs = Store::new(&o.state_dir).all().map_err(sys)?;
    // Before the first ADD there is no datapath yet, and ADD makes it: ready. Once made (or
    // while attachments exist), it must be whole.
    if recs.is_empty() && !o.cfg.maps_dir().exists() {
        return Ok(());
    }
    datapath_present(&o.cfg).map_err(Error::PluginNotAvailable)?;
    let attached = bpf::attached_interfaces(&o.cfg);
    let unattached: Vec<&str> = recs
        .iter()
        .filter(|a| !attached.contains(&a.host_veth))
        .map(|a| a.host_veth.as_str())
        .collect();
    if !unattached.is_empty() {
        return Err(Error::PluginNotAvailable(format!(
            "programs missing from the veths of attachments: {}",
            unattached.join(", ")
        )));
    }
    Ok(())
}

/// The attachments the runtime still knows: `cni.dev/valid-attachments`, or the older
/// `cni.dev/attachments`.
fn valid_attachments(args: &Args) -> Result<Vec<GcAttachment>, Error> {
    let conf = args.config();
    if let Some(v) = &conf.valid_attachments {
        return Ok(v.clone());
    }
    match conf.custom.get("cni.dev/attachments") {
        None => Ok(Vec::new()),
        Some(v) => {
            serde_json::from_value(v.clone()).map_err(|e| Error::FailedToDecode(format!("cni.dev/attachments: {e}")))
        }
    }
}

pub fn gc(args: &Args) -> Result<(), Error> {
    let o = Options::from_conf(args.config())?;
    let valid = valid_attachments(args)?;
    let network = args.config().name.as_str();
    let (st, lock) = store(&o);
    let lock = lock?;
    let all = st.all().map_err(sys)?;
    let (stale, mut kept): (Vec<Attachment>, Vec<Attachment>) = all.into_iter().partition(|a| {
        a.network == network
            && !valid
                .iter()
                .any(|v| v.container_id == a.container_id && v.ifname == a.ifname)
    });
    let mut errs = Vec::new();
    for a in &stale {
        let r = undo(&o, a, &kept).and_then(|()| st.remove(&lock, &a.network, &a.container_id, &a.ifname).map_err(sys));
        if let Err(e) = r {
            errs.push(format!("{}/{}: {}", a.container_id, a.ifname, e.details()));
            kept.push(a.clone());
        }
    }
    if errs.is_empty() {
        Ok(())
    } else {
        Err(Error::IOFailure(format!("garbage collection: {}", errs.join("; "))))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_address_comes_from_the_interface_in_the_sandbox() {
        let prev: CNIResult = serde_json::from_str(
            r#"{"interfaces":[{"name":"cni0","mac":"aa:bb:cc:dd:ee:01"},{"name":"veth1","mac":"aa:bb:cc:dd:ee:02"},
                {"name":"eth0","mac":"aa:bb:cc:dd:ee:03","sandbox":"/run/netns/p1"},
                {"name":"net1","sandbox":"/run/netns/p1"}],
                "ips":[{"interface":3,"address":"10.99.0.5/24"},{"interface":2,"address":"fd00::5/64"},
                       {"interface":2,"address":"10.88.0.5/16","gateway":"10.88.0.1"}]}"#,
        )
        .unwrap();
        let ns = Path::new("/run/netns/p1");
        assert_eq!(container_ip(&prev, "eth0", ns).unwrap(), Ipv4Addr::new(10, 88, 0, 5));
        assert_eq!(container_ip(&prev, "net1", ns).unwrap(), Ipv4Addr::new(10, 99, 0, 5));
        assert!(container_ip(&prev, "eth1", ns).is_err());
        let ipam_only: CNIResult = serde_json::from_str(r#"{"ips":[{"address":"10.1.0.2/24"}]}"#).unwrap();
        assert_eq!(
            container_ip(&ipam_only, "eth0", ns).unwrap(),
            Ipv4Addr::new(10, 1, 0, 2)
        );
    }
}
