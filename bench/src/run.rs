//! The benchmark harness: builds a private topology (client ns — host ns — containers on
//! linkrt's bridge), and measures each path in one interleaved run.
//!
//! Paths: `direct` (client → container IP, no NAT: the denominator), `linkrt` (eBPF published
//! port), `iptables` (Docker 28-style DNAT rules, with conntrack), `nftables` (DNAT with a map),
//! `proxy` (socat, a userland proxy with a process per connection). Only one baseline's rules
//! exist at a time, and none while `direct`/`linkrt` are measured (a namespace without rules
//! has no conntrack). Nothing leaves the namespaces the harness creates.
use std::{
    collections::BTreeMap,
    fs,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::Instant,
};

use std::os::unix::process::CommandExt;

use anyhow::{Context, Result, bail};
use serde::Serialize;

use crate::load::Sample;

const HOST_IP: &str = "198.18.0.1";
const CLIENT_IP: &str = "198.18.0.2";
const SRV_IP: &str = "172.17.0.2";
const SRV_PORT: u16 = 5000;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub enum Path_ {
    Direct,
    Linkrt,
    Iptables,
    Nftables,
    Proxy,
}

impl Path_ {
    pub const ALL: [Path_; 5] = [
        Path_::Direct,
        Path_::Linkrt,
        Path_::Iptables,
        Path_::Nftables,
        Path_::Proxy,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Path_::Direct => "direct",
            Path_::Linkrt => "linkrt",
            Path_::Iptables => "iptables",
            Path_::Nftables => "nftables",
            Path_::Proxy => "proxy",
        }
    }

    fn port(self) -> u16 {
        match self {
            Path_::Direct => SRV_PORT,
            Path_::Linkrt => 8080,
            Path_::Iptables => 8081,
            Path_::Nftables => 8082,
            Path_::Proxy => 8083,
        }
    }

    fn addr(self) -> String {
        match self {
            Path_::Direct => format!("{SRV_IP}:{SRV_PORT}"),
            p => format!("{HOST_IP}:{}", p.port()),
        }
    }
}

pub struct Options {
    pub quick: bool,
    pub linkrt: PathBuf,
}

