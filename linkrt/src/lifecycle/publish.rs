//! Host ports for a start: allocated against every container that holds ports (running, or
//! dead: a lost record keeps its ports), checked against host processes with Docker's words.
use std::{collections::BTreeMap, net::IpAddr};

use crate::{
    config::Config,
    error::{Error, Result},
    ports::{self, Mapping, Proto},
    state::{self, Container, Status},
};

/// Whether a host process holds `ip:port` (from one dump of the host's sockets, not a test
/// bind per port); the OS's words when it does. A host address that is not the host's is
/// refused as a bind would refuse it. SCTP, which this kernel may not even have sockets for,
/// is checked against the host's addresses only.
fn host_port_free(
    held: &crate::datapath::HostSockets,
    ip: IpAddr,
    port: u16,
    proto: Proto,
    local: &[std::net::Ipv4Addr],
) -> std::result::Result<(), String> {
    let IpAddr::V4(a) = ip else {
        // Refused later, by name (the datapath has no IPv6 yet).
        return Ok(());
    };
    if !(a.is_unspecified() || a.is_loopback() || local.contains(&a)) {
        return Err("cannot assign requested address".into());
    }
    match proto {
        Proto::Tcp | Proto::Udp => held.free(a, port, proto.number()),
        Proto::Sctp => Ok(()),
    }
}

fn rr_path(cfg: &Config) -> std::path::PathBuf {
    cfg.root.join("ports-rr.json")
}

/// A new endpoint's ID (Docker makes one per start of a container on a network).
fn endpoint_id() -> String {
    use rand::RngCore;
    let mut b = [0u8; 32];
    rand::thread_rng().fill_bytes(&mut b);
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// Allocates the host ports of `c`.
pub fn allocate(cfg: &Config, c: &Container, all: &[Container], local: &[std::net::Ipv4Addr]) -> Result<Vec<Mapping>> {
    let mut bindings = c.spec.port_bindings.clone();
    if c.spec.publish_all {
        for e in &c.spec.exposed {
            if !bindings.iter().any(|b| b.container == *e) {
                bindings.push(ports::PortBinding {
                    container: *e,
                    host_ip: String::new(),
                    host_start: 0,
                    host_end: 0,
                });
            }
        }
    }
    if bindings.is_empty() {
        return Ok(Vec::new());
    }
    let in_use: Vec<Mapping> = all
        .iter()
        .filter(|o| o.id != c.id && matches!(o.state.status, Status::Running | Status::Dead))
        .flat_map(|o| o.state.ports.iter().copied())
        .collect();
    // Where the round-robin of ephemeral ports stands (a hint: losing it only restarts it).
    let mut last: BTreeMap<String, u16> = std::fs::read(rr_path(cfg))
        .ok()
        .and_then(|d| serde_json::from_slice(&d).ok())
        .unwrap_or_default();
    let held = crate::datapath::HostSockets::read()?;
    // Explicit host ports first, so that an ephemeral choice (-P, `-p 80`) never takes a port
    // that another binding of the same container names (`-P -p 32772:8080`).
    bindings.sort_by_key(|b| !(b.host_start != 0 && b.host_start == b.host_end));
    let maps = ports::allocate(
        &bindings,
        &in_use,
        &mut last,
        ports::ephemeral_range(),
        &|ip, p, proto| host_port_free(&held, ip, p, proto, local),
    )
    .map_err(|e| {
        // Docker 28's words: the bridge driver failed to program the endpoint of the start.
        Error::user(format!(
            "failed to set up container networking: driver failed programming external connectivity on endpoint {} ({}): {e}",
            c.name,
            endpoint_id()
        ))
    })?;
    let mut maps = maps;
    maps.sort();
    for m in &maps {
        if m.container.proto == Proto::Sctp && m.host_port != m.container.port {
            return Err(Error::user(format!(
                "SCTP port translation is not supported ({}:{} -> {}): the SCTP checksum (CRC32c) covers the ports; publish SCTP with equal host and container ports, e.g. -p {}:{}/sctp",
                m.host_ip, m.host_port, m.container, m.container.port, m.container.port
            )));
        }
        if m.host_ip.is_ipv6() {
            return Err(Error::user(format!(
                "IPv6 host addresses are not supported by the linkrt datapath yet: {}",
                m.host_addr()
            )));
        }
    }
    state::write_atomic(&rr_path(cfg), &serde_json::to_vec(&last).expect("serializable"))?;
    Ok(maps)
}
