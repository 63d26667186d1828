//! The datapath's own connection tracking, modelled on cilium's `conntrack.h`: look up first,
//! create on a miss (both directions at once), close on RST. Established packets cost one
//! lookup and no write.
//!
//! FIN does not close an entry: the peer's FIN and the last ACK still need it. Entries of
//! closed flows leave by LRU eviction, or when their container stops (userspace).
use aya_ebpf::bindings::BPF_NOEXIST;
use linkrt_common::{
    Counter, DropReason,
    ct::{CT_ALLOW, CT_DNAT, CT_F_SNAT, CT_REVNAT, CT_REVSNAT, CT_SNAT, CtEntry, CtKey},
};

use crate::{
    maps::{CT, count},
    parse::Pkt,
};

#[inline(always)]
pub fn lookup(k: &CtKey) -> Option<CtEntry> {
    // SAFETY: copied out at once.
    unsafe { CT.get(k) }.copied()
}

/// Writes both directions of a new flow. `BPF_ANY`: an entry left by an older flow on the
/// same tuple (a reused client port) is replaced, so it never rewrites the new flow.
#[inline(always)]
pub fn create(fwd: &CtKey, fe: &CtEntry, rev: &CtKey, re: &CtEntry) -> Result<(), DropReason> {
    CT.insert(fwd, fe, 0).map_err(|_| DropReason::CtCreate)?;
    CT.insert(rev, re, 0).map_err(|_| DropReason::CtCreate)?;
    count(Counter::CtCreate);
    Ok(())
}

/// Writes one entry (`BPF_ANY`), the other direction of a flow whose first one is claimed.
#[inline(always)]
pub fn create_one(k: &CtKey, e: &CtEntry) -> Result<(), DropReason> {
    CT.insert(k, e, 0).map_err(|_| DropReason::CtCreate)?;
    count(Counter::CtCreate);
    Ok(())
}

/// Takes the reply tuple `rev` for a new masqueraded flow, only if nobody holds it: `BPF_NOEXIST`,
/// so that of two CPUs giving the same port to two flows of one remote endpoint at once, one
/// wins and the other tries another port (cilium's `snat_v4_new_mapping`).
#[inline(always)]
pub fn claim(rev: &CtKey, re: &CtEntry) -> bool {
    CT.insert(rev, re, BPF_NOEXIST as u64).is_ok()
}

/// Removes the entry under `k`: gone either way (a racing writer may remove or replace it,
/// which the caller's next `claim` sees).
#[inline(always)]
pub fn forget(k: &CtKey) {
    if CT.remove(k).is_err() {
        // Already gone (evicted, or removed by another CPU): what the caller wanted.
    }
}

/// A flow without translation: `ifindex_fwd` delivers this direction, `ifindex_rev` replies.
#[inline(always)]
pub fn create_allow(p: &Pkt, ifindex_fwd: u32, ifindex_rev: u32) -> Result<CtEntry, DropReason> {
    let fe = allow(ifindex_fwd);
    if p.trackable() && !p.rst() {
        let k = p.key();
        create(&k, &fe, &k.reversed(), &allow(ifindex_rev))?;
    }
    Ok(fe)
}

#[inline(always)]
pub const fn allow(ifindex: u32) -> CtEntry {
    CtEntry {
        kind: CT_ALLOW,
        flags: 0,
        port: 0,
        addr: 0,
        addr2: 0,
        ifindex,
    }
}

/// The key of the other direction of the flow that `e` (found under `k`) belongs to.
#[inline(always)]
pub fn pair_key(k: &CtKey, e: &CtEntry) -> CtKey {
    let snat = e.flags & CT_F_SNAT != 0;
    match e.kind {
        // (client → published) rewritten to (client' → backend): replies are backend → client'.
        CT_DNAT => CtKey {
            saddr: e.addr,
            daddr: if snat { e.addr2 } else { k.saddr },
            sport: e.port,
            dport: k.sport,
            proto: k.proto,
            _pad: [0; 3],
        },
        // (backend → client') rewritten to (published → client): requests are client → published.
        CT_REVNAT => CtKey {
            saddr: if snat { e.addr2 } else { k.daddr },
            daddr: e.addr,
            sport: k.dport,
            dport: e.port,
            proto: k.proto,
            _pad: [0; 3],
        },
        // (container → remote) rewritten to (host:port → remote): replies are remote → host:port.
        CT_SNAT => CtKey {
            saddr: k.daddr,
            daddr: e.addr,
            sport: k.dport,
            dport: e.port,
            proto: k.proto,
            _pad: [0; 3],
        },
        // (remote → host:port) rewritten to (remote → container): the container's own packets.
        CT_REVSNAT => CtKey {
            saddr: e.addr,
            daddr: k.saddr,
            sport: e.port,
            dport: k.sport,
            proto: k.proto,
            _pad: [0; 3],
        },
        _ => k.reversed(),
    }
}

/// A TCP RST ends the flow: both entries go (the RST itself is still translated and delivered).
#[inline(always)]
pub fn close_on_rst(p: &Pkt, k: &CtKey, e: &CtEntry) {
    if p.rst() {
        let other = pair_key(k, e);
        // A missing entry (already evicted) is not an error: the flow is gone either way.
        let gone = CT.remove(k).is_ok() | CT.remove(&other).is_ok();
        if gone {
            count(Counter::CtClose);
        }
    }
}