fn sh(cmd: &mut Command) -> Result<String> {
    let o = cmd.output().with_context(|| format!("running {cmd:?}"))?;
    if !o.status.success() {
        bail!(
            "{cmd:?} failed: {}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        );
    }
    Ok(String::from_utf8_lossy(&o.stdout).into_owned())
}

fn cmd(args: &[&str]) -> Command {
    let mut c = Command::new(args[0]);
    c.args(&args[1..]);
    c
}

/// The private topology and linkrt instance; everything is removed on drop.
struct Env {
    host: String,
    cli: String,
    tmp: PathBuf,
    cgroup: PathBuf,
    linkrt: PathBuf,
    me: PathBuf,
    /// A copy of this binary on the host's root filesystem, which containers see (a build
    /// tree under a separate mount, or under a path containers hide, would not be).
    in_container: PathBuf,
    proxies: Vec<Child>,
}

impl Env {
    fn new(linkrt: &Path) -> Result<Env> {
        let tag: String = (0..6).map(|_| (b'a' + rand::random::<u8>() % 26) as char).collect();
        let tmp = std::env::temp_dir().join(format!("linkrt-bench-{tag}"));
        let cg_root = fs::read_to_string("/proc/self/mounts")?
            .lines()
            .find_map(|l| {
                let f: Vec<&str> = l.split_whitespace().collect();
                (f.len() > 2 && f[2] == "cgroup2").then(|| PathBuf::from(f[1]))
            })
            .context("no cgroup2 mount")?;
        let env = Env {
            host: format!("lrtb-host-{tag}"),
            cli: format!("lrtb-cli-{tag}"),
            cgroup: cg_root.join(format!("linkrt-bench-{tag}")),
            tmp,
            linkrt: linkrt.to_path_buf(),
            me: std::env::current_exe()?,
            in_container: PathBuf::from(format!("/var/tmp/linkrt-bench-{tag}/linkrt-bench")),
            proxies: Vec::new(),
        };
        fs::create_dir_all(env.in_container.parent().unwrap())?;
        fs::copy(&env.me, &env.in_container).context("copying the load generator for the containers")?;
        fs::create_dir_all(env.tmp.join("bpf"))?;
        fs::create_dir_all(&env.cgroup)?;
        sh(&mut cmd(&[
            "mount",
            "-t",
            "bpf",
            "bpf",
            &env.tmp.join("bpf").to_string_lossy(),
        ]))?;
        for ns in [&env.host, &env.cli] {
            sh(&mut cmd(&["ip", "netns", "add", ns]))?;
            sh(&mut cmd(&["ip", "-n", ns, "link", "set", "lo", "up"]))?;
        }
        sh(&mut cmd(&[
            "ip", "link", "add", "up0", "netns", &env.host, "type", "veth", "peer", "name", "eth0", "netns", &env.cli,
        ]))?;
        sh(&mut cmd(&[
            "ip",
            "-n",
            &env.host,
            "addr",
            "add",
            &format!("{HOST_IP}/24"),
            "dev",
            "up0",
        ]))?;
        sh(&mut cmd(&["ip", "-n", &env.host, "link", "set", "up0", "up"]))?;
        sh(&mut cmd(&[
            "ip",
            "-n",
            &env.cli,
            "addr",
            "add",
            &format!("{CLIENT_IP}/24"),
            "dev",
            "eth0",
        ]))?;
        sh(&mut cmd(&["ip", "-n", &env.cli, "link", "set", "eth0", "up"]))?;
        sh(&mut cmd(&[
            "ip",
            "-n",
            &env.cli,
            "route",
            "add",
            "172.17.0.0/16",
            "via",
            HOST_IP,
        ]))?;
        // CRR hygiene: many ephemeral ports, reuse TIME_WAIT.
        sh(&mut cmd(&[
            "ip",
            "netns",
            "exec",
            &env.cli,
            "sysctl",
            "-qw",
            "net.ipv4.ip_local_port_range=1024 65535",
            "net.ipv4.tcp_tw_reuse=1",
        ]))?;
        Ok(env)
    }

    fn linkrt_cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new("nsenter");
        c.arg(format!("--net=/run/netns/{}", self.host)).arg(&self.linkrt);
        // Containers see only their image (and the host's /usr): the load generator is bound in.
        if let Some((&"run", rest)) = args.split_first() {
            let dir = self.in_container.parent().expect("has a parent").display().to_string();
            c.arg("run").arg("-v").arg(format!("{dir}:{dir}:ro")).args(rest);
        } else {
            c.args(args);
        }
        c.env("LINKRT_ROOT", self.tmp.join("lib"))
            .env("LINKRT_RUN_ROOT", self.tmp.join("run"))
            .env("LINKRT_BPFFS", self.tmp.join("bpf/linkrt"))
            .env("LINKRT_CGROUP", &self.cgroup)
            .env("LINKRT_CGROUP_PARENT", self.cgroup.file_name().expect("named"))
            // The `direct` path routes to the container IP: Docker's routed gateway mode
            // (the default drops routed access, `drop_direct`). Published flows are the same.
            .env("LINKRT_GATEWAY_MODE", "routed");
        c
    }

    fn linkrt(&self, args: &[&str]) -> Result<String> {
        sh(&mut self.linkrt_cmd(args))
    }

    fn in_host(&self, args: &[&str]) -> Result<String> {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.host]).args(args);
        sh(&mut c)
    }

    /// Runs one client workload from `where_` and parses its JSON result.
    fn client(&self, where_: Where, mode: &str, addr: &str, secs: f64) -> Result<Sample> {
        let me = self.me.to_string_lossy().into_owned();
        let secs_s = format!("{secs}");
        let inside = self.in_container.to_string_lossy().into_owned();
        let client_args = |bin: &str| -> Vec<String> {
            [
                "taskset", "-c", "0", bin, "client", "--mode", mode, "--addr", addr, "--secs", &secs_s,
            ]
            .iter()
            .map(|s| s.to_string())
            .collect()
        };
        let out = match where_ {
            Where::Client => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", &self.cli]).args(client_args(&me));
                sh(&mut c)?
            }
            Where::HostProcess => {
                let procs = self.cgroup.join("cgroup.procs");
                let mut c = Command::new("nsenter");
                c.arg(format!("--net=/run/netns/{}", self.host))
                    .args([
                        "sh",
                        "-c",
                        &format!("echo $$ > {} && exec \"$@\"", procs.display()),
                        "sh",
                    ])
                    .args(client_args(&me));
                sh(&mut c)?
            }
            Where::Container => {
                let mut args = vec!["exec".to_string(), "hairpin".into()];
                args.extend(client_args(&inside));
                self.linkrt(&args.iter().map(String::as_str).collect::<Vec<_>>())?
            }
        };
        serde_json::from_str(out.trim()).with_context(|| format!("client output {out:?}"))
    }

    fn flush_rules(&mut self) -> Result<()> {
        for mut p in self.proxies.drain(..) {
            // SAFETY: signalling the process group we created for this proxy.
            unsafe { libc::kill(-(p.id() as i32), libc::SIGKILL) };
            let _ = p.wait();
        }
        self.in_host(&["nft", "flush", "ruleset"]).map(|_| ())
    }

    /// Installs the rules of a baseline path with `extra` dummy mappings placed before the
    /// measured one (the worst case for linear rule lists).
    fn setup(&mut self, p: Path_, extra: usize) -> Result<()> {
        self.flush_rules()?;
        match p {
            Path_::Direct | Path_::Linkrt => {}
            Path_::Iptables => {
                let f = self.tmp.join("iptables.rules");
                fs::write(&f, docker_iptables(p.port(), extra))?;
                self.in_host(&["iptables-restore", &f.to_string_lossy()])?;
            }
            Path_::Nftables => {
                let f = self.tmp.join("nft.rules");
                fs::write(&f, nft_map(p.port(), extra))?;
                self.in_host(&["nft", "-f", &f.to_string_lossy()])?;
            }
            Path_::Proxy => {
                for proto in ["TCP", "UDP"] {
                    // Its own process group: socat forks a child per peer, and all must go.
                    // -T 5: a UDP "session" child ends after 5 s without traffic.
                    let child = Command::new("ip")
                        .args(["netns", "exec", &self.host, "socat", "-T", "5"])
                        .arg(format!("{proto}-LISTEN:{},fork,reuseaddr", p.port()))
                        .arg(format!("{proto}:{SRV_IP}:{SRV_PORT}"))
                        .stdout(Stdio::null())
                        .stderr(Stdio::null())
                        .process_group(0)
                        .spawn()?;
                    self.proxies.push(child);
                }
                std::thread::sleep(std::time::Duration::from_millis(300));
            }
        }
        Ok(())
    }

    /// linkrt's own scale: `extra` dummy SCTP mappings on another container.
    fn linkrt_extra(&self, extra: usize) -> Result<()> {
        let _ = self.linkrt(&["rm", "-f", "dummies"]);
        if extra > 0 {
            let range = format!("1024-{}:1024-{}/sctp", 1023 + extra, 1023 + extra);
            self.linkrt(&[
                "run", "-d", "--name", "dummies", "-p", &range, "alpine", "sleep", "3600",
            ])?;
        }
        Ok(())
    }
}

