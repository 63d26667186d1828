//! TC programs of the linkrt datapath.
//!
//! - `lrt_uplink_in` (ingress of the host's other interfaces): DNAT of published ports.
//! - `lrt_uplink_out` (egress of those interfaces): replies un-NATed back to the published address.
//! - `lrt_from_container` (ingress of a container veth's host side = what the container sends):
//!   DNAT of published ports for container clients (hairpin).
//! - `lrt_to_container` (egress of the veth = what the container receives): hairpin replies
//!   un-NATed.
//!
//! Replies are un-NATed after routing (on egress), never before: a reply whose source became
//! a host address would otherwise be dropped as martian by the host's routing.
//! Conntrack is the datapath's own: `CT` (LRU) holds, for each NATed flow, the reply tuple
//! (container → client) and the address the client originally used.

use aya_ebpf::{
    bindings::{BPF_F_MARK_MANGLED_0, BPF_F_PSEUDO_HDR, TC_ACT_OK, TC_ACT_SHOT},
    helpers::{bpf_get_netns_cookie, bpf_get_socket_cookie},
    macros::{cgroup_sock_addr, classifier, map},
    maps::{Array, HashMap, LruHashMap, PerCpuArray, RingBuf},
    programs::{SockAddrContext, TcContext},
};
use linkrt_common::{
    Counter, EVENT_DROP, EVENT_NAT, EVENTS_BYTES, Event, STATS_LEN,
    nat::{Backend, CT_MAX, CtKey, CtVal, LOCAL_ADDRS_MAX, PORTMAP_MAX, PortKey, SockRev},
    policy::{CONFIG_ICC, ENDPOINTS_MAX, Endpoint, POLICY_MAX, PolicyKey},
};

const ETH_HLEN: usize = 14;
const ETH_P_IP: u16 = 0x0800;
const IPV4_MIN_HLEN: usize = 20;
const IPPROTO_TCP: u8 = 6;
const IPPROTO_UDP: u8 = 17;
const IPPROTO_SCTP: u8 = 132;
const IPPROTO_ICMP: u8 = 1;
const ETH_P_ARP: u16 = 0x0806;
const ETH_P_IPV6: u16 = 0x86DD;

#[map(name = "LRT_STATS_V1")]
static STATS: PerCpuArray<u64> = PerCpuArray::pinned(STATS_LEN, 0);

#[map(name = "LRT_EVENTS_V1")]
static EVENTS: RingBuf = RingBuf::pinned(EVENTS_BYTES, 0);

#[map(name = "LRT_PORTMAP_V1")]
static PORTMAP: HashMap<PortKey, Backend> = HashMap::pinned(PORTMAP_MAX, 0);

#[map(name = "LRT_CT_V1")]
static CT: LruHashMap<CtKey, CtVal> = LruHashMap::pinned(CT_MAX, 0);

#[map(name = "LRT_LOCAL_ADDRS_V1")]
static LOCAL_ADDRS: HashMap<u32, u32> = HashMap::pinned(LOCAL_ADDRS_MAX, 0);

#[map(name = "LRT_CONFIG_V1")]
static CONFIG: Array<u64> = Array::pinned(linkrt_common::nat::CONFIG_LEN, 0);

#[map(name = "LRT_SOCK_REV_V1")]
static SOCK_REV: LruHashMap<u64, SockRev> = LruHashMap::pinned(linkrt_common::nat::SOCK_REV_MAX, 0);

#[map(name = "LRT_POLICY_V1")]
static POLICY: HashMap<PolicyKey, u32> = HashMap::pinned(POLICY_MAX, 0);

#[map(name = "LRT_POLICY_CT_V1")]
static POLICY_CT: LruHashMap<CtKey, u32> = LruHashMap::pinned(CT_MAX, 0);

#[map(name = "LRT_ENDPOINTS_V1")]
static ENDPOINTS: HashMap<u32, Endpoint> = HashMap::pinned(ENDPOINTS_MAX, 0);

#[map(name = "LRT_CONTAINER_IPS_V1")]
static CONTAINER_IPS: HashMap<u32, u32> = HashMap::pinned(ENDPOINTS_MAX, 0);

