//! Persistent state: one JSON record per container, written atomically, under one lock.
//!
//! Layout under `Config::root`:
//! - `lock`: `flock`ed exclusively by every command that changes state;
//! - `containers/<id>/config.v1.json`: the [`Container`] record;
//! - `containers/<id>/{hosts,hostname,resolv.conf}`: files bind-mounted into the container;
//! - `containers/<id>/stdout.log`, `stderr.log`: the container's output;
//! - `ipam.v1.json`: IP leases.
use std::{
    collections::BTreeMap,
    fs::{self, File, OpenOptions},
    io::Write,
    os::{fd::AsRawFd, unix::fs::OpenOptionsExt},
    path::{Path, PathBuf},
};

use serde::{Deserialize, Serialize};

use crate::{
    config::Config,
    error::{Error, Result},
    ports::{PortBinding, PortKey},
};

pub const RECORD: &str = "config.v1.json";

/// An exclusive lock on the state dir, released on drop.
pub struct Lock {
    _file: File,
}

impl Lock {
    pub fn acquire(cfg: &Config) -> Result<Self> {
        for d in [&cfg.root, &cfg.root.join("containers"), &cfg.run_root] {
            create_private_dir(d)?;
        }
        let path = cfg.root.join("lock");
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true)
            .mode(0o600)
            .open(&path)
            .map_err(|e| Error::io("opening", &path, e))?;
        // SAFETY: valid fd owned by `file`.
        if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX) } != 0 {
            return Err(Error::io("locking", &path, std::io::Error::last_os_error()));
        }
        Ok(Lock { _file: file })
    }
}

/// Fault injection for tests: when `LINKRT_FAILPOINT` names this point, the process kills
/// itself with SIGKILL there, as `kill -9` would. The next command must repair the state.
pub fn failpoint(name: &str) {
    if std::env::var("LINKRT_FAILPOINT").is_ok_and(|f| f == name) {
        let _ = nix::sys::signal::kill(nix::unistd::getpid(), nix::sys::signal::Signal::SIGKILL);
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

/// Writes `data` to `path` atomically (temp file, fsync, rename).
pub fn write_atomic(path: &Path, data: &[u8]) -> Result<()> {
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
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
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    #[default]
    Created,
    Running,
    Exited,
}

/// A link from this container (the recipient) to a source container.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Link {
    /// The source's ID (links follow renames, as in Docker).
    pub source_id: String,
    pub alias: String,
}

/// What the container was created with; fixed for its lifetime.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Spec {
    pub image: String,
    /// Path and arguments of the command.
    pub cmd: Vec<String>,
    pub workdir: String,
    /// Image ENV followed by -e/--env-file, `KEY=VALUE`, deduplicated (last wins).
    pub env: Vec<String>,
    /// Exposed ports (image EXPOSE, --expose, and published ports).
    pub exposed: Vec<PortKey>,
    /// Requested publications (`-p`), before host port allocation.
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
    #[serde(default)]
    pub runtime: String,
    #[serde(default)]
    pub cap_add: Vec<String>,
    #[serde(default)]
    pub cap_drop: Vec<String>,
    #[serde(default)]
    pub privileged: bool,
    #[serde(default)]
    pub security: crate::oci::options::SecurityOpts,
    /// `--memory` in bytes.
    #[serde(default)]
    pub memory: Option<i64>,
    /// `--cpus` in billionths of a CPU.
    #[serde(default)]
    pub nano_cpus: Option<i64>,
    #[serde(default)]
    pub pids_limit: Option<i64>,
    /// `-u USER[:GROUP]` (empty: root).
    #[serde(default)]
    pub user: String,
    #[serde(default)]
    pub read_only: bool,
    #[serde(default)]
    pub volumes: Vec<crate::oci::options::Volume>,
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
    pub ip: Option<String>,
    pub mac: Option<String>,
    pub veth: Option<String>,
    /// Allocated host ports: (container port, host ip, host port).
    pub ports: Vec<crate::ports::Mapping>,
    pub error: String,
    /// Last known IP of each link source (source ID → IP), for this container's /etc/hosts.
    pub link_ips: BTreeMap<String, String>,
    /// The kernel's OOM killer acted in the container's memory cgroup before it exited.
    #[serde(default)]
    pub oom_killed: bool,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Container {
    pub id: String,
    pub name: String,
    pub created: String,
    pub spec: Spec,
    pub state: State,
    pub restart_count: u32,
}

impl Container {
    pub fn short_id(&self) -> &str {
        &self.id[..12]
    }
}

/// Access to the state directory. Mutating calls expect the caller to hold the [`Lock`].
pub struct Store {
    pub cfg: Config,
}

impl Store {
    pub fn new(cfg: &Config) -> Self {
        Store { cfg: cfg.clone() }
    }

    pub fn dir(&self, id: &str) -> PathBuf {
        self.cfg.root.join("containers").join(id)
    }

    pub fn save(&self, c: &Container) -> Result<()> {
        let dir = self.dir(&c.id);
        create_private_dir(&dir)?;
        let data = serde_json::to_vec(c).expect("serializable");
        write_atomic(&dir.join(RECORD), &data)
    }

    pub fn load(&self, id: &str) -> Result<Container> {
        let p = self.dir(id).join(RECORD);
        let data = fs::read(&p).map_err(|e| Error::io("reading", &p, e))?;
        serde_json::from_slice(&data).map_err(|e| Error::sys(format!("corrupt state {}: {e}", p.display())))
    }

    /// Every container with a readable record, oldest first. Directories without a record
    /// (a `run` killed half-way) are skipped; [`Store::leftovers`] lists them for repair.
    pub fn all(&self) -> Result<Vec<Container>> {
        let dir = self.cfg.root.join("containers");
        let mut v = Vec::new();
        let rd = match fs::read_dir(&dir) {
            Ok(rd) => rd,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(v),
            Err(e) => return Err(Error::io("reading", &dir, e)),
        };
        for e in rd.flatten() {
            if let Some(id) = e.file_name().to_str()
                && let Ok(c) = self.load(id)
            {
                v.push(c);
            }
        }
        v.sort_by(|a, b| a.created.cmp(&b.created).then(a.id.cmp(&b.id)));
        Ok(v)
    }

    /// Container directories that have no record (a half-made container).
    pub fn leftovers(&self) -> Vec<String> {
        let dir = self.cfg.root.join("containers");
        fs::read_dir(dir)
            .into_iter()
            .flatten()
            .flatten()
            .filter(|e| !e.path().join(RECORD).exists())
            .filter_map(|e| e.file_name().to_str().map(str::to_owned))
            .collect()
    }

    pub fn remove_dir(&self, id: &str) -> Result<()> {
        let d = self.dir(id);
        match fs::remove_dir_all(&d) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(Error::io("removing", d, e)),
        }
    }

    /// Finds a container by full name (with or without `/`), full ID, or unique ID prefix,
    /// with Docker's precedence (ID, then name, then prefix).
    pub fn find(&self, what: &str) -> Result<Container> {
        let all = self.all()?;
        find_in(&all, what).cloned()
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
    if let Some(c) = all.iter().find(|c| c.name == name) {
        return Ok(c);
    }
    let matches: Vec<&Container> = all.iter().filter(|c| c.id.starts_with(what)).collect();
    match matches.len() {
        1 => Ok(matches[0]),
        0 => Err(Error::NoSuchContainer(what.into())),
        _ => Err(Error::user(format!("multiple IDs found with provided prefix: {what}"))),
    }
}

/// IP leases of the default bridge.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct Ipam {
    /// IPv4 address → container ID.
    pub leases: BTreeMap<String, String>,
}

