//! Typed access to the pinned maps: publishing, the link policy, settings, counters.
use std::net::Ipv4Addr;

use aya::maps::{Array, HashMap, Map, MapData, MapError, PerCpuArray};
use linkrt_common::{
    Counter, DropReason,
    config::{CONFIG_GATEWAY, CONFIG_GATEWAY_MAC, CONFIG_ICC, CONFIG_MASQ, CONFIG_ROUTED, CONFIG_SUBNET, masq_config},
    ct::{CT_ALLOW, CT_DNAT, CT_REVSNAT, CtEntry, CtKey},
    maps,
    nat::{BIND_IPS_LEN, Backend, PortKey},
    policy::{Endpoint, PolicyKey},
    user::{ip_be, ip_of, mac_config, subnet_config},
};

use super::batch;
pub use super::batch::Batched;
use crate::{
    config::Config,
    error::{Error, Result},
    network,
    ports::Mapping,
};

fn map_err(name: &'static str) -> impl Fn(MapError) -> Error {
    move |source| Error::Map { name, source }
}

/// The pinned maps of one linkrt instance, opened by name; each handle has the map's type.
pub struct Pinned<'a> {
    cfg: &'a Config,
}

impl<'a> Pinned<'a> {
    pub fn new(cfg: &'a Config) -> Self {
        Pinned { cfg }
    }

    pub fn data(&self, name: &'static str) -> Result<MapData> {
        MapData::from_pin(self.cfg.maps_dir().join(name)).map_err(map_err(name))
    }

    pub fn map(&self, name: &'static str) -> Result<Map> {
        Map::from_map_data(self.data(name)?).map_err(map_err(name))
    }

    pub fn hash<K: aya::Pod, V: aya::Pod>(&self, name: &'static str) -> Result<HashMap<MapData, K, V>> {
        HashMap::try_from(self.map(name)?).map_err(map_err(name))
    }

    fn config(&self) -> Result<Array<MapData, u64>> {
        Array::try_from(self.map(maps::CONFIG)?).map_err(map_err(maps::CONFIG))
    }

    pub fn set_config(&self, slot: u32, v: u64) -> Result<()> {
        self.config()?.set(slot, v, 0).map_err(map_err(maps::CONFIG))
    }

    pub fn get_config(&self, slot: u32) -> Result<u64> {
        self.config()?.get(&slot, 0).map_err(map_err(maps::CONFIG))
    }
}

/// Removes every key of `m` for which `stale` holds. A key that vanished meanwhile (an LRU
/// eviction, the datapath closing a flow) is not an error.
fn remove_where<K: aya::Pod, V: aya::Pod>(
    m: &mut HashMap<MapData, K, V>,
    name: &'static str,
    stale: impl Fn(&K, &V) -> bool,
) -> Result<()> {
    let gone: Vec<K> = m
        .iter()
        .filter_map(|r| r.ok())
        .filter(|(k, v)| stale(k, v))
        .map(|(k, _)| k)
        .collect();
    for k in gone {
        match m.remove(&k) {
            Ok(()) | Err(MapError::KeyNotFound) => {}
            Err(e) => return Err(map_err(name)(e)),
        }
    }
    Ok(())
}

fn port_key(m: &Mapping) -> Result<PortKey> {
    let std::net::IpAddr::V4(ip) = m.host_ip else {
        return Err(Error::user(format!("not an IPv4 host address: {}", m.host_ip)));
    };
    Ok(PortKey::new(ip, m.host_port, m.container.proto.number()))
}

fn ipv4(ip: &str) -> Result<Ipv4Addr> {
    ip.parse().map_err(|_| Error::sys(format!("not an IPv4 address: {ip}")))
}

