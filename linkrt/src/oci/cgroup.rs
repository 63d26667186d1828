//! Container cgroups: one per container under a `linkrt` parent (`LINKRT_CGROUP_PARENT`),
//! created by the OCI runtime. linkrt reads the layout of the host (pure cgroup v2, or v1
//! controllers with or without a v2 mount: "hybrid") and, at exit, whether the kernel's OOM
//! killer acted in the container's memory cgroup.
use std::path::{Path, PathBuf};

/// How the host's cgroups are mounted.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Layout {
    /// `/sys/fs/cgroup` is cgroup2.
    V2 { root: PathBuf },
    /// cgroup v1 controllers (each at its mount point), with a cgroup2 mount (hybrid) or not.
    V1 {
        controllers: Vec<(String, PathBuf)>,
        unified: Option<PathBuf>,
    },
}

impl Layout {
    pub fn detect() -> Layout {
        let mounts = std::fs::read_to_string("/proc/self/mounts").unwrap_or_default();
        let mut controllers = Vec::new();
        let mut unified = None;
        for l in mounts.lines() {
            let f: Vec<&str> = l.split_whitespace().collect();
            if f.len() < 4 {
                continue;
            }
            match f[2] {
                "cgroup2" if f[1] == "/sys/fs/cgroup" => {
                    return Layout::V2 {
                        root: PathBuf::from(f[1]),
                    };
                }
                "cgroup2" => unified = Some(PathBuf::from(f[1])),
                "cgroup" => {
                    for opt in f[3].split(',') {
                        if matches!(
                            opt,
                            "cpu"
                                | "cpuacct"
                                | "cpuset"
                                | "memory"
                                | "devices"
                                | "freezer"
                                | "blkio"
                                | "pids"
                                | "net_cls"
                                | "net_prio"
                                | "perf_event"
                                | "hugetlb"
                                | "rdma"
                                | "misc"
                        ) || opt.starts_with("name=")
                        {
                            controllers.push((opt.to_string(), PathBuf::from(f[1])));
                        }
                    }
                }
                _ => {}
            }
        }
        Layout::V1 { controllers, unified }
    }

    pub fn describe(&self) -> &'static str {
        match self {
            Layout::V2 { .. } => "cgroup v2",
            Layout::V1 { unified: Some(_), .. } => "cgroup v1 (hybrid, with a cgroup2 mount)",
            Layout::V1 { .. } => "cgroup v1",
        }
    }

    /// Every directory that holds `rel` (one per hierarchy).
    pub fn dirs(&self, rel: &Path) -> Vec<PathBuf> {
        let rel = rel.strip_prefix("/").unwrap_or(rel);
        match self {
            Layout::V2 { root } => vec![root.join(rel)],
            Layout::V1 { controllers, unified } => {
                let mut v: Vec<PathBuf> = controllers.iter().map(|(_, m)| m.join(rel)).collect();
                v.extend(unified.iter().map(|u| u.join(rel)));
                v.sort();
                v.dedup();
                v
            }
        }
    }

    /// Whether the OOM killer killed a process in the memory cgroup `rel`.
    pub fn oom_killed(&self, rel: &Path) -> bool {
        let rel = rel.strip_prefix("/").unwrap_or(rel);
        let (file, dir) = match self {
            Layout::V2 { root } => ("memory.events", root.join(rel)),
            Layout::V1 { controllers, .. } => match controllers.iter().find(|(c, _)| c == "memory") {
                Some((_, m)) => ("memory.oom_control", m.join(rel)),
                None => return false,
            },
        };
        std::fs::read_to_string(dir.join(file))
            .unwrap_or_default()
            .lines()
            .filter_map(|l| l.strip_prefix("oom_kill "))
            .any(|n| n.trim().parse::<u64>().unwrap_or(0) > 0)
    }
}

/// The cgroup (relative to each hierarchy's root) of a container.
pub fn container_path(parent: &str, id: &str) -> PathBuf {
    Path::new("/").join(parent).join(id)
}

/// Removes empty container cgroups left under `parent` (after an interrupted start); the
/// runtime's `delete` normally removes them. Directories that still hold processes stay.
pub fn remove(layout: &Layout, rel: &Path) {
    for d in layout.dirs(rel) {
        // Children first (the runtime may have made sub-cgroups).
        if let Ok(rd) = std::fs::read_dir(&d) {
            for e in rd.flatten() {
                if e.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                    // A busy cgroup cannot go: nothing to do about it here.
                    let _ = std::fs::remove_dir(e.path());
                }
            }
        }
        match std::fs::remove_dir(&d) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => log::warn!("cannot remove cgroup {}: {e}", d.display()),
        }
    }
}