#[inline(always)]
fn count(c: Counter) {
    if let Some(slot) = STATS.get_ptr_mut(c as u32) {
        // SAFETY: per-CPU slot, only this CPU writes it while the program runs.
        unsafe { *slot += 1 };
    }
}

/// Reports an event to `linkrt monitor` (dropped silently when nobody drains the buffer).
#[inline(always)]
fn emit(kind: u8, reason: Counter, p: &Pkt, nat_addr: u32, nat_port: u16) {
    let ev = Event {
        kind,
        reason: reason as u8,
        proto: p.proto,
        _pad: 0,
        saddr: p.saddr,
        daddr: p.daddr,
        sport: p.sport,
        dport: p.dport,
        nat_addr,
        nat_port,
        _pad2: 0,
    };
    let _ = EVENTS.output::<Event>(&ev, 0);
}

/// The parsed headers of an IPv4 packet. Addresses and ports in network order; ports are 0
/// for protocols without them.
struct Pkt {
    l4: usize,
    proto: u8,
    saddr: u32,
    daddr: u32,
    sport: u16,
    dport: u16,
}

impl Pkt {
    /// This packet's flow as a conntrack key.
    #[inline(always)]
    fn key(&self) -> CtKey {
        CtKey {
            saddr: self.saddr,
            daddr: self.daddr,
            sport: self.sport,
            dport: self.dport,
            proto: self.proto,
            _pad: [0; 3],
        }
    }

    /// The key of this packet's replies.
    #[inline(always)]
    fn reply_key(&self) -> CtKey {
        CtKey {
            saddr: self.daddr,
            daddr: self.saddr,
            sport: self.dport,
            dport: self.sport,
            proto: self.proto,
            _pad: [0; 3],
        }
    }
}

/// Counts a rewrite under `ok`, or as malformed when a helper refused it.
#[inline(always)]
fn counted(r: Result<(), i64>, ok: Counter) -> bool {
    count(if r.is_ok() { ok } else { Counter::Malformed });
    r.is_ok()
}

/// Parses the frame; `None` for anything the NAT does not handle (counted by kind).
#[inline(always)]
fn parse(ctx: &TcContext) -> Option<Pkt> {
    let len = ctx.len() as usize;
    let proto = match ctx.load::<u16>(12) {
        Ok(p) if len >= ETH_HLEN => u16::from_be(p),
        _ => {
            count(Counter::Malformed);
            return None;
        }
    };
    if proto != ETH_P_IP {
        count(Counter::NonIpv4);
        return None;
    }
    let vihl = ctx.load::<u8>(ETH_HLEN).ok()?;
    let ihl = ((vihl & 0x0f) as usize) * 4;
    if vihl >> 4 != 4 || ihl < IPV4_MIN_HLEN || len < ETH_HLEN + ihl {
        count(Counter::Malformed);
        return None;
    }
    count(Counter::Ipv4);
    let frag = u16::from_be(ctx.load::<u16>(ETH_HLEN + 6).ok()?);
    if frag & 0x1fff != 0 {
        count(Counter::Fragment);
        return None;
    }
    let l4proto = ctx.load::<u8>(ETH_HLEN + 9).ok()?;
    let l4 = ETH_HLEN + ihl;
    let saddr = ctx.load::<u32>(ETH_HLEN + 12).ok()?;
    let daddr = ctx.load::<u32>(ETH_HLEN + 16).ok()?;
    if l4proto != IPPROTO_TCP && l4proto != IPPROTO_UDP && l4proto != IPPROTO_SCTP {
        // No ports: never NATed. For ICMP, `dport` carries the message type (link policy).
        let ty = if l4proto == IPPROTO_ICMP {
            ctx.load::<u8>(l4).ok().unwrap_or(255) as u16
        } else {
            0
        };
        return Some(Pkt {
            l4,
            proto: l4proto,
            saddr,
            daddr,
            sport: 0,
            dport: ty,
        });
    }
    let need = match l4proto {
        IPPROTO_TCP => 18,
        IPPROTO_UDP => 8,
        _ => 12,
    };
    if len < l4 + need {
        count(Counter::Malformed);
        return None;
    }
    Some(Pkt {
        l4,
        proto: l4proto,
        saddr,
        daddr,
        sport: ctx.load::<u16>(l4).ok()?,
        dport: ctx.load::<u16>(l4 + 2).ok()?,
    })
}

