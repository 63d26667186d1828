//! The attachments of the `linkrt-cni` plugin: one record per (network name, container ID,
//! interface name), the owner of every datapath entry the plugin made for it.
//!
//! Layout under the plugin's state directory (default `<Config::root>/cni`):
//! - `lock`: taken by every plugin call that reads or changes records (runtimes call plugins
//!   of different containers in parallel);
//! - `<network>/<containerID>/<ifname>.json`: the [`Attachment`], written atomically *before*
//!   the entries it names are made (write-ahead), removed after they are gone.
//!
//! linkrt's CLI reads these records too, so that its own datapath upkeep leaves the plugin's
//! veths and flows alone (they are neither uplinks nor stale).
use std::{
    fs::{self, File},
    io::ErrorKind,
    net::Ipv4Addr,
    path::{Path, PathBuf},
};

use nix::fcntl::{Flock, FlockArg};
use serde::{Deserialize, Serialize};

use crate::{
    config::Config,
    error::{Error, Result},
    ports::Proto,
};

/// The default state directory of the plugin for a linkrt instance.
pub fn default_dir(cfg: &Config) -> PathBuf {
    cfg.root.join("cni")
}

/// One published port of an attachment.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CniPort {
    /// `0.0.0.0` for every host address.
    pub host_ip: Ipv4Addr,
    pub host_port: u16,
    pub proto: Proto,
    pub container_port: u16,
}

/// What one CNI attachment owns in the datapath.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Attachment {
    pub network: String,
    pub container_id: String,
    pub ifname: String,
    /// `CNI_NETNS` at ADD time.
    pub netns: PathBuf,
    /// The container's address (from `prevResult`).
    pub ip: Ipv4Addr,
    /// The host side of the container's veth, and its ifindex at ADD time.
    pub host_veth: String,
    pub host_ifindex: u32,
    pub ports: Vec<CniPort>,
}

/// Whether `s` may be a path component of a record (the spec's rule for network names and
/// container IDs; interface names must also fit).
pub fn valid_component(s: &str) -> bool {
    let mut c = s.chars();
    c.next().is_some_and(|c| c.is_ascii_alphanumeric())
        && c.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
        && s.len() <= 255
}

/// The plugin's state directory.
#[derive(Clone, Debug)]
pub struct Store {
    pub dir: PathBuf,
}

/// Held while a plugin call reads or changes records; released on drop.
pub struct StoreLock {
    _flock: Flock<File>,
}

impl Store {
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Store { dir: dir.into() }
    }

    /// Takes the store's lock, waiting for other plugin calls.
    pub fn lock(&self) -> Result<StoreLock> {
        super::create_private_dir(&self.dir)?;
        let path = self.dir.join("lock");
        let f = super::lock::open_lock_file(&path)?;
        let fl = Flock::lock(f, FlockArg::LockExclusive).map_err(|(_, e)| Error::io("locking", &path, e.into()))?;
        Ok(StoreLock { _flock: fl })
    }

    fn path(&self, network: &str, container_id: &str, ifname: &str) -> Result<PathBuf> {
        for (what, v) in [
            ("network name", network),
            ("container ID", container_id),
            ("interface name", ifname),
        ] {
            if !valid_component(v) {
                return Err(Error::user(format!("invalid {what} {v:?}")));
            }
        }
        Ok(self.dir.join(network).join(container_id).join(format!("{ifname}.json")))
    }

    /// The record of an attachment, None when there is none.
    pub fn get(&self, network: &str, container_id: &str, ifname: &str) -> Result<Option<Attachment>> {
        read(&self.path(network, container_id, ifname)?)
    }

    /// Writes the record atomically (write-ahead: before the entries it names exist).
    pub fn put(&self, _lock: &StoreLock, a: &Attachment) -> Result<()> {
        let p = self.path(&a.network, &a.container_id, &a.ifname)?;
        let dir = p.parent().expect("a record has a directory");
        super::create_private_dir(dir)?;
        let data = serde_json::to_vec_pretty(a).map_err(|e| Error::sys(format!("encoding {}: {e}", p.display())))?;
        super::write_atomic(&p, &data)?;
        sync_dir(dir)
    }

    /// Removes the record (a missing one is not an error), and its container's directory
    /// when it was the last.
    pub fn remove(&self, _lock: &StoreLock, network: &str, container_id: &str, ifname: &str) -> Result<()> {
        let p = self.path(network, container_id, ifname)?;
        match fs::remove_file(&p) {
            Ok(()) => {}
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(Error::io("removing", &p, e)),
        }
        let dir = p.parent().expect("a record has a directory");
        // Not empty (another interface of the container): kept.
        if fs::remove_dir(dir).is_err() {
            return sync_dir(dir);
        }
        Ok(())
    }

    /// Every record, of every network (an unreadable one is an error: it owns entries that
    /// must not be given away).
    pub fn all(&self) -> Result<Vec<Attachment>> {
        let mut v = Vec::new();
        for net in list_dirs(&self.dir)? {
            for cid in list_dirs(&net)? {
                let rd = fs::read_dir(&cid).map_err(|e| Error::io("listing", &cid, e))?;
                for e in rd {
                    let e = e.map_err(|e| Error::io("listing", &cid, e))?;
                    let p = e.path();
                    if p.extension().is_some_and(|x| x == "json")
                        && let Some(a) = read(&p)?
                    {
                        v.push(a);
                    }
                }
            }
        }
        v.sort_by(|a, b| (&a.network, &a.container_id, &a.ifname).cmp(&(&b.network, &b.container_id, &b.ifname)));
        Ok(v)
    }
}

