//! ICMP errors about tracked flows: found by the packet they quote, and translated back like
//! the flow itself.
use aya_ebpf::programs::TcContext;
use linkrt_common::{
    Counter, DropReason,
    ct::{CT_F_SNAT, CT_REVNAT, CtEntry, CtKey},
};
use network_types::ip::Ipv4Hdr;

use crate::{
    maps::count,
    parse::{ICMP_CSUM, IP_CSUM, IP_SADDR, Pkt},
};

/// Offsets inside the quoted IPv4 header.
const Q_CSUM: usize = core::mem::offset_of!(Ipv4Hdr, check);
const Q_DADDR: usize = core::mem::offset_of!(Ipv4Hdr, dst_addr);

/// The packet an ICMP error quotes (destination unreachable, time exceeded, parameter problem).
pub struct Quoted {
    off: usize,
    l4: usize,
    daddr: u32,
    dport: u16,
    csum: u16,
    /// The tracking key of the quoted packet's replies, i.e. of the flow the error answers.
    pub key: CtKey,
}

#[inline(always)]
pub fn quoted(ctx: &TcContext, p: &Pkt) -> Option<Quoted> {
    let off = p.l4 + 8;
    let ip: Ipv4Hdr = ctx.load(off).ok()?;
    let ihl = ip.ihl() as usize;
    if ip.version() != 4 || ihl < Ipv4Hdr::LEN || (ctx.len() as usize) < off + ihl + 4 {
        return None;
    }
    let ports: [u16; 2] = ctx.load(off + ihl).ok()?;
    let (saddr, daddr) = (u32::from_ne_bytes(ip.src_addr), u32::from_ne_bytes(ip.dst_addr));
    Some(Quoted {
        off,
        l4: off + ihl,
        daddr,
        dport: ports[1],
        csum: u16::from_ne_bytes(ip.check),
        key: CtKey {
            saddr: daddr,
            daddr: saddr,
            sport: ports[1],
            dport: ports[0],
            proto: ip.proto,
            _pad: [0; 3],
        },
    })
}

/// Translates an ICMP error about a published flow back: the outer source (when it is the
/// container) and the quoted destination become the published address again, so that the
/// client's stack matches the error to its socket. The quoted L4 checksum is left alone (it
/// may be cut off, and no stack checks it).
#[inline(always)]
pub fn icmp_error(ctx: &mut TcContext, p: &Pkt, q: &Quoted, e: &CtEntry) -> Result<(), DropReason> {
    if e.kind != CT_REVNAT || e.flags & CT_F_SNAT != 0 {
        return Ok(());
    }
    let csum = p.l4 + ICMP_CSUM;
    let l3 = |ctx: &mut TcContext, off: usize, old: u64, new: u64, size: u64| {
        ctx.l3_csum_replace(off, old, new, size).map_err(|_| DropReason::Csum)
    };
    l3(ctx, q.off + Q_CSUM, q.daddr as u64, e.addr as u64, 4)?;
    let new_qcsum: u16 = ctx.load(q.off + Q_CSUM).map_err(|_| DropReason::Csum)?;
    ctx.store(q.off + Q_DADDR, &e.addr, 0).map_err(|_| DropReason::Write)?;
    ctx.store(q.l4 + 2, &e.port, 0).map_err(|_| DropReason::Write)?;
    // The ICMP checksum covers every quoted byte changed.
    l3(ctx, csum, q.daddr as u64, e.addr as u64, 4)?;
    l3(ctx, csum, q.csum as u64, new_qcsum as u64, 2)?;
    l3(ctx, csum, q.dport as u64, e.port as u64, 2)?;
    if p.saddr == q.daddr {
        l3(ctx, IP_CSUM, p.saddr as u64, e.addr as u64, 4)?;
        ctx.store(IP_SADDR, &e.addr, 0).map_err(|_| DropReason::Write)?;
    }
    count(Counter::ReverseNat);
    Ok(())
}