impl Ipam {
    fn path(cfg: &Config) -> PathBuf {
        cfg.root.join("ipam.v1.json")
    }

    pub fn load(cfg: &Config) -> Result<Self> {
        let p = Self::path(cfg);
        match fs::read(&p) {
            Ok(d) => serde_json::from_slice(&d).map_err(|e| Error::sys(format!("corrupt state {}: {e}", p.display()))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Ipam::default()),
            Err(e) => Err(Error::io("reading", &p, e)),
        }
    }

    pub fn save(&self, cfg: &Config) -> Result<()> {
        write_atomic(
            &Self::path(cfg),
            &serde_json::to_vec_pretty(self).expect("serializable"),
        )
    }
}

/// Current time as RFC 3339 with nanoseconds, UTC (Docker's format).
pub fn now_rfc3339() -> String {
    let d = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    rfc3339(d.as_secs() as i64, d.subsec_nanos())
}

pub fn rfc3339(secs: i64, nanos: u32) -> String {
    let days = secs.div_euclid(86400);
    let rem = secs.rem_euclid(86400);
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{nanos:09}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// Parses the format written by [`rfc3339`] back to seconds since the epoch.
pub fn parse_rfc3339(s: &str) -> Option<f64> {
    let (date, time) = s.split_once('T')?;
    let mut dp = date.split('-').map(|x| x.parse::<i64>());
    let (y, m, d) = (dp.next()?.ok()?, dp.next()?.ok()?, dp.next()?.ok()?);
    let time = time.strip_suffix('Z')?;
    let mut tp = time.split(':');
    let (h, mi, sec) = (
        tp.next()?.parse::<i64>().ok()?,
        tp.next()?.parse::<i64>().ok()?,
        tp.next()?.parse::<f64>().ok()?,
    );
    Some((days_from_civil(y, m, d) * 86400 + h * 3600 + mi * 60) as f64 + sec)
}

// Howard Hinnant's civil calendar algorithms.
fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719468;
    let era = z.div_euclid(146097);
    let doe = z.rem_euclid(146097);
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (if m <= 2 { y + 1 } else { y }, m, d)
}

fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let mp = if m > 2 { m - 3 } else { m + 9 };
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146097 + doe - 719468
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_round_trips() {
        assert_eq!(rfc3339(0, 0), "1970-01-01T00:00:00.000000000Z");
        assert_eq!(rfc3339(1_700_000_000, 5), "2023-11-14T22:13:20.000000005Z");
        assert_eq!(
            parse_rfc3339("2023-11-14T22:13:20.000000005Z").unwrap().floor(),
            1_700_000_000.0
        );
    }
}
