//! An in-memory [`Network`] for unit tests of lifecycle code: it models the host netns and
//! named netns with their interfaces, records every call, and fails a chosen call on
//! request. It follows the netlink implementation's rules: a veth name already taken fails
//! with EEXIST and leaves nothing behind, deleting missing pieces is not an error, and
//! deleting a netns destroys the veths whose peer is in it.
//!
//! Clones share one state, so a test keeps a clone to inspect what the code under test did.
use std::{
    collections::BTreeMap,
    io,
    net::Ipv4Addr,
    sync::{Arc, Mutex, MutexGuard},
};

use super::{BRIDGE, EndpointSpec, Network, Subnet};
use crate::error::{Error, Result};

/// The kind of an interface.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Kind {
    Loopback,
    Bridge,
    /// A host-side veth whose peer (`eth0`) is in the named netns.
    Veth {
        peer_netns: String,
    },
    /// The container end of a veth.
    VethPeer,
    /// Any other device (an uplink).
    Device,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Iface {
    pub kind: Kind,
    pub up: bool,
    pub mac: Option<[u8; 6]>,
    /// The bridge this interface is a port of.
    pub master: Option<String>,
    pub addrs: Vec<(Ipv4Addr, u8)>,
}

impl Iface {
    pub fn new(kind: Kind) -> Self {
        Iface {
            kind,
            up: false,
            mac: None,
            master: None,
            addrs: Vec::new(),
        }
    }
}

/// One network namespace: its interfaces by name and its default gateway.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Ns {
    pub ifaces: BTreeMap<String, Iface>,
    pub default_gw: Option<Ipv4Addr>,
}

impl Default for Ns {
    /// A new namespace: only `lo`, down, with 127.0.0.1/8.
    fn default() -> Self {
        let mut lo = Iface::new(Kind::Loopback);
        lo.addrs.push((Ipv4Addr::LOCALHOST, 8));
        Ns {
            ifaces: BTreeMap::from([("lo".to_string(), lo)]),
            default_gw: None,
        }
    }
}

/// A call made through the [`Network`] trait.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Call {
    EnsureBridge(Subnet),
    CreateEndpoint(EndpointSpec),
    DeleteEndpoint { netns: String, veth: String },
    NetnsExists(String),
    EndpointIpv4(String),
    Uplinks,
    LocalAddrs,
}

impl Call {
    /// The trait method's name, as [`FakeNetwork::fail_next`] takes it.
    pub fn method(&self) -> &'static str {
        match self {
            Call::EnsureBridge(_) => "ensure_bridge",
            Call::CreateEndpoint(_) => "create_endpoint",
            Call::DeleteEndpoint { .. } => "delete_endpoint",
            Call::NetnsExists(_) => "netns_exists",
            Call::EndpointIpv4(_) => "endpoint_ipv4",
            Call::Uplinks => "uplinks",
            Call::LocalAddrs => "local_addrs",
        }
    }
}

#[derive(Debug, Default)]
pub struct State {
    /// The netns the process runs in.
    pub host: Ns,
    /// Named network namespaces (`/run/netns/<name>`).
    pub named: BTreeMap<String, Ns>,
    pub ip_forward: bool,
    pub calls: Vec<Call>,
    /// Methods whose next call fails with this errno, before changing anything.
    fail: BTreeMap<&'static str, i32>,
}

#[derive(Clone, Debug, Default)]
pub struct FakeNetwork {
    state: Arc<Mutex<State>>,
}

fn err(op: &'static str, target: impl Into<String>, errno: i32) -> Error {
    Error::netlink(op, target, io::Error::from_raw_os_error(errno))
}

impl FakeNetwork {
    pub fn new() -> Self {
        Self::default()
    }

    /// The shared state, to inspect or to arrange.
    pub fn state(&self) -> MutexGuard<'_, State> {
        // A test that panicked while holding the lock has failed already.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Adds an uplink to the host, up, with `addr`.
    pub fn add_uplink(&self, name: &str, addr: (Ipv4Addr, u8)) {
        let mut i = Iface::new(Kind::Device);
        i.up = true;
        i.addrs.push(addr);
        self.state().host.ifaces.insert(name.to_string(), i);
    }

    /// Makes the next call of `method` (a [`Network`] method name) fail with `errno`.
    pub fn fail_next(&self, method: &'static str, errno: i32) {
        self.state().fail.insert(method, errno);
    }

    pub fn calls(&self) -> Vec<Call> {
        self.state().calls.clone()
    }

    /// Records the call; Err if it was told to fail.
    fn enter(&self, call: Call) -> Result<MutexGuard<'_, State>> {
        let mut st = self.state();
        let method = call.method();
        st.calls.push(call);
        match st.fail.remove(method) {
            Some(errno) => Err(err("(fake) failing", method, errno)),
            None => Ok(st),
        }
    }
}

