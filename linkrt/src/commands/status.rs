use linkrt::{Config, bpf};
use linkrt_common::maps;

use super::{CmdResult, Failure};

pub fn status(cfg: &Config) -> CmdResult {
    println!("bpffs:      {}", cfg.bpffs.display());
    let ifs = bpf::attached_interfaces(cfg);
    println!(
        "attached:   {} interface(s){}{}",
        ifs.len(),
        if ifs.is_empty() { "" } else { ": " },
        ifs.join(" ")
    );
    println!(
        "icc:        {}",
        if linkrt::lifecycle::policy::icc_enabled(cfg).map_err(Failure::cli)? {
            "on (all containers talk)"
        } else {
            "off (links only)"
        }
    );
    let default = std::env::var("LINKRT_RUNTIME").ok();
    let mut chosen = default.is_some();
    for (name, r) in linkrt::oci::runtime::Runtime::survey(cfg) {
        let what = match r {
            Ok(linkrt::oci::runtime::Usable::Yes) if !chosen || default.as_deref() == Some(&name) => {
                chosen = true;
                "usable (default)".to_string()
            }
            Ok(linkrt::oci::runtime::Usable::Yes) => "usable".to_string(),
            Ok(linkrt::oci::runtime::Usable::No(why)) => format!("cannot run containers here: {why}"),
            Err(e) => e,
        };
        println!("runtime:    {name}: {what}");
    }
    println!("cgroups:    {}", linkrt::oci::cgroup::Layout::detect().describe());
    println!("maps:");
    for name in [
        maps::PORTMAP,
        maps::CT,
        maps::POLICY,
        maps::POLICY_CT,
        maps::ENDPOINTS,
        maps::LOCAL_ADDRS,
    ] {
        match bpf::map_len(cfg, name) {
            Ok(n) => println!("  {name:<22} {n} entries"),
            Err(_) => println!("  {name:<22} (not created yet)"),
        }
    }
    match bpf::stats(cfg) {
        Ok(stats) => {
            println!("counters:");
            for (name, v) in stats {
                println!("  {name:<16} {v}");
            }
        }
        // Nothing started since boot: the datapath is loaded by the first `run`/`start`.
        Err(_) => println!("counters:   (datapath not loaded yet)"),
    }
    Ok(0)
}
