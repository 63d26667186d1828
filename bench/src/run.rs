//! The benchmark run: every path measured in one interleaved run (the order rotates every
//! repetition), then the scale runs with the control plane at each N, host-local and hairpin
//! paths, start latency per launcher, `ps -a` with many containers, and memory.
use std::{collections::BTreeMap, fs, path::PathBuf, time::Instant};

use anyhow::{Context, Result, bail};

use crate::{
    control::{self, CpPlan},
    env::{self, Env, SRV_IP, SRV_PORT, Where, World, sh},
    model::{BeforeInfo, Control, Isolation, Memory, Report, Stat},
    peers::{self, PathId},
};

pub struct Options {
    pub quick: bool,
    pub linkrt: PathBuf,
    /// The old linkrt binary and the commit it was built from: the `linkrt_before` path.
    pub linkrt_before: Option<(PathBuf, String)>,
    pub command: String,
    /// Overrides every sample's duration (a structure check of the full run; numbers meaningless).
    pub secs: Option<f64>,
}

/// What one run does; [`Plan::estimate_secs`] is its expected duration.
#[derive(Clone, Debug)]
pub struct Plan {
    pub reps: usize,
    pub secs: f64,
    pub scale_ns: Vec<usize>,
    pub scale_reps: usize,
    pub scale_secs: f64,
    /// docker-proxy runs one process per port: measured up to this N.
    pub docker_proxy_max_n: usize,
    pub local_reps: usize,
    pub local_secs: f64,
    pub launcher_cycles: usize,
    pub cp: CpPlan,
    pub fill: usize,
    pub ps_runs: usize,
    /// The interleaved main run's paths ([`PathId::main`]).
    pub main_paths: Vec<PathId>,
}

/// The datapath metrics: (client mode, result key).
const METRICS: [(&str, &str); 4] = [
    ("bulk", "bulk_gbps"),
    ("rr", "rr_tps"),
    ("crr", "crr_cps"),
    ("udp", "udp_pps"),
];

impl Plan {
    /// `before`: the run has the before world (its path joins the main run).
    pub fn new(quick: bool, secs: Option<f64>, before: bool) -> Plan {
        let mut p = if quick {
            Plan {
                reps: 1,
                secs: 0.3,
                scale_ns: vec![1, 100, 10_000],
                scale_reps: 1,
                scale_secs: 0.3,
                docker_proxy_max_n: 100,
                local_reps: 1,
                local_secs: 0.3,
                launcher_cycles: 3,
                cp: CpPlan {
                    run_cycles: 2,
                    publish_reps: 1,
                    exec_budget: std::time::Duration::from_secs(1),
                },
                fill: 10,
                ps_runs: 2,
                main_paths: PathId::main(before),
            }
        } else {
            Plan {
                reps: 5,
                secs: 3.0,
                scale_ns: vec![1, 100, 10_000, 60_000],
                scale_reps: 3,
                scale_secs: 2.0,
                docker_proxy_max_n: 100,
                local_reps: 3,
                local_secs: 2.0,
                launcher_cycles: 100,
                cp: CpPlan {
                    run_cycles: 10,
                    publish_reps: 3,
                    exec_budget: std::time::Duration::from_secs(8),
                },
                fill: 200,
                ps_runs: 5,
                main_paths: PathId::main(before),
            }
        };
        if let Some(s) = secs {
            p.secs = s;
            p.scale_secs = s;
            p.local_secs = s;
        }
        p
    }

    fn scale_paths(&self, n: usize) -> Vec<PathId> {
        let mut v = vec![PathId::Bare, PathId::Linkrt, PathId::Iptables, PathId::Nftables];
        if n <= self.docker_proxy_max_n {
            v.push(PathId::DockerProxy);
        }
        v
    }