impl State {
    fn bridge(&self) -> Option<&Iface> {
        self.host.ifaces.get(BRIDGE).filter(|b| b.kind == Kind::Bridge)
    }

    fn remove_netns(&mut self, name: &str) {
        if self.named.remove(name).is_some() {
            // The kernel destroys the pairs whose end was in the namespace.
            self.host
                .ifaces
                .retain(|_, i| !matches!(&i.kind, Kind::Veth { peer_netns } if peer_netns == name));
        }
    }
}

impl Network for FakeNetwork {
    fn ensure_bridge(&self, subnet: &Subnet) -> Result<()> {
        let mut st = self.enter(Call::EnsureBridge(*subnet))?;
        let br = st
            .host
            .ifaces
            .entry(BRIDGE.to_string())
            .or_insert_with(|| Iface::new(Kind::Bridge));
        if br.kind != Kind::Bridge {
            return Err(err("creating bridge", BRIDGE, libc::EEXIST));
        }
        let gw = (subnet.gateway(), subnet.prefix);
        if !br.addrs.contains(&gw) {
            br.addrs.push(gw);
        }
        br.up = true;
        st.ip_forward = true;
        Ok(())
    }

    fn create_endpoint(&self, ep: &EndpointSpec) -> Result<()> {
        let mut st = self.enter(Call::CreateEndpoint(ep.clone()))?;
        if st.bridge().is_none() {
            return Err(err("looking up link", BRIDGE, libc::ENODEV));
        }
        let target = format!("{} (peer eth0 in netns {})", ep.veth, ep.netns);
        let peer_taken = st.named.get(&ep.netns).is_some_and(|ns| ns.ifaces.contains_key("eth0"));
        if st.host.ifaces.contains_key(&ep.veth) || peer_taken {
            // Nothing was made: the netns, if this call would have made it, is not left.
            return Err(err("creating veth", target, libc::EEXIST));
        }
        let ns = st.named.entry(ep.netns.clone()).or_default();
        let mut eth0 = Iface::new(Kind::VethPeer);
        eth0.mac = Some(ep.mac);
        eth0.addrs.push((ep.ip, ep.subnet.prefix));
        eth0.up = true;
        ns.ifaces.insert("eth0".into(), eth0);
        if let Some(lo) = ns.ifaces.get_mut("lo") {
            lo.up = true;
        }
        ns.default_gw = Some(ep.subnet.gateway());
        let mut veth = Iface::new(Kind::Veth {
            peer_netns: ep.netns.clone(),
        });
        veth.master = Some(BRIDGE.into());
        veth.up = true;
        st.host.ifaces.insert(ep.veth.clone(), veth);
        Ok(())
    }

    fn delete_endpoint(&self, netns: &str, veth: &str) -> Result<()> {
        let mut st = self.enter(Call::DeleteEndpoint {
            netns: netns.into(),
            veth: veth.into(),
        })?;
        st.host.ifaces.remove(veth);
        st.remove_netns(netns);
        Ok(())
    }

    fn netns_exists(&self, netns: &str) -> Result<bool> {
        let st = self.enter(Call::NetnsExists(netns.into()))?;
        Ok(st.named.contains_key(netns))
    }

    fn endpoint_ipv4(&self, netns: &str) -> Result<Option<Ipv4Addr>> {
        let st = self.enter(Call::EndpointIpv4(netns.into()))?;
        Ok(st
            .named
            .get(netns)
            .and_then(|ns| ns.ifaces.get("eth0"))
            .and_then(|i| i.addrs.first())
            .map(|(ip, _)| *ip))
    }

    fn uplinks(&self) -> Result<Vec<String>> {
        let st = self.enter(Call::Uplinks)?;
        Ok(st
            .host
            .ifaces
            .iter()
            .filter(|(name, i)| {
                i.kind != Kind::Loopback && name.as_str() != BRIDGE && i.master.as_deref() != Some(BRIDGE)
            })
            .map(|(name, _)| name.clone())
            .collect())
    }