fn list_dirs(d: &Path) -> Result<Vec<PathBuf>> {
    let rd = match fs::read_dir(d) {
        Ok(rd) => rd,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(Error::io("listing", d, e)),
    };
    let mut v = Vec::new();
    for e in rd {
        let e = e.map_err(|e| Error::io("listing", d, e))?;
        if e.file_type().map(|t| t.is_dir()).unwrap_or(false) {
            v.push(e.path());
        }
    }
    Ok(v)
}

fn read(p: &Path) -> Result<Option<Attachment>> {
    match super::read_limited(p, 1 << 20) {
        Ok(d) => serde_json::from_slice(&d).map(Some).map_err(|e| Error::Corrupt {
            path: p.to_path_buf(),
            why: e.to_string(),
        }),
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
        Err(e) => Err(Error::io("reading", p, e)),
    }
}

fn sync_dir(d: &Path) -> Result<()> {
    File::open(d)
        .and_then(|f| f.sync_all())
        .map_err(|e| Error::io("syncing", d, e))
}

/// The host-side veths of the plugin's attachments in the default state directory of `cfg`
/// (linkrt's CLI leaves them alone). Unreadable records are skipped: this only narrows what
/// the CLI touches.
pub fn host_veths(cfg: &Config) -> Vec<(String, u32)> {
    Store::new(default_dir(cfg))
        .all()
        .unwrap_or_default()
        .into_iter()
        .map(|a| (a.host_veth, a.host_ifindex))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip_and_names_are_checked() {
        let dir = std::env::temp_dir().join(format!("linkrt-cni-unit-{}", std::process::id()));
        let s = Store::new(&dir);
        let l = s.lock().unwrap();
        let a = Attachment {
            network: "net1".into(),
            container_id: "abc".into(),
            ifname: "eth0".into(),
            netns: "/run/netns/x".into(),
            ip: Ipv4Addr::new(10, 88, 0, 2),
            host_veth: "veth1".into(),
            host_ifindex: 7,
            ports: vec![CniPort {
                host_ip: Ipv4Addr::UNSPECIFIED,
                host_port: 8080,
                proto: Proto::Tcp,
                container_port: 80,
            }],
        };
        s.put(&l, &a).unwrap();
        assert_eq!(s.get("net1", "abc", "eth0").unwrap(), Some(a.clone()));
        assert_eq!(s.all().unwrap(), vec![a]);
        assert!(s.get("../x", "abc", "eth0").is_err());
        assert!(s.get("net1", "abc", "a/b").is_err());
        s.remove(&l, "net1", "abc", "eth0").unwrap();
        s.remove(&l, "net1", "abc", "eth0").unwrap();
        assert!(s.all().unwrap().is_empty());
        fs::remove_dir_all(&dir).unwrap();
    }
}