impl Drop for Env {
    fn drop(&mut self) {
        let _ = self.flush_rules();
        if let Ok(ids) = self.linkrt(&["ps", "-aq"]) {
            for id in ids.split_whitespace() {
                let _ = self.linkrt(&["rm", "-f", id]);
            }
        }
        for d in [self.tmp.join("run/overlay"), self.tmp.join("bpf")] {
            let _ = Command::new("umount").arg("-l").arg(&d).status();
        }
        for ns in [&self.cli, &self.host] {
            let _ = Command::new("ip").args(["netns", "del", ns]).status();
        }
        let _ = fs::remove_dir(&self.cgroup);
        // The containers' cgroup parent, in every hierarchy (cgroup v1 controllers or v2).
        if let Some(name) = self.cgroup.file_name()
            && let Ok(rd) = fs::read_dir("/sys/fs/cgroup")
        {
            let mut dirs = vec![std::path::Path::new("/sys/fs/cgroup").join(name)];
            dirs.extend(rd.flatten().map(|e| e.path().join(name)));
            for d in dirs.iter().filter(|d| d.is_dir()) {
                for e in fs::read_dir(d).into_iter().flatten().flatten() {
                    let _ = fs::remove_dir(e.path());
                }
                let _ = fs::remove_dir(d);
            }
        }
        let _ = fs::remove_dir_all(&self.tmp);
        if let Some(d) = self.in_container.parent() {
            let _ = fs::remove_dir_all(d);
        }
    }
}

