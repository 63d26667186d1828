//! What a container may send (anti-spoofing, the link policy, broadcast) and what may reach
//! one from outside (loopback, direct routing). Addresses in network order.
use linkrt_common::{
    config::{CONFIG_GATEWAY, CONFIG_GATEWAY_MAC, CONFIG_ICC, CONFIG_ROUTED, CONFIG_SUBNET},
    policy::PolicyKey,
};

use crate::{
    maps::{POLICY, config, get},
    parse::{ICMP_ECHO, IPPROTO_ICMP, IPPROTO_UDP, Pkt},
};

#[inline(always)]
pub fn icc_on() -> bool {
    config(CONFIG_ICC) != 0
}

/// Docker's `gateway_mode_ipv4=routed`: routed access to containers allowed.
#[inline(always)]
pub fn routed() -> bool {
    config(CONFIG_ROUTED) != 0
}

#[inline(always)]
pub fn gateway() -> u32 {
    config(CONFIG_GATEWAY) as u32
}

#[inline(always)]
pub fn gateway_mac() -> [u8; 6] {
    let b = config(CONFIG_GATEWAY_MAC).to_ne_bytes();
    [b[0], b[1], b[2], b[3], b[4], b[5]]
}

/// Whether `a` is in the bridge's subnet (the gateway included).
#[inline(always)]
pub fn in_subnet(a: u32) -> bool {
    let s = config(CONFIG_SUBNET);
    let (net, mask) = (s as u32, (s >> 32) as u32);
    mask != 0 && a & mask == net
}

/// 127.0.0.0/8.
#[inline(always)]
pub fn is_loopback(a: u32) -> bool {
    a.to_ne_bytes()[0] == 127
}

/// Multicast (224.0.0.0/4), the limited broadcast, or the bridge subnet's broadcast.
#[inline(always)]
pub fn is_group(a: u32) -> bool {
    let s = config(CONFIG_SUBNET);
    let (net, mask) = (s as u32, (s >> 32) as u32);
    a.to_ne_bytes()[0] & 0xf0 == 0xe0 || a == u32::MAX || (mask != 0 && a == net | !mask)
}

/// A DHCP client's request (UDP 68 → 67): the only broadcast a container needs from the host.
#[inline(always)]
pub fn dhcp_like(p: &Pkt) -> bool {
    p.proto == IPPROTO_UDP && p.sport == 68u16.to_be() && p.dport == 67u16.to_be()
}

/// The link policy for a new flow from one container to another (`--icc=false`): the
/// recipient may open flows to the source's exposed ports, and ping it.
#[inline(always)]
pub fn link_allows(p: &Pkt) -> bool {
    let (dport, ok) = match p.proto {
        IPPROTO_ICMP => (0, p.icmp_type == ICMP_ECHO),
        _ => (p.dport, p.has_ports()),
    };
    let k = PolicyKey {
        saddr: p.saddr,
        daddr: p.daddr,
        dport,
        proto: p.proto,
        _pad: 0,
    };
    ok && get(&POLICY, &k).is_some()
}