/// Publishes `mappings` to the container at `ip`: the `PORTMAP` entries in one
/// `BPF_MAP_UPDATE_BATCH` where the kernel has it (one update per entry where not), after the
/// specific host addresses they use are in `BIND_IPS` (so the bind hooks never miss one).
/// IPv6 host addresses are not supported by the datapath yet and are refused.
pub fn publish(cfg: &Config, mappings: &[Mapping], ip: &str) -> Result<Batched> {
    let pinned = Pinned::new(cfg);
    let backend = ipv4(ip)?;
    let keys: Vec<PortKey> = mappings.iter().map(port_key).collect::<Result<_>>()?;
    let values: Vec<Backend> = mappings
        .iter()
        .map(|m| Backend::new(backend, m.container.port))
        .collect();
    reserve_bind_ips(&pinned, &keys)?;
    let data = pinned.data(maps::PORTMAP)?;
    let pin = cfg.maps_dir().join(maps::PORTMAP);
    match batch::update(&data, &keys, &values).map_err(|e| Error::io("BPF_MAP_UPDATE_BATCH on", &pin, e))? {
        Batched::Unsupported => {
            let mut pm: HashMap<MapData, PortKey, Backend> =
                HashMap::try_from(Map::from_map_data(data).map_err(map_err(maps::PORTMAP))?)
                    .map_err(map_err(maps::PORTMAP))?;
            for (k, v) in keys.iter().zip(&values) {
                pm.insert(k, v, 0).map_err(map_err(maps::PORTMAP))?;
            }
            Ok(Batched::Unsupported)
        }
        done => Ok(done),
    }
}

/// Makes sure every specific host address of `keys` has a `BIND_IPS` slot. A full table
/// first forgets the addresses that no `PORTMAP` entry uses any more.
fn reserve_bind_ips(p: &Pinned<'_>, keys: &[PortKey]) -> Result<()> {
    let mut want: Vec<u32> = keys.iter().map(|k| k.ip).filter(|ip| *ip != 0).collect();
    want.sort_unstable();
    want.dedup();
    if want.is_empty() {
        return Ok(());
    }
    let name = maps::BIND_IPS;
    let mut arr: Array<MapData, u32> = Array::try_from(p.map(name)?).map_err(map_err(name))?;
    let mut slots = (0..BIND_IPS_LEN)
        .map(|i| arr.get(&i, 0).map_err(map_err(name)))
        .collect::<Result<Vec<u32>>>()?;
    for ip in want {
        if slots.contains(&ip) {
            continue;
        }
        if !slots.contains(&0) {
            let used: std::collections::BTreeSet<u32> = p
                .hash::<PortKey, Backend>(maps::PORTMAP)?
                .keys()
                .filter_map(|k| k.ok())
                .map(|k| k.ip)
                .collect();
            for (i, s) in slots.iter_mut().enumerate() {
                if *s != 0 && !used.contains(s) {
                    arr.set(i as u32, 0, 0).map_err(map_err(name))?;
                    *s = 0;
                }
            }
        }
        let Some(i) = slots.iter().position(|s| *s == 0) else {
            return Err(Error::user(format!(
                "cannot publish on {}: ports are published on {BIND_IPS_LEN} other host addresses already (the most linkrt reserves)",
                Ipv4Addr::from(u32::from_be(ip))
            )));
        };
        arr.set(i as u32, ip, 0).map_err(map_err(name))?;
        slots[i] = ip;
    }
    Ok(())
}

/// Removes the mappings of a container (one `BPF_MAP_DELETE_BATCH` where the kernel has it)
/// and every tracked flow to, from or translated to `ip`, so that no stale flow (UDP in
/// particular) survives the mapping.
pub fn unpublish(cfg: &Config, mappings: &[Mapping], ip: Option<&str>) -> Result<Batched> {
    let pinned = Pinned::new(cfg);
    let keys: Vec<PortKey> = mappings.iter().map(port_key).collect::<Result<_>>()?;
    let data = pinned.data(maps::PORTMAP)?;
    let pin = cfg.maps_dir().join(maps::PORTMAP);
    let done = batch::delete(&data, &keys).map_err(|e| Error::io("BPF_MAP_DELETE_BATCH on", &pin, e))?;
    if done == Batched::Unsupported {
        let mut pm: HashMap<MapData, PortKey, Backend> =
            HashMap::try_from(Map::from_map_data(data).map_err(map_err(maps::PORTMAP))?)
                .map_err(map_err(maps::PORTMAP))?;
        for k in &keys {
            match pm.remove(k) {
                Ok(()) | Err(MapError::KeyNotFound) => {}
                Err(e) => return Err(map_err(maps::PORTMAP)(e)),
            }
        }
    }
    if let Some(ip) = ip {
        let ip = ip_be(ipv4(ip)?);
        let mut ct = pinned.hash::<CtKey, CtEntry>(maps::CT)?;
        remove_where(&mut ct, maps::CT, |k, e| {
            k.saddr == ip || k.daddr == ip || (e.kind == CT_DNAT && e.addr == ip)
        })?;
    }
    Ok(done)
}

