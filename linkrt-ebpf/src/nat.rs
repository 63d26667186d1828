//! Translation, as cilium's `nat.h`: every rewrite step either succeeds or drops the packet
//! with a reason (`Csum`, `Write`); nothing is passed half rewritten.
use aya_ebpf::{
    bindings::{BPF_F_MARK_MANGLED_0, BPF_F_PSEUDO_HDR},
    programs::TcContext,
};
use linkrt_common::{
    Counter, DropReason, EVENT_NAT, Event,
    ct::{CT_DNAT, CT_F_SNAT, CT_REVNAT, CT_REVSNAT, CT_SNAT, CtEntry, CtKey},
    nat::{Backend, PortKey},
};

use crate::{
    conntrack, frag,
    maps::{CONTAINER_IPS, LOCAL_ADDRS, PORTMAP, count, debug_on, emit, get},
    parse::{
        Frag, ICMP_CSUM, ICMP_ECHO, ICMP_ECHO_REPLY, ICMP_ID, IP_CSUM, IP_DADDR, IP_SADDR, IPPROTO_ICMP, IPPROTO_TCP,
        IPPROTO_UDP, L4_DPORT, L4_SPORT, Pkt, TCP_CSUM, UDP_CSUM,
    },
    policy,
};

/// The L4 checksum's offset and flags, when it covers addresses and ports (not SCTP's CRC32c,
/// which covers no address; SCTP ports are never translated). Later fragments have none.
#[inline(always)]
fn l4_csum(p: &Pkt) -> Option<(usize, u64)> {
    if matches!(p.frag, Frag::Later { .. }) {
        return None;
    }
    match p.proto {
        IPPROTO_TCP => Some((p.l4 + TCP_CSUM, 0)),
        IPPROTO_UDP => Some((p.l4 + UDP_CSUM, BPF_F_MARK_MANGLED_0 as u64)),
        _ => None,
    }
}

#[inline(always)]
fn set_addr(ctx: &mut TcContext, p: &Pkt, off: usize, old: u32, new: u32) -> Result<(), DropReason> {
    if old == new {
        return Ok(());
    }
    ctx.l3_csum_replace(IP_CSUM, old as u64, new as u64, 4)
        .map_err(|_| DropReason::Csum)?;
    if let Some((csum, extra)) = l4_csum(p) {
        ctx.l4_csum_replace(csum, old as u64, new as u64, BPF_F_PSEUDO_HDR as u64 | extra | 4)
            .map_err(|_| DropReason::Csum)?;
    }
    ctx.store(off, &new, 0).map_err(|_| DropReason::Write)
}

#[inline(always)]
fn set_port(ctx: &mut TcContext, p: &Pkt, off: usize, old: u16, new: u16) -> Result<(), DropReason> {
    if old == new || matches!(p.frag, Frag::Later { .. }) {
        return Ok(());
    }
    // An ICMP echo's identifier plays the port (masquerade); its checksum has no pseudo-header.
    if p.proto == IPPROTO_ICMP && matches!(p.icmp_type, ICMP_ECHO | ICMP_ECHO_REPLY) {
        ctx.l4_csum_replace(p.l4 + ICMP_CSUM, old as u64, new as u64, 2)
            .map_err(|_| DropReason::Csum)?;
        return ctx.store(p.l4 + ICMP_ID, &new, 0).map_err(|_| DropReason::Write);
    }
    if !p.has_ports() {
        return Ok(());
    }
    if let Some((csum, extra)) = l4_csum(p) {
        ctx.l4_csum_replace(csum, old as u64, new as u64, extra | 2)
            .map_err(|_| DropReason::Csum)?;
    }
    ctx.store(p.l4 + off, &new, 0).map_err(|_| DropReason::Write)
}