    /// Measurement time plus the fixed costs seen in quick and structure-check runs on 2 cores
    /// (process start per sample, rule loads, container starts).
    pub fn estimate_secs(&self) -> f64 {
        let per_sample = 0.05;
        let main = (self.reps * self.main_paths.len() * METRICS.len()) as f64 * (self.secs + per_sample);
        // The before world: its instance and server (a few linkrt commands).
        let before = if self.main_paths.contains(&PathId::LinkrtBefore) {
            3.0
        } else {
            0.0
        };
        let scale: f64 = self
            .scale_ns
            .iter()
            .map(|&n| {
                let samples = (self.scale_reps * self.scale_paths(n).len() * METRICS.len()) as f64;
                // iptables-restore of Docker's rules: ~25 µs per rule, loaded every repetition
                // (and twice more for the control plane).
                let rules = (self.scale_reps + 1) as f64 * (3 * n) as f64 * 25e-6;
                samples * (self.scale_secs + per_sample) + rules + 2.0
            })
            .sum();
        let cp_per_n = (self.cp.run_cycles as f64 * 0.35)
            + self.cp.publish_reps as f64 * 1.2
            + self.cp.exec_budget.as_secs_f64()
            + 1.5;
        let local = (self.local_reps * LOCAL.len() * 2) as f64 * (self.local_secs + 0.1);
        let launchers = self.launcher_cycles as f64 * (0.35 + 0.1);
        let fill = self.fill as f64 * 0.4 + self.ps_runs as f64 * 0.3;
        main + before + scale + cp_per_n * self.scale_ns.len() as f64 + local + launchers + fill + 15.0
    }
}

/// Host processes and hairpin: (name, where the client runs, address).
const LOCAL: [(&str, Where, &str); 8] = [
    ("host_bare", Where::Host(World::Bare), "srv"),
    ("host_linkrt", Where::Host(World::Linkrt), "127.0.0.1:8080"),
    ("host_linkrt_nonat", Where::Host(World::Linkrt), "lsrv"),
    ("host_docker_proxy", Where::Host(World::Bare), "127.0.0.1:8083"),
    ("hairpin_bare", Where::Container(World::Bare), "srv"),
    ("hairpin_linkrt", Where::Container(World::Linkrt), "198.18.0.1:8080"),
    ("hairpin_linkrt_nonat", Where::Container(World::Linkrt), "lsrv"),
    ("hairpin_docker_proxy", Where::Container(World::Bare), "198.18.0.1:8083"),
];

fn value(mode: &str, s: &crate::load::Sample) -> f64 {
    if mode == "bulk" {
        s.ops as f64 * 8.0 / s.secs / 1e9
    } else {
        s.rate()
    }
}

/// Raw samples: (metric, path) → runs in repetition order.
type Raw = BTreeMap<(String, String), Vec<f64>>;

fn measure(env: &Env, raw: &mut Raw, where_: Where, path: &str, addr: &str, secs: f64) -> Result<()> {
    for (mode, key) in METRICS {
        let s = env.client(where_, mode, addr, secs)?;
        let mut push = |k: &str, v: f64| raw.entry((k.to_string(), path.to_string())).or_default().push(v);
        push(key, value(mode, &s));
        if mode == "rr" {
            push("rr_p50_us", s.p50_us);
            push("rr_p99_us", s.p99_us);
            push("rr_cpu_us", s.cpu_us_per_op);
        }
        if mode == "crr" {
            push("crr_cpu_us", s.cpu_us_per_op);
        }
    }
    Ok(())
}

/// metric → path → Stat, with ratios to `bare` where bare was measured.
fn stats(raw: &Raw) -> BTreeMap<String, BTreeMap<String, Stat>> {
    let mut out: BTreeMap<String, BTreeMap<String, Stat>> = BTreeMap::new();
    for ((metric, path), runs) in raw {
        let mut st = Stat::of(runs);
        if let Some(bare) = raw.get(&(metric.clone(), "bare".into())) {
            st = st.with_ratio(bare);
        }
        out.entry(metric.clone()).or_default().insert(path.clone(), st);
    }
    out
}

/// The order of repetition `rep`: rotated, so that no path always follows the same one.
fn rotated<T: Copy>(v: &[T], rep: usize) -> Vec<T> {
    (0..v.len()).map(|i| v[(i + rep) % v.len()]).collect()
}

