//! The programs on the host's other interfaces (cilium's `bpf_host.c`): published ports and
//! replies come in, containers' connections and (fallback) replies go out.
//!
//! From an uplink, only published flows and replies to connections that containers opened
//! reach a container (`drop_direct` for the rest, ping included), unless the routed mode is
//! on. Nothing to 127.0.0.0/8 is translated or passed.
use aya_ebpf::programs::TcContext;
use linkrt_common::{
    Counter, DropReason,
    ct::{CT_REVSNAT, CT_SNAT},
};

use crate::{
    conntrack,
    ct_hit::{self, At},
    frag,
    fwd::Verdict,
    icmp,
    maps::{CONTAINER_IPS, count, get},
    masq, nat,
    parse::{self, ETH_P_IP, Frag, Meta, Pkt},
    policy,
};

/// Parses the IPv4 packet of an uplink frame into `p`; false for anything else (the host's
/// business).
#[inline(always)]
fn ipv4(ctx: &TcContext, m: &mut Meta, p: &mut Pkt) -> Result<bool, DropReason> {
    count(Counter::Uplink);
    // A tagged frame goes to a VLAN device, which is an uplink with these programs too.
    if parse::vlan_present(ctx, m) || parse::eth(ctx, m).map(|e| e.proto) != Ok(ETH_P_IP) {
        count(Counter::NonIpv4);
        return Ok(false);
    }
    match parse::ipv4(ctx, m, p) {
        Ok(()) => {
            count(Counter::Ipv4);
            if policy::is_loopback(p.daddr) || policy::is_loopback(p.saddr) {
                return Err(DropReason::Loopback);
            }
            Ok(true)
        }
        Err(DropReason::FragTiny) => Err(DropReason::FragTiny),
        // Malformed: the host's stack drops it, and it reaches no container.
        Err(_) => Ok(false),
    }
}

/// Whether `a` is a container's side of the bridge (the gateway is the host's).
#[inline(always)]
fn behind_bridge(a: u32) -> bool {
    policy::in_subnet(a) && a != policy::gateway()
}

#[inline(always)]
pub fn uplink_in(ctx: &mut TcContext, m: &mut Meta) -> Result<Verdict, DropReason> {
    let mut p = Pkt::default();
    if !ipv4(ctx, m, &mut p)? {
        return Ok(Verdict::Pass);
    }
    if let Frag::Later { .. } = p.frag {
        return match frag::follow(&p) {
            Some(e) => {
                count(Counter::Fragment);
                ct_hit::deliver(ctx, &p, &e, At::UplinkIn)
            }
            None if behind_bridge(p.daddr) => Err(DropReason::FragOrphan),
            None => Ok(Verdict::Pass),
        };
    }
    // An error about a container's connection out (the quoted packet left with this address),
    // for the container, while the flow holds its port.
    if p.is_icmp_error()
        && let Some(q) = icmp::quoted(ctx, &p)
        && q.saddr == p.daddr
        && let Some(e) = conntrack::lookup(&q.key)
        && e.kind == CT_REVSNAT
        && !masq::stale_reply(&e, q.key.proto)
    {
        icmp::masq_error(ctx, &p, &q, &e)?;
        return Ok(if e.ifindex == 0 {
            Verdict::Pass
        } else {
            Verdict::Peer(e.ifindex)
        });
    }
    // A container's own direction (`CT_SNAT`) never arrives from outside: such a packet forges
    // the container's source. A reply entry past its flow's lifetime delivers nothing.
    let key = p.key();
    if !p.syn()
        && let Some(e) = conntrack::lookup(&key)
        && e.kind != CT_SNAT
        && !masq::stale_reply(&e, p.proto)
    {
        return ct_hit::established(ctx, &p, &key, &e, At::UplinkIn);
    }
    if let Some(to) = nat::dnat_new(ctx, &p, 0)? {
        return Ok(if to == 0 { Verdict::Pass } else { Verdict::Peer(to) });
    }
    if !behind_bridge(p.daddr) {
        return Ok(Verdict::Pass);
    }
    if !policy::routed() {
        return Err(DropReason::Direct);
    }
    // Routed mode (Docker's gateway_mode_ipv4=routed): tracked like a link.
    match get(&CONTAINER_IPS, &p.daddr) {
        Some(to) => {
            let e = conntrack::create_allow(&p, to, 0)?;
            frag::remember(&p, &e);
            Ok(Verdict::Peer(to))
        }
        None => Ok(Verdict::Pass),
    }
}

#[inline(always)]
pub fn uplink_out(ctx: &mut TcContext, m: &mut Meta) -> Result<Verdict, DropReason> {
    let mut p = Pkt::default();
    if !ipv4(ctx, m, &mut p)? {
        return Ok(Verdict::Pass);
    }
    // SAFETY: reading a field of the program's own context.
    let me = unsafe { (*ctx.skb.skb).ifindex };
    if let Frag::Later { .. } = p.frag {
        if let Some(e) = frag::follow(&p) {
            count(Counter::Fragment);
            return ct_hit::deliver(ctx, &p, &e, At::UplinkOut);
        }
        return untranslated(&p, me);
    }
    // An error about a tracked flow. A masqueraded flow's reply entry is never the flow of
    // an error leaving (its quoted packet went out with the host's address, nobody behind it
    // received it): such an error is forged.
    if p.is_icmp_error()
        && let Some(q) = icmp::quoted(ctx, &p)
        && let Some(e) = conntrack::lookup(&q.key)
        && e.kind != CT_REVSNAT
    {
        icmp::icmp_error(ctx, &p, &q, &e)?;
        return Ok(Verdict::Pass);
    }
    let key = p.key();
    if !p.syn()
        && let Some(e) = conntrack::lookup(&key)
        && !masq::lost(&key, &e)
    {
        return ct_hit::established(ctx, &p, &key, &e, At::UplinkOut);
    }
    // A container's own connection out: masqueraded to the uplink's address, or (masquerade
    // off) tracked so that its replies may come back in (not `drop_direct`).
    if p.trackable()
        && let Some(from) = get(&CONTAINER_IPS, &p.saddr)
    {
        if let Some(e) = masq::new_flow(ctx, &p, me)? {
            frag::remember(&p, &e);
            nat::apply(ctx, &p, &e)?;
            return Ok(Verdict::Pass);
        }
        let e = conntrack::create_allow(&p, 0, from)?;
        frag::remember(&p, &e);
        return Ok(Verdict::Pass);
    }
    untranslated(&p, me)
}

/// A packet leaving `out_if` that no flow translates: the host's own passes; a container's is
/// dropped when the uplink masquerades, rather than sent with the private address (a protocol
/// without ports, an ICMP error about no flow, a fragment of an unknown datagram).
#[inline(always)]
fn untranslated(p: &Pkt, out_if: u32) -> Result<Verdict, DropReason> {
    if get(&CONTAINER_IPS, &p.saddr).is_some() && masq::applies(out_if) {
        return Err(DropReason::NatProto);
    }
    Ok(Verdict::Pass)
}