    fn addrs_by_link(&self) -> Result<Vec<(u32, Ipv4Addr)>> {
        let st = self.enter(Call::LocalAddrs)?;
        // The fake's interfaces are numbered in name order, from 1.
        Ok(st
            .host
            .ifaces
            .values()
            .zip(1u32..)
            .flat_map(|(i, n)| i.addrs.iter().map(move |(ip, _)| (n, *ip)))
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::network::{mac_for, netns_name, veth_name};

    fn spec(short: &str, ip: [u8; 4]) -> EndpointSpec {
        let ip = Ipv4Addr::from(ip);
        EndpointSpec {
            netns: netns_name(short),
            veth: veth_name(short),
            ip,
            mac: mac_for(ip),
            subnet: Subnet::parse("172.17.0.0/16").unwrap(),
        }
    }

    #[test]
    fn an_endpoint_needs_the_bridge_and_is_made_whole() {
        let net = FakeNetwork::new();
        let ep = spec("0123456789ab", [172, 17, 0, 2]);
        let e = net.create_endpoint(&ep).unwrap_err();
        assert!(matches!(&e, Error::Netlink { source, .. } if source.raw_os_error() == Some(libc::ENODEV)));
        assert!(e.to_string().contains(BRIDGE), "{e}");
        assert!(!net.netns_exists(&ep.netns).unwrap());

        net.ensure_bridge(&ep.subnet).unwrap();
        net.ensure_bridge(&ep.subnet).unwrap();
        net.create_endpoint(&ep).unwrap();
        let st = net.state();
        assert!(st.ip_forward);
        let br = &st.host.ifaces[BRIDGE];
        assert_eq!(br.addrs, [(Ipv4Addr::new(172, 17, 0, 1), 16)], "added once");
        let veth = &st.host.ifaces["veth0123456"];
        assert_eq!(veth.master.as_deref(), Some(BRIDGE));
        assert!(veth.up);
        let ns = &st.named["linkrt-0123456789ab"];
        let eth0 = &ns.ifaces["eth0"];
        assert_eq!(eth0.mac, Some([0x02, 0x42, 172, 17, 0, 2]));
        assert_eq!(eth0.addrs, [(Ipv4Addr::new(172, 17, 0, 2), 16)]);
        assert!(eth0.up && ns.ifaces["lo"].up);
        assert_eq!(ns.default_gw, Some(Ipv4Addr::new(172, 17, 0, 1)));
    }

    #[test]
    fn a_taken_veth_name_fails_and_leaves_nothing() {
        let net = FakeNetwork::new();
        let a = spec("0123456789ab", [172, 17, 0, 2]);
        // Same first 7 characters of the ID: the same veth name.
        let b = spec("0123456fffff", [172, 17, 0, 3]);
        net.ensure_bridge(&a.subnet).unwrap();
        net.create_endpoint(&a).unwrap();
        let e = net.create_endpoint(&b).unwrap_err();
        assert!(e.to_string().starts_with("creating veth veth0123456"), "{e}");
        assert!(!net.netns_exists(&b.netns).unwrap());
        assert!(net.netns_exists(&a.netns).unwrap(), "the other endpoint is untouched");
        assert_eq!(net.endpoint_ipv4(&a.netns).unwrap(), Some(a.ip));
    }

    #[test]
    fn delete_is_idempotent_and_takes_the_pair_with_the_netns() {
        let net = FakeNetwork::new();
        let ep = spec("0123456789ab", [172, 17, 0, 2]);
        net.delete_endpoint(&ep.netns, &ep.veth).unwrap();
        net.ensure_bridge(&ep.subnet).unwrap();
        net.create_endpoint(&ep).unwrap();
        // Only the netns named: the veth goes with it.
        net.delete_endpoint(&ep.netns, "vethnotthere").unwrap();
        assert!(!net.state().host.ifaces.contains_key(&ep.veth));
        assert_eq!(net.endpoint_ipv4(&ep.netns).unwrap(), None);
        net.delete_endpoint(&ep.netns, &ep.veth).unwrap();
    }

    #[test]
    fn uplinks_and_addresses_of_the_host() {
        let net = FakeNetwork::new();
        net.add_uplink("eth0", (Ipv4Addr::new(10, 200, 0, 1), 24));
        let ep = spec("0123456789ab", [172, 17, 0, 2]);
        net.ensure_bridge(&ep.subnet).unwrap();
        net.create_endpoint(&ep).unwrap();
        assert_eq!(net.uplinks().unwrap(), ["eth0"]);
        let mut addrs = net.local_addrs().unwrap();
        addrs.sort();
        assert_eq!(
            addrs,
            [
                Ipv4Addr::new(10, 200, 0, 1),
                Ipv4Addr::LOCALHOST,
                Ipv4Addr::new(172, 17, 0, 1)
            ]
        );
    }

    #[test]
    fn calls_are_recorded_and_failures_injected_once() {
        let net = FakeNetwork::new();
        let probe = net.clone();
        let ep = spec("0123456789ab", [172, 17, 0, 2]);
        net.fail_next("ensure_bridge", libc::EPERM);
        let e = net.ensure_bridge(&ep.subnet).unwrap_err();
        assert!(matches!(&e, Error::Netlink { source, .. } if source.raw_os_error() == Some(libc::EPERM)));
        assert!(probe.state().bridge().is_none(), "a failed call changes nothing");
        net.ensure_bridge(&ep.subnet).unwrap();
        net.delete_endpoint(&ep.netns, &ep.veth).unwrap();
        assert_eq!(
            probe.calls(),
            [
                Call::EnsureBridge(ep.subnet),
                Call::EnsureBridge(ep.subnet),
                Call::DeleteEndpoint {
                    netns: ep.netns.clone(),
                    veth: ep.veth.clone()
                }
            ]
        );
    }
}