#[derive(Clone, Copy)]
enum Where {
    Client,
    HostProcess,
    Container,
}

/// Docker 28's rules for one published TCP+UDP port (nat DOCKER DNAT, filter DOCKER accept,
/// DOCKER-CT established, raw direct-access drop, masquerade), plus `extra` dummy TCP mappings.
fn docker_iptables(port: u16, extra: usize) -> String {
    let mut nat = String::from(
        "*nat\n:PREROUTING ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n:POSTROUTING ACCEPT [0:0]\n:DOCKER - [0:0]\n-A PREROUTING -m addrtype --dst-type LOCAL -j DOCKER\n-A OUTPUT ! -d 127.0.0.0/8 -m addrtype --dst-type LOCAL -j DOCKER\n-A POSTROUTING -s 172.17.0.0/16 ! -o linkrt0 -j MASQUERADE\n",
    );
    let mut filter = String::from(
        "*filter\n:INPUT ACCEPT [0:0]\n:FORWARD DROP [0:0]\n:OUTPUT ACCEPT [0:0]\n:DOCKER - [0:0]\n:DOCKER-CT - [0:0]\n:DOCKER-FORWARD - [0:0]\n-A FORWARD -j DOCKER-FORWARD\n-A DOCKER-FORWARD -j DOCKER-CT\n-A DOCKER-FORWARD -i linkrt0 -j ACCEPT\n-A DOCKER-FORWARD -o linkrt0 -j DOCKER\n-A DOCKER-CT -o linkrt0 -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT\n",
    );
    for i in 0..extra {
        let d = 10000 + (i % 50000);
        let ip = format!("172.17.{}.{}", 1 + i / 50000, 10);
        nat.push_str(&format!(
            "-A DOCKER ! -i linkrt0 -p tcp -m tcp --dport {d} -j DNAT --to-destination {ip}:{d}\n"
        ));
        filter.push_str(&format!(
            "-A DOCKER -d {ip}/32 ! -i linkrt0 -o linkrt0 -p tcp -m tcp --dport {d} -j ACCEPT\n"
        ));
    }
    for proto in ["tcp", "udp"] {
        nat.push_str(&format!(
            "-A DOCKER ! -i linkrt0 -p {proto} -m {proto} --dport {port} -j DNAT --to-destination {SRV_IP}:{SRV_PORT}\n"
        ));
        filter.push_str(&format!(
            "-A DOCKER -d {SRV_IP}/32 ! -i linkrt0 -o linkrt0 -p {proto} -m {proto} --dport {SRV_PORT} -j ACCEPT\n"
        ));
    }
    filter.push_str("-A DOCKER ! -i linkrt0 -o linkrt0 -j DROP\nCOMMIT\n");
    nat.push_str("COMMIT\n");
    format!("{nat}{filter}*raw\n:PREROUTING ACCEPT [0:0]\n-A PREROUTING -d {SRV_IP}/32 ! -i linkrt0 -j DROP\nCOMMIT\n")
}

