//! linkrt: Docker's legacy links and port publishing, with an eBPF datapath.
//!
//! The library returns data and never prints; the `linkrt` binary formats it.
pub mod datapath;
/// The old name of [`datapath`], kept for the callers of the lifecycle.
pub use datapath as bpf;
pub mod config;
pub mod error;
pub mod exec;
pub mod features;
pub mod filter;
pub mod format;
pub mod image;
pub mod info;
pub mod lifecycle;
pub mod links;
pub mod names;
pub mod network;
pub mod oci;
pub mod ports;
pub mod process;
pub mod state;

pub use config::Config;
pub use error::{Error, Result};
