//! Datapath metrics and drop reasons: one per-CPU `u64` slot each in `STATS`.
//!
//! Metrics use slots `0..DROP_BASE`, drop reasons `DROP_BASE..STATS_LEN` (as cilium's
//! `metrics.h` keeps forwarded and dropped packets apart, and `drop.h` names every reason).

/// A metric: index into the `STATS` per-CPU array.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Counter {
    /// Packets seen leaving a container (host-side veth ingress).
    FromContainer = 0,
    /// Packets seen entering a container through the host's stack or the bridge (veth egress).
    ToContainer = 1,
    /// IPv4 packets.
    Ipv4 = 2,
    /// Non-IPv4 frames passed (ARP; IPv6 and others only with ICC on or on uplinks).
    NonIpv4 = 3,
    /// Packets to a published port rewritten to their container (DNAT).
    Dnat = 4,
    /// Replies rewritten back to the published address.
    ReverseNat = 5,
    /// Non-first IPv4 fragments of a tracked datagram (translated like their first fragment).
    Fragment = 6,
    /// Packets seen on host uplinks.
    Uplink = 7,
    /// Host sockets sent to a container at connect()/sendmsg() time.
    SockLb = 8,
    /// Allowed container-to-container packets (links, replies, ICC on).
    PolicyAllow = 9,
    /// Packets delivered straight into a container (`bpf_redirect_peer`).
    RedirectPeer = 10,
    /// Replies sent straight to an uplink after a FIB lookup (`bpf_redirect`/`_neigh`).
    RedirectFib = 11,
    /// Tracked flows created (both directions at once, on the first packet).
    CtCreate = 12,
    /// Tracked flows closed by a TCP RST.
    CtClose = 13,
    /// Host binds of a published port refused (EADDRINUSE), by the bind4/bind6 hooks.
    BindRefused = 14,
    /// Containers' connections out of an uplink given the uplink's address (masquerade).
    Masq = 15,
}

/// Why a packet was dropped: index `DROP_BASE + code` into `STATS`, and `Event.reason`.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DropReason {
    /// Headers too short for what they announce, a bad IPv4 version/IHL, a bad ARP header.
    Malformed = 0,
    /// An 802.1Q/802.1ad tag (in the skb's metadata or in the frame), QinQ included.
    Vlan = 1,
    /// An ethertype other than IPv4 and ARP from a container with ICC off.
    Ethertype = 2,
    /// IPv6 from a container with ICC off (containers have no IPv6).
    Ipv6 = 3,
    /// A source MAC, IPv4 or ARP sender that is not the sending container's.
    Spoof = 4,
    /// A container-to-container flow that no link allows (ICC off).
    Policy = 5,
    /// Broadcast or multicast from a container with ICC off (other than DHCP-like to the host).
    Broadcast = 6,
    /// Routed from an uplink to a container: neither a published port nor a reply.
    Direct = 7,
    /// To 127.0.0.0/8 (or from it) on a non-loopback interface.
    Loopback = 8,
    /// A first fragment too short to hold its L4 header (ports, TCP flags).
    FragTiny = 9,
    /// A non-first fragment whose first fragment was not accepted.
    FragOrphan = 10,
    /// A checksum helper failed: the packet is not passed half rewritten.
    Csum = 11,
    /// A store helper failed: the packet is not passed half rewritten.
    Write = 12,
    /// A tracking entry could not be written.
    CtCreate = 13,
    /// A container's connection out found no free port in the masquerade range.
    NatNoPort = 14,
    /// A container's packet for an uplink that masquerades, which the datapath cannot
    /// translate (a protocol without ports, an ICMP error about no known flow, a fragment
    /// whose first fragment is unknown): dropped rather than sent with the private address.
    NatProto = 15,
}

/// First `STATS` slot of the drop reasons.
pub const DROP_BASE: u32 = 32;
/// Number of slots in the `STATS` map.
pub const STATS_LEN: u32 = 64;

impl Counter {
    pub const ALL: [Counter; 16] = [
        Counter::FromContainer,
        Counter::ToContainer,
        Counter::Ipv4,
        Counter::NonIpv4,
        Counter::Dnat,
        Counter::ReverseNat,
        Counter::Fragment,
        Counter::Uplink,
        Counter::SockLb,
        Counter::PolicyAllow,
        Counter::RedirectPeer,
        Counter::RedirectFib,
        Counter::CtCreate,
        Counter::CtClose,
        Counter::BindRefused,
        Counter::Masq,
    ];

