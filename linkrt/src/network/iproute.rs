//! The [`Network`] of the host through iproute2 (`ip`). Being replaced by rtnetlink.
use std::{net::Ipv4Addr, path::Path, process::Command};

use super::{BRIDGE, EndpointSpec, Network, Subnet, mac_string};
use crate::error::{Error, Result};

pub struct IpRoute;

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

fn ip_out(args: &[&str]) -> Result<String> {
    let out = Command::new("ip")
        .args(args)
        .output()
        .map_err(|e| Error::io("running", "ip", e))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(Error::sys(format!(
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        )))
    }
}

fn link_exists(name: &str) -> Result<bool> {
    let out = Command::new("ip")
        .args(["-o", "link", "show", "dev", name])
        .output()
        .map_err(|e| Error::io("running", "ip", e))?;
    if out.status.success() {
        return Ok(true);
    }
    let err = String::from_utf8_lossy(&out.stderr);
    if err.contains("does not exist") {
        Ok(false)
    } else {
        Err(Error::sys(format!("ip link show dev {name}: {}", err.trim())))
    }
}

impl Network for IpRoute {
    fn ensure_bridge(&self, subnet: &Subnet) -> Result<()> {
        if !link_exists(BRIDGE)? {
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

    fn create_endpoint(&self, ep: &EndpointSpec) -> Result<()> {
        let ns = ep.netns.as_str();
        let veth = ep.veth.as_str();
        let r = (|| {
            if !Path::new("/run/netns").join(ns).exists() {
                ip_cmd(&["netns", "add", ns])?;
            }
            ip_cmd(&["link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", ns])?;
            ip_cmd(&["link", "set", veth, "master", BRIDGE, "up"])?;
            ip_cmd(&["-n", ns, "link", "set", "eth0", "address", &mac_string(ep.mac)])?;
            ip_cmd(&[
                "-n",
                ns,
                "addr",
                "add",
                &format!("{}/{}", ep.ip, ep.subnet.prefix),
                "dev",
                "eth0",
            ])?;
            ip_cmd(&["-n", ns, "link", "set", "eth0", "up"])?;
            ip_cmd(&["-n", ns, "link", "set", "lo", "up"])?;
            ip_cmd(&[
                "-n",
                ns,
                "route",
                "add",
                "default",
                "via",
                &ep.subnet.gateway().to_string(),
            ])
        })();
        if let Err(e) = r {
            if let Err(t) = self.delete_endpoint(ns, veth) {
                log::warn!("undoing the endpoint {veth}: {t}");
            }
            return Err(e);
        }
        Ok(())
    }

    fn delete_endpoint(&self, netns: &str, veth: &str) -> Result<()> {
        let mut errs = Vec::new();
        match link_exists(veth) {
            Ok(true) => {
                if let Err(e) = ip_cmd(&["link", "del", veth]) {
                    errs.push(e);
                }
            }
            Ok(false) => {}
            Err(e) => errs.push(e),
        }
        if Path::new("/run/netns").join(netns).exists()
            && let Err(e) = ip_cmd(&["netns", "del", netns])
        {
            errs.push(e);
        }
        if errs.is_empty() {
            Ok(())
        } else {
            Err(Error::Multiple(errs))
        }
    }

    fn netns_exists(&self, netns: &str) -> Result<bool> {
        Ok(Path::new("/run/netns").join(netns).exists())
    }

    fn endpoint_ipv4(&self, netns: &str) -> Result<Option<Ipv4Addr>> {
        if !self.netns_exists(netns)? {
            return Ok(None);
        }
        let out = ip_out(&["-n", netns, "-o", "-4", "addr", "show", "dev", "eth0"])?;
        Ok(out
            .split_whitespace()
            .skip_while(|w| *w != "inet")
            .nth(1)
            .and_then(|a| a.split('/').next()?.parse().ok()))
    }

    fn uplinks(&self) -> Result<Vec<String>> {
        let text = ip_out(&["-o", "link", "show"])?;
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

    fn local_addrs(&self) -> Result<Vec<Ipv4Addr>> {
        Ok(ip_out(&["-o", "-4", "addr", "show"])?
            .lines()
            .filter_map(|l| l.split_whitespace().skip_while(|w| *w != "inet").nth(1))
            .filter_map(|a| a.split('/').next()?.parse().ok())
            .collect())
    }
}
