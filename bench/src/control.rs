//! The control plane and memory: container start latency per launcher, `rm -f`, `ps -a`,
//! publishing a 10,000-port range against the peers' ways, and this instance's locked memory.
use std::{
    fs,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail};

use crate::{
    env::{BARE_BRIDGE, Env, check_interrupted, cmd, sh, time_ms},
    model::{ControlAtN, LauncherSeries, MapMem, ProcMem, ProgMem, Stat},
    peers::{self, PathId},
};

/// One way to start a detached container. Adding a runtime is one more implementation (or one
/// more entry in [`launchers`]); [`start_latency`] turns any of them into a series.
pub trait Launcher {
    fn name(&self) -> String;
    /// What is started, for the report.
    fn what(&self) -> String;
    /// Starts container `id` detached; returns once the runtime reports it running.
    fn start(&self, env: &Env, id: &str) -> Result<()>;
    fn remove(&self, env: &Env, id: &str) -> Result<()>;
    /// Made before the series (untimed), undone after it.
    fn setup(&self, _env: &Env) -> Result<()> {
        Ok(())
    }
    fn teardown(&self, _env: &Env) -> Result<()> {
        Ok(())
    }
}

/// `linkrt run -d [--runtime R]`.
pub struct LinkrtLauncher {
    pub runtime: Option<String>,
    pub ports: Vec<String>,
}

impl Launcher for LinkrtLauncher {
    fn name(&self) -> String {
        match &self.runtime {
            Some(r) => format!("linkrt --runtime {r}"),
            None => "linkrt".into(),
        }
    }

    fn what(&self) -> String {
        let p: String = self.ports.iter().map(|p| format!(" -p {p}")).collect();
        let rt = self
            .runtime
            .as_ref()
            .map(|r| format!(" --runtime {r}"))
            .unwrap_or_default();
        format!("`linkrt run -d{rt}{p} alpine sleep 3600` (network, IP, eBPF attach, records) and `rm -f`")
    }

    fn start(&self, env: &Env, id: &str) -> Result<()> {
        let mut a: Vec<&str> = vec!["run", "-d", "--name", id];
        if let Some(r) = &self.runtime {
            a.extend(["--runtime", r]);
        }
        for p in &self.ports {
            a.extend(["-p", p]);
        }
        a.extend(["alpine", "sleep", "3600"]);
        env.linkrt(&a).map(|_| ())
    }

    fn remove(&self, env: &Env, id: &str) -> Result<()> {
        env.linkrt(&["rm", "-f", id]).map(|_| ())
    }
}

/// A bare OCI runtime starting an equivalent bundle: the floor under linkrt's start latency.
pub struct OciLauncher {
    pub bin: String,
}

impl OciLauncher {
    fn root(&self, env: &Env) -> PathBuf {
        env.tmp.join(format!("oci/{}-state", self.bin))
    }
}

impl Launcher for OciLauncher {
    fn name(&self) -> String {
        format!("{} (floor)", self.bin)
    }

    fn what(&self) -> String {
        format!(
            "`{} run -d` of the bundle linkrt wrote for a container (`alpine sleep 3600`: its root, mounts, namespaces and network namespace, capabilities, seccomp profile, masked paths, devices), in a cgroup of its own; and `delete -f`",
            self.bin
        )
    }

    fn setup(&self, env: &Env) -> Result<()> {
        oci_bundle(env).map(drop)
    }

    fn teardown(&self, env: &Env) -> Result<()> {
        let b = env.tmp.join("oci/bundle");
        if b.exists() {
            fs::remove_dir_all(&b)?;
        }
        env.linkrt(&["rm", "-f", &floor_source(env)]).map(drop)
    }

    fn start(&self, env: &Env, id: &str) -> Result<()> {
        let bundle = env.tmp.join("oci/bundle");
        let root = self.root(env);
        // Detached with pass-through stdio: the container inherits it, so no pipe (output()
        // would wait for the container's end); errors go to a file.
        let err_path = env.tmp.join(format!("oci/{}-{id}.err", self.bin));
        let err = fs::File::create(&err_path)?;
        let st = Command::new(&self.bin)
            .arg("--root")
            .arg(&root)
            .args(["run", "-d", "--bundle"])
            .arg(&bundle)
            .arg(id)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(err)
            .status()?;
        if !st.success() {
            let msg = fs::read_to_string(&err_path).unwrap_or_default();
            bail!("{} run: {}", self.bin, msg.trim());
        }
        Ok(())
    }