/// The backend of one published host endpoint (`0.0.0.0` = every host address), if any.
pub fn published(cfg: &Config, host_ip: Ipv4Addr, port: u16, proto: u8) -> Result<Option<(Ipv4Addr, u16)>> {
    let pm = Pinned::new(cfg).hash::<PortKey, Backend>(maps::PORTMAP)?;
    match pm.get(&PortKey::new(host_ip, port, proto), 0) {
        Ok(b) => Ok(Some((ip_of(b.ip), u16::from_be(b.port)))),
        Err(MapError::KeyNotFound) => Ok(None),
        Err(e) => Err(map_err(maps::PORTMAP)(e)),
    }
}

/// Publishes one host endpoint to `backend` (replacing what was there).
pub fn publish_one(cfg: &Config, host_ip: Ipv4Addr, port: u16, proto: u8, backend: (Ipv4Addr, u16)) -> Result<()> {
    let mut pm = Pinned::new(cfg).hash::<PortKey, Backend>(maps::PORTMAP)?;
    pm.insert(
        PortKey::new(host_ip, port, proto),
        Backend::new(backend.0, backend.1),
        0,
    )
    .map_err(map_err(maps::PORTMAP))
}

/// Removes one host endpoint, only while it still goes to `backend` (an entry somebody else
/// wrote since is theirs). True if it was removed.
pub fn unpublish_one(cfg: &Config, host_ip: Ipv4Addr, port: u16, proto: u8, backend: (Ipv4Addr, u16)) -> Result<bool> {
    let mut pm = Pinned::new(cfg).hash::<PortKey, Backend>(maps::PORTMAP)?;
    let k = PortKey::new(host_ip, port, proto);
    match pm.get(&k, 0) {
        Ok(b) if b == Backend::new(backend.0, backend.1) => {}
        Ok(_) | Err(MapError::KeyNotFound) => return Ok(false),
        Err(e) => return Err(map_err(maps::PORTMAP)(e)),
    }
    match pm.remove(&k) {
        Ok(()) => Ok(true),
        Err(MapError::KeyNotFound) => Ok(false),
        Err(e) => Err(map_err(maps::PORTMAP)(e)),
    }
}

/// Forgets every tracked flow to, from or translated to `ip` (a container that went away).
pub fn forget_flows(cfg: &Config, ip: Ipv4Addr) -> Result<()> {
    let ip = ip_be(ip);
    let mut ct = Pinned::new(cfg).hash::<CtKey, CtEntry>(maps::CT)?;
    remove_where(&mut ct, maps::CT, |k, e| {
        k.saddr == ip || k.daddr == ip || ((e.kind == CT_DNAT || e.kind == CT_REVSNAT) && e.addr == ip)
    })
}

