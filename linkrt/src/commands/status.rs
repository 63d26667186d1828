use linkrt::{Config, bpf, state::Store};
use linkrt_common::maps;

use super::{CmdResult, Failure};

/// `linkrt status`: reads only (it never heals, so a degraded datapath shows as such).
pub fn status(cfg: &Config) -> CmdResult {
    let all = Store::new(cfg).all().map_err(Failure::cli)?;
    let want = bpf::Wanted::from_containers(cfg, &all).map_err(Failure::cli)?;
    println!("bpffs:      {}", cfg.bpffs.display());
    println!("datapath:   {}", bpf::check(cfg, &want));
    println!("attach:     {}", attach_line(cfg));
    let ifs = bpf::attached_interfaces(cfg);
    println!(
        "attached:   {} interface(s){}{}",
        ifs.len(),
        if ifs.is_empty() { "" } else { ": " },
        ifs.join(" ")
    );
    let settings = linkrt::lifecycle::policy::Settings::load(cfg).map_err(Failure::cli)?;
    println!(
        "icc:        {}",
        if settings.icc {
            "on (all containers talk)"
        } else {
            "off (links only)"
        }
    );
    let mode = bpf::saved_gateway_mode(cfg);
    match settings.masquerade(mode) {
        Some((first, last)) => {
            println!("masquerade: on (connections out leave with the uplink's address, ports {first}-{last})")
        }
        None if !mode.masquerades() => {
            println!("masquerade: off (the routed gateway mode: connections out keep the container's address)")
        }
        None => println!("masquerade: off (connections out keep the container's address)"),
    }
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
    println!(
        "gateway:    {}",
        match mode {
            bpf::GatewayMode::Nat => "nat (published ports only; routed access dropped)",
            bpf::GatewayMode::NatUnprotected => "nat-unprotected (other machines may route to containers)",
            bpf::GatewayMode::Routed => "routed (other machines may route to containers; no masquerade)",
        }
    );
    println!("maps:");
    for name in [
        maps::PORTMAP,
        maps::CT,
        maps::FRAG,
        maps::POLICY,
        maps::ENDPOINTS,
        maps::LOCAL_ADDRS,
        maps::MASQ_ADDRS,
    ] {
        match bpf::map_len(cfg, name) {
            Ok(n) => println!("  {name:<22} {n} entries"),
            Err(_) => println!("  {name:<22} (not created yet)"),
        }
    }
    match bpf::stats(cfg) {
        Ok(stats) => {
            let (drops, metrics): (Vec<_>, Vec<_>) = stats.into_iter().partition(|(n, _)| n.starts_with("drop_"));
            println!("counters:");
            for (name, v) in metrics {
                println!("  {name:<16} {v}");
            }
            println!("drops:");
            for (name, v) in drops {
                println!("  {name:<16} {v}");
            }
        }
        // Nothing started since boot: the datapath is loaded by the first `run`/`start`.
        Err(_) => println!("counters:   (datapath not loaded yet)"),
    }
    Ok(0)
}

/// The TC attach mode in use, why, and interfaces still attached in the other mode.
fn attach_line(cfg: &Config) -> String {
    use bpf::{AttachMode, features};
    let f = match features::current(cfg) {
        Ok(f) => f,
        Err(e) => return format!("unknown ({e})"),
    };
    let forced = std::env::var(features::ATTACH_ENV).ok().filter(|s| !s.is_empty());
    let mode = match f.choose_attach(forced.as_deref()) {
        Ok(m) => m,
        Err(e) => return format!("none ({e})"),
    };
    let why = match (mode, &forced) {
        (_, Some(v)) => format!("{}={v}", features::ATTACH_ENV),
        (AttachMode::Tcx, None) => format!("kernel {} has TCX", f.kernel),
        (AttachMode::Netlink, None) => format!("kernel {} has no TCX", f.kernel),
        (AttachMode::None, None) => format!(
            "kernel {}: {}",
            f.kernel,
            f.require().err().map(|e| e.to_string()).unwrap_or_default()
        ),
    };
    let how = match mode {
        AttachMode::Netlink => format!(
            ", cls_bpf on clsact, priority {} handle {:#x}",
            bpf::netlink::PRIORITY,
            bpf::netlink::HANDLE
        ),
        _ => String::new(),
    };
    let other = match mode {
        AttachMode::Netlink => bpf::tcx_interfaces(cfg),
        _ => bpf::netlink::recorded_interfaces(cfg),
    };
    let rest = if other.is_empty() {
        String::new()
    } else {
        format!("; still attached the other way: {}", other.join(" "))
    };
    format!("{mode} ({why}{how}){rest}")
}