/// The backend of a published host endpoint, if `p` is addressed to one.
#[inline(always)]
fn lookup_backend(p: &Pkt) -> Option<Backend> {
    let exact = PortKey {
        ip: p.daddr,
        port: p.dport,
        proto: p.proto,
        _pad: 0,
    };
    // SAFETY: values are plain data copied out at once.
    if let Some(b) = unsafe { PORTMAP.get(&exact) } {
        return Some(*b);
    }
    // 0.0.0.0 mappings apply only to the host's own addresses (not to routed traffic).
    unsafe { LOCAL_ADDRS.get(&p.daddr) }?;
    let any = PortKey {
        ip: 0,
        port: p.dport,
        proto: p.proto,
        _pad: 0,
    };
    unsafe { PORTMAP.get(&any) }.copied()
}

/// Offset of the L4 checksum, or None when it does not cover addresses/ports (SCTP's CRC32c
/// covers ports only; linkrt refuses SCTP port translation, so SCTP needs no update).
#[inline(always)]
fn l4_csum(p: &Pkt) -> Option<(usize, u64)> {
    match p.proto {
        IPPROTO_TCP => Some((p.l4 + 16, 0)),
        IPPROTO_UDP => Some((p.l4 + 6, BPF_F_MARK_MANGLED_0 as u64)),
        _ => None,
    }
}

/// Rewrites one address (`addr_off`) and one port (`port_off`), fixing the checksums.
#[inline(always)]
fn rewrite(
    ctx: &mut TcContext,
    p: &Pkt,
    addr_off: usize,
    old_ip: u32,
    new_ip: u32,
    port_off: usize,
    old_port: u16,
    new_port: u16,
) -> Result<(), i64> {
    if old_ip != new_ip {
        ctx.l3_csum_replace(ETH_HLEN + 10, old_ip as u64, new_ip as u64, 4)?;
        if let Some((off, extra)) = l4_csum(p) {
            ctx.l4_csum_replace(off, old_ip as u64, new_ip as u64, BPF_F_PSEUDO_HDR as u64 | extra | 4)?;
        }
        ctx.store(addr_off, &new_ip, 0)?;
    }
    if old_port != new_port {
        if let Some((off, extra)) = l4_csum(p) {
            ctx.l4_csum_replace(off, old_port as u64, new_port as u64, extra | 2)?;
        }
        ctx.store(port_off, &new_port, 0)?;
    }
    Ok(())
}

/// DNAT to a published port's backend, remembering the flow for the replies.
#[inline(always)]
fn has_ports(p: &Pkt) -> bool {
    p.proto == IPPROTO_TCP || p.proto == IPPROTO_UDP || p.proto == IPPROTO_SCTP
}

#[inline(always)]
fn dnat(ctx: &mut TcContext, p: &Pkt) -> bool {
    if !has_ports(p) {
        return false;
    }
    let Some(b) = lookup_backend(p) else { return false };
    let key = CtKey {
        saddr: b.ip,
        daddr: p.saddr,
        sport: b.port,
        dport: p.sport,
        proto: p.proto,
        _pad: [0; 3],
    };
    let val = CtVal {
        orig_ip: p.daddr,
        orig_port: p.dport,
        _pad: 0,
    };
    if unsafe { CT.get(&key) }.is_none() {
        emit(EVENT_NAT, Counter::Dnat, p, b.ip, b.port);
    }
    if tcp_rst(ctx, p) {
        let _ = CT.remove(&key);
    } else {
        let _ = CT.insert(&key, &val, 0);
    }
    counted(
        rewrite(ctx, p, ETH_HLEN + 16, p.daddr, b.ip, p.l4 + 2, p.dport, b.port),
        Counter::Dnat,
    )
}

/// A packet that is not NATed but reuses the 5-tuple of an old NATed flow (a client port
/// reused for a direct connection): the old flow's tracking entry is stale and must not
/// rewrite this flow's replies (the reply-collision bug of other datapaths).
#[inline(always)]
fn forget_stale(p: &Pkt) {
    if has_ports(p) {
        let _ = CT.remove(&p.reply_key());
    }
}

