//! Header parsing, with the layouts of `network-types` (offsets by `offset_of!`, no magic
//! numbers). Everything the policy and the NAT need comes out as one [`Pkt`].
use core::mem::offset_of;

use aya_ebpf::programs::TcContext;
use linkrt_common::{DropReason, ct::CtKey};
use network_types::{eth::EthHdr, icmp::Icmpv4Hdr, ip::Ipv4Hdr, tcp::TcpHdr, udp::UdpHdr};

pub use crate::l2::{arp_sender, eth, is_vlan, vlan_present};

pub const ETH_HLEN: usize = EthHdr::LEN;
pub const ETH_P_IP: u16 = 0x0800;
pub const ETH_P_ARP: u16 = 0x0806;
pub const ETH_P_IPV6: u16 = 0x86dd;
pub const IPPROTO_ICMP: u8 = 1;
pub const IPPROTO_TCP: u8 = 6;
pub const IPPROTO_UDP: u8 = 17;
pub const IPPROTO_SCTP: u8 = 132;
pub const ICMP_ECHO_REPLY: u8 = 0;
pub const ICMP_ECHO: u8 = 8;
pub const TCP_FIN: u8 = 0x01;
pub const TCP_RST: u8 = 0x04;
pub const TCP_SYN: u8 = 0x02;
pub const TCP_ACK: u8 = 0x10;

/// Offsets in the frame of the fields the datapath rewrites.
pub const ETH_ADDRS: usize = offset_of!(EthHdr, dst_addr);
pub const IP_CSUM: usize = ETH_HLEN + offset_of!(Ipv4Hdr, check);
pub const IP_SADDR: usize = ETH_HLEN + offset_of!(Ipv4Hdr, src_addr);
pub const IP_DADDR: usize = ETH_HLEN + offset_of!(Ipv4Hdr, dst_addr);
/// In the L4 header: ports (TCP, UDP and SCTP alike), TCP flags, the checksums.
pub const L4_SPORT: usize = offset_of!(UdpHdr, src);
pub const L4_DPORT: usize = offset_of!(UdpHdr, dst);
pub const TCP_FLAGS: usize = offset_of!(TcpHdr, _bitfield_1) + 1;
pub const TCP_CSUM: usize = offset_of!(TcpHdr, check);
pub const UDP_CSUM: usize = offset_of!(UdpHdr, check);
pub const ICMP_CSUM: usize = offset_of!(Icmpv4Hdr, check);
/// The identifier of an ICMP echo request or reply.
pub const ICMP_ID: usize = offset_of!(Icmpv4Hdr, data);

const _: () = assert!(ETH_HLEN == 14 && Ipv4Hdr::LEN == 20 && TCP_FLAGS == 13 && UDP_CSUM == 6);

/// What the entry points know of a packet, for drop events (no implicit padding: every byte
/// is defined).
#[repr(C)]
#[derive(Clone, Copy, Default)]
pub struct Meta {
    pub ethertype: u16,
    pub proto: u8,
    pub _pad: u8,
    pub saddr: u32,
    pub daddr: u32,
    pub sport: u16,
    pub dport: u16,
}

#[derive(Clone, Copy, PartialEq, Eq, Default)]
pub enum Frag {
    #[default]
    /// Not fragmented.
    No,
    /// The first fragment (offset 0, more fragments follow): has the L4 header.
    First,
    /// A later fragment: no L4 header.
    Later { last: bool },
}

/// The parsed headers of an IPv4 packet. Addresses and ports in network order; ports are 0
/// for protocols without them, and carry the identifier for ICMP echo (`sport` in requests,
/// `dport` in replies, so that a reply's key is its request's key reversed).
///
/// Parsed into a zeroed value passed by reference, never returned inside an `Option` or a
/// `Result`: an enum leaves its payload undefined on the other variant, and the verifier
/// rejects the copies LLVM makes of such undefined registers.
#[derive(Default)]
pub struct Pkt {
    pub l4: usize,
    pub proto: u8,
    pub saddr: u32,
    pub daddr: u32,
    pub sport: u16,
    pub dport: u16,
    /// ICMP type, 255 for other protocols.
    pub icmp_type: u8,
    pub tcp_flags: u8,
    pub frag: Frag,
    pub id: u16,
}

impl Pkt {
    #[inline(always)]
    pub fn key(&self) -> CtKey {
        CtKey {
            saddr: self.saddr,
            daddr: self.daddr,
            sport: self.sport,
            dport: self.dport,
            proto: self.proto,
            _pad: [0; 3],
        }
    }

