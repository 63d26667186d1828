//! linkrt: Docker's legacy links and port publishing, with an eBPF datapath.
//!
//! The library returns data and never prints; the `linkrt` binary formats it.
pub mod bpf;
pub mod config;
pub mod container;
pub mod error;
pub mod exec;
pub mod features;
pub mod format;
pub mod image;
pub mod info;
pub mod links;
pub mod names;
pub mod network;
pub mod oci;
pub mod ports;
pub mod process;
pub mod state;

pub use config::Config;
pub use error::{Error, Result};