fn progress(msg: &str) {
    eprintln!("[bench] {msg}");
}

fn version(pkg: &str) -> String {
    sh(&mut env::cmd(&["dpkg-query", "-W", "-f=${Version}", pkg])).unwrap_or_else(|_| "not installed".into())
}

fn loadavg() -> String {
    fs::read_to_string("/proc/loadavg")
        .unwrap_or_default()
        .split_whitespace()
        .take(3)
        .collect::<Vec<_>>()
        .join(" ")
}

fn cpu_model() -> String {
    fs::read_to_string("/proc/cpuinfo")
        .unwrap_or_default()
        .lines()
        .find_map(|l| {
            l.strip_prefix("model name")
                .map(|r| r.trim_start_matches([' ', '\t', ':']).to_string())
        })
        .unwrap_or_default()
}

/// linkrt's own scale: `extra` dummy SCTP mappings on another container (`running` tracks it).
fn linkrt_extra(env: &Env, running: &mut bool, extra: usize) -> Result<()> {
    if *running {
        env.linkrt(&["rm", "-f", "dummies"])?;
        *running = false;
    }
    if extra > 0 {
        let range = format!("1024-{}:1024-{}/sctp", 1023 + extra, 1023 + extra);
        env.linkrt(&[
            "run", "-d", "--name", "dummies", "-p", &range, "alpine", "sleep", "3600",
        ])?;
        *running = true;
    }
    Ok(())
}

