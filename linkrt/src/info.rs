//! `linkrt info`: what this host is and what linkrt would do on it, like `docker info`.
//!
//! Read-only: it reads the state without taking the lock or repairing anything. The only files
//! it may write are caches of facts about the host: the kernel features
//! (`<run_root>/features.json`) and, through [`Runtime::survey`], whether each OCI runtime can run
//! a container here (`<run_root>/runtime/<name>.probe.json`, found once by starting one).
use std::path::Path;

use serde::Serialize;

use crate::{
    config::Config,
    error::Result,
    features::{self, Features, MIN_KERNEL, Support},
    lifecycle::teardown::pid_alive,
    network::{BRIDGE, Subnet},
    oci::{
        cgroup::Layout,
        runtime::{Runtime, Usable},
    },
    state::{Status, Store},
};

/// The crate's version.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// The git commit the binary was built from (`unknown` outside a git checkout), set by build.rs.
pub const GIT_COMMIT: &str = env!("LINKRT_GIT_COMMIT");

/// One OCI runtime as `info` shows it.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct RuntimeInfo {
    pub name: String,
    pub usable: bool,
    /// Why it cannot run containers here (empty when usable).
    pub reason: String,
}

/// Where the ICC setting comes from.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct Icc {
    pub enabled: bool,
    /// `LINKRT_ICC`, `state` (the last value set) or `default`.
    pub source: String,
}

/// Everything `linkrt info` shows; the field names are Docker's where Docker has the field, so
/// `--format '{{.KernelVersion}}'` works as with `docker info`.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct Info {
    pub server_version: String,
    pub git_commit: String,
    pub kernel_version: String,
    /// `5.10`.
    pub min_kernel: String,
    pub operating_system: String,
    #[serde(rename = "OSType")]
    pub os_type: String,
    pub architecture: String,
    #[serde(rename = "NCPU")]
    pub ncpu: usize,
    pub name: String,
    /// Probe name → `true`/`false` (`false` also when a probe failed: see `Warnings`).
    pub features: std::collections::BTreeMap<String, bool>,
    /// `tcx`, `netlink` or `none`.
    pub attach_mode: String,
    pub bridge: String,
    pub subnet: String,
    pub gateway: String,
    #[serde(rename = "ICC")]
    pub icc: Icc,
    pub containers: usize,
    pub containers_running: usize,
    pub containers_stopped: usize,
    /// Host ports published by running containers (a range counts each port).
    pub published_ports: usize,
    pub runtimes: Vec<RuntimeInfo>,
    pub default_runtime: String,
    pub cgroup_version: String,
    pub cgroups: String,
    /// `<root>`, the state directory (Docker's `DockerRootDir`).
    pub root_dir: String,
    pub run_dir: String,
    pub bpffs_dir: String,
    pub feature_cache: String,
    pub warnings: Vec<String>,
}

fn os_release(text: &str) -> Option<String> {
    text.lines().find_map(|l| {
        let v = l.strip_prefix("PRETTY_NAME=")?;
        Some(v.trim_matches('"').to_string())
    })
}

/// The ICC setting (`linkrt config --icc`), read only.
fn icc(cfg: &Config) -> (Icc, Option<String>) {
    match crate::lifecycle::policy::Settings::load(cfg) {
        Ok(s) => (
            Icc {
                enabled: s.icc,
                source: if cfg.root.join("settings").exists() {
                    "state".into()
                } else {
                    "default".into()
                },
            },
            None,
        ),
        Err(e) => (
            Icc {
                enabled: false,
                source: "default".into(),
            },
            Some(format!("reading the ICC setting: {e}")),
        ),
    }
}

/// The default runtime as `Runtime::select` would pick it: `LINKRT_RUNTIME`, else the first
/// usable one.
fn default_runtime(runtimes: &[RuntimeInfo]) -> String {
    if let Ok(name) = std::env::var("LINKRT_RUNTIME") {
        return name;
    }
    runtimes
        .iter()
        .find(|r| r.usable)
        .map(|r| r.name.clone())
        .unwrap_or_else(|| "none".into())
}

/// Gathers the information (probing the kernel if the cache is not for this kernel).
pub fn gather(cfg: &Config) -> Result<Info> {
    let mut warnings = Vec::new();
    let f = features::current(cfg)?;
    gather_with(cfg, &f, &mut warnings)
}

