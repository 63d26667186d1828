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
    /// `routed` or `nat-unprotected`: other machines that route to the bridge's subnet
    /// reach every container port directly (Docker before 28, and its opt-out since).
    Routed,
}

impl GatewayMode {
    pub fn routed(self) -> bool {
        self == GatewayMode::Routed
    }

    pub fn name(self) -> &'static str {
        match self {
            GatewayMode::Nat => "nat",
            GatewayMode::Routed => "routed",
        }
    }

    fn parse(s: &str) -> Result<Self> {
        match s {
            "nat" => Ok(GatewayMode::Nat),
            "routed" | "nat-unprotected" => Ok(GatewayMode::Routed),
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