pub fn run(o: &Options) -> Result<Report> {
    let t_start = Instant::now();
    let plan = Plan::new(o.quick, o.secs, o.linkrt_before.is_some());
    if !std::path::Path::new(peers::DOCKER_PROXY).exists() {
        bail!(
            "{} is missing: install Debian's docker.io (cargo xtask setup does; dockerd is never started)",
            peers::DOCKER_PROXY
        );
    }
    progress(&format!(
        "plan: {} repetitions × {} s, scale N = {:?} × {} × {} s; expected about {:.0} s",
        plan.reps,
        plan.secs,
        plan.scale_ns,
        plan.scale_reps,
        plan.scale_secs,
        plan.estimate_secs()
    ));
    let mut rep = Report {
        quick: o.quick,
        secs_override: o.secs,
        command: o.command.clone(),
        date: sh(&mut env::cmd(&["date", "-u", "+%Y-%m-%dT%H:%M:%SZ"]))?
            .trim()
            .to_string(),
        kernel: fs::read_to_string("/proc/sys/kernel/osrelease")
            .unwrap_or_default()
            .trim()
            .to_string(),
        cpus: std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0),
        cpu_model: cpu_model(),
        loadavg_start: loadavg(),
        reps: plan.reps,
        secs_per_sample: plan.secs,
        scale_reps: plan.scale_reps,
        scale_secs: plan.scale_secs,
        ..Default::default()
    };
    for pkg in ["docker.io", "iptables", "nftables", "socat", "runc", "crun", "bpftool"] {
        rep.versions.insert(pkg.into(), version(pkg));
    }
    let mut env = Env::new(
        &o.linkrt,
        o.linkrt_before.as_ref().map(|(p, c)| (p.as_path(), c.as_str())),
    )?;
    rep.before = env.before.as_ref().map(|b| BeforeInfo {
        commit: b.commit.clone(),
        no_volume_flag: !b.help.contains("--volume"),
    });
    let mut phase = Instant::now();
    let mut end_phase = |rep: &mut Report, name: &str| {
        rep.phase_secs.insert(name.into(), phase.elapsed().as_secs_f64());
        phase = Instant::now();
    };

    // 0. Start latency on an empty instance, per launcher; run -d with no mapping anywhere.
    progress("start latency per launcher (empty instance)");
    let mut control = Control::default();
    for l in control::launchers(&env) {
        match control::start_latency(&env, l.as_ref(), plan.launcher_cycles)? {
            Ok(s) => control.launchers.push(s),
            Err(why) => {
                control.unusable.insert(l.name(), why);
            }
        }
    }
    let one_port = control::LinkrtLauncher {
        runtime: None,
        ports: vec!["9000:5000".into()],
    };
    let none = control::cycles(&env, &one_port, "none", plan.cp.run_cycles, true)?;
    control.run_d_none_ms = Stat::of(&none.start);
    control.run_d_none_failures = none.failures;
    end_phase(&mut rep, "launchers");

    // 1. The servers: a linkrt container, and the bare world's plain process (already up).
    let me = env.server_bin.path.clone();
    let mut srv_args: Vec<String> = ["run", "-d", "--name", "srv", "-p", "8080:5000", "-p", "8080:5000/udp"]
        .map(String::from)
        .to_vec();
    srv_args.extend(env.server_bin.run_args.iter().cloned());
    srv_args.extend(
        [
            "alpine",
            "taskset",
            "-c",
            "1",
            &me,
            "serve",
            "--port",
            &SRV_PORT.to_string(),
        ]
        .map(String::from),
    );
    env.linkrt(&srv_args.iter().map(String::as_str).collect::<Vec<_>>())?;
    env.linkrt_srv_ip = env
        .linkrt(&["inspect", "-f", "{{.NetworkSettings.IPAddress}}", "srv"])?
        .trim()
        .to_string();
    if env.linkrt_srv_ip != SRV_IP {
        bail!(
            "linkrt gave the server {} (both worlds expect {SRV_IP})",
            env.linkrt_srv_ip
        );
    }
    if let Err(e) = env.wait_server(World::Linkrt) {
        let logs = env.linkrt(&["logs", "srv"]).unwrap_or_default();
        bail!("{e:#} (is {me} visible in the container?): {logs}");
    }
    env.wait_server(World::Bare)?;
    if env.before.is_some() {
        progress(&format!(
            "the before world: linkrt at {} publishes its server",
            env.before()?.commit
        ));
        env.start_before_server()?;
    }
    // The hairpin client is linked to the server, so that its direct path is allowed too.
    let mut hp_args: Vec<String> = ["run", "-d", "--name", "hairpin", "--link", "srv"]
        .map(String::from)
        .to_vec();
    hp_args.extend(env.server_bin.run_args.iter().cloned());
    hp_args.extend(["alpine", "sleep", "3600"].map(String::from));
    env.linkrt(&hp_args.iter().map(String::as_str).collect::<Vec<_>>())?;
    rep.isolation = isolation(&env)?;
    let mut memory = Memory {
        supervisor: supervisor_mem(&env, "srv", "the server container (2 mappings)", &mut rep.notes),
        ..Default::default()
    };

    // 2. Every path × metric, interleaved.
    let mut raw = Raw::new();
    for r in 0..plan.reps {
        progress(&format!("datapath repetition {}/{}", r + 1, plan.reps));
        for p in rotated(&plan.main_paths, r) {
            peers::setup(&mut env, p, 0)?;
            if p == PathId::DockerProxy && memory.docker_proxy.is_none() {
                let pid = env.peer_pids().first().copied().context("no docker-proxy")?;
                memory.docker_proxy = Some(control::proc_mem("one docker-proxy (tcp)", pid as i32)?);
            }
            measure(&env, &mut raw, p.client(), p.name(), &p.addr(&env), plan.secs)?;
        }
    }
    env.stop_peers()?;
    rep.paths = stats(&raw);
    end_phase(&mut rep, "datapath");

    // 3. Scale: N mappings, the measured one last; the control plane at each N.
    let mut dummies = false;
    for &n in &plan.scale_ns {
        progress(&format!("scale N = {n}"));
        linkrt_extra(&env, &mut dummies, n - 1)?;
        let mut raw = Raw::new();
        for r in 0..plan.scale_reps {
            for p in rotated(&plan.scale_paths(n), r) {
                peers::setup(&mut env, p, n - 1)?;
                if p == PathId::DockerProxy && n == plan.docker_proxy_max_n && r == 0 {
                    memory.docker_proxy_all = Some(control::procs_mem(
                        &format!("all {} docker-proxy processes at N = {n}", env.peer_pids().len()),
                        &env.peer_pids(),
                    )?);
                }
                measure(&env, &mut raw, p.client(), p.name(), &p.addr(&env), plan.scale_secs)?;
            }
        }
        env.stop_peers()?;
        for (metric, by_path) in stats(&raw) {
            if METRICS.iter().any(|(_, k)| *k == metric) {
                rep.scale.entry(metric).or_default().insert(n, by_path);
            }
        }
        if n > plan.docker_proxy_max_n {
            rep.scale_skipped.entry(n).or_default().insert(
                "docker_proxy".into(),
                format!("one process per port and protocol: {n} processes (not run)"),
            );
        }
        memory.maps_bytes_by_n.insert(
            n,
            control::maps_memory(&env.bpffs())?
                .iter()
                .map(|m| m.bytes_memlock)
                .sum(),
        );
        // srv publishes 2 mappings (tcp and udp), the dummies N-1.
        control.by_n.insert(n, control::at_n(&mut env, n, n + 1, &plan.cp)?);
        if n == 1 {
            env.linkrt(&[
                "run",
                "-d",
                "--name",
                "cp10k",
                "-p",
                "20000-29999:20000-29999",
                "alpine",
                "sleep",
                "600",
            ])?;
            memory.supervisor_10000 =
                supervisor_mem(&env, "cp10k", "a container publishing 10,000 ports", &mut rep.notes);
            env.linkrt(&["rm", "-f", "cp10k"])?;
        }
    }
    linkrt_extra(&env, &mut dummies, 0)?;
    end_phase(&mut rep, "scale");

    // 4. Host processes and hairpin.
    peers::setup(&mut env, PathId::DockerProxy, 0)?;
    let mut lraw = Raw::new();
    for r in 0..plan.local_reps {
        progress(&format!("host and hairpin repetition {}/{}", r + 1, plan.local_reps));
        for (name, w, addr) in rotated(&LOCAL, r) {
            let addr = match addr {
                "srv" => format!("{SRV_IP}:{SRV_PORT}"),
                "lsrv" => format!("{}:{SRV_PORT}", env.linkrt_srv_ip),
                a => a.to_string(),
            };
            for (mode, key) in [("rr", "rr_tps"), ("crr", "crr_cps")] {
                let s = env.client(w, mode, &addr, plan.local_secs)?;
                lraw.entry((key.to_string(), name.to_string()))
                    .or_default()
                    .push(s.rate());
            }
        }
    }
    env.stop_peers()?;
    for ((metric, path), runs) in &lraw {
        let base = if path.starts_with("host_") {
            "host_bare"
        } else {
            "hairpin_bare"
        };
        let st = Stat::of(runs).with_ratio(&lraw[&(metric.clone(), base.to_string())]);
        rep.local.entry(metric.clone()).or_default().insert(path.clone(), st);
    }
    end_phase(&mut rep, "local");

    // 5. Many containers: start latency as they accumulate, ps -a, rm -f.
    progress(&format!("{} containers: run -d, ps -a, rm -f", plan.fill));
    let f = control::fill(&env, plan.fill, plan.ps_runs)?;
    control.ps_containers = f.running + 2;
    control.ps_a_ms = f.ps;
    control.fill_start_ms = f.start;
    control.fill_rm_ms = f.rm;
    control.fill_failures = f.failures;
    rep.control = control;
    end_phase(&mut rep, "fill");

    // 6. Memory of this instance, through its own pins; the isolation checked once more.
    memory.maps = control::maps_memory(&env.bpffs())?;
    memory.maps_bytes = memory.maps.iter().map(|m| m.bytes_memlock).sum();
    memory.progs = control::progs_memory(&env.bpffs())?;
    memory.progs_bytes = memory.progs.iter().map(|m| m.bytes_memlock).sum();
    rep.memory = memory;
    env.assert_bare_world_clean(false)?;
    rep.isolation.bare_checks = env.bare_checks.get();
    rep.isolation.bare_interfaces = [&env.b_host, &env.b_cli, &env.b_srv, &env.b_peer]
        .iter()
        .map(|ns| env::interfaces(ns).map(|v| v.len()))
        .sum::<Result<usize>>()?;
    rep.loadavg_end = loadavg();
    rep.notes.extend(notes());
    if let Some(b) = &rep.before {
        rep.notes.push(format!(
            "linkrt_before: the same published port (8080, TCP and UDP) through linkrt built at commit {}, the \
             datapath before issue 11's hardening, in a third world of namespaces like the linkrt world's (its own \
             uplink, state dirs, bpffs directory and cgroup), measured in the same interleaved repetitions; the \
             hardening's cost is 1 − the median of the per-repetition linkrt / linkrt_before ratios{}",
            b.commit,
            if b.no_volume_flag {
                " (that version has no -v: its containers see the host's root, where the load generator's copy is)"
            } else {
                ""
            }
        ));
    }
    drop(env);
    rep.wall_secs = t_start.elapsed().as_secs_f64();
    Ok(rep)
}

