//! Persistent state, written so that it never lies.
//!
//! Layout under `Config::root`:
//! - `lock`: the write lock ([`Lock`]); readers never take it;
//! - `containers/<id>/record`: the [`Container`] record, checksummed ([`record`]), written
//!   atomically; a record that cannot be read is shown as `Dead` and holds what the index
//!   says it holds;
//! - `index`: what every container holds (name, IP, MAC, veth, published ports as ranges,
//!   supervisor), updated with each record and checksummed too, so that a lost record never
//!   releases what a live container holds ([`index::Index`]);
//! - `containers/<id>/{hosts,hostname,resolv.conf}`: files bind-mounted into the container;
//! - `containers/<id>/{stdout,stderr}.log[.N]`: the container's output, size-capped.
//!
//! Under `Config::run_root` (tmpfs): `<id>.pids` and `exit/<id>.json`, written by supervisors,
//! so that an exit is never lost on a full state disk, and `lock.owner`.
pub mod cni;
pub mod exit;
pub mod index;
mod lock;
pub mod record;
mod time;

use std::{
    collections::BTreeMap,
    fs::{self, OpenOptions},
    io::Write,
    net::Ipv4Addr,
    os::unix::fs::OpenOptionsExt,
    path::{Path, PathBuf},
};

use serde::{Deserialize, Serialize};

pub use lock::Lock;
pub use time::{now_rfc3339, parse_rfc3339, rfc3339};

use crate::{
    config::Config,
    error::{Error, Result},
    ports::{PortBinding, PortKey},
};

/// The record file of a container.
pub const RECORD: &str = "record";
const RECORD_KIND: &str = "container-v2";

/// Fault injection for tests: when `LINKRT_FAILPOINT` names this point, the process kills
/// itself with SIGKILL there, as `kill -9` would; `NAME=pause` makes it stop there for
/// `LINKRT_FAILPOINT_SECS` seconds (default 30) instead, e.g. holding the lock.
pub fn failpoint(name: &str) {
    let Ok(f) = std::env::var("LINKRT_FAILPOINT") else {
        return;
    };
    if f == name {
        if let Err(e) = nix::sys::signal::kill(nix::unistd::getpid(), nix::sys::signal::Signal::SIGKILL) {
            log::error!("failpoint {name}: {e}");
        }
    } else if f.strip_suffix("=pause") == Some(name) {
        let secs = std::env::var("LINKRT_FAILPOINT_SECS")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(30);
        std::thread::sleep(std::time::Duration::from_secs(secs));
    }
}

/// Where a container's supervisor records "SUPERVISOR_PID PID1_PID" while it runs, so that a
/// start interrupted before the record says "running" can still be found and stopped.
pub fn pids_path(cfg: &Config, id: &str) -> PathBuf {
    cfg.run_root.join(format!("{id}.pids"))
}

/// Reads a pids file: (supervisor, PID 1).
pub fn read_pids(cfg: &Config, id: &str) -> Option<(i32, i32)> {
    let s = fs::read_to_string(pids_path(cfg, id)).ok()?;
    let mut it = s.split_whitespace().map(|x| x.parse::<i32>().ok());
    Some((it.next()??, it.next()??))
}

/// Creates a root-only directory (and its parents).
pub fn create_private_dir(d: &Path) -> Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(d)
        .map_err(|e| {
            if e.kind() == std::io::ErrorKind::PermissionDenied {
                Error::NotRoot
            } else {
                Error::io("creating", d, e)
            }
        })
}

/// Reads a regular file of at most `limit` bytes (a device, a FIFO or a larger file is refused
/// instead of read forever).
pub fn read_limited(path: &Path, limit: u64) -> std::io::Result<Vec<u8>> {
    use std::io::Read;
    let f = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open(path)?;
    let md = f.metadata()?;
    if !md.is_file() {
        return Err(std::io::Error::other("not a regular file"));
    }
    if md.len() > limit {
        return Err(std::io::Error::other(format!(
            "file too large (more than {limit} bytes)"
        )));
    }
    let mut v = Vec::new();
    f.take(limit + 1).read_to_end(&mut v)?;
    if v.len() as u64 > limit {
        return Err(std::io::Error::other(format!(
            "file too large (more than {limit} bytes)"
        )));
    }
    Ok(v)
}