/// Replaces the set of the host's own addresses (for 0.0.0.0 mappings), and the address each
/// interface masquerades to: its first (primary) one, loopback addresses aside.
pub fn set_local_addrs(cfg: &Config, addrs: &[(u32, Ipv4Addr)]) -> Result<()> {
    let p = Pinned::new(cfg);
    let mut la = p.hash::<u32, u32>(maps::LOCAL_ADDRS)?;
    let want: Vec<u32> = addrs.iter().map(|(_, a)| ip_be(*a)).collect();
    remove_where(&mut la, maps::LOCAL_ADDRS, |k, _| !want.contains(k))?;
    for k in want {
        la.insert(k, 1, 0).map_err(map_err(maps::LOCAL_ADDRS))?;
    }
    let mut masq: Vec<(u32, u32)> = Vec::new();
    for (ifindex, a) in addrs {
        if !a.is_loopback() && !masq.iter().any(|(i, _)| i == ifindex) {
            masq.push((*ifindex, ip_be(*a)));
        }
    }
    sync_hash(&p, maps::MASQ_ADDRS, &masq)
}

/// The settings the datapath owns: the bridge's subnet, gateway and MAC, the gateway mode.
pub(super) fn write_static_config(p: &Pinned<'_>) -> Result<()> {
    let subnet = network::Subnet::from_env()?;
    p.set_config(CONFIG_SUBNET, subnet_config(subnet.base, subnet.prefix))?;
    p.set_config(CONFIG_GATEWAY, ip_be(subnet.gateway()) as u64)?;
    // No bridge yet (a datapath attached by hand): frames redirected into containers then
    // carry a zero source MAC, which no stack looks at.
    let mac = super::settings::bridge_mac()?.unwrap_or_default();
    p.set_config(CONFIG_GATEWAY_MAC, mac_config(mac))?;
    let routed = super::settings::gateway_mode(p.cfg)?.routed();
    p.set_config(CONFIG_ROUTED, routed as u64)
}

/// What the link policy looks like for the current set of running containers.
#[derive(Debug, Default)]
pub struct PolicyState {
    /// Container veths: (host-side ifindex, IPv4, MAC).
    pub endpoints: Vec<(u32, Ipv4Addr, [u8; 6])>,
    /// Allowed flows: (recipient, source, port, protocol number); port 0 + proto 1 = ping.
    pub allow: Vec<(Ipv4Addr, Ipv4Addr, u16, u8)>,
    /// Inter-container communication unrestricted (Docker's `--icc=true`).
    pub icc: bool,
    /// Outbound masquerade to these host ports (Docker's `--ip-masq`), or off.
    pub masq: Option<(u16, u16)>,
}

fn sync_hash<K: aya::Pod + PartialEq, V: aya::Pod>(p: &Pinned<'_>, name: &'static str, want: &[(K, V)]) -> Result<()> {
    let mut m = p.hash::<K, V>(name)?;
    remove_where(&mut m, name, |k, _| !want.iter().any(|(w, _)| w == k))?;
    for (k, v) in want {
        m.insert(k, v, 0).map_err(map_err(name))?;
    }
    Ok(())
}