/// DNAT through one nftables map per protocol (the best non-eBPF kernel option).
fn nft_map(port: u16, extra: usize) -> String {
    let mut tcp: Vec<String> = (0..extra)
        .map(|i| format!("{} : 172.17.1.10 . {}", 10000 + (i % 50000), 10000 + (i % 50000)))
        .collect();
    tcp.sort();
    tcp.dedup();
    tcp.push(format!("{port} : {SRV_IP} . {SRV_PORT}"));
    format!(
        "table ip bench {{\n map pm_tcp {{ type inet_service : ipv4_addr . inet_service; elements = {{ {} }} }}\n map pm_udp {{ type inet_service : ipv4_addr . inet_service; elements = {{ {port} : {SRV_IP} . {SRV_PORT} }} }}\n chain pre {{ type nat hook prerouting priority dstnat; policy accept;\n  fib daddr type local dnat ip to tcp dport map @pm_tcp\n  fib daddr type local dnat ip to udp dport map @pm_udp\n }}\n chain post {{ type nat hook postrouting priority srcnat; policy accept; }}\n}}\n",
        tcp.join(", ")
    )
}

/// One measured value with its repetitions.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Stat {
    pub median: f64,
    pub min: f64,
    pub max: f64,
    pub runs: Vec<f64>,
    /// Median of the per-repetition ratios to the same repetition's direct path.
    pub ratio_to_direct: Option<f64>,
}

fn stat(runs: &[f64]) -> Stat {
    let mut v = runs.to_vec();
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    Stat {
        median: median(&v),
        min: *v.first().unwrap_or(&0.0),
        max: *v.last().unwrap_or(&0.0),
        runs: runs.to_vec(),
        ratio_to_direct: None,
    }
}