/// Whether this is a TCP segment with RST: its flow is over, its tracking entry can go.
#[inline(always)]
fn tcp_rst(ctx: &TcContext, p: &Pkt) -> bool {
    p.proto == IPPROTO_TCP && ctx.load::<u8>(p.l4 + 13).map(|f| f & 0x04 != 0).unwrap_or(false)
}

/// Un-NAT of a reply of a published flow: its source becomes the published address again.
#[inline(always)]
fn reverse_nat(ctx: &mut TcContext, p: &Pkt) -> bool {
    if p.proto == IPPROTO_ICMP {
        return reverse_nat_icmp_error(ctx, p);
    }
    if !has_ports(p) {
        return false;
    }
    let key = p.key();
    // SAFETY: copied out at once.
    let Some(v) = (unsafe { CT.get(&key) }).copied() else {
        return false;
    };
    if tcp_rst(ctx, p) {
        let _ = CT.remove(&key);
    }
    counted(
        rewrite(ctx, p, ETH_HLEN + 12, p.saddr, v.orig_ip, p.l4, p.sport, v.orig_port),
        Counter::ReverseNat,
    )
}

/// ICMP errors (destination unreachable, time exceeded, parameter problem) that a container
/// sends about a NATed flow: the outer source and the quoted packet's destination become the
/// published address again, so that the client's stack matches the error to its socket.
/// The quoted L4 checksum is left alone (it may be cut off, and no stack checks it).
#[inline(always)]
fn reverse_nat_icmp_error(ctx: &mut TcContext, p: &Pkt) -> bool {
    if !(p.dport == 3 || p.dport == 11 || p.dport == 12) {
        return false;
    }
    let len = ctx.len() as usize;
    let inner = p.l4 + 8;
    let Ok(vihl) = ctx.load::<u8>(inner) else { return false };
    let ihl = ((vihl & 0x0f) as usize) * 4;
    if vihl >> 4 != 4 || ihl < IPV4_MIN_HLEN || len < inner + ihl + 4 {
        return false;
    }
    let Ok(proto) = ctx.load::<u8>(inner + 9) else {
        return false;
    };
    let il4 = inner + ihl;
    let (Ok(isrc), Ok(idst), Ok(isport), Ok(idport), Ok(icsum)) = (
        ctx.load::<u32>(inner + 12),
        ctx.load::<u32>(inner + 16),
        ctx.load::<u16>(il4),
        ctx.load::<u16>(il4 + 2),
        ctx.load::<u16>(inner + 10),
    ) else {
        return false;
    };
    let key = CtKey {
        saddr: idst,
        daddr: isrc,
        sport: idport,
        dport: isport,
        proto,
        _pad: [0; 3],
    };
    // SAFETY: copied out at once.
    let Some(v) = (unsafe { CT.get(&key) }).copied() else {
        return false;
    };
    let icmp_csum = p.l4 + 2;
    let r = (|| -> Result<(), i64> {
        // Quoted IP header: destination, and its own checksum.
        ctx.l3_csum_replace(inner + 10, idst as u64, v.orig_ip as u64, 4)?;
        let new_icsum = ctx.load::<u16>(inner + 10)?;
        ctx.store(inner + 16, &v.orig_ip, 0)?;
        ctx.store(il4 + 2, &v.orig_port, 0)?;
        // The ICMP checksum covers every quoted byte we changed.
        ctx.l3_csum_replace(icmp_csum, idst as u64, v.orig_ip as u64, 4)?;
        ctx.l3_csum_replace(icmp_csum, icsum as u64, new_icsum as u64, 2)?;
        ctx.l3_csum_replace(icmp_csum, idport as u64, v.orig_port as u64, 2)?;
        // Outer source, when it is the container (not a router on the way).
        if p.saddr == idst {
            ctx.l3_csum_replace(ETH_HLEN + 10, p.saddr as u64, v.orig_ip as u64, 4)?;
            ctx.store(ETH_HLEN + 12, &v.orig_ip, 0)?;
        }
        Ok(())
    })();
    counted(r, Counter::ReverseNat)
}

