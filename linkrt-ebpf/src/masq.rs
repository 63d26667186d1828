//! Outbound masquerade, as cilium's `snat_v4_*` (`bpf/lib/nat.h`): a container's connection
//! that leaves through an uplink gets the uplink's address and a port of the masquerade range
//! (Docker's `--ip-masq`, on by default), so that other machines can answer it.
//!
//! - The first packet of a flow is translated on the uplink's egress (`uplink_out`), after the
//!   host routed it. Both directions are tracked in `CT` at once: `CT_SNAT` under the
//!   container's tuple, `CT_REVSNAT` under the tuple of the replies, which holds the port.
//! - Later packets from the container are translated on its veth and sent to the uplink after
//!   a FIB lookup; replies go from the uplink straight into the container.
//! - A port is free when no reply entry of the same remote endpoint holds it, it is not
//!   published, and no host socket would take its replies (a listener or a bound UDP socket,
//!   found with `bpf_skc_lookup_tcp` / `bpf_sk_lookup_udp`). The range is one the host's own
//!   ephemeral ports do not use (userspace reserves it otherwise).
//! - Mappings expire: the reply entry keeps the tick the flow was last seen in, refreshed at
//!   most every two ticks, and its port may be taken again after `MASQ_*_S` without packets
//!   (one minute for a TCP flow whose remote never answered). A port is claimed with
//!   `BPF_NOEXIST` on its reply entry, so two CPUs never give it to two flows.
//!   An entry past that time is stale, never trusted: a flow that resumes checks that it still
//!   owns its port, and takes a new one if not.
use core::{ffi::c_void, mem::size_of};

use aya_ebpf::{
    bindings::{bpf_sock_tuple, bpf_sock_tuple__bindgen_ty_1, bpf_sock_tuple__bindgen_ty_1__bindgen_ty_1},
    helpers::{bpf_get_prandom_u32, bpf_ktime_get_ns, bpf_sk_lookup_udp, bpf_sk_release, bpf_skc_lookup_tcp},
    programs::TcContext,
};
use linkrt_common::{
    Counter, DropReason,
    config::CONFIG_MASQ,
    ct::{
        CT_F_ANSWERED, CT_F_CLOSED, CT_REVSNAT, CT_SNAT, CtEntry, CtKey, MASQ_CLOSED_S, MASQ_DGRAM_S, MASQ_TCP_IDLE_S,
        MASQ_TICK_SHIFT, MASQ_UNANSWERED_S, masq_ticks,
    },
    nat::PortKey,
};

use crate::{
    conntrack,
    maps::{CONTAINER_IPS, CT, MASQ_ADDRS, PORTMAP, config, count, get},
    parse::{IPPROTO_SCTP, IPPROTO_TCP, IPPROTO_UDP, Pkt},
};

/// Candidate ports tried for a new flow before it is dropped (`drop_nat_no_port`).
const TRIES: u32 = 16;
/// A flow's entries are refreshed when they are this many ticks old (one write per flow
/// every two seconds or so, not one per packet).
const REFRESH: u32 = 2;
/// `BPF_F_CURRENT_NETNS`: the socket lookups search the namespace of the packet's device.
const CURRENT_NETNS: u64 = u64::MAX;

#[inline(always)]
fn now() -> u32 {
    // SAFETY: plain helper call.
    (unsafe { bpf_ktime_get_ns() } >> MASQ_TICK_SHIFT) as u32
}

/// The range (first port, length), if masquerade is on.
#[inline(always)]
fn range() -> Option<(u32, u32)> {
    let c = config(CONFIG_MASQ);
    let (first, len) = (c as u16 as u32, (c >> 16) as u16 as u32);
    (c >> 32 & 1 == 1 && len != 0).then_some((first, len))
}

/// Whether the port a reply entry holds may be taken again: past its flow's lifetime. Any
/// other entry under a reply tuple (not a masquerade) holds it for good.
#[inline(always)]
fn expired(e: &CtEntry, proto: u8, now: u32) -> bool {
    if e.kind != CT_REVSNAT {
        return false;
    }
    let limit = match proto {
        IPPROTO_TCP if e.flags & CT_F_CLOSED != 0 => masq_ticks(MASQ_CLOSED_S),
        IPPROTO_TCP | IPPROTO_SCTP if e.flags & CT_F_ANSWERED == 0 => masq_ticks(MASQ_UNANSWERED_S),
        IPPROTO_TCP | IPPROTO_SCTP => masq_ticks(MASQ_TCP_IDLE_S),
        _ => masq_ticks(MASQ_DGRAM_S),
    };
    now.wrapping_sub(e.addr2) > limit
}

