//! The datapath's own settings: the gateway mode (direct routing), and the bridge's MAC.
use std::{fs, path::PathBuf};

use crate::{
    config::Config,
    error::{Error, Result},
    network, state,
};

/// Docker's `com.docker.network.bridge.gateway_mode_ipv4`, for the default bridge.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GatewayMode {
    /// The default: containers are reached from other machines only through published ports
    /// (and replies to their own connections); routed traffic is dropped (`drop_direct`).
    Nat,
    /// Other machines that route to the bridge's subnet reach every container port directly
    /// (Docker before 28, and its opt-out since); containers' connections are masqueraded.
    NatUnprotected,
    /// As `nat-unprotected`, and containers' connections leave with their own addresses (no
    /// masquerade): the network routes to the bridge's subnet.
    Routed,
}

impl GatewayMode {
    /// Whether routed access to containers is allowed.
    pub fn routed(self) -> bool {
        self != GatewayMode::Nat
    }

    /// Whether containers' connections to other machines may be masqueraded.
    pub fn masquerades(self) -> bool {
        self != GatewayMode::Routed
    }

    pub fn name(self) -> &'static str {
        match self {
            GatewayMode::Nat => "nat",
            GatewayMode::NatUnprotected => "nat-unprotected",
            GatewayMode::Routed => "routed",
        }
    }

    fn parse(s: &str) -> Result<Self> {
        match s {
            "nat" => Ok(GatewayMode::Nat),
            "nat-unprotected" => Ok(GatewayMode::NatUnprotected),
            "routed" => Ok(GatewayMode::Routed),
            _ => Err(Error::user(format!(
                "invalid LINKRT_GATEWAY_MODE {s:?}: want nat, routed or nat-unprotected"
            ))),
        }
    }
}

fn path(cfg: &Config) -> PathBuf {
    cfg.root.join("gateway.v1.json")
}

/// The gateway mode: `LINKRT_GATEWAY_MODE` when set (and then kept in the state dir, like
/// `LINKRT_ICC`), else the kept choice, else `nat`.
pub fn gateway_mode(cfg: &Config) -> Result<GatewayMode> {
    if let Ok(v) = std::env::var("LINKRT_GATEWAY_MODE") {
        let mode = GatewayMode::parse(&v)?;
        if saved_gateway_mode(cfg) != mode {
            state::create_private_dir(&cfg.root)?;
            let doc = serde_json::json!({ "gateway_mode_ipv4": mode.name() });
            state::write_atomic(&path(cfg), doc.to_string().as_bytes())?;
        }
        return Ok(mode);
    }
    Ok(saved_gateway_mode(cfg))
}

/// The kept gateway mode, without looking at the environment (`linkrt status`).
pub fn saved_gateway_mode(cfg: &Config) -> GatewayMode {
    fs::read(path(cfg))
        .ok()
        .and_then(|d| serde_json::from_slice::<serde_json::Value>(&d).ok())
        .and_then(|v| v["gateway_mode_ipv4"].as_str().and_then(|s| GatewayMode::parse(s).ok()))
        .unwrap_or(GatewayMode::Nat)
}

/// The MAC of the bridge in the calling thread's namespace (the containers' gateway), None
/// while there is no bridge.
pub fn bridge_mac() -> Result<Option<[u8; 6]>> {
    let addrs =
        nix::ifaddrs::getifaddrs().map_err(|e| Error::io("listing interfaces for", network::BRIDGE, e.into()))?;
    for a in addrs {
        if a.interface_name == network::BRIDGE
            && let Some(mac) = a.address.as_ref().and_then(|s| s.as_link_addr()).and_then(|l| l.addr())
        {
            return Ok(Some(mac));
        }
    }
    Ok(None)
}

const PORT_RANGE: &str = "/proc/sys/net/ipv4/ip_local_port_range";
const RESERVED_PORTS: &str = "/proc/sys/net/ipv4/ip_local_reserved_ports";

/// Keeps the host's own connections off the masquerade range: when the host's ephemeral range
/// (`ip_local_port_range`, of the calling thread's namespace) overlaps it, the range is added
/// to `ip_local_reserved_ports`, as cilium reserves its NodePort range. Binds that name a
/// port still work; the datapath skips ports that a host socket holds.
pub fn reserve_masq_ports(range: (u16, u16)) -> Result<()> {
    let read = |p: &str| fs::read_to_string(p).map_err(|e| Error::io("reading", p, e));
    let local = read(PORT_RANGE)?;
    let reserved = read(RESERVED_PORTS)?;
    match reserved_ports_update(&local, &reserved, range) {
        Some(list) => fs::write(RESERVED_PORTS, list).map_err(|e| Error::io("writing", RESERVED_PORTS, e)),
        None => Ok(()),
    }
}

/// The new `ip_local_reserved_ports` list when `masq` overlaps the ephemeral range `local`
/// and is not reserved yet; `None` when nothing needs writing (or the files make no sense).
fn reserved_ports_update(local: &str, reserved: &str, masq: (u16, u16)) -> Option<String> {
    let mut it = local.split_whitespace().map(|v| v.parse::<u16>());
    let (Some(Ok(lo)), Some(Ok(hi))) = (it.next(), it.next()) else {
        return None;
    };
    if masq.1 < lo || masq.0 > hi {
        return None;
    }
    let reserved = reserved.trim();
    let covered = |p: u16| {
        reserved.split(',').filter(|s| !s.is_empty()).any(|r| {
            let (a, b) = r.split_once('-').unwrap_or((r, r));
            matches!((a.trim().parse::<u16>(), b.trim().parse::<u16>()), (Ok(a), Ok(b)) if a <= p && p <= b)
        })
    };
    if (masq.0..=masq.1).all(covered) {
        return None;
    }
    let add = format!("{}-{}", masq.0, masq.1);
    Some(if reserved.is_empty() {
        add
    } else {
        format!("{reserved},{add}")
    })
}

#[cfg(test)]
mod tests {
    use super::reserved_ports_update;

    #[test]
    fn the_masquerade_range_is_reserved_only_where_the_host_would_use_it() {
        // Linux's default ephemeral range ends below linkrt's default masquerade range.
        assert_eq!(reserved_ports_update("32768\t60999\n", "\n", (61000, 65535)), None);
        assert_eq!(
            reserved_ports_update("1024\t65535\n", "\n", (61000, 65535)).as_deref(),
            Some("61000-65535")
        );
        assert_eq!(
            reserved_ports_update("32768 60999", "8080,30000-32767\n", (40000, 40009)).as_deref(),
            Some("8080,30000-32767,40000-40009")
        );
        // Already reserved, whole or in pieces.
        assert_eq!(reserved_ports_update("1024 65535", "40000-40009", (40000, 40009)), None);
        assert_eq!(
            reserved_ports_update("1024 65535", "40000-40004,40005,40006-40009", (40000, 40009)),
            None
        );
        assert_eq!(reserved_ports_update("garbage", "", (40000, 40009)), None);
    }
}