    fn remove(&self, env: &Env, id: &str) -> Result<()> {
        sh(Command::new(&self.bin)
            .arg("--root")
            .arg(self.root(env))
            .args(["delete", "-f", id]))
        .map(|_| ())
    }
}

fn have(bin: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {bin}")])
        .stdout(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

/// Every launcher this machine and this linkrt offer: linkrt itself, linkrt per OCI runtime once
/// `linkrt run --help` lists `--runtime`, and each installed OCI runtime alone.
pub fn launchers(env: &Env) -> Vec<Box<dyn Launcher>> {
    let mut v: Vec<Box<dyn Launcher>> = vec![Box::new(LinkrtLauncher {
        runtime: None,
        ports: Vec::new(),
    })];
    let runtimes: Vec<&str> = ["runc", "crun"].into_iter().filter(|b| have(b)).collect();
    if env.linkrt_help.contains("--runtime") {
        for r in &runtimes {
            v.push(Box::new(LinkrtLauncher {
                runtime: Some(r.to_string()),
                ports: Vec::new(),
            }));
        }
    }
    for r in runtimes {
        v.push(Box::new(OciLauncher { bin: r.to_string() }));
    }
    v
}

/// Timed start/remove cycles. A failed start is recorded, not fatal (a 20-minute run should
/// not die of one flaky start), and whatever it left is removed; more than 10% failures are.
pub struct Cycles {
    pub start: Vec<f64>,
    pub rm: Vec<f64>,
    pub failures: Vec<String>,
}

/// The command's own message of a failed `sh()` (what follows "failed: "), first line.
fn short_error(e: &anyhow::Error) -> String {
    let full = format!("{e:#}");
    let tail = full.rsplit("failed: ").next().unwrap_or(&full);
    tail.lines()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("")
        .trim()
        .to_string()
}

pub fn cycles(env: &Env, l: &dyn Launcher, prefix: &str, n: usize, remove: bool) -> Result<Cycles> {
    let mut c = Cycles {
        start: Vec::new(),
        rm: Vec::new(),
        failures: Vec::new(),
    };
    for i in 0..n {
        check_interrupted()?;
        let id = format!("{prefix}-{}-{i}", env.tag);
        match time_ms(|| l.start(env, &id)) {
            Ok(t) => {
                c.start.push(t);
                if remove {
                    c.rm.push(time_ms(|| l.remove(env, &id))?);
                }
            }
            Err(e) => {
                eprintln!("[bench] {} start {i} failed: {e:#}", l.name());
                // A half-made container may or may not exist: its removal may fail too.
                let rm = l
                    .remove(env, &id)
                    .err()
                    .map(|r| format!(" (removal: {r:#})"))
                    .unwrap_or_default();
                c.failures.push(format!("{}{rm}", short_error(&e)));
                if c.failures.len() > n / 10 + 1 {
                    bail!(
                        "{} of {} starts with {} failed: {}",
                        c.failures.len(),
                        i + 1,
                        l.name(),
                        c.failures.join("; ")
                    );
                }
            }
        }
    }
    Ok(c)
}

/// Start/remove cycles of one launcher after one untimed warm-up (the first linkrt start also
/// creates the bridge and pins the maps). A failing warm-up means "not usable here".
pub fn start_latency(env: &Env, l: &dyn Launcher, n: usize) -> Result<std::result::Result<LauncherSeries, String>> {
    let warm = format!("lat-{}-warm", env.tag);
    if let Err(e) = l.setup(env) {
        // Whatever half of it was made goes too.
        let undo = l
            .teardown(env)
            .err()
            .map(|t| format!(" (and undoing it: {t:#})"))
            .unwrap_or_default();
        return Ok(Err(format!("{e:#}{undo}")));
    }
    let r = series(env, l, n, &warm);
    // Undone whatever the series did; an error of the undo is an error of the benchmark.
    l.teardown(env)?;
    r
}

fn series(env: &Env, l: &dyn Launcher, n: usize, warm: &str) -> Result<std::result::Result<LauncherSeries, String>> {
    if let Err(e) = l.start(env, warm) {
        // Whatever half-exists must go; the start error is the answer.
        if let Err(rm) = l.remove(env, warm) {
            return Ok(Err(format!("{e:#} (and removing it: {rm:#})")));
        }
        return Ok(Err(format!("{e:#}")));
    }
    l.remove(env, warm)?;
    let c = cycles(env, l, "lat", n, true)?;
    Ok(Ok(LauncherSeries {
        name: l.name(),
        what: l.what(),
        start_ms: Stat::of(&c.start),
        rm_ms: Stat::of(&c.rm),
        failures: c.failures,
    }))
}

/// The linkrt container whose bundle the floor launchers run.
fn floor_source(env: &Env) -> String {
    format!("floor-src-{}", env.tag)
}

/// The OCI bundle of the floor launchers: the very spec linkrt wrote for a running container
/// (root, mounts, namespaces and the path of its network namespace, capabilities, seccomp,
/// masked paths, devices, resources), with only the cgroup changed to one of the benchmark's
/// own. The floor is thus the runtime's cost for what linkrt asks of it, nothing else.
fn oci_bundle(env: &Env) -> Result<PathBuf> {
    let b = env.tmp.join("oci/bundle");
    if b.join("config.json").exists() {
        return Ok(b);
    }
    let src = floor_source(env);
    env.linkrt(&["run", "-d", "--name", &src, "alpine", "sleep", "3600"])?;
    let id = env.linkrt(&["inspect", "-f", "{{.Id}}", &src])?;
    let theirs = env.tmp.join("lib/containers").join(id.trim()).join("bundle");
    let mut j: serde_json::Value = serde_json::from_str(&fs::read_to_string(theirs.join("config.json"))?)?;
    // The root is given relative to the bundle, or absolute.
    let root = j["root"]["path"].as_str().context("spec without a root")?.to_string();
    j["root"]["path"] = theirs.join(&root).to_string_lossy().into_owned().into();
    j["linux"]["cgroupsPath"] = env.oci_cgroup.clone().into();
    fs::create_dir_all(&b)?;
    fs::write(b.join("config.json"), serde_json::to_string_pretty(&j)?)?;
    Ok(b)
}

/// Deletes the floor launchers' containers and cgroups (called from [`Env`]'s drop).
pub fn cleanup_oci(env: &Env, problems: &mut Vec<String>) {
    for bin in ["runc", "crun"] {
        let root = env.tmp.join(format!("oci/{bin}-state"));
        if !root.exists() {
            continue;
        }
        match sh(Command::new(bin).arg("--root").arg(&root).args(["list", "-q"])) {
            Ok(ids) => {
                for id in ids.split_whitespace() {
                    if let Err(e) = sh(Command::new(bin).arg("--root").arg(&root).args(["delete", "-f", id])) {
                        problems.push(format!("{bin} delete {id}: {e:#}"));
                    }
                }
            }
            Err(e) => problems.push(format!("{bin} list: {e:#}")),
        }
    }
    // The runtimes create the cgroup (every v1 hierarchy, or the v2 tree) and remove it on delete.
    for h in cgroup_hierarchies() {
        let d = h.join(env.oci_cgroup.trim_start_matches('/'));
        if d.exists() {
            if let Ok(rd) = fs::read_dir(&d) {
                for e in rd.flatten() {
                    if e.path().is_dir()
                        && let Err(err) = fs::remove_dir(e.path())
                    {
                        problems.push(format!("rmdir {}: {err}", e.path().display()));
                    }
                }
            }
            if let Err(err) = fs::remove_dir(&d) {
                problems.push(format!("rmdir {}: {err}", d.display()));
            }
        }
    }
}

pub fn cgroup_hierarchies() -> Vec<PathBuf> {
    fs::read_to_string("/proc/self/mounts")
        .unwrap_or_default()
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f.len() > 2 && (f[2] == "cgroup" || f[2] == "cgroup2")).then(|| PathBuf::from(f[1]))
        })
        .collect()
}