/// A supervisor's memory; a process layout this harness does not know (another runtime) is a
/// note in the report, not the end of the run.
fn supervisor_mem(env: &Env, name: &str, what: &str, notes: &mut Vec<String>) -> Option<crate::model::ProcMem> {
    let what = format!("supervisor of {what}");
    match control::supervisor_pid(env, name).and_then(|pid| control::proc_mem(&what, pid)) {
        Ok(m) => Some(m),
        Err(e) => {
            notes.push(format!("{what}: not measured: {e:#}"));
            None
        }
    }
}

/// What the isolation looks like at the start of the datapath runs.
fn isolation(env: &Env) -> Result<Isolation> {
    env.assert_bare_world_clean(false)?;
    peers::assert_linkrt_world(env)?;
    let own = fs::read_to_string("/proc/self/cgroup")?;
    let own_v2 = own
        .lines()
        .find_map(|l| l.strip_prefix("0::"))
        .unwrap_or("/")
        .to_string();
    let cg_root = env.cgroup.parent().context("cgroup root")?;
    if cg_root.join(own_v2.trim_start_matches('/')).starts_with(&env.cgroup) {
        bail!("the harness runs inside linkrt's hooked cgroup: the bare world's host clients would be hooked");
    }
    let client_cgroup_programs = sh(&mut env::cmd(&[
        "bpftool",
        "cgroup",
        "show",
        &cg_root.join(own_v2.trim_start_matches('/')).to_string_lossy(),
        "effective",
    ]))
    .unwrap_or_else(|e| format!("(bpftool cgroup show failed: {e})"));
    let mut sysctls = BTreeMap::new();
    sysctls.insert(
        "kernel.sched_autogroup_enabled".to_string(),
        vec![
            fs::read_to_string("/proc/sys/kernel/sched_autogroup_enabled")
                .unwrap_or_default()
                .trim()
                .to_string();
            2
        ],
    );
    for key in [
        "net.ipv4.ip_forward",
        "net.ipv4.conf.all.rp_filter",
        "net.ipv4.conf.default.rp_filter",
        "net.core.somaxconn",
        "net.ipv4.tcp_congestion_control",
    ] {
        let l = env::sysctl_get(&env.l_host, key)?;
        let b = env::sysctl_get(&env.b_host, key)?;
        if l != b {
            bail!("{key} differs between the worlds: linkrt {l}, bare {b}");
        }
        let mut v = vec![l, b];
        if let Some(before) = &env.before {
            let o = env::sysctl_get(&before.host, key)?;
            if o != v[0] {
                bail!("{key} differs between the worlds: linkrt {}, before {o}", v[0]);
            }
            v.push(o);
        }
        sysctls.insert(key.to_string(), v);
    }
    let before_attached = match &env.before {
        Some(b) => {
            peers::assert_before_world(env)?;
            env::attached_programs(&b.host)?
        }
        None => Vec::new(),
    };
    Ok(Isolation {
        method: "separate namespaces: linkrt manages only the linkrt world; the baselines run in an identical bare \
                 world it never enters. Checked before every baseline's samples: TCX (BPF_PROG_QUERY) and tc/XDP \
                 (bpftool net) on every interface of the bare world's 4 namespaces, and no netfilter rule where none \
                 belongs; positive control: linkrt's programs on both hooks of every linkrt-world interface"
            .into(),
        bare_namespaces: vec![
            env.b_host.clone(),
            env.b_cli.clone(),
            env.b_srv.clone(),
            env.b_peer.clone(),
        ],
        linkrt_attached: env::attached_programs(&env.l_host)?,
        before_attached,
        client_cgroup_programs: client_cgroup_programs.trim().to_string(),
        sysctls,
        ..Default::default()
    })
}