/// Whether `e` is a reply entry past its flow's lifetime: its port may belong to nobody, or
/// to the next flow, so a packet for it is not delivered.
#[inline(always)]
pub fn stale_reply(e: &CtEntry, proto: u8) -> bool {
    expired(e, proto, now())
}

/// Whether connections out of the uplink `ifindex` are masqueraded (masquerade on, and the
/// uplink has an IPv4 address).
#[inline(always)]
pub fn applies(ifindex: u32) -> bool {
    range().is_some() && get(&MASQ_ADDRS, &ifindex).is_some()
}

/// Whether the host port is published (on this address or on 0.0.0.0).
#[inline(always)]
fn published(addr: u32, port: u16, proto: u8) -> bool {
    let mut k = PortKey {
        ip: addr,
        port,
        proto,
        _pad: 0,
    };
    if get(&PORTMAP, &k).is_some() {
        return true;
    }
    k.ip = 0;
    get(&PORTMAP, &k).is_some()
}

/// Whether a host socket would receive the replies to `rev` (the tuple they carry): a TCP
/// listener, connection or TIME_WAIT on it, or a UDP socket bound to its port.
#[inline(always)]
fn host_socket(ctx: &TcContext, rev: &CtKey) -> bool {
    let mut t = bpf_sock_tuple {
        __bindgen_anon_1: bpf_sock_tuple__bindgen_ty_1 {
            ipv4: bpf_sock_tuple__bindgen_ty_1__bindgen_ty_1 {
                saddr: rev.saddr,
                daddr: rev.daddr,
                sport: rev.sport,
                dport: rev.dport,
            },
        },
    };
    let size = size_of::<bpf_sock_tuple__bindgen_ty_1__bindgen_ty_1>() as u32;
    let skb = ctx.skb.skb.cast::<c_void>();
    // SAFETY: a valid context and tuple of the declared size; a socket found is released.
    unsafe {
        let sk = match rev.proto {
            IPPROTO_TCP => bpf_skc_lookup_tcp(skb, &mut t, size, CURRENT_NETNS, 0),
            IPPROTO_UDP => bpf_sk_lookup_udp(skb, &mut t, size, CURRENT_NETNS, 0),
            _ => return false,
        };
        if sk.is_null() {
            return false;
        }
        bpf_sk_release(sk.cast());
    }
    true
}

/// Gives the flow of `p` (a container's, untranslated) a free port on `addr` and tracks both
/// directions; returns the entry that translates `p` (not applied yet). A flow that already
/// holds a port keeps it (a retransmitted SYN, a flow resuming before anyone took its port).
#[inline(always)]
pub fn alloc(ctx: &TcContext, p: &Pkt, addr: u32) -> Result<CtEntry, DropReason> {
    let Some((first, len)) = range() else {
        return Err(DropReason::NatNoPort);
    };
    let now = now();
    let key = p.key();
    let mut fwd = CtEntry {
        kind: CT_SNAT,
        flags: 0,
        port: 0,
        addr,
        addr2: now,
        ifindex: 0,
    };
    let rev = CtEntry {
        kind: CT_REVSNAT,
        flags: 0,
        port: p.sport,
        addr: p.saddr,
        addr2: now,
        ifindex: get(&CONTAINER_IPS, &p.saddr).unwrap_or(0),
    };
    let mut rk = CtKey {
        saddr: p.daddr,
        daddr: addr,
        sport: p.dport,
        dport: 0,
        proto: p.proto,
        _pad: [0; 3],
    };
    // Its own port again, if the flow held one that nobody else took meanwhile.
    if let Some(old) = conntrack::lookup(&key)
        && old.kind == CT_SNAT
        && old.addr == addr
    {
        rk.dport = old.port;
        let mine = match conntrack::lookup(&rk) {
            Some(r) => r.kind == CT_REVSNAT && r.addr == p.saddr && r.port == p.sport,
            None => conntrack::claim(&rk, &rev),
        };
        if mine {
            fwd.port = old.port;
            conntrack::create(&key, &fwd, &rk, &rev)?;
            return Ok(fwd);
        }
    }
    // SCTP keeps its port: its checksum (CRC32c) would have to be computed again.
    let sctp = p.proto == IPPROTO_SCTP;
    let (start, tries) = if sctp {
        (0, 1)
    } else {
        // SAFETY: plain helper call.
        (unsafe { bpf_get_prandom_u32() } % len, TRIES)
    };
    let mut i = 0;
    while i < tries {
        let port = if sctp {
            p.sport
        } else {
            ((first + (start + i) % len) as u16).to_be()
        };
        i += 1;
        rk.dport = port;
        if let Some(r) = conntrack::lookup(&rk) {
            if !expired(&r, p.proto, now) {
                continue;
            }
            // Its flow is over: the port is claimed below like a free one.
            conntrack::forget(&rk);
        }
        // ICMP echo identifiers are not ports: only the reply entry holds them.
        if p.has_ports() && published(addr, port, p.proto) || host_socket(ctx, &rk) {
            continue;
        }
        // Another CPU may have taken the port since the lookup: then the next one.
        if !conntrack::claim(&rk, &rev) {
            continue;
        }
        fwd.port = port;
        if conntrack::create_one(&key, &fwd).is_err() {
            conntrack::forget(&rk);
            return Err(DropReason::CtCreate);
        }
        count(Counter::Masq);
        return Ok(fwd);
    }
    Err(DropReason::NatNoPort)
}

