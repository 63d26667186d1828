//! Where linkrt keeps its state. Every path can be moved (tests run many private instances).
use std::path::PathBuf;

/// Directories used by one linkrt instance.
#[derive(Clone, Debug)]
pub struct Config {
    /// Persistent state: containers, IPAM, names (default `/var/lib/linkrt`).
    pub root: PathBuf,
    /// Runtime state: supervisor sockets, pid files (default `/run/linkrt`).
    pub run_root: PathBuf,
    /// bpffs directory where maps and links are pinned (default `/sys/fs/bpf/linkrt`).
    pub bpffs: PathBuf,
    /// cgroup v2 directory for the socket hooks (default: the cgroup2 root; `LINKRT_CGROUP`).
    pub cgroup: Option<PathBuf>,
    /// The parent of the containers' cgroups, in every hierarchy (default `linkrt`;
    /// `LINKRT_CGROUP_PARENT`).
    pub cgroup_parent: String,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            root: PathBuf::from("/var/lib/linkrt"),
            run_root: PathBuf::from("/run/linkrt"),
            bpffs: PathBuf::from("/sys/fs/bpf/linkrt"),
            cgroup: None,
            cgroup_parent: "linkrt".into(),
        }
    }
}

impl Config {
    /// The defaults, overridden by `LINKRT_ROOT`, `LINKRT_RUN_ROOT` and `LINKRT_BPFFS`.
    pub fn from_env() -> Self {
        let d = Config::default();
        let var = |k: &str, def: PathBuf| std::env::var_os(k).map(PathBuf::from).unwrap_or(def);
        Config {
            root: var("LINKRT_ROOT", d.root),
            run_root: var("LINKRT_RUN_ROOT", d.run_root),
            bpffs: var("LINKRT_BPFFS", d.bpffs),
            cgroup: std::env::var_os("LINKRT_CGROUP").map(PathBuf::from),
            cgroup_parent: std::env::var("LINKRT_CGROUP_PARENT")
                .ok()
                .filter(|p| !p.is_empty() && !p.contains("..") && !p.starts_with('/'))
                .unwrap_or(d.cgroup_parent),
        }
    }

    /// The cgroup for the socket hooks: `cgroup`, or the first cgroup2 mount.
    pub fn cgroup_dir(&self) -> Option<PathBuf> {
        if let Some(c) = &self.cgroup {
            return Some(c.clone());
        }
        let mounts = std::fs::read_to_string("/proc/self/mounts").ok()?;
        mounts.lines().find_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f.len() > 2 && f[2] == "cgroup2").then(|| PathBuf::from(f[1]))
        })
    }

    pub fn maps_dir(&self) -> PathBuf {
        self.bpffs.join("maps")
    }

    pub fn links_dir(&self) -> PathBuf {
        self.bpffs.join("links")
    }

    /// A private instance in a fresh temporary directory, for unit tests that touch no
    /// bpffs or cgroup (its paths exist only as names there). Returns it and its directory.
    #[cfg(test)]
    pub fn scratch(tag: &str) -> (Config, PathBuf) {
        let d = std::env::temp_dir().join(format!("linkrt-unit-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        let cfg = Config {
            root: d.join("root"),
            run_root: d.join("run"),
            bpffs: d.join("bpf"),
            cgroup: Some(d.join("cgroup")),
            cgroup_parent: format!("linkrt-unit-{tag}"),
        };
        (cfg, d)
    }

    /// The verified programs, one pinned set per eBPF object.
    pub fn programs_dir(&self) -> PathBuf {
        self.bpffs.join("progs")
    }
}
