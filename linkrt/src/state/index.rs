//! What every container holds: its name, address, MAC, veth, published host ports (as
//! ranges) and processes. Written with each record (under the lock) and checksummed, it is
//! the second copy that keeps a container's resources reserved when its record is lost, and
//! the small summary a command reads instead of every mapping on the host.
use std::{collections::BTreeMap, net::Ipv4Addr, path::PathBuf};

use serde::{Deserialize, Serialize};

use super::{Container, MacAddr, Status, record, write_atomic};
use crate::{config::Config, error::Result, ports::Mapping};

const KIND: &str = "index-v2";

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    pub name: String,
    pub image: String,
    pub created: String,
    pub runtime: String,
    pub status: Status,
    pub ip: Option<Ipv4Addr>,
    pub mac: Option<MacAddr>,
    pub veth: Option<String>,
    #[serde(with = "crate::ports::ranges")]
    pub ports: Vec<Mapping>,
    pub pid: i32,
    pub supervisor_pid: i32,
}

impl Entry {
    pub fn of(c: &Container) -> Entry {
        Entry {
            name: c.name.clone(),
            image: c.spec.image.clone(),
            created: c.created.clone(),
            runtime: c.spec.runtime.clone(),
            status: c.state.status,
            ip: c.state.ip,
            mac: c.state.mac,
            veth: c.state.veth.clone(),
            ports: c.state.ports.clone(),
            pid: c.state.pid,
            supervisor_pid: c.state.supervisor_pid,
        }
    }
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Index {
    pub containers: BTreeMap<String, Entry>,
}

fn path(cfg: &Config) -> PathBuf {
    cfg.root.join("index")
}

impl Index {
    /// The index; an error (with the reason) when the file exists but cannot be read.
    pub fn load(cfg: &Config) -> std::result::Result<Index, String> {
        match std::fs::read(path(cfg)) {
            Ok(d) => record::decode(KIND, &d),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Index::default()),
            Err(e) => Err(e.to_string()),
        }
    }

    /// The index, or an empty one when it cannot be read (reconcile rebuilds it from the
    /// records).
    pub fn load_or_default(cfg: &Config) -> Index {
        Index::load(cfg).unwrap_or_else(|why| {
            log::warn!("{}: {why}; rebuilding it from the records", path(cfg).display());
            Index::default()
        })
    }

    pub fn save(&self, cfg: &Config) -> Result<()> {
        write_atomic(&path(cfg), &record::encode(KIND, self))
    }

    /// Every IPv4 address held by a container (running, starting, or dead).
    pub fn addresses(&self) -> impl Iterator<Item = (Ipv4Addr, &str)> {
        self.containers
            .iter()
            .filter_map(|(id, e)| e.ip.map(|ip| (ip, id.as_str())))
    }
}