/// Writes `data` to `path` atomically (temp file, fsync, rename). The temp file never stays
/// behind, whatever fails.
pub fn write_atomic(path: &Path, data: &[u8]) -> Result<()> {
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    let r = (|| {
        let mut f = OpenOptions::new()
            .create(true)
            .truncate(true)
            .write(true)
            .mode(0o600)
            .open(&tmp)
            .map_err(|e| Error::io("creating", &tmp, e))?;
        f.write_all(data)
            .and_then(|_| f.sync_all())
            .map_err(|e| Error::io("writing", &tmp, e))?;
        fs::rename(&tmp, path).map_err(|e| Error::io("renaming", &tmp, e))
    })();
    if r.is_err()
        && let Err(e) = fs::remove_file(&tmp)
        && e.kind() != std::io::ErrorKind::NotFound
    {
        log::warn!("removing {}: {e}", tmp.display());
    }
    r
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    #[default]
    Created,
    Running,
    Exited,
    /// The record cannot be read (shown, never written): what it held stays held.
    Dead,
}

impl Status {
    /// Docker's `State.Status` word.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Created => "created",
            Status::Running => "running",
            Status::Exited => "exited",
            Status::Dead => "dead",
        }
    }
}

/// A MAC address, written `02:42:ac:11:00:02`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct MacAddr(pub [u8; 6]);

impl std::fmt::Display for MacAddr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let b = self.0;
        write!(
            f,
            "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
            b[0], b[1], b[2], b[3], b[4], b[5]
        )
    }
}

impl std::str::FromStr for MacAddr {
    type Err = String;

    fn from_str(s: &str) -> std::result::Result<Self, String> {
        let parts: Vec<&str> = s.split(':').collect();
        if parts.len() != 6 {
            return Err(format!("invalid MAC address {s:?}"));
        }
        let mut m = [0u8; 6];
        for (i, p) in parts.iter().enumerate() {
            m[i] = u8::from_str_radix(p, 16).map_err(|_| format!("invalid MAC address {s:?}"))?;
        }
        Ok(MacAddr(m))
    }
}

impl Serialize for MacAddr {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for MacAddr {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        String::deserialize(d)?.parse().map_err(serde::de::Error::custom)
    }
}

/// A link from this container (the recipient) to a source container.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Link {
    /// The source's ID (links follow renames, as in Docker).
    pub source_id: String,
    /// The link's name under the recipient's (`db`, or `a/b` for `--link src:a/b`): Docker's
    /// `/<recipient>/<alias>`.
    pub alias: String,
    /// The source's name, kept for a link whose source was removed (Docker keeps the dangling
    /// entry in `HostConfig.Links`, and a start says which source is missing).
    #[serde(default)]
    pub source_name: String,
}

impl Link {
    /// The alias's last path element: the variables' prefix and the /etc/hosts name.
    pub fn short_alias(&self) -> &str {
        crate::links::short_alias(&self.alias)
    }
}

