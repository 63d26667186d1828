//! The files linkrt bind-mounts over a container's `/etc/hosts`, `/etc/hostname` and
//! `/etc/resolv.conf`, and their refresh when a link source gets a new address.
use std::{
    fs::{self, OpenOptions},
    io::Write,
    path::Path,
};

use crate::{
    error::{Error, Result},
    links,
    state::{Container, Lock, Snapshot, Status, Store},
};

/// Docker's name for the host's address on the container's network (`--add-host h:host-gateway`).
pub const HOST_GATEWAY: &str = "host-gateway";

/// Docker's CLI `ValidateExtraHost`: `NAME:IP` or `NAME=IP` (an IPv6 address may be in
/// brackets, or `host-gateway`); kept as `NAME:IP`, the form `HostConfig.ExtraHosts` shows.
pub fn parse_add_host(val: &str) -> Result<String> {
    let flag = |why: String| Error::user(format!("invalid argument \"{val}\" for \"--add-host\" flag: {why}"));
    let (k, v) = match val.split_once('=').or_else(|| val.split_once(':')) {
        Some((k, v)) if !k.is_empty() && !k.contains(':') => (k, v),
        _ => {
            return Err(flag(format!(
                "bad format for add-host: {}",
                crate::format::go_quote(val)
            )));
        }
    };
    let mut ip = v;
    if ip != HOST_GATEWAY {
        if ip.len() > 2 && ip.starts_with('[') && ip.ends_with(']') {
            ip = &ip[1..ip.len() - 1];
        }
        if ip.trim().parse::<std::net::IpAddr>().is_err() {
            return Err(flag(format!(
                "invalid IP address in add-host: {}",
                crate::format::go_quote(ip)
            )));
        }
    }
    // The name is written into /etc/hosts: no whitespace or control byte in it.
    if k.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(flag(format!(
            "bad format for add-host: {}",
            crate::format::go_quote(val)
        )));
    }
    Ok(format!("{k}:{ip}"))
}

/// The recipient's /etc/hosts from its links' last known IPs.
pub fn render_hosts(c: &Container, all: &[Container]) -> String {
    let mut entries = Vec::new();
    for l in &c.spec.links {
        if let (Some(src), Some(ip)) = (
            all.iter().find(|s| s.id == l.source_id),
            c.state.link_ips.get(&l.source_id),
        ) {
            entries.push((
                ip.to_string(),
                l.short_alias().to_string(),
                src.spec.hostname.clone(),
                src.name.clone(),
            ));
        }
    }
    let hl: Vec<links::HostsLink<'_>> = entries
        .iter()
        .map(|(ip, alias, sid, name)| links::HostsLink {
            ip,
            alias,
            short_id: sid,
            name,
        })
        .collect();
    let own = c.state.ip.map(|i| i.to_string());
    let gateway = crate::network::Subnet::from_env()
        .map(|s| s.gateway().to_string())
        .unwrap_or_default();
    let extra: Vec<(String, String)> = c
        .spec
        .extra_hosts
        .iter()
        .filter_map(|e| e.split_once(':'))
        .map(|(name, ip)| {
            let ip = if ip == HOST_GATEWAY {
                gateway.clone()
            } else {
                ip.to_string()
            };
            (ip, name.to_string())
        })
        .collect();
    links::hosts_file(&extra, &hl, own.as_deref(), &c.spec.hostname)
}

/// Rewrites a file in place (same inode), so that a bind mount of it sees the new content.
pub fn rewrite_in_place(path: &Path, content: &str) -> Result<()> {
    let mut f = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .open(path)
        .map_err(|e| Error::io("opening", path, e))?;
    f.write_all(content.as_bytes())
        .map_err(|e| Error::io("writing", path, e))
}

/// The host's resolvers, without loopback ones (unreachable from a container), as Docker does.
pub fn resolv_conf() -> String {
    let host = fs::read_to_string("/etc/resolv.conf").unwrap_or_default();
    let mut out = String::new();
    let mut ns = 0;
    for line in host.lines() {
        let l = line.trim();
        if let Some(addr) = l.strip_prefix("nameserver") {
            let a = addr.trim();
            if a.starts_with("127.") || a == "::1" {
                continue;
            }
            ns += 1;
        }
        if l.starts_with("nameserver") || l.starts_with("search") || l.starts_with("options") {
            out.push_str(l);
            out.push('\n');
        }
    }
    if ns == 0 {
        out.push_str("nameserver 8.8.8.8\nnameserver 8.8.4.4\n");
    }
    out
}

/// Writes the three files of a container being started.
pub fn write_all(store: &Store, c: &Container, all: &[Container]) -> Result<()> {
    let dir = store.dir(&c.id);
    rewrite_in_place(&dir.join("hosts"), &render_hosts(c, all))?;
    rewrite_in_place(&dir.join("hostname"), &format!("{}\n", c.spec.hostname))?;
    rewrite_in_place(&dir.join("resolv.conf"), &resolv_conf())
}

/// After the source `c` got a (new) IP: rewrite the /etc/hosts of every running recipient.
pub fn refresh_recipients(store: &Store, lock: &Lock, snap: &mut Snapshot, source: &Container) -> Result<()> {
    let Some(ip) = source.state.ip else { return Ok(()) };
    let recipients: Vec<usize> = snap
        .containers
        .iter()
        .enumerate()
        .filter(|(_, r)| r.state.status == Status::Running && r.spec.links.iter().any(|l| l.source_id == source.id))
        .map(|(i, _)| i)
        .collect();
    for i in recipients {
        snap.containers[i].state.link_ips.insert(source.id.clone(), ip);
        let r = snap.containers[i].clone();
        store.save(lock, &r)?;
        rewrite_in_place(&store.dir(&r.id).join("hosts"), &render_hosts(&r, &snap.containers))?;
    }
    Ok(())
}
