//! Port publishing: the mapping table and the datapath's own connection tracking.
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

/// A reply flow as the container sends it (container → client): `CT` key.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct CtKey {
    pub saddr: u32,
    pub daddr: u32,
    pub sport: u16,
    pub dport: u16,
    pub proto: u8,
    pub _pad: [u8; 3],
}

/// The address the client originally talked to (restored as the reply's source): `CT` value.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CtVal {
    pub orig_ip: u32,
    pub orig_port: u16,
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

/// `CONFIG` slots.
pub const CONFIG_NETNS_COOKIE: u32 = 0;
pub const CONFIG_LEN: u32 = 8;
pub const SOCK_REV_MAX: u32 = 65_536;

/// A local address of the host (`LOCAL_ADDRS` key; value unused).
pub type LocalAddr = u32;

const _: () = assert!(core::mem::size_of::<PortKey>() == 8);
const _: () = assert!(core::mem::size_of::<Backend>() == 8);
const _: () = assert!(core::mem::size_of::<CtKey>() == 16);
const _: () = assert!(core::mem::size_of::<CtVal>() == 8);
const _: () = assert!(core::mem::size_of::<SockRev>() == 12);

pub const PORTMAP_MAX: u32 = 131_072;
pub const CT_MAX: u32 = 262_144;
pub const LOCAL_ADDRS_MAX: u32 = 256;

#[cfg(feature = "user")]
mod user {
    // SAFETY: plain #[repr(C)] data with explicit padding and no invalid bit patterns.
    unsafe impl aya::Pod for super::PortKey {}
    unsafe impl aya::Pod for super::Backend {}
    unsafe impl aya::Pod for super::CtKey {}
    unsafe impl aya::Pod for super::CtVal {}
    unsafe impl aya::Pod for super::SockRev {}
}
