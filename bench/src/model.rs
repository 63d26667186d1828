//! The benchmark's results as stored in `results.json` (and read back for the README block).
use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::env::Attachment;

/// One measured value and its repetitions.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct Stat {
    pub median: f64,
    #[serde(default)]
    pub p99: f64,
    pub min: f64,
    pub max: f64,
    /// In repetition order (the same index is the same repetition for every path).
    pub runs: Vec<f64>,
    /// Median of the per-repetition ratios to the same repetition's `bare` value.
    #[serde(default)]
    pub ratio_to_bare: Option<f64>,
    #[serde(default)]
    pub ratio_min: Option<f64>,
    #[serde(default)]
    pub ratio_max: Option<f64>,
}

pub fn median(sorted: &[f64]) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let n = sorted.len();
    if n % 2 == 1 {
        sorted[n / 2]
    } else {
        (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0
    }
}

fn sorted(v: &[f64]) -> Vec<f64> {
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    s
}

impl Stat {
    pub fn of(runs: &[f64]) -> Stat {
        let s = sorted(runs);
        let p99 = if s.is_empty() {
            0.0
        } else {
            s[((s.len() as f64 - 1.0) * 0.99).round() as usize]
        };
        Stat {
            median: median(&s),
            p99,
            min: *s.first().unwrap_or(&0.0),
            max: *s.last().unwrap_or(&0.0),
            runs: runs.to_vec(),
            ..Default::default()
        }
    }

    /// Adds the ratios to `bare`'s runs of the same repetitions.
    pub fn with_ratio(mut self, bare: &[f64]) -> Stat {
        let r = sorted(&ratios(&self.runs, bare));
        if !r.is_empty() {
            self.ratio_to_bare = Some(median(&r));
            self.ratio_min = r.first().copied();
            self.ratio_max = r.last().copied();
        }
        self
    }
}

/// Per-repetition ratios `a[i] / b[i]`.
pub fn ratios(a: &[f64], b: &[f64]) -> Vec<f64> {
    a.iter().zip(b).filter(|(_, d)| **d > 0.0).map(|(v, d)| v / d).collect()
}

/// The median of per-repetition ratios `a[i] / b[i]`.
pub fn median_ratio(a: &[f64], b: &[f64]) -> Option<f64> {
    let r = sorted(&ratios(a, b));
    (!r.is_empty()).then(|| median(&r))
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Report {
    pub quick: bool,
    /// Set when every sample's duration was overridden (a structure check): not a real run.
    #[serde(default)]
    pub secs_override: Option<f64>,
    pub command: String,
    /// UTC, RFC 3339.
    pub date: String,
    pub kernel: String,
    pub cpus: usize,
    pub cpu_model: String,
    pub loadavg_start: String,
    pub loadavg_end: String,
    pub wall_secs: f64,
    pub phase_secs: BTreeMap<String, f64>,
    pub reps: usize,
    pub secs_per_sample: f64,
    pub scale_reps: usize,
    pub scale_secs: f64,
    /// Package versions of the peers and tools.
    pub versions: BTreeMap<String, String>,
    /// metric → path → value (bulk_gbps, rr_tps, rr_p50_us, rr_p99_us, rr_cpu_us, crr_cps,
    /// crr_cpu_us, udp_pps).
    pub paths: BTreeMap<String, BTreeMap<String, Stat>>,
    /// metric → N (mappings: the measured one and N-1 before it) → path → value.
    pub scale: BTreeMap<String, BTreeMap<usize, BTreeMap<String, Stat>>>,
    /// N → paths not measured at that N, with the reason.
    pub scale_skipped: BTreeMap<usize, BTreeMap<String, String>>,
    /// Host processes and hairpin: metric (rr_tps, crr_cps) → path → value.
    pub local: BTreeMap<String, BTreeMap<String, Stat>>,
    pub control: Control,
    pub memory: Memory,
    pub isolation: Isolation,
    pub notes: Vec<String>,
    /// The before world's binary (the `linkrt_before` path), when the run had one.
    #[serde(default)]
    pub before: Option<BeforeInfo>,
}

/// The old linkrt binary of the `linkrt_before` path.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct BeforeInfo {
    /// The commit it was built from (the datapath before issue 11's hardening).
    pub commit: String,
    /// Its `linkrt run --help` lacked `-v`: the load generator reached its containers through
    /// the host's root filesystem, as that version's containers see it.
    #[serde(default)]
    pub no_volume_flag: bool,
}

