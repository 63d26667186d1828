//! Layer 2: the Ethernet header, VLAN tags and ARP (layouts from `network-types`).
use aya_ebpf::programs::TcContext;
use linkrt_common::DropReason;
use network_types::{arp::ArpHdr, eth::EthHdr};

use crate::parse::{ETH_HLEN, Meta};

/// The Ethernet header.
pub struct Eth {
    pub dst: [u8; 6],
    pub src: [u8; 6],
    /// Host order.
    pub proto: u16,
}

#[inline(always)]
pub fn eth(ctx: &TcContext, m: &mut Meta) -> Result<Eth, DropReason> {
    let h: EthHdr = ctx.load(0).map_err(|_| DropReason::Malformed)?;
    let proto = u16::from_be(h.ether_type);
    m.ethertype = proto;
    Ok(Eth {
        dst: h.dst_addr,
        src: h.src_addr,
        proto,
    })
}

/// 802.1Q, 802.1ad and the old QinQ ethertypes.
#[inline(always)]
pub fn is_vlan(proto: u16) -> bool {
    matches!(proto, 0x8100 | 0x88a8 | 0x9100 | 0x9200 | 0x9300)
}

/// Whether the skb carries a VLAN tag in its metadata (the kernel strips the outer tag before
/// TC); its protocol goes to `m` for the drop event.
#[inline(always)]
pub fn vlan_present(ctx: &TcContext, m: &mut Meta) -> bool {
    // SAFETY: reading fields of the program's own context.
    let (present, proto) = unsafe { ((*ctx.skb.skb).vlan_present, (*ctx.skb.skb).vlan_proto) };
    m.ethertype = u16::from_be(proto as u16);
    present != 0
}

/// An ARP packet's sender (hardware and IPv4 address); only Ethernet/IPv4 ARP is understood.
#[inline(always)]
pub fn arp_sender(ctx: &TcContext) -> Result<([u8; 6], u32), DropReason> {
    let a: ArpHdr = ctx.load(ETH_HLEN).map_err(|_| DropReason::Malformed)?;
    if a.htype != [0, 1] || a.ptype != [0x08, 0] || a.hlen != 6 || a.plen != 4 {
        return Err(DropReason::Malformed);
    }
    Ok((a.sha, u32::from_ne_bytes(a.spa)))
}