fn median(sorted: &[f64]) -> f64 {
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

#[derive(Debug, Default, Serialize)]
pub struct Report {
    pub quick: bool,
    pub reps: usize,
    pub secs_per_sample: f64,
    pub kernel: String,
    /// metric → path → value (bulk_gbps, rr_tps, rr_p50_us, rr_p99_us, rr_cpu_us, crr_cps, crr_cpu_us, udp_pps).
    pub paths: BTreeMap<String, BTreeMap<String, Stat>>,
    /// "N" → path → CRR conn/s (median), with the measured mapping placed after N-1 others.
    pub scale_crr: BTreeMap<usize, BTreeMap<String, f64>>,
    pub scale_rr: BTreeMap<usize, BTreeMap<String, f64>>,
    pub scale_bulk_gbps: BTreeMap<usize, BTreeMap<String, f64>>,
    pub scale_udp_pps: BTreeMap<usize, BTreeMap<String, f64>>,
    /// Host processes (L1 direct, L2 linkrt socket hooks, L4 proxy) and hairpin from a container.
    pub local: BTreeMap<String, BTreeMap<String, Stat>>,
    /// Control-plane times in milliseconds.
    pub control_ms: BTreeMap<String, f64>,
    pub notes: Vec<String>,
}

pub fn run(o: &Options) -> Result<Report> {
    let reps = if o.quick { 1 } else { 5 };
    let secs = if o.quick { 0.4 } else { 3.0 };
    let mut env = Env::new(&o.linkrt)?;
    let me = env.in_container.to_string_lossy().into_owned();
    let port = SRV_PORT.to_string();
    env.linkrt(&[
        "run",
        "-d",
        "--name",
        "srv",
        "-p",
        "8080:5000",
        "-p",
        "8080:5000/udp",
        "alpine",
        "taskset",
        "-c",
        "1",
        &me,
        "serve",
        "--port",
        &port,
    ])?;
    // Wait for the server.
    let mut up = false;
    for _ in 0..100 {
        if env.client(Where::Client, "rr", &Path_::Direct.addr(), 0.05).is_ok() {
            up = true;
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    if !up {
        let logs = env.linkrt(&["logs", "srv"]).unwrap_or_default();
        bail!(
            "the benchmark server did not come up in its container (is {} visible there?): {logs}",
            me
        );
    }
    // The hairpin client is linked to the server, so that its direct path is allowed too.
    env.linkrt(&[
        "run", "-d", "--name", "hairpin", "--link", "srv", "alpine", "sleep", "3600",
    ])?;
    let mut rep = Report {
        quick: o.quick,
        reps,
        secs_per_sample: secs,
        kernel: fs::read_to_string("/proc/sys/kernel/osrelease")
            .unwrap_or_default()
            .trim()
            .to_string(),
        ..Default::default()
    };

    // 1. Paths × metrics, interleaved: every repetition visits every path.
    let metrics = [
        ("bulk", "bulk_gbps"),
        ("rr", "rr_tps"),
        ("crr", "crr_cps"),
        ("udp", "udp_pps"),
    ];
    let mut raw: BTreeMap<(String, String), Vec<f64>> = BTreeMap::new();
    for _ in 0..reps {
        for p in Path_::ALL {
            env.setup(p, 0)?;
            for (mode, key) in metrics {
                let s = env.client(Where::Client, mode, &p.addr(), secs)?;
                let v = if mode == "bulk" {
                    s.ops as f64 * 8.0 / s.secs / 1e9
                } else {
                    s.rate()
                };
                raw.entry((key.into(), p.name().into())).or_default().push(v);
                if mode == "rr" {
                    raw.entry(("rr_p50_us".into(), p.name().into()))
                        .or_default()
                        .push(s.p50_us);
                    raw.entry(("rr_p99_us".into(), p.name().into()))
                        .or_default()
                        .push(s.p99_us);
                    raw.entry(("rr_cpu_us".into(), p.name().into()))
                        .or_default()
                        .push(s.cpu_us_per_op);
                }
                if mode == "crr" {
                    raw.entry(("crr_cpu_us".into(), p.name().into()))
                        .or_default()
                        .push(s.cpu_us_per_op);
                }
            }
        }
    }
    env.flush_rules()?;
    for ((metric, path), runs) in &raw {
        let mut st = stat(runs);
        if let Some(direct) = raw.get(&(metric.clone(), "direct".into())) {
            let mut ratios: Vec<f64> = runs
                .iter()
                .zip(direct)
                .filter(|(_, d)| **d > 0.0)
                .map(|(v, d)| v / d)
                .collect();
            ratios.sort_by(|a, b| a.partial_cmp(b).unwrap());
            st.ratio_to_direct = Some(median(&ratios));
        }
        rep.paths.entry(metric.clone()).or_default().insert(path.clone(), st);
    }

    // 2. Scale: N mappings, the measured one last.
    let ns: &[usize] = if o.quick {
        &[1, 10_000]
    } else {
        &[1, 100, 10_000, 60_000]
    };
    let scale_reps = if o.quick { 1 } else { 3 };
    for &n in ns {
        env.linkrt_extra(n - 1)?;
        let mut crr: BTreeMap<String, Vec<f64>> = BTreeMap::new();
        let mut rr: BTreeMap<String, Vec<f64>> = BTreeMap::new();
        let mut bulk: BTreeMap<String, Vec<f64>> = BTreeMap::new();
        let mut udp: BTreeMap<String, Vec<f64>> = BTreeMap::new();
        for _ in 0..scale_reps {
            for p in [Path_::Direct, Path_::Linkrt, Path_::Iptables, Path_::Nftables] {
                env.setup(p, n - 1)?;
                crr.entry(p.name().into())
                    .or_default()
                    .push(env.client(Where::Client, "crr", &p.addr(), secs)?.rate());
                rr.entry(p.name().into())
                    .or_default()
                    .push(env.client(Where::Client, "rr", &p.addr(), secs)?.rate());
                let b = env.client(Where::Client, "bulk", &p.addr(), secs)?;
                bulk.entry(p.name().into())
                    .or_default()
                    .push(b.ops as f64 * 8.0 / b.secs / 1e9);
                udp.entry(p.name().into())
                    .or_default()
                    .push(env.client(Where::Client, "udp", &p.addr(), secs)?.rate());
            }
        }
        env.flush_rules()?;
        let med = |m: BTreeMap<String, Vec<f64>>| {
            m.into_iter()
                .map(|(k, v)| (k, stat(&v).median))
                .collect::<BTreeMap<_, _>>()
        };
        rep.scale_crr.insert(n, med(crr));
        rep.scale_rr.insert(n, med(rr));
        rep.scale_bulk_gbps.insert(n, med(bulk));
        rep.scale_udp_pps.insert(n, med(udp));
    }
    env.linkrt_extra(0)?;

    // 3. Host processes and hairpin.
    env.setup(Path_::Proxy, 0)?;
    let local_paths: [(&str, Where, String); 5] = [
        ("host_direct", Where::HostProcess, Path_::Direct.addr()),
        ("host_linkrt", Where::HostProcess, "127.0.0.1:8080".to_string()),
        ("host_proxy", Where::HostProcess, "127.0.0.1:8083".to_string()),
        ("hairpin_direct", Where::Container, Path_::Direct.addr()),
        ("hairpin_linkrt", Where::Container, format!("{HOST_IP}:8080")),
    ];
    let mut lraw: BTreeMap<(String, String), Vec<f64>> = BTreeMap::new();
    for _ in 0..reps {
        for (name, w, addr) in &local_paths {
            for mode in ["rr", "crr"] {
                let s = env.client(*w, mode, addr, secs)?;
                lraw.entry((
                    format!("{mode}_{}", if mode == "rr" { "tps" } else { "cps" }),
                    name.to_string(),
                ))
                .or_default()
                .push(s.rate());
            }
        }
    }
    env.flush_rules()?;
    for ((metric, path), runs) in &lraw {
        rep.local
            .entry(metric.clone())
            .or_default()
            .insert(path.clone(), stat(runs));
    }

    // 4. Control plane: publishing a 10,000-port range.
    let time = |f: &mut dyn FnMut() -> Result<()>| -> Result<f64> {
        let t = Instant::now();
        f()?;
        Ok(t.elapsed().as_secs_f64() * 1000.0)
    };
    let cp_reps = if o.quick { 1 } else { 3 };
    let (mut with, mut without) = (Vec::new(), Vec::new());
    for _ in 0..cp_reps {
        without.push(time(&mut || {
            env.linkrt(&["run", "-d", "--name", "cp0", "alpine", "sleep", "600"])
                .map(|_| ())
        })?);
        with.push(time(&mut || {
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
        env.linkrt(&["rm", "-f", "cp0", "cp1"])?;
    }
    let (w, wo) = (stat(&with).median, stat(&without).median);
    rep.control_ms.insert("linkrt_run_with_10000_ports".into(), w);
    rep.control_ms.insert("linkrt_run_without_ports".into(), wo);
    rep.control_ms
        .insert("linkrt_publish_10000_ports".into(), (w - wo).max(0.0));
    let f = env.tmp.join("cp.rules");
    fs::write(&f, docker_iptables(8081, 10_000))?;
    let fs_ = f.to_string_lossy().into_owned();
    rep.control_ms.insert(
        "iptables_restore_10000".into(),
        time(&mut || env.in_host(&["iptables-restore", &fs_]).map(|_| ()))?,
    );
    env.flush_rules()?;
    // Docker execs iptables once per rule (3 rules per port): time 100 execs, extrapolate.
    env.in_host(&["iptables", "-t", "nat", "-N", "DOCKER"])?;
    let t100 = time(&mut || {
        for i in 0..100 {
            let d = (10000 + i).to_string();
            env.in_host(&[
                "iptables",
                "-t",
                "nat",
                "-A",
                "DOCKER",
                "-p",
                "tcp",
                "--dport",
                &d,
                "-j",
                "DNAT",
                "--to-destination",
                "172.17.0.9:80",
            ])?;
        }
        Ok(())
    })?;
    rep.control_ms.insert(
        "iptables_per_rule_exec_10000_ports_extrapolated".into(),
        t100 / 100.0 * 3.0 * 10_000.0,
    );
    env.flush_rules()?;
    fs::write(&f, nft_map(8082, 10_000))?;
    rep.control_ms.insert(
        "nft_map_10000".into(),
        time(&mut || env.in_host(&["nft", "-f", &fs_]).map(|_| ()))?,
    );
    env.flush_rules()?;
    rep.notes
        .push("proxy = socat (fork per connection); Debian's docker-proxy is not installed by the harness".into());
    rep.notes.push("scale: N-1 dummy mappings precede the measured one (linkrt: SCTP entries in the same hash map; iptables: DNAT+ACCEPT rules; nft: map elements)".into());
    rep.notes.push(
        "client pinned to CPU 0 (taskset), server to CPU 1; cpu_us = busy CPU of the whole VM per transaction".into(),
    );
    Ok(rep)
}
