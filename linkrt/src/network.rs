//! The default bridge `linkrt0`, container network namespaces and veths (through iproute2),
//! and the bridge's IPAM.
use std::{
    net::Ipv4Addr,
    path::{Path, PathBuf},
    process::Command,
};

use crate::{
    config::Config,
    error::{Error, Result},
    state::Ipam,
};

pub const BRIDGE: &str = "linkrt0";

/// The default bridge's subnet (`LINKRT_SUBNET`, default 172.17.0.0/16; the gateway is `.1`).
#[derive(Clone, Copy, Debug)]
pub struct Subnet {
    pub base: Ipv4Addr,
    pub prefix: u8,
}

impl Subnet {
    pub fn from_env() -> Result<Self> {
        let s = std::env::var("LINKRT_SUBNET").unwrap_or_else(|_| "172.17.0.0/16".into());
        Self::parse(&s)
    }

    pub fn parse(s: &str) -> Result<Self> {
        let bad = || Error::user(format!("invalid subnet {s}: want A.B.C.D/N with 8 <= N <= 30"));
        let (ip, len) = s.split_once('/').ok_or_else(bad)?;
        let ip: Ipv4Addr = ip.parse().map_err(|_| bad())?;
        let prefix: u8 = len.parse().map_err(|_| bad())?;
        if !(8..=30).contains(&prefix) {
            return Err(bad());
        }
        let mask = u32::MAX << (32 - prefix);
        Ok(Subnet {
            base: Ipv4Addr::from(u32::from(ip) & mask),
            prefix,
        })
    }

    pub fn gateway(&self) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.base) + 1)
    }

    fn hosts(&self) -> impl Iterator<Item = Ipv4Addr> {
        let base = u32::from(self.base);
        let size = 1u32 << (32 - self.prefix);
        (2..size - 1).map(move |i| Ipv4Addr::from(base + i))
    }
}

/// Docker's MAC for an IP: `02:42:` followed by the four address bytes.
pub fn mac_for(ip: Ipv4Addr) -> String {
    let o = ip.octets();
    format!("02:42:{:02x}:{:02x}:{:02x}:{:02x}", o[0], o[1], o[2], o[3])
}

/// Leases the lowest free address of the subnet to `id` (the caller holds the state lock).
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

fn ip_cmd(args: &[&str]) -> Result<()> {
    let out = Command::new("ip")
        .args(args)
        .output()
        .map_err(|e| Error::io("running", "ip", e))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(Error::sys(format!(
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        )))
    }
}

fn link_exists(name: &str) -> bool {
    Command::new("ip")
        .args(["link", "show", "dev", name])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false)
}

/// Creates the bridge if it is missing and turns on forwarding in this (host) namespace.
pub fn ensure_bridge(subnet: &Subnet) -> Result<()> {
    if !link_exists(BRIDGE) {
        ip_cmd(&["link", "add", BRIDGE, "type", "bridge"])?;
        ip_cmd(&[
            "addr",
            "add",
            &format!("{}/{}", subnet.gateway(), subnet.prefix),
            "dev",
            BRIDGE,
        ])?;
    }
    ip_cmd(&["link", "set", BRIDGE, "up"])?;
    std::fs::write("/proc/sys/net/ipv4/ip_forward", "1")
        .map_err(|e| Error::io("writing", "/proc/sys/net/ipv4/ip_forward", e))
}

/// The named netns of a container (`ip netns` shows it as `linkrt-<shortid>`).
pub fn netns_name(short_id: &str) -> String {
    format!("linkrt-{short_id}")
}

pub fn netns_path(short_id: &str) -> PathBuf {
    Path::new("/run/netns").join(netns_name(short_id))
}

/// Host-side veth name of a container.
pub fn veth_name(short_id: &str) -> String {
    format!("veth{}", &short_id[..7])
}

/// What a container's network looks like once set up.
pub struct Endpoint {
    pub ip: Ipv4Addr,
    pub mac: String,
    pub veth: String,
}

