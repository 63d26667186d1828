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
                l.alias.clone(),
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
    links::hosts_file(&hl, own.as_deref(), &c.spec.hostname)
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