/// What the container was created with; fixed for its lifetime.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Spec {
    /// The image as given (`.Config.Image`).
    pub image: String,
    /// The image's ID (`sha256:...`, `.Image`); empty in records made before images had IDs.
    #[serde(default)]
    pub image_id: String,
    /// Path and arguments of the process: the entrypoint followed by the command.
    pub cmd: Vec<String>,
    /// How many leading elements of `cmd` are the entrypoint (`.Config.Entrypoint`).
    #[serde(default)]
    pub entrypoint_len: usize,
    pub workdir: String,
    /// Docker's `Config.Env`: `--env-file` and `-e` entries as given (a bare `KEY` unsets
    /// KEY), then the image's ENV entries whose key they do not set.
    pub env: Vec<String>,
    /// Exposed ports (image EXPOSE, --expose, and published ports), stored as runs.
    #[serde(with = "crate::ports::key_ranges")]
    pub exposed: Vec<PortKey>,
    /// Requested publications (`-p`), before host port allocation, stored as runs.
    #[serde(with = "crate::ports::binding_ranges")]
    pub port_bindings: Vec<PortBinding>,
    pub publish_all: bool,
    pub links: Vec<Link>,
    pub hostname: String,
    pub tty: bool,
    pub interactive: bool,
    pub auto_remove: bool,
    /// A rootfs directory given with --rootfs instead of the image's generated root.
    pub rootfs: Option<PathBuf>,
    /// The OCI runtime that runs the container (`runc`, `crun`), chosen at create.
    pub runtime: String,
    pub cap_add: Vec<String>,
    pub cap_drop: Vec<String>,
    pub privileged: bool,
    pub security: crate::oci::options::SecurityOpts,
    /// `--memory` in bytes.
    pub memory: Option<i64>,
    /// `--cpus` in billionths of a CPU.
    pub nano_cpus: Option<i64>,
    pub pids_limit: Option<i64>,
    /// `-u USER[:GROUP]` (empty: root).
    pub user: String,
    pub read_only: bool,
    pub volumes: Vec<crate::oci::options::Volume>,
    /// `--log-opt`: the size cap of the container's logs.
    #[serde(default)]
    pub log: LogOpts,
    /// `--add-host`: `NAME:IP` (or `NAME:host-gateway`), in the order given.
    #[serde(default)]
    pub extra_hosts: Vec<String>,
    /// `--label`: Docker's `Config.Labels`.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// `--restart`.
    #[serde(default)]
    pub restart: crate::lifecycle::restart::RestartPolicy,
}

/// Docker's json-file `max-size`/`max-file`, applied to each of stdout.log and stderr.log.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogOpts {
    pub max_size: u64,
    pub max_file: u32,
}

impl Default for LogOpts {
    fn default() -> Self {
        LogOpts {
            max_size: 10 << 20,
            max_file: 3,
        }
    }
}

/// Runtime state; reset when the container stops.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct State {
    pub status: Status,
    pub pid: i32,
    pub supervisor_pid: i32,
    pub exit_code: i32,
    pub started_at: Option<String>,
    pub finished_at: Option<String>,
    pub ip: Option<Ipv4Addr>,
    pub mac: Option<MacAddr>,
    pub veth: Option<String>,
    /// Allocated host ports, stored as ranges.
    #[serde(with = "crate::ports::ranges")]
    pub ports: Vec<crate::ports::Mapping>,
    pub error: String,
    /// Last known IP of each link source (source ID → IP), for this container's /etc/hosts.
    pub link_ips: BTreeMap<String, Ipv4Addr>,
    /// The kernel's OOM killer acted in the container's memory cgroup before it exited.
    pub oom_killed: bool,
    /// Docker's `HasBeenManuallyStopped`: set by `stop` and `kill`, cleared by a start.
    #[serde(default)]
    pub manually_stopped: bool,
    /// Waiting for its restart policy's restart (Docker's `Restarting`); the waiting
    /// supervisor is `supervisor_pid`.
    #[serde(default)]
    pub restarting: bool,
    /// Set by `stop`: Docker cancels the restart manager, no policy restarts this exit.
    #[serde(default)]
    pub restart_canceled: bool,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Container {
    pub id: String,
    pub name: String,
    pub created: String,
    pub spec: Spec,
    pub state: State,
    /// Restarts by the restart policy since the last start by hand (Docker's `RestartCount`).
    pub restart_count: u32,
    /// The restart manager's current delay (ms; 0: none yet).
    #[serde(default)]
    pub restart_backoff_ms: u64,
}

