//! ICMP errors about tracked flows: found by the packet they quote, and translated back like
//! the flow itself.
use aya_ebpf::programs::TcContext;
use linkrt_common::{
    Counter, DropReason,
    ct::{CT_F_SNAT, CT_REVNAT, CT_REVSNAT, CT_SNAT, CtEntry, CtKey},
};
use network_types::ip::Ipv4Hdr;

use crate::{
    maps::count,
    parse::{ICMP_CSUM, ICMP_ECHO, ICMP_ID, IP_CSUM, IP_DADDR, IP_SADDR, IPPROTO_ICMP, Pkt},
};

/// Offsets inside the quoted IPv4 header.
const Q_CSUM: usize = core::mem::offset_of!(Ipv4Hdr, check);
const Q_DADDR: usize = core::mem::offset_of!(Ipv4Hdr, dst_addr);
const Q_SADDR: usize = core::mem::offset_of!(Ipv4Hdr, src_addr);
/// The identifier in a quoted ICMP echo header.
const ECHO_ID: usize = ICMP_ID;

/// The packet an ICMP error quotes (destination unreachable, time exceeded, parameter problem).
pub struct Quoted {
    off: usize,
    l4: usize,
    pub saddr: u32,
    pub daddr: u32,
    sport: u16,
    dport: u16,
    /// Where the quoted source and destination "ports" are in its L4 header: the ports, or
    /// both at the identifier of a quoted ICMP echo request.
    sport_off: usize,
    dport_off: usize,
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
    let mut q = Quoted {
        off,
        l4: off + ihl,
        saddr,
        daddr,
        sport: ports[0],
        dport: ports[1],
        sport_off: 0,
        dport_off: 2,
        csum: u16::from_ne_bytes(ip.check),
        key: CtKey {
            saddr: daddr,
            daddr: saddr,
            sport: ports[1],
            dport: ports[0],
            proto: ip.proto,
            _pad: [0; 3],
        },
    };
    if ip.proto == IPPROTO_ICMP {
        // Only a quoted echo request belongs to a flow (a ping out, masqueraded): its reply
        // is keyed by the identifier as destination "port".
        if ports[0].to_ne_bytes()[0] != ICMP_ECHO {
            return None;
        }
        let id: u16 = ctx.load(off + ihl + ECHO_ID).ok()?;
        (q.sport, q.dport, q.sport_off, q.dport_off) = (id, id, ECHO_ID, ECHO_ID);
        (q.key.sport, q.key.dport) = (0, id);
    }
    Some(q)
}

/// Rewrites one end of the quoted packet (the address at `addr_off` inside its IPv4 header,
/// the port at `port_off` inside its L4 header) and fixes the quoted IPv4 checksum and the
/// ICMP checksum, which covers every quoted byte changed. The quoted L4 checksum is left
/// alone (it may be cut off, and no stack checks it).
#[inline(always)]
fn rewrite_quoted(
    ctx: &mut TcContext,
    p: &Pkt,
    q: &Quoted,
    (addr_off, old_addr): (usize, u32),
    (port_off, old_port): (usize, u16),
    e: &CtEntry,
) -> Result<(), DropReason> {
    let csum = p.l4 + ICMP_CSUM;
    l3(ctx, q.off + Q_CSUM, old_addr as u64, e.addr as u64, 4)?;
    let new_qcsum: u16 = ctx.load(q.off + Q_CSUM).map_err(|_| DropReason::Csum)?;
    ctx.store(q.off + addr_off, &e.addr, 0).map_err(|_| DropReason::Write)?;
    ctx.store(q.l4 + port_off, &e.port, 0).map_err(|_| DropReason::Write)?;
    l3(ctx, csum, old_addr as u64, e.addr as u64, 4)?;
    l3(ctx, csum, q.csum as u64, new_qcsum as u64, 2)?;
    l3(ctx, csum, old_port as u64, e.port as u64, 2)
}

#[inline(always)]
fn l3(ctx: &mut TcContext, off: usize, old: u64, new: u64, size: u64) -> Result<(), DropReason> {
    ctx.l3_csum_replace(off, old, new, size).map_err(|_| DropReason::Csum)
}

/// Translates an ICMP error a container sends about a published flow, or about a reply of
/// its masqueraded connection, back: the outer source (when it is the container) and the
/// quoted destination become the published (or masquerade) address again, so that the
/// remote's stack matches the error to its socket.
#[inline(always)]
pub fn icmp_error(ctx: &mut TcContext, p: &Pkt, q: &Quoted, e: &CtEntry) -> Result<(), DropReason> {
    let published = e.kind == CT_REVNAT && e.flags & CT_F_SNAT == 0;
    if !published && e.kind != CT_SNAT {
        return Ok(());
    }
    rewrite_quoted(ctx, p, q, (Q_DADDR, q.daddr), (q.dport_off, q.dport), e)?;
    if p.saddr == q.daddr {
        l3(ctx, IP_CSUM, p.saddr as u64, e.addr as u64, 4)?;
        ctx.store(IP_SADDR, &e.addr, 0).map_err(|_| DropReason::Write)?;
    }
    count(Counter::ReverseNat);
    Ok(())
}

/// Translates an ICMP error about a masqueraded flow (from the remote end or a router on the
/// way) for the container: the outer destination and the quoted source become the
/// container's address and port again (`e`, the flow's reply entry).
#[inline(always)]
pub fn masq_error(ctx: &mut TcContext, p: &Pkt, q: &Quoted, e: &CtEntry) -> Result<(), DropReason> {
    if e.kind != CT_REVSNAT || p.daddr != q.saddr {
        return Ok(());
    }
    rewrite_quoted(ctx, p, q, (Q_SADDR, q.saddr), (q.sport_off, q.sport), e)?;
    l3(ctx, IP_CSUM, p.daddr as u64, e.addr as u64, 4)?;
    ctx.store(IP_DADDR, &e.addr, 0).map_err(|_| DropReason::Write)?;
    count(Counter::ReverseNat);
    Ok(())
}
