//! Link enforcement (Docker's `--icc=false` allow-list) and anti-spoofing.
//!
//! Addresses and ports in network byte order.

/// An allowed new flow between containers: recipient `saddr` → source `daddr`:`dport`/`proto`.
/// ICMP echo between linked peers uses `dport = 0`, `proto = 1`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct PolicyKey {
    pub saddr: u32,
    pub daddr: u32,
    pub dport: u16,
    pub proto: u8,
    pub _pad: u8,
}

/// The identity of a container veth (`ENDPOINTS`, keyed by the host-side ifindex).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Endpoint {
    pub ip: u32,
    pub mac: [u8; 6],
    pub _pad: [u8; 2],
}

const _: () = assert!(core::mem::size_of::<PolicyKey>() == 12);
const _: () = assert!(core::mem::size_of::<Endpoint>() == 12);

pub const POLICY_MAX: u32 = 65_536;
pub const ENDPOINTS_MAX: u32 = 4_096;