/// Sizes of the control-plane measurements.
#[derive(Clone, Debug)]
pub struct CpPlan {
    pub run_cycles: usize,
    pub publish_reps: usize,
    /// Time budget for Docker's per-rule execs at one N (at least 2 ports are timed).
    pub exec_budget: Duration,
}

/// The control plane at scale N (the N-1 dummies and the server's mappings already exist):
/// linkrt's run -d, rm -f, publish and unpublish of 10,000 ports; the same 10,000 ports the
/// peers' ways, on top of their own N mappings.
pub fn at_n(env: &mut Env, n: usize, existing: usize, p: &CpPlan) -> Result<ControlAtN> {
    let one = LinkrtLauncher {
        runtime: None,
        ports: vec!["9000:5000".into()],
    };
    let run = cycles(env, &one, "cp", p.run_cycles, true)?;
    // Publishing = `run -d` with the range minus `run -d` without ports (their medians' difference
    // per repetition, so that one slow start without ports does not make a negative time).
    let (mut with, mut without, mut unpublish) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..p.publish_reps {
        check_interrupted()?;
        without.push(time_ms(|| {
            env.linkrt(&["run", "-d", "--name", "cp0", "alpine", "sleep", "600"])
                .map(|_| ())
        })?);
        with.push(time_ms(|| {
            env.linkrt(&[
                "run",
                "-d",
                "--name",
                "cp1",
                "-p",
                "20000-29999:20000-29999",
                "alpine",
                "sleep",
                "600",
            ])
            .map(|_| ())
        })?);
        unpublish.push(time_ms(|| env.linkrt(&["rm", "-f", "cp1"]).map(|_| ()))?);
        env.linkrt(&["rm", "-f", "cp0"])?;
    }
    let base = Stat::of(&without).median;
    let publish: Vec<f64> = with.iter().map(|w| w - base).collect();

    // iptables: Docker's per-rule way (timed for a few ports, extrapolated), then one
    // iptables-restore batch, both on top of the N mappings' rules.
    peers::setup(env, PathId::Iptables, n - 1)?;
    let ip = "172.17.0.9";
    let t0 = Instant::now();
    let mut ports_timed = 0usize;
    while ports_timed < 2 || (t0.elapsed() < p.exec_budget && ports_timed < 50) {
        check_interrupted()?;
        for c in peers::docker_rule_execs(30000 + ports_timed as u16, ip, BARE_BRIDGE) {
            let args: Vec<&str> = c.iter().map(String::as_str).collect();
            if c[4] == "-C" {
                // The check is expected to fail (exit 1: no such rule); a missing binary must not pass.
                let st = Command::new("ip")
                    .args(["netns", "exec", &env.b_host])
                    .args(&args)
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .status()?;
                if st.code() != Some(1) {
                    bail!("{args:?}: expected exit 1 (rule absent), got {st}");
                }
            } else {
                env.in_ns(&env.b_host, &args)?;
            }
        }
        ports_timed += 1;
    }
    let execs = t0.elapsed().as_secs_f64() * 1000.0 / ports_timed as f64 * 10_000.0;
    let f = env.tmp.join("cp-batch.rules");
    fs::write(&f, peers::docker_iptables_batch(&peers::batch_ports(), ip, BARE_BRIDGE))?;
    let fs_ = f.to_string_lossy().into_owned();
    let restore = time_ms(|| {
        env.in_ns(&env.b_host, &["iptables-restore", "--noflush", &fs_])
            .map(|_| ())
    })?;
    peers::setup(env, PathId::Nftables, n - 1)?;
    fs::write(&f, peers::nft_batch(&peers::batch_ports(), ip))?;
    let nft = time_ms(|| env.in_ns(&env.b_host, &["nft", "-f", &fs_]).map(|_| ()))?;
    env.stop_peers()?;
    Ok(ControlAtN {
        existing_mappings: existing,
        run_d_ms: Stat::of(&run.start),
        rm_f_ms: Stat::of(&run.rm),
        run_failures: run.failures,
        publish_10000_ms: Stat::of(&publish),
        run_0_ms: Stat::of(&without),
        run_10000_ms: Stat::of(&with),
        unpublish_10000_ms: Stat::of(&unpublish),
        iptables_restore_10000_ms: Some(restore),
        iptables_execs_10000_ms: Some(execs),
        iptables_execs_ports_timed: ports_timed,
        nft_map_10000_ms: Some(nft),
    })
}

