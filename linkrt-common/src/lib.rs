//! Types and constants shared by the eBPF programs (`linkrt-ebpf`) and userspace (`linkrt`).
//!
//! Every map key/value is `#[repr(C)]`, `Copy`, with explicit padding and a compile-time size
//! assert. Addresses and ports are stored in network byte order unless a field says otherwise.
//! Map names carry a layout version: a new layout gets a new name so that a newer binary never
//! reuses a pinned map written with the old layout.
#![no_std]

#[cfg(feature = "user")]
extern crate std;

pub mod config;
pub mod ct;
pub mod maps;
pub mod nat;
pub mod policy;
pub mod stats;
#[cfg(feature = "user")]
pub mod user;

pub use stats::*;
