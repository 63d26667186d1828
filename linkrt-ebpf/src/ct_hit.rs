//! What happens to a packet of a tracked flow, at each hook.
use aya_ebpf::programs::TcContext;
use linkrt_common::{
    DropReason,
    ct::{CT_REVNAT, CT_REVSNAT, CT_SNAT, CtEntry, CtKey},
};

use crate::{
    conntrack, frag,
    fwd::{self, Verdict},
    masq, nat,
    parse::Pkt,
};

#[derive(Clone, Copy, PartialEq, Eq)]
pub enum At {
    FromContainer,
    UplinkIn,
    UplinkOut,
}

/// An established packet: one lookup done, now close on RST, remember for fragments, deliver.
#[inline(always)]
pub fn established(ctx: &mut TcContext, p: &Pkt, k: &CtKey, e: &CtEntry, at: At) -> Result<Verdict, DropReason> {
    let e = if e.kind == CT_SNAT || e.kind == CT_REVSNAT {
        // A container's flow that lost its port goes on untranslated, to be given one on the
        // uplink's egress (which never calls this for such a flow).
        if masq::lost(k, e) {
            return Ok(Verdict::Pass);
        }
        masq::refresh(p, k, e)
    } else {
        *e
    };
    conntrack::close_on_rst(p, k, &e);
    frag::remember(p, &e);
    deliver(ctx, p, &e, at)
}

/// Translates `p` as `e` says and picks its way. A reply for the outside seen on a container's
/// veth is sent to the uplink after a FIB lookup; when there is no route it is left untouched
/// for the uplink's egress to translate (after routing, so the host never sees its own
/// address as a martian source).
#[inline(always)]
pub fn deliver(ctx: &mut TcContext, p: &Pkt, e: &CtEntry, at: At) -> Result<Verdict, DropReason> {
    if at == At::UplinkOut {
        nat::apply(ctx, p, e)?;
        return Ok(Verdict::Pass);
    }
    if e.ifindex != 0 {
        nat::apply(ctx, p, e)?;
        return Ok(Verdict::Peer(e.ifindex));
    }
    // Only a reply to the outside (a published flow's, a masqueraded connection's) is routed.
    if e.kind != CT_REVNAT && e.kind != CT_SNAT {
        nat::apply(ctx, p, e)?;
        return Ok(Verdict::Pass);
    }
    let v = fwd::fib(ctx, e.addr, p.daddr);
    if v.is_pass() {
        return Ok(v);
    }
    nat::apply(ctx, p, e)?;
    Ok(v)
}
