//! IPv4 fragments, as cilium's `ipv4_frag_*`: a non-first fragment has no L4 header, so it
//! follows the verdict (and the translation) of its datagram's first fragment, remembered in
//! `FRAG` under (source, destination, IP id, protocol). A fragment whose first fragment was
//! not accepted has nothing to follow and is dropped where it would reach a container.
use linkrt_common::ct::{CtEntry, FragKey};

use crate::{
    maps::FRAG,
    parse::{Frag, Pkt},
};

#[inline(always)]
fn key(p: &Pkt) -> FragKey {
    FragKey {
        saddr: p.saddr,
        daddr: p.daddr,
        id: p.id,
        proto: p.proto,
        _pad: 0,
    }
}

/// Remembers the verdict of an accepted first fragment (a no-op for whole datagrams). A full
/// LRU evicts the oldest datagram; a failed write only costs the datagram its later fragments.
#[inline(always)]
pub fn remember(p: &Pkt, e: &CtEntry) {
    if p.frag == Frag::First && FRAG.insert(&key(p), e, 0).is_err() {
        // The later fragments will be dropped as orphans and the sender retransmits.
    }
}

/// The verdict of a later fragment's first fragment; the last fragment forgets it.
#[inline(always)]
pub fn follow(p: &Pkt) -> Option<CtEntry> {
    let k = key(p);
    // SAFETY: copied out at once.
    let e = unsafe { FRAG.get(&k) }.copied()?;
    if p.frag == (Frag::Later { last: true }) && FRAG.remove(&k).is_err() {
        // Already evicted: nothing left to forget.
    }
    Some(e)
}