/// [`gather`] with the kernel's features given.
pub fn gather_with(cfg: &Config, f: &Features, warnings: &mut Vec<String>) -> Result<Info> {
    let uts = nix::sys::utsname::uname().map_err(|e| crate::Error::sys(format!("uname: {e}")))?;
    let mut feature_map = std::collections::BTreeMap::new();
    for (name, s) in f.list() {
        if let Support::Unknown(e) = s {
            warnings.push(format!("feature probe {name} failed: {e}"));
        }
        feature_map.insert(name.to_string(), s.yes());
    }
    if let Err(e) = features::check(f, &features::Mounts::detect(cfg)) {
        warnings.push(format!("containers cannot start here: {e}"));
    }
    let subnet = match Subnet::from_env() {
        Ok(s) => Some(s),
        Err(e) => {
            warnings.push(e.to_string());
            None
        }
    };
    let (icc, icc_warning) = icc(cfg);
    warnings.extend(icc_warning);

    let all = Store::new(cfg).snapshot()?.containers;
    let running = all
        .iter()
        .filter(|c| c.state.status == Status::Running && pid_alive(c.state.pid))
        .count();
    let published_ports = all
        .iter()
        .filter(|c| c.state.status == Status::Running)
        .map(|c| c.state.ports.len())
        .sum();

    let runtimes: Vec<RuntimeInfo> = Runtime::survey(cfg)
        .into_iter()
        .map(|(name, r)| match r {
            Ok(Usable::Yes) => RuntimeInfo {
                name,
                usable: true,
                reason: String::new(),
            },
            Ok(Usable::No(why)) | Err(why) => RuntimeInfo {
                name,
                usable: false,
                reason: why,
            },
        })
        .collect();
    let layout = Layout::detect();
    let path = |p: &Path| p.display().to_string();
    Ok(Info {
        server_version: VERSION.into(),
        git_commit: GIT_COMMIT.into(),
        kernel_version: f.kernel.clone(),
        min_kernel: format!("{}.{}", MIN_KERNEL.0, MIN_KERNEL.1),
        operating_system: std::fs::read_to_string("/etc/os-release")
            .ok()
            .and_then(|t| os_release(&t))
            .unwrap_or_else(|| "unknown".into()),
        os_type: uts.sysname().to_string_lossy().to_lowercase(),
        architecture: uts.machine().to_string_lossy().into_owned(),
        ncpu: std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
        name: uts.nodename().to_string_lossy().into_owned(),
        features: feature_map,
        attach_mode: f.attach_mode().to_string(),
        bridge: BRIDGE.into(),
        subnet: subnet.map(|s| format!("{}/{}", s.base, s.prefix)).unwrap_or_default(),
        gateway: subnet.map(|s| s.gateway().to_string()).unwrap_or_default(),
        icc,
        containers: all.len(),
        containers_running: running,
        containers_stopped: all.len() - running,
        published_ports,
        default_runtime: default_runtime(&runtimes),
        runtimes,
        cgroup_version: match layout {
            Layout::V2 { .. } => "2".into(),
            Layout::V1 { .. } => "1".into(),
        },
        cgroups: layout.describe().into(),
        root_dir: path(&cfg.root),
        run_dir: path(&cfg.run_root),
        bpffs_dir: path(&cfg.bpffs),
        feature_cache: path(&features::cache_path(cfg)),
        warnings: warnings.clone(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn os_release_pretty_name() {
        let t = "NAME=\"Debian GNU/Linux\"\nPRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\nID=debian\n";
        assert_eq!(os_release(t).as_deref(), Some("Debian GNU/Linux 12 (bookworm)"));
        assert_eq!(os_release("ID=x\n"), None);
    }

    #[test]
    fn default_runtime_is_the_first_usable() {
        let r = |name: &str, usable| RuntimeInfo {
            name: name.into(),
            usable,
            reason: String::new(),
        };
        if std::env::var_os("LINKRT_RUNTIME").is_none() {
            assert_eq!(default_runtime(&[r("runc", false), r("crun", true)]), "crun");
            assert_eq!(default_runtime(&[r("runc", false)]), "none");
        }
    }

    #[test]
    fn version_and_commit_are_embedded() {
        assert!(!VERSION.is_empty());
        assert!(GIT_COMMIT == "unknown" || GIT_COMMIT.chars().all(|c| c.is_ascii_hexdigit()));
    }
}