/// Start latency of one way to start a detached container.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct LauncherSeries {
    pub name: String,
    pub what: String,
    pub start_ms: Stat,
    pub rm_ms: Stat,
    /// Starts that failed (not timed), with the error.
    #[serde(default)]
    pub failures: Vec<String>,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct ControlAtN {
    /// Existing mappings of other containers when measured.
    pub existing_mappings: usize,
    /// `linkrt run -d -p 9000:5000` (one port), run to running.
    pub run_d_ms: Stat,
    /// `linkrt rm -f` of that container.
    pub rm_f_ms: Stat,
    #[serde(default)]
    pub run_failures: Vec<String>,
    /// `run -d` with `-p 20000-29999:20000-29999` minus the median `run -d` without ports.
    pub publish_10000_ms: Stat,
    #[serde(default)]
    pub run_0_ms: Stat,
    #[serde(default)]
    pub run_10000_ms: Stat,
    /// `rm -f` of the container with the 10,000-port range (unpublish).
    pub unpublish_10000_ms: Stat,
    /// `iptables-restore --noflush` of Docker's 3 rules per port for 10,000 ports.
    pub iptables_restore_10000_ms: Option<f64>,
    /// Docker's per-rule execs (`-C` then `-A`/`-I`, 3 rules per port), extrapolated.
    pub iptables_execs_10000_ms: Option<f64>,
    pub iptables_execs_ports_timed: usize,
    /// One nft transaction adding 10,000 map elements.
    pub nft_map_10000_ms: Option<f64>,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Control {
    /// Start/rm cycles on an otherwise empty instance, one series per launcher.
    pub launchers: Vec<LauncherSeries>,
    /// Launchers that could not run here, with the reason.
    pub unusable: BTreeMap<String, String>,
    /// `linkrt run -d -p 9000:5000` with no other container (no mapping exists).
    pub run_d_none_ms: Stat,
    #[serde(default)]
    pub run_d_none_failures: Vec<String>,
    /// Scale N → control-plane times with the N-1 dummies and the server's mappings present.
    pub by_n: BTreeMap<usize, ControlAtN>,
    /// `linkrt ps -a` with `ps_containers` containers.
    pub ps_containers: usize,
    pub ps_a_ms: Stat,
    /// Start latency of container i while i others run (filling up to `ps_containers`).
    pub fill_start_ms: Stat,
    pub fill_rm_ms: Stat,
    #[serde(default)]
    pub fill_failures: Vec<String>,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct MapMem {
    pub pin: String,
    pub name: String,
    pub kind: String,
    pub max_entries: u64,
    pub bytes_memlock: u64,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct ProgMem {
    pub id: u64,
    pub name: String,
    pub bytes_memlock: u64,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct ProcMem {
    pub what: String,
    pub pid: i32,
    pub rss_kib: u64,
    pub pss_kib: u64,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Memory {
    /// This instance's maps, read through its own pins.
    pub maps: Vec<MapMem>,
    pub maps_bytes: u64,
    /// The programs behind this instance's pinned links.
    pub progs: Vec<ProgMem>,
    pub progs_bytes: u64,
    /// Scale N → maps_bytes with the N-1 dummy mappings published.
    pub maps_bytes_by_n: BTreeMap<usize, u64>,
    /// The server container's supervisor (2 mappings).
    pub supervisor: Option<ProcMem>,
    /// The supervisor of a container publishing 10,000 ports.
    pub supervisor_10000: Option<ProcMem>,
    /// One docker-proxy process (the measured TCP port).
    pub docker_proxy: Option<ProcMem>,
    /// All docker-proxy processes at the largest N where they ran.
    pub docker_proxy_all: Option<ProcMem>,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Isolation {
    pub method: String,
    pub bare_namespaces: Vec<String>,
    /// How often the bare world was checked (before every sample set of a baseline).
    pub bare_checks: usize,
    /// Interfaces of the bare world at the end of the run.
    pub bare_interfaces: usize,
    /// What was found attached in the bare world (empty, or the run fails).
    pub bare_attached: Vec<Attachment>,
    /// The linkrt world's attachments (the positive control), at the start of the datapath runs.
    pub linkrt_attached: Vec<Attachment>,
    /// The before world's attachments (the old binary's programs), likewise.
    #[serde(default)]
    pub before_attached: Vec<Attachment>,
    /// Programs in effect for the client processes' own cgroup (all paths alike).
    pub client_cgroup_programs: String,
    /// key → [linkrt world, bare world, before world if any] (host namespaces).
    pub sysctls: BTreeMap<String, Vec<String>>,
}