/// Creates the container's netns and veth, addressed and routed via the bridge.
/// On failure everything it made is removed again.
pub fn setup_endpoint(short_id: &str, ip: Ipv4Addr, subnet: &Subnet) -> Result<Endpoint> {
    let ns = netns_name(short_id);
    let veth = veth_name(short_id);
    let mac = mac_for(ip);
    let r = (|| {
        if !netns_path(short_id).exists() {
            ip_cmd(&["netns", "add", &ns])?;
        }
        ip_cmd(&[
            "link", "add", &veth, "type", "veth", "peer", "name", "eth0", "netns", &ns,
        ])?;
        ip_cmd(&["link", "set", &veth, "master", BRIDGE, "up"])?;
        ip_cmd(&["-n", &ns, "link", "set", "eth0", "address", &mac])?;
        ip_cmd(&[
            "-n",
            &ns,
            "addr",
            "add",
            &format!("{ip}/{}", subnet.prefix),
            "dev",
            "eth0",
        ])?;
        ip_cmd(&["-n", &ns, "link", "set", "eth0", "up"])?;
        ip_cmd(&["-n", &ns, "link", "set", "lo", "up"])?;
        ip_cmd(&[
            "-n",
            &ns,
            "route",
            "add",
            "default",
            "via",
            &subnet.gateway().to_string(),
        ])
    })();
    match r {
        Ok(()) => Ok(Endpoint { ip, mac, veth }),
        Err(e) => {
            let _ = teardown_endpoint(short_id);
            Err(e)
        }
    }
}

/// Removes the container's veth and netns; missing pieces are not an error.
pub fn teardown_endpoint(short_id: &str) -> Result<()> {
    let veth = veth_name(short_id);
    let mut errs = Vec::new();
    if link_exists(&veth)
        && let Err(e) = ip_cmd(&["link", "del", &veth])
    {
        errs.push(e);
    }
    if netns_path(short_id).exists()
        && let Err(e) = ip_cmd(&["netns", "del", &netns_name(short_id)])
    {
        errs.push(e);
    }
    if errs.is_empty() {
        Ok(())
    } else {
        Err(Error::Multiple(errs))
    }
}

/// The host's interfaces where published ports are reached from outside: every interface of
/// this namespace but loopback, the bridge and the bridge's ports.
pub fn uplinks() -> Result<Vec<String>> {
    let out = Command::new("ip")
        .args(["-o", "link", "show"])
        .output()
        .map_err(|e| Error::io("running", "ip", e))?;
    let text = String::from_utf8_lossy(&out.stdout);
    let mut v = Vec::new();
    for line in text.lines() {
        // "3: eth0@if2: <BROADCAST,...> mtu 1500 ... master linkrt0 state UP ..."
        let mut parts = line.splitn(3, ": ");
        let (_, Some(name), Some(rest)) = (parts.next(), parts.next(), parts.next()) else {
            continue;
        };
        let name = name.split('@').next().unwrap_or(name);
        if name == "lo" || name == BRIDGE || rest.contains(&format!("master {BRIDGE} ")) {
            continue;
        }
        v.push(name.to_string());
    }
    Ok(v)
}

/// The IPv4 addresses of this namespace.
pub fn local_addrs() -> Result<Vec<Ipv4Addr>> {
    let out = Command::new("ip")
        .args(["-o", "-4", "addr", "show"])
        .output()
        .map_err(|e| Error::io("running", "ip", e))?;
    Ok(String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_whitespace().skip_while(|w| *w != "inet").nth(1))
        .filter_map(|a| a.split('/').next()?.parse().ok())
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subnet_math() {
        let s = Subnet::parse("172.17.0.0/16").unwrap();
        assert_eq!(s.gateway(), Ipv4Addr::new(172, 17, 0, 1));
        assert_eq!(s.hosts().next(), Some(Ipv4Addr::new(172, 17, 0, 2)));
        assert_eq!(s.hosts().last(), Some(Ipv4Addr::new(172, 17, 255, 254)));
        assert!(Subnet::parse("10.0.0.0/31").is_err() && Subnet::parse("x").is_err());
        assert_eq!(mac_for(Ipv4Addr::new(172, 17, 0, 2)), "02:42:ac:11:00:02");
    }
}
