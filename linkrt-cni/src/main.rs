//! `linkrt-cni`: a chained CNI plugin (spec 1.1: ADD, DEL, CHECK, STATUS, GC, VERSION) that
//! publishes the `portMappings` capability with linkrt's eBPF datapath, shared with the
//! `linkrt` CLI (same object, same pinned maps under the same bpffs, same reservation).
//!
//! The protocol layer (environment, stdin, version negotiation, result and error documents)
//! is the `rscni-plugin` crate's; this binary is the operations (`ops`) and their
//! configuration (`conf`).
mod conf;
mod ops;

use rscni_plugin::{
    cni::{Cni, Plugin},
    error::Error,
    types::{Args, CNIResult},
    version::SpecVersion,
};

struct LinkrtCni;

impl Cni for LinkrtCni {
    fn add(&self, args: Args) -> Result<CNIResult, Error> {
        ops::add(&args)
    }

    fn del(&self, args: Args) -> Result<(), Error> {
        ops::del(&args)
    }

    fn check(&self, args: Args) -> Result<(), Error> {
        ops::check(&args)
    }

    fn status(&self, args: Args) -> Result<(), Error> {
        ops::status(&args)
    }

    fn gc(&self, args: Args) -> Result<(), Error> {
        ops::gc(&args)
    }
}

fn main() {
    let versions = ["0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"]
        .iter()
        .map(|v| v.parse().expect("a valid version"))
        .collect();
    let plugin = Plugin::new(SpecVersion::CURRENT, versions).msg(&format!(
        "linkrt-cni {}: publishes portMappings with linkrt's eBPF datapath",
        env!("CARGO_PKG_VERSION")
    ));
    // The error result is on stdout already (the spec's place for it); stderr is for people.
    if let Err(e) = plugin.run(&LinkrtCni) {
        eprintln!("linkrt-cni: {}: {}", e.msg(), e.details());
        std::process::exit(1);
    }
}
