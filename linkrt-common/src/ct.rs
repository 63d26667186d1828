//! The datapath's own connection tracking (`CT`, an LRU hash) and fragment tracking (`FRAG`).
//!
//! Each tracked flow has two entries, one per direction, each keyed by the packet exactly as
//! the program that looks it up sees it, so an established packet costs one lookup. Both are
//! written when the first packet of the flow is accepted (a miss), never on later packets.
//! Addresses and ports in network byte order.

/// A flow as one packet carries it: `CT` key.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct CtKey {
    pub saddr: u32,
    pub daddr: u32,
    /// For ICMP echo: the identifier in `sport` (request) or `dport` (reply).
    pub sport: u16,
    pub dport: u16,
    pub proto: u8,
    pub _pad: [u8; 3],
}

impl CtKey {
    /// The key of the packets that answer this one.
    pub const fn reversed(&self) -> CtKey {
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

/// A request to a published port: destination becomes `addr:port` (and, with [`CT_F_SNAT`],
/// the source becomes `addr2`, for a container reaching its own published port).
pub const CT_DNAT: u8 = 1;
/// A reply of a published flow: source becomes `addr:port` (and, with [`CT_F_SNAT`], the
/// destination becomes `addr2`).
pub const CT_REVNAT: u8 = 2;
/// An allowed flow without translation (a link, a reply, a container's own connection out).
pub const CT_ALLOW: u8 = 3;

/// A container's connection out of an uplink (masquerade): the source becomes `addr:port`,
/// the uplink's address and a port of the masquerade range. `addr2` holds the tick
/// ([`masq_tick`]) the flow was last seen in.
pub const CT_SNAT: u8 = 4;
/// A reply of a masqueraded flow: the destination becomes `addr:port` (the container), and
/// the packet goes into its veth (`ifindex`). `addr2` as for [`CT_SNAT`]; this entry (keyed by
/// the host's port) is the one that holds the port.
pub const CT_REVSNAT: u8 = 5;

/// The entry also rewrites the other address (`addr2`).
pub const CT_F_SNAT: u8 = 1;
/// A masqueraded TCP flow has seen a FIN: its port is free [`MASQ_CLOSED_S`] after its last packet.
pub const CT_F_CLOSED: u8 = 2;
/// A masqueraded flow's remote has answered: until then its port is held [`MASQ_UNANSWERED_S`]
/// only (a SYN to a server that is down, a RST, a probe), so that nothing but real
/// connections holds the range for hours.
pub const CT_F_ANSWERED: u8 = 4;

/// The datapath's clock for masquerade entries: `bpf_ktime_get_ns() >> 30`, about 1.07 s.
pub const MASQ_TICK_SHIFT: u32 = 30;
/// A TCP flow's port is held this long after its last reply (RFC 5382: at least 2 h 4 min).
pub const MASQ_TCP_IDLE_S: u64 = 7_440;
/// A TCP flow's port after a FIN (as the peer's TIME_WAIT).
pub const MASQ_CLOSED_S: u64 = 60;
/// A TCP or SCTP flow's port while its remote never answered (cilium's SYN timeout).
pub const MASQ_UNANSWERED_S: u64 = 60;
/// A UDP or ICMP echo flow's port after its last reply (Linux conntrack's UDP timeout).
pub const MASQ_DGRAM_S: u64 = 30;

/// Seconds as masquerade ticks (rounded up).
pub const fn masq_ticks(secs: u64) -> u32 {
    ((secs * 1_000_000_000).div_ceil(1 << MASQ_TICK_SHIFT)) as u32
}

/// What to do with a packet of a tracked flow: `CT` value.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CtEntry {
    /// `CT_DNAT`, `CT_REVNAT`, `CT_ALLOW`, `CT_SNAT` or `CT_REVSNAT`.
    pub kind: u8,
    /// `CT_F_*`.
    pub flags: u8,
    pub port: u16,
    pub addr: u32,
    pub addr2: u32,
    /// Where the packet goes: the host-side veth of the destination container (delivered with
    /// `bpf_redirect_peer`), or 0 for the host's stack / the uplink.
    pub ifindex: u32,
}

/// An IPv4 datagram being fragmented: `FRAG` key. Addresses as the first fragment arrived.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct FragKey {
    pub saddr: u32,
    pub daddr: u32,
    pub id: u16,
    pub proto: u8,
    pub _pad: u8,
}

const _: () = assert!(core::mem::size_of::<CtKey>() == 16);
const _: () = assert!(core::mem::size_of::<CtEntry>() == 16);
const _: () = assert!(core::mem::size_of::<FragKey>() == 12);

/// Default size of `CT` (LRU, preallocated: about 96 bytes an entry, 12 MiB): 65,536 tracked
/// flows at once (two entries each); beyond that the least recently used flow is forgotten.
/// `LINKRT_CT_ENTRIES` sets another size when the map is first created.
pub const CT_MAX: u32 = 131_072;
/// Fragmented datagrams in flight (the first fragment's verdict, `FRAG` value: a [`CtEntry`]).
pub const FRAG_MAX: u32 = 8_192;
