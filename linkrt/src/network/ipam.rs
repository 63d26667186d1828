//! The bridge's IP address leases (caller holds the state lock).
use std::net::Ipv4Addr;

use super::Subnet;
use crate::{
    config::Config,
    error::{Error, Result},
    state::Ipam,
};

/// Leases the lowest free address of the subnet to `id`.
pub fn allocate_ip(cfg: &Config, subnet: &Subnet, id: &str) -> Result<Ipv4Addr> {
    let mut ipam = Ipam::load(cfg)?;
    if let Some((ip, _)) = ipam.leases.iter().find(|(_, owner)| *owner == id) {
        return ip.parse().map_err(|_| Error::sys(format!("corrupt IPAM lease {ip}")));
    }
    let ip = subnet
        .hosts()
        .find(|ip| !ipam.leases.contains_key(&ip.to_string()))
        .ok_or_else(|| Error::user("no available IPv4 addresses on this network's address pools: bridge"))?;
    ipam.leases.insert(ip.to_string(), id.to_string());
    ipam.save(cfg)?;
    Ok(ip)
}

/// Releases every lease held by `id`.
pub fn release_ip(cfg: &Config, id: &str) -> Result<()> {
    let mut ipam = Ipam::load(cfg)?;
    let before = ipam.leases.len();
    ipam.leases.retain(|_, owner| owner != id);
    if ipam.leases.len() != before {
        ipam.save(cfg)?;
    }
    Ok(())
}
