//! Port publishing: the mapping table and the socket hooks' reverse map.
//!
//! Addresses (`u32`) and ports (`u16`) are in network byte order.

/// A published host endpoint: `PORTMAP` key. `ip == 0` means every host address (0.0.0.0).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct PortKey {
    pub ip: u32,
    pub port: u16,
    pub proto: u8,
    pub _pad: u8,
}

/// Where a published port goes: `PORTMAP` value.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Backend {
    pub ip: u32,
    pub port: u16,
    pub _pad: u16,
}

/// What a host socket was redirected from (`SOCK_REV`, keyed by socket cookie).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SockRev {
    pub orig_ip: u32,
    pub orig_port: u16,
    pub backend_port: u16,
    pub backend_ip: u32,
}

/// Default size of `SOCK_REV` (LRU, preallocated): host sockets connected to published ports
/// at once whose unconnected-UDP replies are restored (`LINKRT_SOCK_REV_ENTRIES`).
pub const SOCK_REV_MAX: u32 = 16_384;

/// A local address of the host (`LOCAL_ADDRS` key; value unused).
pub type LocalAddr = u32;

const _: () = assert!(core::mem::size_of::<PortKey>() == 8);
const _: () = assert!(core::mem::size_of::<Backend>() == 8);
const _: () = assert!(core::mem::size_of::<SockRev>() == 12);

/// Default most published host ports (not preallocated; `LINKRT_PORTMAP_ENTRIES`).
pub const PORTMAP_MAX: u32 = 131_072;

/// Slots of `BIND_IPS`: the specific host addresses (not 0.0.0.0) that published ports use,
/// so that the bind hooks can refuse a host bind of 0.0.0.0:P when any address's P is
/// published (as the socket Docker's proxy holds would). Unused slots are 0; a slot may
/// outlive the last mapping on its address (harmless: a lookup that misses).
pub const BIND_IPS_LEN: u32 = 16;
pub const LOCAL_ADDRS_MAX: u32 = 256;