/// `linkrt run -d` of `count` containers (each timed while the others run), `ps -a` timed
/// `ps_runs` times, then `rm -f` of each (timed).
pub struct Fill {
    pub start: Stat,
    pub ps: Stat,
    pub rm: Stat,
    pub running: usize,
    pub failures: Vec<String>,
}

pub fn fill(env: &Env, count: usize, ps_runs: usize) -> Result<Fill> {
    let l = LinkrtLauncher {
        runtime: None,
        ports: Vec::new(),
    };
    let c = cycles(env, &l, "fill", count, false)?;
    let mut ps = Vec::new();
    for _ in 0..ps_runs {
        let mut out = String::new();
        ps.push(time_ms(|| {
            out = env.linkrt(&["ps", "-a"])?;
            Ok(())
        })?);
        let rows = out.lines().count().saturating_sub(1);
        if rows < c.start.len() {
            bail!(
                "linkrt ps -a listed {rows} containers, expected at least {}",
                c.start.len()
            );
        }
    }
    let mut rm = Vec::new();
    for i in 0..count {
        let id = format!("fill-{}-{i}", env.tag);
        // The failed starts were removed already.
        if env.linkrt(&["inspect", "-f", "{{.Id}}", &id]).is_ok() {
            rm.push(time_ms(|| l.remove(env, &id))?);
        }
    }
    Ok(Fill {
        start: Stat::of(&c.start),
        ps: Stat::of(&ps),
        rm: Stat::of(&rm),
        running: c.start.len(),
        failures: c.failures,
    })
}