#[classifier]
pub fn lrt_uplink_in(mut ctx: TcContext) -> i32 {
    count(Counter::Uplink);
    if let Some(p) = parse(&ctx) {
        if !dnat(&mut ctx, &p) {
            forget_stale(&p);
        }
    }
    TC_ACT_OK as i32
}

#[classifier]
pub fn lrt_uplink_out(mut ctx: TcContext) -> i32 {
    count(Counter::Uplink);
    if let Some(p) = parse(&ctx) {
        reverse_nat(&mut ctx, &p);
    }
    TC_ACT_OK as i32
}

#[inline(always)]
fn icc_on() -> bool {
    CONFIG.get(CONFIG_ICC).copied().unwrap_or(0) != 0
}

#[inline(always)]
fn drop_with(c: Counter) -> i32 {
    count(c);
    TC_ACT_SHOT
}

/// Anti-spoofing: the frame's source MAC, and the IPv4/ARP sender address, must be the
/// container's own.
#[inline(always)]
fn spoofed(ctx: &TcContext, ep: &Endpoint) -> bool {
    let Ok(mac) = ctx.load::<[u8; 6]>(6) else { return true };
    if mac != ep.mac {
        return true;
    }
    match ctx.load::<u16>(12).map(u16::from_be) {
        Ok(ETH_P_IP) => ctx.load::<u32>(ETH_HLEN + 12).map(|a| a != ep.ip).unwrap_or(true),
        Ok(ETH_P_ARP) => {
            let sha = ctx.load::<[u8; 6]>(ETH_HLEN + 8);
            let spa = ctx.load::<u32>(ETH_HLEN + 14);
            !matches!((sha, spa), (Ok(m), Ok(a)) if m == ep.mac && a == ep.ip)
        }
        _ => false,
    }
}

/// The link policy for a packet from one container to another (`--icc=false`).
#[inline(always)]
fn link_allows(p: &Pkt) -> bool {
    if p.proto == IPPROTO_ICMP {
        // Linked peers can ping (as the seed's `ping redis`): echo requests from recipient to
        // source, echo replies back.
        let (r, s) = match p.dport {
            8 => (p.saddr, p.daddr),
            0 => (p.daddr, p.saddr),
            _ => return false,
        };
        let k = PolicyKey {
            saddr: r,
            daddr: s,
            dport: 0,
            proto: IPPROTO_ICMP,
            _pad: 0,
        };
        return unsafe { POLICY.get(&k) }.is_some();
    }
    if !has_ports(p) {
        return false;
    }
    // Replies of allowed flows, and of flows to published ports (hairpin, tracked by the NAT).
    let this = p.key();
    if unsafe { POLICY_CT.get(&this) }.is_some() || unsafe { CT.get(&this) }.is_some() {
        return true;
    }
    let k = PolicyKey {
        saddr: p.saddr,
        daddr: p.daddr,
        dport: p.dport,
        proto: p.proto,
        _pad: 0,
    };
    if unsafe { POLICY.get(&k) }.is_none() {
        return false;
    }
    // Remember the flow so that the source's replies pass.
    let _ = POLICY_CT.insert(&p.reply_key(), &1, 0);
    true
}

#[classifier]
pub fn lrt_from_container(mut ctx: TcContext) -> i32 {
    count(Counter::FromContainer);
    // SAFETY: reading the skb's ifindex field.
    let ifindex = unsafe { (*ctx.skb.skb).ifindex };
    if let Some(ep) = unsafe { ENDPOINTS.get(&ifindex) }.copied() {
        if spoofed(&ctx, &ep) {
            if let Some(p) = parse(&ctx) {
                emit(EVENT_DROP, Counter::DropSpoof, &p, 0, 0);
            }
            return drop_with(Counter::DropSpoof);
        }
    }
    let icc = icc_on();
    if !icc && ctx.load::<u16>(12).map(u16::from_be) == Ok(ETH_P_IPV6) {
        return drop_with(Counter::DropIpv6);
    }
    let Some(p) = parse(&ctx) else { return TC_ACT_OK as i32 };
    // Published ports are reachable by everyone, through the host's addresses.
    if dnat(&mut ctx, &p) {
        return TC_ACT_OK as i32;
    }
    forget_stale(&p);
    if icc || p.saddr == p.daddr {
        return TC_ACT_OK as i32;
    }
    if unsafe { CONTAINER_IPS.get(&p.daddr) }.is_none() {
        return TC_ACT_OK as i32;
    }
    if link_allows(&p) {
        count(Counter::PolicyAllow);
        TC_ACT_OK as i32
    } else {
        emit(EVENT_DROP, Counter::DropPolicy, &p, 0, 0);
        drop_with(Counter::DropPolicy)
    }
}

