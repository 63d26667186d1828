//! Userspace conversions: map keys and values from `std::net` types (network byte order
//! handled here, once), and the `aya::Pod` impls.
use std::net::{Ipv4Addr, SocketAddrV4};

use crate::{
    ct::{CtEntry, CtKey, FragKey},
    nat::{Backend, PortKey, SockRev},
    policy::{Endpoint, PolicyKey},
    stats::Event,
};

/// An IPv4 address as the datapath stores it (the packet's bytes in memory order).
pub const fn ip_be(ip: Ipv4Addr) -> u32 {
    u32::from_ne_bytes(ip.octets())
}

/// The address of a datapath `u32`.
pub const fn ip_of(be: u32) -> Ipv4Addr {
    let o = be.to_ne_bytes();
    Ipv4Addr::new(o[0], o[1], o[2], o[3])
}

/// The `CONFIG_GATEWAY_MAC` slot of a MAC.
pub const fn mac_config(mac: [u8; 6]) -> u64 {
    u64::from_ne_bytes([mac[0], mac[1], mac[2], mac[3], mac[4], mac[5], 0, 0])
}

/// The `CONFIG_SUBNET` slot of `net/prefix`.
pub const fn subnet_config(net: Ipv4Addr, prefix: u8) -> u64 {
    let mask = if prefix == 0 { 0 } else { u32::MAX << (32 - prefix) };
    ip_be(net) as u64 | (ip_be(Ipv4Addr::from_bits(mask)) as u64) << 32
}

impl PortKey {
    /// A published host endpoint; `0.0.0.0` means every host address.
    pub const fn new(ip: Ipv4Addr, port: u16, proto: u8) -> Self {
        PortKey {
            ip: ip_be(ip),
            port: port.to_be(),
            proto,
            _pad: 0,
        }
    }
}

impl Backend {
    pub const fn new(ip: Ipv4Addr, port: u16) -> Self {
        Backend {
            ip: ip_be(ip),
            port: port.to_be(),
            _pad: 0,
        }
    }
}

impl Endpoint {
    pub const fn new(ip: Ipv4Addr, mac: [u8; 6]) -> Self {
        Endpoint {
            ip: ip_be(ip),
            mac,
            _pad: [0; 2],
        }
    }
}

impl PolicyKey {
    /// `recipient` may open flows to `source:port/proto` (port 0 + proto 1: ping).
    pub const fn new(recipient: Ipv4Addr, source: Ipv4Addr, port: u16, proto: u8) -> Self {
        PolicyKey {
            saddr: ip_be(recipient),
            daddr: ip_be(source),
            dport: port.to_be(),
            proto,
            _pad: 0,
        }
    }
}

impl CtKey {
    pub const fn new(src: SocketAddrV4, dst: SocketAddrV4, proto: u8) -> Self {
        CtKey {
            saddr: ip_be(*src.ip()),
            daddr: ip_be(*dst.ip()),
            sport: src.port().to_be(),
            dport: dst.port().to_be(),
            proto,
            _pad: [0; 3],
        }
    }

    pub fn src(&self) -> SocketAddrV4 {
        SocketAddrV4::new(ip_of(self.saddr), u16::from_be(self.sport))
    }

    pub fn dst(&self) -> SocketAddrV4 {
        SocketAddrV4::new(ip_of(self.daddr), u16::from_be(self.dport))
    }
}

impl CtEntry {
    /// The address the entry translates to (`addr`), or None for `CT_ALLOW`.
    pub fn nat_addr(&self) -> Option<SocketAddrV4> {
        (self.kind != crate::ct::CT_ALLOW).then(|| SocketAddrV4::new(ip_of(self.addr), u16::from_be(self.port)))
    }
}

impl Event {
    pub fn src(&self) -> SocketAddrV4 {
        SocketAddrV4::new(ip_of(self.saddr), u16::from_be(self.sport))
    }

    pub fn dst(&self) -> SocketAddrV4 {
        SocketAddrV4::new(ip_of(self.daddr), u16::from_be(self.dport))
    }

    pub fn nat(&self) -> SocketAddrV4 {
        SocketAddrV4::new(ip_of(self.nat_addr), u16::from_be(self.nat_port))
    }
}

// SAFETY: plain #[repr(C)] data with explicit padding and no invalid bit patterns.
unsafe impl aya::Pod for PortKey {}
unsafe impl aya::Pod for Backend {}
unsafe impl aya::Pod for SockRev {}
unsafe impl aya::Pod for CtKey {}
unsafe impl aya::Pod for CtEntry {}
unsafe impl aya::Pod for FragKey {}
unsafe impl aya::Pod for PolicyKey {}
unsafe impl aya::Pod for Endpoint {}
unsafe impl aya::Pod for Event {}

#[cfg(test)]
mod tests {
    use super::*;
    use std::string::ToString;

    #[test]
    fn conversions_are_network_order() {
        let k = PortKey::new(Ipv4Addr::new(10, 0, 0, 1), 8080, 6);
        assert_eq!(k.ip.to_ne_bytes(), [10, 0, 0, 1]);
        assert_eq!(k.port.to_ne_bytes(), 8080u16.to_be_bytes());
        let c = CtKey::new(
            SocketAddrV4::new(Ipv4Addr::new(1, 2, 3, 4), 5),
            SocketAddrV4::new(Ipv4Addr::new(6, 7, 8, 9), 10),
            17,
        );
        assert_eq!(
            (c.src().to_string(), c.dst().to_string()),
            ("1.2.3.4:5".into(), "6.7.8.9:10".into())
        );
        assert_eq!(c.reversed().reversed(), c);
        assert_eq!(ip_of(ip_be(Ipv4Addr::new(172, 17, 0, 2))), Ipv4Addr::new(172, 17, 0, 2));
    }
}