/// Applies a tracked flow's translation to `p` (addresses only for a later fragment).
#[inline(always)]
pub fn apply(ctx: &mut TcContext, p: &Pkt, e: &CtEntry) -> Result<(), DropReason> {
    let snat = e.flags & CT_F_SNAT != 0;
    match e.kind {
        CT_DNAT => {
            set_addr(ctx, p, IP_DADDR, p.daddr, e.addr)?;
            set_port(ctx, p, L4_DPORT, p.dport, e.port)?;
            if snat {
                set_addr(ctx, p, IP_SADDR, p.saddr, e.addr2)?;
            }
            count(Counter::Dnat);
        }
        CT_REVNAT => {
            set_addr(ctx, p, IP_SADDR, p.saddr, e.addr)?;
            set_port(ctx, p, L4_SPORT, p.sport, e.port)?;
            if snat {
                set_addr(ctx, p, IP_DADDR, p.daddr, e.addr2)?;
            }
            count(Counter::ReverseNat);
        }
        CT_SNAT => {
            set_addr(ctx, p, IP_SADDR, p.saddr, e.addr)?;
            set_port(ctx, p, L4_SPORT, p.sport, e.port)?;
        }
        CT_REVSNAT => {
            set_addr(ctx, p, IP_DADDR, p.daddr, e.addr)?;
            set_port(ctx, p, L4_DPORT, p.dport, e.port)?;
            count(Counter::ReverseNat);
        }
        _ => {}
    }
    Ok(())
}

/// The backend of a published host endpoint, if `p` is addressed to one. 0.0.0.0 mappings
/// apply to the host's own addresses only (never to routed traffic).
#[inline(always)]
fn backend(p: &Pkt) -> Option<Backend> {
    let mut k = PortKey {
        ip: p.daddr,
        port: p.dport,
        proto: p.proto,
        _pad: 0,
    };
    if let Some(b) = get(&PORTMAP, &k) {
        return Some(b);
    }
    get(&LOCAL_ADDRS, &p.daddr)?;
    k.ip = 0;
    get(&PORTMAP, &k)
}

/// The first packet of a flow to a published port: tracks both directions, translates, and
/// says where the packet goes (`Some(ifindex)`, or `Some(0)` for the host's stack when the
/// backend's veth is not known yet). `client_if` is where the replies go (0: the uplink).
/// A container reaching its own published port gets its source rewritten to the gateway,
/// or its stack would drop its own address coming back as a martian.
#[inline(always)]
pub fn dnat_new(ctx: &mut TcContext, p: &Pkt, client_if: u32) -> Result<Option<u32>, DropReason> {
    if !p.has_ports() {
        return Ok(None);
    }
    let Some(b) = backend(p) else { return Ok(None) };
    let backend_if = get(&CONTAINER_IPS, &b.ip).unwrap_or(0);
    let own = p.saddr == b.ip;
    let gw = policy::gateway();
    let flags = if own { CT_F_SNAT } else { 0 };
    let fwd = CtEntry {
        kind: CT_DNAT,
        flags,
        port: b.port,
        addr: b.ip,
        addr2: gw,
        ifindex: backend_if,
    };
    let rev_key = CtKey {
        saddr: b.ip,
        daddr: if own { gw } else { p.saddr },
        sport: b.port,
        dport: p.sport,
        proto: p.proto,
        _pad: [0; 3],
    };
    let rev = CtEntry {
        kind: CT_REVNAT,
        flags,
        port: p.dport,
        addr: p.daddr,
        addr2: p.saddr,
        ifindex: client_if,
    };
    if !p.rst() {
        conntrack::create(&p.key(), &fwd, &rev_key, &rev)?;
        if debug_on() {
            aya_log_ebpf::debug!(
                ctx,
                "dnat proto {} {:i}:{} -> {:i}:{} => {:i}:{}",
                p.proto,
                u32::from_be(p.saddr),
                u16::from_be(p.sport),
                u32::from_be(p.daddr),
                u16::from_be(p.dport),
                u32::from_be(b.ip),
                u16::from_be(b.port)
            );
        }
        emit(&Event {
            kind: EVENT_NAT,
            reason: 0,
            proto: p.proto,
            _pad: 0,
            saddr: p.saddr,
            daddr: p.daddr,
            sport: p.sport,
            dport: p.dport,
            nat_addr: b.ip,
            nat_port: b.port,
            ethertype: 0,
        });
    }
    frag::remember(p, &fwd);
    apply(ctx, p, &fwd)?;
    Ok(Some(backend_if))
}