#[classifier]
pub fn lrt_to_container(mut ctx: TcContext) -> i32 {
    count(Counter::ToContainer);
    if let Some(p) = parse(&ctx) {
        reverse_nat(&mut ctx, &p);
    }
    TC_ACT_OK as i32
}

#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}

#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 13] = *b"Dual MIT/GPL\0";

// ---- Host-local access: cgroup socket hooks (connect4/sendmsg4/recvmsg4) -------------------
//
// A host process that connects to a published port (127.0.0.1:P, or any host address) is
// sent to the container at connect()/sendmsg() time: no per-packet NAT, no route_localnet.
// The hooks act only in the host namespace linkrt manages (CONFIG[0] = its netns cookie).

#[inline(always)]
fn in_host_netns(ctx: &SockAddrContext) -> bool {
    let want = CONFIG
        .get(linkrt_common::nat::CONFIG_NETNS_COOKIE)
        .copied()
        .unwrap_or(0);
    // SAFETY: helper on a valid program context.
    want != 0 && unsafe { bpf_get_netns_cookie(ctx.sock_addr as *mut _) } == want
}

/// Rewrites the destination of a connect()/sendmsg() to a published port.
#[inline(always)]
fn sock_dnat(ctx: &SockAddrContext) -> i32 {
    if !in_host_netns(ctx) {
        return 1;
    }
    // SAFETY: the kernel hands us a valid bpf_sock_addr for the program's lifetime.
    let sa = unsafe { &mut *ctx.sock_addr };
    let proto = match sa.protocol {
        6 => IPPROTO_TCP,
        17 => IPPROTO_UDP,
        _ => return 1,
    };
    let p = Pkt {
        l4: 0,
        proto,
        saddr: 0,
        daddr: sa.user_ip4,
        sport: 0,
        dport: sa.user_port as u16,
    };
    if let Some(b) = lookup_backend(&p) {
        let rev = SockRev {
            orig_ip: sa.user_ip4,
            orig_port: sa.user_port as u16,
            backend_port: b.port,
            backend_ip: b.ip,
        };
        let cookie = unsafe { bpf_get_socket_cookie(ctx.sock_addr as *mut _) };
        let _ = SOCK_REV.insert(&cookie, &rev, 0);
        sa.user_ip4 = b.ip;
        sa.user_port = b.port as u32;
        count(Counter::SockLb);
    }
    1
}

#[cgroup_sock_addr(connect4)]
pub fn lrt_connect4(ctx: SockAddrContext) -> i32 {
    sock_dnat(&ctx)
}

#[cgroup_sock_addr(sendmsg4)]
pub fn lrt_sendmsg4(ctx: SockAddrContext) -> i32 {
    sock_dnat(&ctx)
}

/// Unconnected UDP: the reply's source becomes the published address again.
#[cgroup_sock_addr(recvmsg4)]
pub fn lrt_recvmsg4(ctx: SockAddrContext) -> i32 {
    if !in_host_netns(&ctx) {
        return 1;
    }
    let cookie = unsafe { bpf_get_socket_cookie(ctx.sock_addr as *mut _) };
    // SAFETY: copied out at once; the context is valid.
    if let Some(r) = unsafe { SOCK_REV.get(&cookie) }.copied() {
        let sa = unsafe { &mut *ctx.sock_addr };
        if sa.user_ip4 == r.backend_ip && sa.user_port as u16 == r.backend_port {
            sa.user_ip4 = r.orig_ip;
            sa.user_port = r.orig_port as u32;
        }
    }
    1
}