impl Container {
    pub fn short_id(&self) -> &str {
        &self.id[..12]
    }

    /// Whether it may be started (Docker: a running or dead container cannot).
    pub fn can_start(&self) -> bool {
        matches!(self.state.status, Status::Created | Status::Exited)
    }

    /// Whether its process may be signalled.
    pub fn can_stop(&self) -> bool {
        self.state.status == Status::Running
    }

    /// Whether `rm` without `-f` may remove it.
    pub fn can_remove(&self) -> bool {
        self.state.status != Status::Running
    }
}

/// Access to the state directory. Mutating calls take the [`Lock`] as proof.
pub struct Store {
    pub cfg: Config,
}

/// A consistent view of every container, read once without the write lock: records that
/// cannot be read appear as [`Status::Dead`] with what the index says they hold.
pub struct Snapshot {
    pub containers: Vec<Container>,
    pub index: index::Index,
    /// Set when the index itself could not be read (it is rebuilt from the records).
    pub index_error: Option<String>,
}

impl Snapshot {
    pub fn find(&self, what: &str) -> Result<&Container> {
        find_in(&self.containers, what)
    }

    pub fn get(&self, id: &str) -> Option<&Container> {
        self.containers.iter().find(|c| c.id == id)
    }
}

impl Store {
    pub fn new(cfg: &Config) -> Self {
        Store { cfg: cfg.clone() }
    }

    pub fn dir(&self, id: &str) -> PathBuf {
        self.cfg.root.join("containers").join(id)
    }

    /// Writes the record of `c` and its entry in the index.
    pub fn save(&self, _lock: &Lock, c: &Container) -> Result<()> {
        if c.state.status == Status::Dead {
            return Err(Error::sys(format!(
                "refusing to write the record of dead container {}",
                c.id
            )));
        }
        let dir = self.dir(&c.id);
        create_private_dir(&dir)?;
        write_atomic(&dir.join(RECORD), &record::encode(RECORD_KIND, c))?;
        let mut idx = index::Index::load_or_default(&self.cfg);
        idx.containers.insert(c.id.clone(), index::Entry::of(c));
        idx.save(&self.cfg)
    }

    /// Reads one record.
    pub fn load(&self, id: &str) -> Result<Container> {
        let p = self.dir(id).join(RECORD);
        let data = fs::read(&p).map_err(|e| Error::io("reading", &p, e))?;
        record::decode(RECORD_KIND, &data).map_err(|why| Error::Corrupt { path: p, why })
    }

    /// Every container, oldest first, read once (no lock needed: every file is replaced
    /// atomically). Directories that have neither a record nor an index entry are a `create`
    /// that was interrupted: see [`Store::leftovers`].
    pub fn snapshot(&self) -> Result<Snapshot> {
        let (index, index_error) = match index::Index::load(&self.cfg) {
            Ok(i) => (i, None),
            Err(why) => (index::Index::default(), Some(why)),
        };
        let dir = self.cfg.root.join("containers");
        let mut v = Vec::new();
        let rd = match fs::read_dir(&dir) {
            Ok(rd) => Some(rd),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => return Err(Error::io("reading", &dir, e)),
        };
        let mut seen = std::collections::BTreeSet::new();
        for e in rd.into_iter().flatten().flatten() {
            let Some(id) = e.file_name().to_str().map(str::to_owned) else {
                continue;
            };
            if id.len() != 64 || !id.bytes().all(|b| b.is_ascii_hexdigit()) {
                continue;
            }
            let has_record = e.path().join(RECORD).exists();
            match self.load(&id) {
                Ok(c) => v.push(c),
                Err(err) if has_record || index.containers.contains_key(&id) => {
                    v.push(dead(&id, &err.to_string(), index.containers.get(&id)));
                }
                // A directory being created (or left by a killed create): not a container yet.
                Err(_) => {}
            }
            seen.insert(id);
        }
        // Index entries whose directory is gone: their resources may still exist.
        for (id, e) in &index.containers {
            if !seen.contains(id) {
                v.push(dead(id, "its record and directory are missing", Some(e)));
            }
        }
        // An exit a supervisor saw but could not record yet is shown as it is: exited.
        for c in v.iter_mut().filter(|c| c.state.status == Status::Running) {
            if let Some(e) = exit::read(&self.cfg, &c.id) {
                c.state.status = Status::Exited;
                c.state.exit_code = e.code;
                c.state.oom_killed = e.oom_killed;
                c.state.finished_at = Some(e.finished_at);
            }
        }
        v.sort_by(|a, b| a.created.cmp(&b.created).then(a.id.cmp(&b.id)));
        Ok(Snapshot {
            containers: v,
            index,
            index_error,
        })
    }

