//! The programs on a container's veth (cilium's `bpf_lxc.c`): what a container sends
//! (host-side ingress) and what it receives through the host or the bridge (egress).
//!
//! With ICC off, every frame a container sends is understood and allowed, or dropped with a
//! reason: IPv4 and ARP from the container's own MAC and address; no VLAN tag, no other
//! ethertype, no IPv6; to another container only for a link, a reply or a published port;
//! broadcast and multicast only DHCP-like, to the host.
use aya_ebpf::programs::TcContext;
use linkrt_common::{Counter, DropReason, policy::Endpoint};

use crate::{
    conntrack,
    ct_hit::{self, At},
    frag,
    fwd::Verdict,
    icmp,
    maps::{CONTAINER_IPS, ENDPOINTS, count, get},
    nat,
    parse::{self, ETH_P_ARP, ETH_P_IP, ETH_P_IPV6, Frag, Meta, Pkt},
    policy,
};

#[inline(always)]
fn ifindex(ctx: &TcContext) -> u32 {
    // SAFETY: reading a field of the program's own context.
    unsafe { (*ctx.skb.skb).ifindex }
}

#[inline(always)]
pub fn from_container(ctx: &mut TcContext, m: &mut Meta) -> Result<Verdict, DropReason> {
    count(Counter::FromContainer);
    let me = ifindex(ctx);
    let icc = policy::icc_on();
    if parse::vlan_present(ctx, m) {
        return Err(DropReason::Vlan);
    }
    let eth = parse::eth(ctx, m)?;
    // Both fields always initialized: an `Option` of a struct would leave the payload
    // undefined on `None`, and the verifier rejects reads of uninitialized registers.
    let (known, ep) = match get(&ENDPOINTS, &me) {
        Some(ep) => (true, ep),
        None => (false, Endpoint::default()),
    };
    if known && eth.src != ep.mac {
        return Err(DropReason::Spoof);
    }
    match eth.proto {
        ETH_P_IP => {}
        ETH_P_ARP => {
            if known {
                let (sha, spa) = parse::arp_sender(ctx)?;
                if sha != ep.mac || spa != ep.ip {
                    return Err(DropReason::Spoof);
                }
            }
            count(Counter::NonIpv4);
            return Ok(Verdict::Pass);
        }
        t if parse::is_vlan(t) => return Err(DropReason::Vlan),
        ETH_P_IPV6 if !icc => return Err(DropReason::Ipv6),
        _ if !icc => return Err(DropReason::Ethertype),
        _ => {
            count(Counter::NonIpv4);
            return Ok(Verdict::Pass);
        }
    }
    let mut p = Pkt::default();
    parse::ipv4(ctx, m, &mut p)?;
    count(Counter::Ipv4);
    if policy::is_loopback(p.daddr) || policy::is_loopback(p.saddr) {
        return Err(DropReason::Loopback);
    }
    if known && p.saddr != ep.ip && !(p.saddr == 0 && policy::dhcp_like(&p)) {
        return Err(DropReason::Spoof);
    }
    if let Frag::Later { .. } = p.frag {
        return match frag::follow(&p) {
            Some(e) => {
                count(Counter::Fragment);
                ct_hit::deliver(ctx, &p, &e, At::FromContainer)
            }
            None if icc || get(&CONTAINER_IPS, &p.daddr).is_none() && !policy::is_group(p.daddr) => Ok(Verdict::Pass),
            None => Err(DropReason::FragOrphan),
        };
    }
    if policy::is_group(p.daddr) || eth.dst[0] & 1 != 0 {
        return if icc || policy::dhcp_like(&p) {
            Ok(Verdict::Pass)
        } else {
            Err(DropReason::Broadcast)
        };
    }
    let key = p.key();
    if !p.syn()
        && let Some(e) = conntrack::lookup(&key)
    {
        return ct_hit::established(ctx, &p, &key, &e, At::FromContainer);
    }
    // An error about a packet this container received (the quoted destination is its own
    // address): one it forges about another container's flow matches nothing here.
    if p.is_icmp_error()
        && let Some(q) = icmp::quoted(ctx, &p)
        && q.daddr == p.saddr
        && let Some(e) = conntrack::lookup(&q.key)
    {
        // Related to a tracked flow: translated here only when it stays on the bridge; an
        // error for the outside is translated by the uplink's egress, after routing.
        if e.ifindex == 0 {
            return Ok(Verdict::Pass);
        }
        icmp::icmp_error(ctx, &p, &q, &e)?;
        return Ok(Verdict::Peer(e.ifindex));
    }
    // Published ports are for everyone, through the host's addresses (hairpin).
    if let Some(to) = nat::dnat_new(ctx, &p, me)? {
        return Ok(if to == 0 { Verdict::Pass } else { Verdict::Peer(to) });
    }
    // The host and the outside are not the link policy's business.
    let Some(to) = get(&CONTAINER_IPS, &p.daddr) else {
        return Ok(Verdict::Pass);
    };
    if !icc && !policy::link_allows(&p) {
        return Err(DropReason::Policy);
    }
    let e = conntrack::create_allow(&p, to, me)?;
    frag::remember(&p, &e);
    count(Counter::PolicyAllow);
    Ok(Verdict::Peer(to))
}

/// What a container receives through the host's stack or the bridge. Everything between
/// containers is delivered by `from_container` with `bpf_redirect_peer`, so with ICC off a
/// frame bridged from another container may only be ARP: its broadcasts and multicasts (and
/// unicast frames sent to a MAC whose address they do not carry) stop here.
#[inline(always)]
pub fn to_container(ctx: &mut TcContext, m: &mut Meta) -> Result<Verdict, DropReason> {
    count(Counter::ToContainer);
    if parse::vlan_present(ctx, m) {
        return Err(DropReason::Vlan);
    }
    if policy::icc_on() {
        return Ok(Verdict::Pass);
    }
    // SAFETY: reading a field of the program's own context.
    let from = unsafe { (*ctx.skb.skb).ingress_ifindex };
    if from == 0 || from == ifindex(ctx) || get(&ENDPOINTS, &from).is_none() {
        return Ok(Verdict::Pass);
    }
    let eth = parse::eth(ctx, m)?;
    match eth.proto {
        ETH_P_ARP => Ok(Verdict::Pass),
        ETH_P_IP => {
            let mut p = Pkt::default();
            parse::ipv4(ctx, m, &mut p)?;
            Err(if policy::is_group(p.daddr) || eth.dst[0] & 1 != 0 {
                DropReason::Broadcast
            } else {
                DropReason::Policy
            })
        }
        t if parse::is_vlan(t) => Err(DropReason::Vlan),
        _ => Err(DropReason::Ethertype),
    }
}