fn notes() -> Vec<String> {
    vec![
        "bare: client → container IP in a world of namespaces linkrt never enters (same addresses, veth, bridge, \
         sysctls, server binary and pinning as linkrt's); every ratio is to bare, per repetition"
            .into(),
        "linkrt_nonat: client → container IP in the linkrt world: linkrt's programs on the path, no NAT (its idle cost)"
            .into(),
        "iptables: Docker 28's rules with userland-proxy=false (DNAT, ACCEPT and hairpin MASQUERADE per port, raw DROP \
         per container, DOCKER-CT); nftables: DNAT through a map; both in the bare world"
            .into(),
        "docker_proxy: Debian docker.io's /usr/sbin/docker-proxy started as dockerd does (-proto -host-ip 0.0.0.0 \
         -host-port -container-ip -container-port, status pipe on fd 3, Pdeathsig), tcp and udp, no iptables rule: \
         the path of every connection when dockerd runs with --iptables=false, and of localhost and hairpin \
         connections by default; socat: fork per connection"
            .into(),
        "scale: N-1 dummy mappings precede the measured one (linkrt: SCTP entries of another container in the same \
         hash map; iptables: 3 rules each; nftables: map elements; docker-proxy: one process each, up to N = 100)"
            .into(),
        "client pinned to CPU 0 (taskset), server to CPU 1; every server, proxy and client in a session of its own \
         (autogroup scheduling treats all paths alike); cpu_us = busy CPU of the whole machine per transaction"
            .into(),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_run_fits_in_25_minutes_and_quick_in_2() {
        for before in [false, true] {
            let full = Plan::new(false, None, before).estimate_secs();
            assert!((10.0 * 60.0..25.0 * 60.0).contains(&full), "full run: {full:.0} s");
            let quick = Plan::new(true, None, before).estimate_secs();
            assert!(quick < 120.0, "quick run: {quick:.0} s");
        }
        // The before path costs its samples (4 metrics × 5 repetitions × 3 s) and little else.
        let extra = Plan::new(false, None, true).estimate_secs() - Plan::new(false, None, false).estimate_secs();
        assert!((60.0..70.0).contains(&extra), "{extra:.0} s");
    }

    #[test]
    fn every_repetition_visits_every_path_in_a_rotated_order() {
        let a = rotated(&PathId::MAIN, 0);
        let b = rotated(&PathId::MAIN, 1);
        assert_eq!(a.len(), b.len());
        assert!(b.iter().all(|p| a.contains(p)) && a[0] != b[0]);
    }

    #[test]
    fn the_before_path_is_in_every_repetition_of_the_main_run() {
        let plan = Plan::new(false, None, true);
        assert!(plan.main_paths.contains(&PathId::LinkrtBefore));
        let mut firsts = std::collections::BTreeSet::new();
        for r in 0..plan.reps {
            let order = rotated(&plan.main_paths, r);
            assert_eq!(order.len(), plan.main_paths.len());
            for p in [PathId::Bare, PathId::Linkrt, PathId::LinkrtBefore] {
                assert_eq!(order.iter().filter(|x| **x == p).count(), 1, "rep {r}: {order:?}");
            }
            firsts.insert(order[0]);
        }
        // The order rotates: no path always comes first.
        assert_eq!(firsts.len(), plan.reps);
        assert!(!Plan::new(false, None, false).main_paths.contains(&PathId::LinkrtBefore));
        assert!(Plan::new(true, None, true).main_paths.contains(&PathId::LinkrtBefore));
    }
}