    /// Every container with a record (readable or not), oldest first.
    pub fn all(&self) -> Result<Vec<Container>> {
        Ok(self.snapshot()?.containers)
    }

    /// Container directories with neither a record nor an index entry (a half-made `create`).
    pub fn leftovers(&self) -> Vec<String> {
        let idx = index::Index::load_or_default(&self.cfg);
        let dir = self.cfg.root.join("containers");
        fs::read_dir(dir)
            .into_iter()
            .flatten()
            .flatten()
            .filter(|e| !e.path().join(RECORD).exists())
            .filter_map(|e| e.file_name().to_str().map(str::to_owned))
            .filter(|id| !idx.containers.contains_key(id))
            .collect()
    }

    /// Removes a container's directory (its record, logs and files) and its index entry.
    /// The directory goes first: on a full disk that is what frees the space for the index.
    pub fn remove(&self, _lock: &Lock, id: &str) -> Result<()> {
        let d = self.dir(id);
        match fs::remove_dir_all(&d) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(Error::io("removing", d, e)),
        }
        let mut idx = index::Index::load_or_default(&self.cfg);
        if idx.containers.remove(id).is_some() {
            idx.save(&self.cfg)?;
        }
        Ok(())
    }

    /// Finds a container (Docker's precedence: full ID, name, unique ID prefix).
    pub fn find(&self, what: &str) -> Result<Container> {
        self.snapshot()?.find(what).cloned()
    }
}

/// The placeholder of a container whose record cannot be read.
fn dead(id: &str, why: &str, e: Option<&index::Entry>) -> Container {
    let e = e.cloned().unwrap_or_default();
    Container {
        id: id.to_string(),
        name: e.name.clone(),
        created: e.created.clone(),
        spec: Spec {
            image: e.image.clone(),
            runtime: e.runtime.clone(),
            ..Spec::default()
        },
        state: State {
            status: Status::Dead,
            pid: e.pid,
            supervisor_pid: e.supervisor_pid,
            ip: e.ip,
            mac: e.mac,
            veth: e.veth.clone(),
            ports: e.ports.clone(),
            error: format!("unreadable record: {why}"),
            ..State::default()
        },
        restart_count: 0,
        restart_backoff_ms: 0,
    }
}

pub fn find_in<'a>(all: &'a [Container], what: &str) -> Result<&'a Container> {
    if what.is_empty() {
        return Err(Error::NoSuchContainer(what.into()));
    }
    if let Some(c) = all.iter().find(|c| c.id == what) {
        return Ok(c);
    }
    let name = what.strip_prefix('/').unwrap_or(what);
    if let Some(c) = all.iter().find(|c| !c.name.is_empty() && c.name == name) {
        return Ok(c);
    }
    let matches: Vec<&Container> = all.iter().filter(|c| c.id.starts_with(what)).collect();
    match matches.len() {
        1 => Ok(matches[0]),
        0 => Err(Error::NoSuchContainer(what.into())),
        _ => Err(Error::user(format!("multiple IDs found with provided prefix: {what}"))),
    }
}
