//! Datapath counters: one per-CPU `u64` slot per [`Counter`].

/// Index into the `STATS` per-CPU array.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Counter {
    /// Packets seen leaving a container (host-side veth ingress).
    FromContainer = 0,
    /// Packets seen entering a container (host-side veth egress).
    ToContainer = 1,
    /// IPv4 packets.
    Ipv4 = 2,
    /// Non-IPv4 frames (ARP, IPv6, ...).
    NonIpv4 = 3,
    /// Frames too short for the headers they announce, or with an invalid IPv4 header length.
    Malformed = 4,
    /// Packets to a published port rewritten to their container (DNAT).
    Dnat = 5,
    /// Replies rewritten back to the published address.
    ReverseNat = 6,
    /// IPv4 fragments other than the first (no L4 header; passed unchanged).
    Fragment = 7,
    /// Packets seen on host uplinks.
    Uplink = 8,
    /// Host sockets sent to a container at connect()/sendmsg() time.
    SockLb = 9,
    /// Dropped: a container-to-container flow no link allows.
    DropPolicy = 10,
    /// Dropped: a source IP or MAC (IPv4 or ARP) that is not the sending container's.
    DropSpoof = 11,
    /// Dropped: IPv6 from a container while inter-container traffic is restricted.
    DropIpv6 = 12,
    /// Allowed container-to-container packets (links, replies).
    PolicyAllow = 13,
}

/// Number of slots in the `STATS` map.
pub const STATS_LEN: u32 = 64;

impl Counter {
    pub const ALL: [Counter; 14] = [
        Counter::FromContainer,
        Counter::ToContainer,
        Counter::Ipv4,
        Counter::NonIpv4,
        Counter::Malformed,
        Counter::Dnat,
        Counter::ReverseNat,
        Counter::Fragment,
        Counter::Uplink,
        Counter::SockLb,
        Counter::DropPolicy,
        Counter::DropSpoof,
        Counter::DropIpv6,
        Counter::PolicyAllow,
    ];

    pub const fn name(self) -> &'static str {
        match self {
            Counter::FromContainer => "from_container",
            Counter::ToContainer => "to_container",
            Counter::Ipv4 => "ipv4",
            Counter::NonIpv4 => "non_ipv4",
            Counter::Malformed => "malformed",
            Counter::Dnat => "dnat",
            Counter::ReverseNat => "reverse_nat",
            Counter::Fragment => "fragment",
            Counter::Uplink => "uplink",
            Counter::SockLb => "sock_lb",
            Counter::DropPolicy => "drop_policy",
            Counter::DropSpoof => "drop_spoof",
            Counter::DropIpv6 => "drop_ipv6",
            Counter::PolicyAllow => "policy_allow",
        }
    }
}

/// One datapath event, written to the `EVENTS` ring buffer (`linkrt monitor`).
/// Addresses and ports in network byte order.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Event {
    /// [`EVENT_DROP`] or [`EVENT_NAT`].
    pub kind: u8,
    /// For drops, the [`Counter`] of the reason.
    pub reason: u8,
    pub proto: u8,
    pub _pad: u8,
    pub saddr: u32,
    pub daddr: u32,
    pub sport: u16,
    pub dport: u16,
    /// For NAT: the container the flow was sent to.
    pub nat_addr: u32,
    pub nat_port: u16,
    pub _pad2: u16,
}

pub const EVENT_DROP: u8 = 1;
pub const EVENT_NAT: u8 = 2;
pub const EVENTS_BYTES: u32 = 256 * 1024;

const _: () = assert!(core::mem::size_of::<Event>() == 24);

impl Counter {
    /// The counter with this index, for decoding events.
    pub fn from_index(i: u32) -> Option<Counter> {
        Counter::ALL.iter().copied().find(|c| *c as u32 == i)
    }
}

#[cfg(feature = "user")]
// SAFETY: plain #[repr(C)] data with explicit padding.
unsafe impl aya::Pod for Event {}
