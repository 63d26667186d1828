//! The host side of container networking: the default bridge `linkrt0`, each container's
//! network namespace and veth, the host's uplinks and addresses, behind the [`Network`] trait
//! (the rtnetlink implementation in [`netlink`] and an in-memory [`fake`] for unit tests),
//! plus the subnet and the names linkrt gives things.
pub mod fake;
pub mod netlink;
pub mod netns;

use std::{net::Ipv4Addr, path::PathBuf};

use crate::error::{Error, Result};

pub const BRIDGE: &str = "linkrt0";

/// The default bridge's subnet (`LINKRT_SUBNET`, default 172.17.0.0/16; the gateway is `.1`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Subnet {
    pub base: Ipv4Addr,
    pub prefix: u8,
}

impl Subnet {
    pub fn from_env() -> Result<Self> {
        let s = std::env::var("LINKRT_SUBNET").unwrap_or_else(|_| "172.17.0.0/16".into());
        Self::parse(&s)
    }

    pub fn parse(s: &str) -> Result<Self> {
        let bad = || Error::user(format!("invalid subnet {s}: want A.B.C.D/N with 8 <= N <= 30"));
        let (ip, len) = s.split_once('/').ok_or_else(bad)?;
        let ip: Ipv4Addr = ip.parse().map_err(|_| bad())?;
        let prefix: u8 = len.parse().map_err(|_| bad())?;
        if !(8..=30).contains(&prefix) {
            return Err(bad());
        }
        let mask = u32::MAX << (32 - prefix);
        Ok(Subnet {
            base: Ipv4Addr::from(u32::from(ip) & mask),
            prefix,
        })
    }

    pub fn gateway(&self) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.base) + 1)
    }

    /// Container addresses, lowest first (not the network, gateway or broadcast addresses).
    pub fn hosts(&self) -> impl Iterator<Item = Ipv4Addr> {
        let base = u32::from(self.base);
        let size = 1u32 << (32 - self.prefix);
        (2..size - 1).map(move |i| Ipv4Addr::from(base + i))
    }

    pub fn contains(&self, ip: Ipv4Addr) -> bool {
        let mask = u32::MAX << (32 - self.prefix);
        u32::from(ip) & mask == u32::from(self.base)
    }
}

/// Docker's MAC for an IP: `02:42:` followed by the four address bytes.
pub fn mac_for(ip: Ipv4Addr) -> [u8; 6] {
    let o = ip.octets();
    [0x02, 0x42, o[0], o[1], o[2], o[3]]
}

/// `02:42:ac:11:00:02`.
pub fn mac_string(m: [u8; 6]) -> String {
    m.iter().map(|b| format!("{b:02x}")).collect::<Vec<_>>().join(":")
}

/// The named netns of a container (`ip netns` shows it as `linkrt-<shortid>`).
pub fn netns_name(short_id: &str) -> String {
    format!("linkrt-{short_id}")
}

pub fn netns_path(short_id: &str) -> PathBuf {
    netns::path(&netns_name(short_id))
}

/// Host-side veth name of a container.
pub fn veth_name(short_id: &str) -> String {
    format!("veth{}", &short_id[..7])
}

/// A container's network as it is to be made: its namespace, the veth between it and the
/// bridge (`eth0` inside), its address and default route via the bridge.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EndpointSpec {
    pub netns: String,
    pub veth: String,
    pub ip: Ipv4Addr,
    pub mac: [u8; 6],
    pub subnet: Subnet,
}

/// The host's networking, as linkrt uses it. Every call names what it did in its errors, and
/// a query that fails is an error, never "absent".
pub trait Network {
    /// Creates the bridge with the subnet's gateway address if it is missing, brings it up,
    /// and turns on IPv4 forwarding in this (host) namespace.
    fn ensure_bridge(&self, subnet: &Subnet) -> Result<()>;
    /// Creates the container's netns (if missing) and its veth, addressed and routed. On
    /// failure whatever it made is removed again.
    fn create_endpoint(&self, ep: &EndpointSpec) -> Result<()>;
    /// Removes the veth and the netns; pieces that do not exist are not an error.
    fn delete_endpoint(&self, netns: &str, veth: &str) -> Result<()>;
    /// Whether the named netns exists (a file where no namespace is mounted is not one).
    fn netns_exists(&self, netns: &str) -> Result<bool>;
    /// The IPv4 address of `eth0` in a container's netns (to recover what an unreadable
    /// record held); `None` if the netns or the address does not exist.
    fn endpoint_ipv4(&self, netns: &str) -> Result<Option<Ipv4Addr>>;
    /// Every interface of this namespace but loopback, the bridge and its ports.
    fn uplinks(&self) -> Result<Vec<String>>;
    /// The IPv4 addresses of this namespace.
    fn local_addrs(&self) -> Result<Vec<Ipv4Addr>> {
        Ok(self.addrs_by_link()?.into_iter().map(|(_, a)| a).collect())
    }
    /// The same, each with its interface's index, each interface's primary address first.
    fn addrs_by_link(&self) -> Result<Vec<(u32, Ipv4Addr)>>;
}

/// The host's real networking: netlink in the calling thread's netns. One value serves a
/// whole command (one runtime and one connection, opened on first use).
pub fn system() -> Box<dyn Network> {
    Box::new(netlink::Netlink::new())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subnet_math() {
        let s = Subnet::parse("172.17.0.0/16").unwrap();
        assert_eq!(s.gateway(), Ipv4Addr::new(172, 17, 0, 1));
        assert_eq!(s.hosts().next(), Some(Ipv4Addr::new(172, 17, 0, 2)));
        assert_eq!(s.hosts().last(), Some(Ipv4Addr::new(172, 17, 255, 254)));
        assert!(s.contains(Ipv4Addr::new(172, 17, 3, 4)) && !s.contains(Ipv4Addr::new(172, 18, 0, 1)));
        assert!(Subnet::parse("10.0.0.0/31").is_err() && Subnet::parse("x").is_err());
        assert_eq!(mac_string(mac_for(Ipv4Addr::new(172, 17, 0, 2))), "02:42:ac:11:00:02");
    }
}