    #[inline(always)]
    pub fn has_ports(&self) -> bool {
        matches!(self.proto, IPPROTO_TCP | IPPROTO_UDP | IPPROTO_SCTP)
    }

    /// Flows the datapath tracks: with ports, or ICMP echo.
    #[inline(always)]
    pub fn trackable(&self) -> bool {
        self.has_ports() || matches!(self.icmp_type, ICMP_ECHO | ICMP_ECHO_REPLY)
    }

    #[inline(always)]
    pub fn is_icmp_error(&self) -> bool {
        matches!(self.icmp_type, 3 | 11 | 12)
    }

    #[inline(always)]
    pub fn fin(&self) -> bool {
        self.proto == IPPROTO_TCP && self.tcp_flags & TCP_FIN != 0
    }

    #[inline(always)]
    pub fn rst(&self) -> bool {
        self.proto == IPPROTO_TCP && self.tcp_flags & TCP_RST != 0
    }

    /// A TCP SYN without ACK: a new connection, whatever the table holds for its tuple (as
    /// for Linux conntrack). It is never looked up as established, so an entry left on a
    /// reused tuple (a flow closed with FIN, half of a pair overwritten by another flow) is
    /// replaced and the policy decides again, instead of the stale entry deciding for it.
    #[inline(always)]
    pub fn syn(&self) -> bool {
        self.proto == IPPROTO_TCP && self.tcp_flags & (TCP_SYN | TCP_ACK) == TCP_SYN
    }
}

/// The L4 header bytes a first fragment must hold (RFC 1858: ports and TCP flags at least).
#[inline(always)]
fn l4_min(proto: u8) -> usize {
    match proto {
        IPPROTO_TCP => TcpHdr::LEN,
        IPPROTO_UDP => UdpHdr::LEN,
        IPPROTO_SCTP => 12,
        IPPROTO_ICMP => Icmpv4Hdr::LEN,
        _ => 0,
    }
}

/// Parses the IPv4 header at `ETH_HLEN` and the L4 header after it into `p`.
#[inline(always)]
pub fn ipv4(ctx: &TcContext, m: &mut Meta, p: &mut Pkt) -> Result<(), DropReason> {
    let len = ctx.len() as usize;
    let ip: Ipv4Hdr = ctx.load(ETH_HLEN).map_err(|_| DropReason::Malformed)?;
    let saddr = u32::from_ne_bytes(ip.src_addr);
    let daddr = u32::from_ne_bytes(ip.dst_addr);
    m.proto = ip.proto;
    m.saddr = saddr;
    m.daddr = daddr;
    let ihl = ip.ihl() as usize;
    if ip.version() != 4 || ihl < Ipv4Hdr::LEN || len < ETH_HLEN + ihl {
        return Err(DropReason::Malformed);
    }
    // GSO packets may carry 0 ("BIG TCP"): the skb length is the truth then.
    let mut tot = u16::from_be_bytes(ip.tot_len) as usize;
    if tot == 0 || ETH_HLEN + tot > len {
        tot = len - ETH_HLEN;
    }
    if tot < ihl {
        return Err(DropReason::Malformed);
    }
    let frags = u16::from_be_bytes(ip.frags);
    let more = frags & 0x2000 != 0;
    p.l4 = ETH_HLEN + ihl;
    p.proto = ip.proto;
    p.saddr = saddr;
    p.daddr = daddr;
    p.icmp_type = 255;
    p.id = u16::from_ne_bytes(ip.id);
    if frags & 0x1fff != 0 {
        p.frag = Frag::Later { last: !more };
        return Ok(());
    }
    if more {
        p.frag = Frag::First;
    }
    if tot - ihl < l4_min(p.proto) {
        return Err(if more {
            DropReason::FragTiny
        } else {
            DropReason::Malformed
        });
    }
    if p.has_ports() {
        let ports: [u16; 2] = ctx.load(p.l4 + L4_SPORT).map_err(|_| DropReason::Malformed)?;
        p.sport = ports[0];
        p.dport = ports[1];
        if p.proto == IPPROTO_TCP {
            p.tcp_flags = ctx.load(p.l4 + TCP_FLAGS).map_err(|_| DropReason::Malformed)?;
        }
    } else if p.proto == IPPROTO_ICMP {
        let h: Icmpv4Hdr = ctx.load(p.l4).map_err(|_| DropReason::Malformed)?;
        p.icmp_type = h.type_;
        let id = u16::from_ne_bytes([h.data[0], h.data[1]]);
        match h.type_ {
            ICMP_ECHO => p.sport = id,
            ICMP_ECHO_REPLY => p.dport = id,
            _ => {}
        }
    }
    m.sport = p.sport;
    m.dport = p.dport;
    Ok(())
}