/// Makes the datapath's policy maps match `st`, and forgets tracked flows that no running
/// container may have any more: of addresses of the bridge that nobody holds (so a reused IP
/// inherits nothing), to veths that are gone, and, with ICC off, between containers that no
/// link allows (flows opened while ICC was on).
pub fn sync_policy(cfg: &Config, st: &PolicyState) -> Result<()> {
    let p = Pinned::new(cfg);
    let eps: Vec<(u32, Endpoint)> = st
        .endpoints
        .iter()
        .map(|(i, ip, mac)| (*i, Endpoint::new(*ip, *mac)))
        .collect();
    let ips: Vec<(u32, u32)> = st.endpoints.iter().map(|(i, ip, _)| (ip_be(*ip), *i)).collect();
    let pol: Vec<(PolicyKey, u32)> = st
        .allow
        .iter()
        .map(|(r, s, port, proto)| (PolicyKey::new(*r, *s, *port, *proto), 1))
        .collect();
    sync_hash(&p, maps::ENDPOINTS, &eps)?;
    sync_hash(&p, maps::CONTAINER_IPS, &ips)?;
    sync_hash(&p, maps::POLICY, &pol)?;
    write_static_config(&p)?;
    p.set_config(CONFIG_ICC, st.icc as u64)?;
    // Not fatal (a read-only /proc/sys): the datapath still skips ports a host socket holds.
    if let Some(range) = st.masq
        && let Err(e) = super::settings::reserve_masq_ports(range)
    {
        log::warn!("keeping the host's connections off the masquerade ports: {e}");
    }
    p.set_config(CONFIG_MASQ, masq_config(st.masq))?;

    let s = p.get_config(CONFIG_SUBNET)?;
    let (net, mask, gw) = (s as u32, (s >> 32) as u32, p.get_config(CONFIG_GATEWAY)? as u32);
    let bridge = |a: u32| mask != 0 && a & mask == net && a != gw;
    let live = |a: u32| ips.iter().any(|(ip, _)| *ip == a);
    // The veths of `linkrt-cni` attachments are not linkrt's containers, and their flows are
    // not stale.
    let cni: Vec<u32> = crate::state::cni::host_veths(cfg).into_iter().map(|(_, i)| i).collect();
    let ifs: Vec<u32> = ips.iter().map(|(_, i)| *i).chain(cni).collect();
    let allowed = |k: &CtKey| {
        let port = |p: u16| if k.proto == 1 { 0 } else { p };
        pol.iter().any(|(pk, _)| {
            pk.proto == k.proto
                && ((pk.saddr, pk.daddr, pk.dport) == (k.saddr, k.daddr, port(k.dport))
                    || (pk.saddr, pk.daddr, pk.dport) == (k.daddr, k.saddr, port(k.sport)))
        })
    };
    let mut ct = p.hash::<CtKey, CtEntry>(maps::CT)?;
    remove_where(&mut ct, maps::CT, |k, e| {
        (bridge(k.saddr) && !live(k.saddr))
            || (bridge(k.daddr) && !live(k.daddr))
            || (e.kind == CT_REVSNAT && bridge(e.addr) && !live(e.addr))
            || (e.ifindex != 0 && !ifs.contains(&e.ifindex))
            || (!st.icc && e.kind == CT_ALLOW && live(k.saddr) && live(k.daddr) && !allowed(k))
    })
}

/// One counter as `linkrt status` shows it.
pub type Stat = (&'static str, u64);

/// Reads the metrics, then the drop counters (`drop_*`), from the pinned map (summed over CPUs).
pub fn stats(cfg: &Config) -> Result<Vec<Stat>> {
    let arr: PerCpuArray<MapData, u64> =
        PerCpuArray::try_from(Pinned::new(cfg).map(maps::STATS)?).map_err(map_err(maps::STATS))?;
    let get = |slot: u32| -> Result<u64> { Ok(arr.get(&slot, 0).map_err(map_err(maps::STATS))?.iter().sum()) };
    let metrics = Counter::ALL.iter().map(|c| (c.name(), c.slot()));
    let drops = DropReason::ALL.iter().map(|r| (r.name(), r.slot()));
    metrics
        .chain(drops)
        .map(|(name, slot)| Ok((name, get(slot)?)))
        .collect()
}

/// The most entries pinned map `name` holds (its size, chosen when it was created).
pub fn map_capacity(cfg: &Config, name: &'static str) -> Option<u32> {
    aya::maps::MapInfo::from_pin(cfg.maps_dir().join(name))
        .ok()
        .map(|i| i.max_entries())
}

/// Number of entries of a pinned hash map (for `linkrt status`).
pub fn map_len(cfg: &Config, name: &'static str) -> Result<usize> {
    let p = Pinned::new(cfg);
    Ok(match name {
        maps::CT => p.hash::<CtKey, CtEntry>(name)?.keys().count(),
        maps::FRAG => p.hash::<linkrt_common::ct::FragKey, CtEntry>(name)?.keys().count(),
        maps::PORTMAP => p.hash::<PortKey, Backend>(name)?.keys().count(),
        maps::POLICY => p.hash::<PolicyKey, u32>(name)?.keys().count(),
        maps::ENDPOINTS => p.hash::<u32, Endpoint>(name)?.keys().count(),
        _ => p.hash::<u32, u32>(name)?.keys().count(),
    })
}