fn bpftool_json(args: &[&str]) -> Result<serde_json::Value> {
    let mut a = vec!["bpftool", "-j"];
    a.extend(args);
    let out = sh(&mut cmd(&a))?;
    serde_json::from_str(out.trim()).with_context(|| format!("bpftool {args:?} output"))
}

/// This instance's maps, each read through its own pin (never a system-wide listing).
pub fn maps_memory(bpffs: &Path) -> Result<Vec<MapMem>> {
    let mut v = Vec::new();
    let mut pins: Vec<PathBuf> = fs::read_dir(bpffs.join("maps"))
        .with_context(|| format!("listing {}", bpffs.join("maps").display()))?
        .flatten()
        .map(|e| e.path())
        .collect();
    pins.sort();
    for pin in pins {
        let j = bpftool_json(&["map", "show", "pinned", &pin.to_string_lossy()])?;
        v.push(MapMem {
            pin: pin.file_name().unwrap_or_default().to_string_lossy().into_owned(),
            name: j["name"].as_str().unwrap_or("").into(),
            kind: j["type"].as_str().unwrap_or("").into(),
            max_entries: j["max_entries"].as_u64().unwrap_or(0),
            bytes_memlock: j["bytes_memlock"].as_u64().unwrap_or(0),
        });
    }
    Ok(v)
}

/// The programs behind this instance's pinned links (TC and cgroup), each counted once.
pub fn progs_memory(bpffs: &Path) -> Result<Vec<ProgMem>> {
    let mut ids = std::collections::BTreeSet::new();
    for e in fs::read_dir(bpffs.join("links"))?.flatten() {
        let j = bpftool_json(&["link", "show", "pinned", &e.path().to_string_lossy()])?;
        if let Some(id) = j["prog_id"].as_u64() {
            ids.insert(id);
        }
    }
    let mut v = Vec::new();
    for id in ids {
        let j = bpftool_json(&["prog", "show", "id", &id.to_string()])?;
        v.push(ProgMem {
            id,
            name: j["name"].as_str().unwrap_or("").into(),
            bytes_memlock: j["bytes_memlock"].as_u64().unwrap_or(0),
        });
    }
    Ok(v)
}

/// RSS and PSS of a process (PSS shares pages fairly among the processes using them).
pub fn proc_mem(what: &str, pid: i32) -> Result<ProcMem> {
    let field = |text: &str, key: &str| -> u64 {
        text.lines()
            .find_map(|l| l.strip_prefix(key))
            .and_then(|r| r.split_whitespace().next()?.parse().ok())
            .unwrap_or(0)
    };
    let status = fs::read_to_string(format!("/proc/{pid}/status"))?;
    let rollup = fs::read_to_string(format!("/proc/{pid}/smaps_rollup"))?;
    Ok(ProcMem {
        what: what.into(),
        pid,
        rss_kib: field(&status, "VmRSS:"),
        pss_kib: field(&rollup, "Pss:"),
    })
}

/// The sum over several processes.
pub fn procs_mem(what: &str, pids: &[u32]) -> Result<ProcMem> {
    let mut m = ProcMem {
        what: what.into(),
        ..Default::default()
    };
    for p in pids {
        let x = proc_mem(what, *p as i32)?;
        m.rss_kib += x.rss_kib;
        m.pss_kib += x.pss_kib;
    }
    Ok(m)
}

/// The supervisor of a linkrt container: the `linkrt __supervise` ancestor of its PID 1.
pub fn supervisor_pid(env: &Env, name: &str) -> Result<i32> {
    let pid: i32 = env
        .linkrt(&["inspect", "-f", "{{.State.Pid}}", name])?
        .trim()
        .parse()
        .context("container pid")?;
    let mut p = pid;
    for _ in 0..8 {
        let stat = fs::read_to_string(format!("/proc/{p}/stat"))?;
        // The command name may contain spaces: the ppid follows the last ')'.
        let ppid: i32 = stat
            .rsplit(')')
            .next()
            .and_then(|r| r.split_whitespace().nth(1))
            .and_then(|x| x.parse().ok())
            .context("parsing /proc/PID/stat")?;
        let cmdline = fs::read(format!("/proc/{ppid}/cmdline"))?;
        if String::from_utf8_lossy(&cmdline).contains("__supervise") {
            return Ok(ppid);
        }
        p = ppid;
    }
    bail!("no supervisor found above pid {pid} of {name}")
}