    /// The `STATS` slot.
    pub const fn slot(self) -> u32 {
        self as u32
    }

    pub const fn name(self) -> &'static str {
        match self {
            Counter::FromContainer => "from_container",
            Counter::ToContainer => "to_container",
            Counter::Ipv4 => "ipv4",
            Counter::NonIpv4 => "non_ipv4",
            Counter::Dnat => "dnat",
            Counter::ReverseNat => "reverse_nat",
            Counter::Fragment => "fragment",
            Counter::Uplink => "uplink",
            Counter::SockLb => "sock_lb",
            Counter::PolicyAllow => "policy_allow",
            Counter::RedirectPeer => "redirect_peer",
            Counter::RedirectFib => "redirect_fib",
            Counter::CtCreate => "ct_create",
            Counter::CtClose => "ct_close",
            Counter::BindRefused => "bind_refused",
            Counter::Masq => "masq",
        }
    }
}

impl DropReason {
    pub const ALL: [DropReason; 16] = [
        DropReason::Malformed,
        DropReason::Vlan,
        DropReason::Ethertype,
        DropReason::Ipv6,
        DropReason::Spoof,
        DropReason::Policy,
        DropReason::Broadcast,
        DropReason::Direct,
        DropReason::Loopback,
        DropReason::FragTiny,
        DropReason::FragOrphan,
        DropReason::Csum,
        DropReason::Write,
        DropReason::CtCreate,
        DropReason::NatNoPort,
        DropReason::NatProto,
    ];

    /// The `STATS` slot.
    pub const fn slot(self) -> u32 {
        DROP_BASE + self as u32
    }

    /// The name in `linkrt status` and `linkrt monitor` (cilium's `DROP_*`, in lower case).
    pub const fn name(self) -> &'static str {
        match self {
            DropReason::Malformed => "drop_malformed",
            DropReason::Vlan => "drop_vlan",
            DropReason::Ethertype => "drop_ethertype",
            DropReason::Ipv6 => "drop_ipv6",
            DropReason::Spoof => "drop_spoof",
            DropReason::Policy => "drop_policy",
            DropReason::Broadcast => "drop_bcast",
            DropReason::Direct => "drop_direct",
            DropReason::Loopback => "drop_loopback",
            DropReason::FragTiny => "drop_frag_tiny",
            DropReason::FragOrphan => "drop_frag_orphan",
            DropReason::Csum => "drop_csum",
            DropReason::Write => "drop_write",
            DropReason::CtCreate => "drop_ct_create",
            DropReason::NatNoPort => "drop_nat_no_port",
            DropReason::NatProto => "drop_nat_proto",
        }
    }

    /// The reason with this code (`Event.reason`).
    pub fn from_code(code: u32) -> Option<DropReason> {
        DropReason::ALL.iter().copied().find(|r| *r as u32 == code)
    }
}

const _: () = assert!((Counter::Masq as u32) < DROP_BASE);
const _: () = assert!(DROP_BASE + (DropReason::NatProto as u32) < STATS_LEN);

/// One datapath event, written to the `EVENTS` ring buffer (`linkrt monitor`).
/// Addresses and ports in network byte order.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Event {
    /// [`EVENT_DROP`] or [`EVENT_NAT`].
    pub kind: u8,
    /// For drops, the [`DropReason`] code.
    pub reason: u8,
    pub proto: u8,
    pub _pad: u8,
    pub saddr: u32,
    pub daddr: u32,
    pub sport: u16,
    pub dport: u16,
    /// For NAT: the container the flow was sent to. For drops: the ifindex it arrived on.
    pub nat_addr: u32,
    pub nat_port: u16,
    /// For drops: the ethertype (host order).
    pub ethertype: u16,
}

pub const EVENT_DROP: u8 = 1;
pub const EVENT_NAT: u8 = 2;
pub const EVENTS_BYTES: u32 = 256 * 1024;

const _: () = assert!(core::mem::size_of::<Event>() == 24);