/// The first packet of a container's flow on the uplink `out_if`: its translation, or `None`
/// when the flow is not masqueraded (masquerade off, or the uplink has no IPv4 address).
#[inline(always)]
pub fn new_flow(ctx: &TcContext, p: &Pkt, out_if: u32) -> Result<Option<CtEntry>, DropReason> {
    if range().is_none() || !p.trackable() {
        return Ok(None);
    }
    let Some(addr) = get(&MASQ_ADDRS, &out_if) else {
        return Ok(None);
    };
    alloc(ctx, p, addr).map(Some)
}

/// Writes the tick (and the marks `flags`) into the entry under `k`, in place.
#[inline(always)]
fn touch(k: &CtKey, now: u32, flags: u8) {
    if let Some(v) = CT.get_ptr_mut(k) {
        // SAFETY: a value of the map, written in place (a racing writer is harmless).
        unsafe {
            (*v).addr2 = now;
            (*v).flags |= flags;
        }
    }
}

/// Whether the container's flow of `e` (a `CT_SNAT` entry found under `k`) lost its port:
/// idle long enough for its reply entry to be gone (evicted) or taken by another flow. Its
/// packets then take the new-flow path on the uplink's egress, where [`alloc`] gives the port
/// back (if free) or another. Checked only when the entry is stale: no lookup otherwise.
#[inline(always)]
pub fn lost(k: &CtKey, e: &CtEntry) -> bool {
    if e.kind != CT_SNAT || now().wrapping_sub(e.addr2) < REFRESH {
        return false;
    }
    match conntrack::lookup(&conntrack::pair_key(k, e)) {
        Some(r) => !(r.kind == CT_REVSNAT && r.addr == k.saddr && r.port == k.sport),
        None => true,
    }
}

/// An established packet of a masqueraded flow (`e` found under `k`, not [`lost`]): keeps
/// both entries fresh and marks a FIN and the remote's first answer, at most one write per
/// entry every [`REFRESH`] ticks otherwise. Returns the entry to translate with.
#[inline(always)]
pub fn refresh(p: &Pkt, k: &CtKey, e: &CtEntry) -> CtEntry {
    let now = now();
    let mut marks = 0;
    if p.fin() && e.flags & CT_F_CLOSED == 0 {
        marks |= CT_F_CLOSED;
    }
    if e.kind == CT_REVSNAT && e.flags & CT_F_ANSWERED == 0 {
        marks |= CT_F_ANSWERED;
    }
    let mut e = *e;
    if marks == 0 && now.wrapping_sub(e.addr2) < REFRESH {
        return e;
    }
    touch(k, now, marks);
    touch(&conntrack::pair_key(k, &e), now, marks);
    e.addr2 = now;
    e.flags |= marks;
    e
}
