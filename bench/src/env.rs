//! The benchmark's private topology: two identical "worlds" of network namespaces, and a third
//! for the datapath as it was before issue 11's hardening.
//!
//! ```text
//!  linkrt world:  cli ──veth── host (linkrt instance: up0, bridge linkrt0, TC/TCX programs) ── containers
//!  bare world:    cli ──veth── host (up0, bridge br0; nothing attached)                     ── srv, peer
//!  before world:  cli ──veth── host (the old linkrt binary's instance, as the linkrt world)  ── srv
//! ```
//!
//! Both worlds use the same addresses, the same veth and bridge settings, the same server binary
//! and the same CPU pinning; they differ only in who manages them. linkrt runs only inside the
//! linkrt world (its commands are `nsenter`ed into that host namespace, which is the only place
//! where it attaches programs), so the baselines (`bare`, iptables, nftables, docker-proxy, socat)
//! cross no linkrt program. [`Env::assert_bare_world_clean`] checks that before every sample set.
//! The before world (with `--linkrt-before`) runs a build of an older commit exactly as the
//! linkrt world runs this tree's: its own state dirs under the temp dir, its own directory on the
//! same bpffs mount, its own cgroup for the socket hooks.
//! Nothing is created outside these namespaces except the temp dir, a bpffs mount, the cgroups
//! and a copy of the load generator; everything is removed on drop (also after an error).
use std::{
    fs,
    os::{
        fd::{AsRawFd, FromRawFd, OwnedFd, RawFd},
        unix::process::CommandExt,
    },
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::atomic::{AtomicBool, Ordering},
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};

use crate::load::Sample;

pub const HOST_IP: &str = "198.18.0.1";
pub const CLIENT_IP: &str = "198.18.0.2";
pub const GATEWAY: &str = "172.17.0.1";
pub const SUBNET: &str = "172.17.0.0/16";
/// The server's address in both worlds (linkrt's IPAM gives its first container `.2`; checked).
pub const SRV_IP: &str = "172.17.0.2";
/// The bare world's second "container" (the hairpin client), like linkrt's second container.
pub const PEER_IP: &str = "172.17.0.3";
pub const SRV_PORT: u16 = 5000;
/// The bare world's bridge (linkrt's is `linkrt0`).
pub const BARE_BRIDGE: &str = "br0";
pub const LINKRT_BRIDGE: &str = "linkrt0";

/// Set by SIGINT/SIGTERM: the run stops at the next sample and cleans up.
pub static INTERRUPTED: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_: libc::c_int) {
    INTERRUPTED.store(true, Ordering::SeqCst);
}

/// Ctrl-C and `kill` end the run through the normal error path, so that [`Env`]'s drop runs.
pub fn install_signal_handlers() {
    for sig in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP] {
        // SAFETY: the handler only stores to an atomic.
        unsafe { libc::signal(sig, on_signal as *const () as libc::sighandler_t) };
    }
}

pub fn check_interrupted() -> Result<()> {
    if INTERRUPTED.load(Ordering::SeqCst) {
        bail!("interrupted");
    }
    Ok(())
}

pub fn sh(cmd: &mut Command) -> Result<String> {
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

pub fn cmd(args: &[&str]) -> Command {
    let mut c = Command::new(args[0]);
    c.args(&args[1..]);
    c
}

/// Times one fallible action in milliseconds.
pub fn time_ms(f: impl FnOnce() -> Result<()>) -> Result<f64> {
    let t = Instant::now();
    f()?;
    Ok(t.elapsed().as_secs_f64() * 1000.0)
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum World {
    Linkrt,
    Bare,
    /// The old linkrt binary's world (the datapath before issue 11's hardening).
    Before,
}

/// Where a client runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Where {
    /// The world's client namespace (a remote machine).
    Client(World),
    /// A process in the world's host namespace (for linkrt: inside its hooked cgroup).
    Host(World),
    /// A second container on the world's bridge.
    Container(World),
}

/// How the load server's binary reaches a container.
pub struct ServerBinary {
    /// Extra `linkrt run` arguments (a bind mount once `-v` exists).
    pub run_args: Vec<String>,
    /// The binary's path inside the container.
    pub path: String,
    /// What to remove afterwards.
    pub host_dir: PathBuf,
}

/// The one place that decides how `linkrt-bench` gets into containers. With `-v` (detected in
/// `linkrt run --help`) the binary is bind-mounted read-only; without it, containers see the
/// host's root filesystem, so a copy under /var/tmp is visible (a build tree on another mount,
/// or under a path containers hide, might not be).
fn server_binary(linkrt_help: &str, me: &Path, tag: &str) -> Result<ServerBinary> {
    let host_dir = PathBuf::from(format!("/var/tmp/linkrt-bench-{tag}"));
    fs::create_dir_all(&host_dir)?;
    fs::copy(me, host_dir.join("linkrt-bench")).context("copying the load generator for the containers")?;
    Ok(server_binary_in(linkrt_help, host_dir))
}

/// How a linkrt with this `run --help` sees the copy in `host_dir` (shared by both instances).
fn server_binary_in(linkrt_help: &str, host_dir: PathBuf) -> ServerBinary {
    if linkrt_help.contains("--volume") {
        return ServerBinary {
            run_args: vec!["-v".into(), format!("{}:/linkrt-bench:ro", host_dir.display())],
            path: "/linkrt-bench/linkrt-bench".into(),
            host_dir,
        };
    }
    ServerBinary {
        run_args: Vec::new(),
        path: host_dir.join("linkrt-bench").to_string_lossy().into_owned(),
        host_dir,
    }
}

/// The before world: the old binary's instance in namespaces, dirs and a cgroup of its own.
pub struct Before {
    /// The old linkrt binary.
    pub linkrt: PathBuf,
    /// The commit it was built from (as given; for the report).
    pub commit: String,
    pub host: String,
    pub cli: String,
    /// Its socket hooks' cgroup (never the cgroup2 root, which it would hook otherwise).
    pub cgroup: PathBuf,
    /// Its state (`lib`, `run`) under the run's temp dir.
    pub dir: PathBuf,
    /// Its pins: a directory of the run's bpffs mount.
    pub bpffs: PathBuf,
    /// `run --help` of the old binary (it may lack flags, e.g. `-v`).
    pub help: String,
    /// How the load generator reaches its containers.
    pub server_bin: ServerBinary,
}

impl Before {
    /// Runs the old binary in the before world's host namespace, on its own state.
    pub fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new("nsenter");
        c.arg(format!("--net=/run/netns/{}", self.host))
            .arg(&self.linkrt)
            .args(args)
            .env("LINKRT_ROOT", self.dir.join("lib"))
            .env("LINKRT_RUN_ROOT", self.dir.join("run"))
            .env("LINKRT_BPFFS", &self.bpffs)
            .env("LINKRT_CGROUP", &self.cgroup)
            // Settings of this tree's linkrt that an old binary might read differently.
            .env_remove("LINKRT_CGROUP_PARENT")
            .env_remove("LINKRT_GATEWAY_MODE");
        c
    }

    pub fn run(&self, args: &[&str]) -> Result<String> {
        sh(&mut self.cmd(args))
    }
}

/// The topology and the linkrt instance; everything is removed on drop.
pub struct Env {
    pub tag: String,
    pub l_host: String,
    pub l_cli: String,
    pub b_host: String,
    pub b_cli: String,
    pub b_srv: String,
    pub b_peer: String,
    pub tmp: PathBuf,
    /// cgroup v2 directory for linkrt's socket hooks (host-process clients of the linkrt world).
    pub cgroup: PathBuf,
    /// cgroupsPath (absolute, per hierarchy) of the OCI runtimes' floor containers.
    pub oci_cgroup: String,
    pub linkrt: PathBuf,
    pub me: PathBuf,
    pub server_bin: ServerBinary,
    /// `linkrt run --help`: what this linkrt supports (`--runtime`, `-v`).
    pub linkrt_help: String,
    /// The linkrt world's server container's IP (checked to be [`SRV_IP`]).
    pub linkrt_srv_ip: String,
    /// The before world, when an old binary was given.
    pub before: Option<Before>,
    made_netns: Vec<String>,
    bpffs_mounted: bool,
    /// The processes of the baseline being measured (proxies); stopped by [`Env::stop_peers`].
    peers: Vec<Child>,
    /// The bare world's server.
    daemons: Vec<Child>,
    /// How often [`Env::assert_bare_world_clean`] ran.
    pub bare_checks: std::cell::Cell<usize>,
}

impl Env {
    /// `before`: the old binary and its commit, for the before world.
    pub fn new(linkrt: &Path, before: Option<(&Path, &str)>) -> Result<Env> {
        let tag: String = (0..6).map(|_| (b'a' + rand::random::<u8>() % 26) as char).collect();
        let tmp = std::env::temp_dir().join(format!("linkrt-bench-{tag}"));
        let cg_root = cgroup2_root()?;
        let me = std::env::current_exe()?;
        let linkrt_help = sh(&mut cmd(&[&linkrt.to_string_lossy(), "run", "--help"]))?;
        let before = match before {
            Some((bin, commit)) => {
                let help = sh(&mut cmd(&[&bin.to_string_lossy(), "run", "--help"]))
                    .with_context(|| format!("the old linkrt {} (commit {commit})", bin.display()))?;
                Some(Before {
                    linkrt: bin.to_path_buf(),
                    commit: commit.to_string(),
                    host: format!("lrtb-ohost-{tag}"),
                    cli: format!("lrtb-ocli-{tag}"),
                    cgroup: cg_root.join(format!("linkrt-bench-before-{tag}")),
                    dir: tmp.join("before"),
                    bpffs: tmp.join("bpf/linkrt-before"),
                    server_bin: server_binary_in(&help, PathBuf::from(format!("/var/tmp/linkrt-bench-{tag}"))),
                    help,
                })
            }
            None => None,
        };
        let server_bin = server_binary(&linkrt_help, &me, &tag)?;
        let mut env = Env {
            l_host: format!("lrtb-lhost-{tag}"),
            l_cli: format!("lrtb-lcli-{tag}"),
            b_host: format!("lrtb-bhost-{tag}"),
            b_cli: format!("lrtb-bcli-{tag}"),
            b_srv: format!("lrtb-bsrv-{tag}"),
            b_peer: format!("lrtb-bpeer-{tag}"),
            cgroup: cg_root.join(format!("linkrt-bench-{tag}")),
            oci_cgroup: format!("/linkrt-bench-oci-{tag}"),
            tag,
            tmp,
            linkrt: linkrt.to_path_buf(),
            me,
            server_bin,
            linkrt_help,
            linkrt_srv_ip: SRV_IP.into(),
            before,
            made_netns: Vec::new(),
            bpffs_mounted: false,
            peers: Vec::new(),
            daemons: Vec::new(),
            bare_checks: std::cell::Cell::new(0),
        };
        env.build()?;
        Ok(env)
    }

    fn build(&mut self) -> Result<()> {
        fs::create_dir_all(self.tmp.join("bpf"))?;
        fs::create_dir_all(&self.cgroup)?;
        sh(&mut cmd(&[
            "mount",
            "-t",
            "bpf",
            "bpf",
            &self.tmp.join("bpf").to_string_lossy(),
        ]))?;
        self.bpffs_mounted = true;
        let mut namespaces = vec![
            self.l_host.clone(),
            self.l_cli.clone(),
            self.b_host.clone(),
            self.b_cli.clone(),
            self.b_srv.clone(),
            self.b_peer.clone(),
        ];
        let mut uplinks = vec![
            (self.l_host.clone(), self.l_cli.clone()),
            (self.b_host.clone(), self.b_cli.clone()),
        ];
        if let Some(b) = &self.before {
            fs::create_dir_all(&b.cgroup)?;
            fs::create_dir_all(&b.dir)?;
            namespaces.extend([b.host.clone(), b.cli.clone()]);
            uplinks.push((b.host.clone(), b.cli.clone()));
        }
        for ns in namespaces {
            sh(&mut cmd(&["ip", "netns", "add", &ns]))?;
            self.made_netns.push(ns.clone());
            sh(&mut cmd(&["ip", "-n", &ns, "link", "set", "lo", "up"]))?;
        }
        for (host, cli) in &uplinks {
            uplink(host, cli)?;
        }
        // The bare world's bridge and "containers", made exactly as linkrt makes its own
        // (network.rs: ensure_bridge, setup_endpoint), MAC addresses included.
        let b = &self.b_host;
        sh(&mut cmd(&["ip", "-n", b, "link", "add", BARE_BRIDGE, "type", "bridge"]))?;
        sh(&mut cmd(&[
            "ip",
            "-n",
            b,
            "addr",
            "add",
            &format!("{GATEWAY}/16"),
            "dev",
            BARE_BRIDGE,
        ]))?;
        sh(&mut cmd(&["ip", "-n", b, "link", "set", BARE_BRIDGE, "up"]))?;
        sysctl(b, "net.ipv4.ip_forward", "1")?;
        for (ns, ip, veth) in [(&self.b_srv, SRV_IP, "vethbsrv"), (&self.b_peer, PEER_IP, "vethbpeer")] {
            sh(&mut cmd(&[
                "ip", "-n", b, "link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", ns,
            ]))?;
            sh(&mut cmd(&[
                "ip",
                "-n",
                b,
                "link",
                "set",
                veth,
                "master",
                BARE_BRIDGE,
                "up",
            ]))?;
            sh(&mut cmd(&[
                "ip",
                "-n",
                ns,
                "link",
                "set",
                "eth0",
                "address",
                &mac_for(ip),
            ]))?;
            sh(&mut cmd(&[
                "ip",
                "-n",
                ns,
                "addr",
                "add",
                &format!("{ip}/16"),
                "dev",
                "eth0",
            ]))?;
            sh(&mut cmd(&["ip", "-n", ns, "link", "set", "eth0", "up"]))?;
            sh(&mut cmd(&["ip", "-n", ns, "route", "add", "default", "via", GATEWAY]))?;
        }
        let server = spawn_in(
            &self.b_srv,
            &[
                "taskset",
                "-c",
                "1",
                &self.me.to_string_lossy(),
                "serve",
                "--port",
                &SRV_PORT.to_string(),
            ],
            None,
        )?;
        self.daemons.push(server);
        Ok(())
    }

    pub fn linkrt_cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new("nsenter");
        c.arg(format!("--net=/run/netns/{}", self.l_host))
            .arg(&self.linkrt)
            .args(args)
            .env("LINKRT_ROOT", self.tmp.join("lib"))
            .env("LINKRT_RUN_ROOT", self.tmp.join("run"))
            .env("LINKRT_BPFFS", self.bpffs())
            .env("LINKRT_CGROUP", &self.cgroup)
            // The containers' cgroups go under a parent of this run's own.
            .env("LINKRT_CGROUP_PARENT", self.container_cgroup_parent())
            // `linkrt_nonat` routes to the container IP: Docker's routed gateway mode (the
            // default drops routed access, `drop_direct`). Published flows are the same.
            .env("LINKRT_GATEWAY_MODE", "routed");
        c
    }

    /// The parent of the linkrt containers' cgroups (in every hierarchy).
    pub fn container_cgroup_parent(&self) -> String {
        self.cgroup.file_name().expect("named").to_string_lossy().into_owned()
    }

    /// This instance's bpffs directory (its pins).
    pub fn bpffs(&self) -> PathBuf {
        self.tmp.join("bpf/linkrt")
    }

    pub fn linkrt(&self, args: &[&str]) -> Result<String> {
        sh(&mut self.linkrt_cmd(args))
    }

    /// Runs `args` in network namespace `ns`.
    pub fn in_ns(&self, ns: &str, args: &[&str]) -> Result<String> {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", ns]).args(args);
        sh(&mut c)
    }

    /// The before world; an error when the run has none.
    pub fn before(&self) -> Result<&Before> {
        self.before
            .as_ref()
            .context("this run has no before world (linkrt-bench run --linkrt-before)")
    }

    /// Starts the before world's server as the linkrt world's is started (`srv`, published on
    /// 8080 for TCP and UDP, pinned to CPU 1), with the flags the old binary has.
    pub fn start_before_server(&self) -> Result<()> {
        let b = self.before()?;
        let mut args: Vec<String> = ["run", "-d", "--name", "srv", "-p", "8080:5000", "-p", "8080:5000/udp"]
            .map(String::from)
            .to_vec();
        args.extend(b.server_bin.run_args.iter().cloned());
        args.extend(
            [
                "alpine",
                "taskset",
                "-c",
                "1",
                &b.server_bin.path,
                "serve",
                "--port",
                &SRV_PORT.to_string(),
            ]
            .map(String::from),
        );
        b.run(&args.iter().map(String::as_str).collect::<Vec<_>>())
            .with_context(|| format!("starting the before world's server with linkrt at {}", b.commit))?;
        let ip = b
            .run(&["inspect", "-f", "{{.NetworkSettings.IPAddress}}", "srv"])?
            .trim()
            .to_string();
        if ip != SRV_IP {
            bail!("the old linkrt gave the server {ip} (every world expects {SRV_IP})");
        }
        if let Err(e) = self.wait_server(World::Before) {
            let logs = self.before()?.run(&["logs", "srv"]).unwrap_or_default();
            bail!("{e:#}: {logs}");
        }
        Ok(())
    }

    /// Waits until the server of world `w` answers (the before world's on its published port:
    /// the path that is measured there).
    pub fn wait_server(&self, w: World) -> Result<()> {
        let addr = match w {
            World::Linkrt => format!("{}:{SRV_PORT}", self.linkrt_srv_ip),
            World::Bare => format!("{SRV_IP}:{SRV_PORT}"),
            World::Before => format!("{HOST_IP}:8080"),
        };
        for _ in 0..100 {
            if self.client(Where::Client(w), "rr", &addr, 0.05).is_ok() {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        bail!("the {w:?} world's benchmark server did not answer at {addr}")
    }

    /// Runs one client workload and parses its JSON result.
    pub fn client(&self, where_: Where, mode: &str, addr: &str, secs: f64) -> Result<Sample> {
        check_interrupted()?;
        let me = self.me.to_string_lossy().into_owned();
        let secs_s = format!("{secs}");
        let client_args = |bin: &str| -> Vec<String> {
            [
                "taskset", "-c", "0", bin, "client", "--mode", mode, "--addr", addr, "--secs", &secs_s,
            ]
            .iter()
            .map(|s| s.to_string())
            .collect()
        };
        let in_ns = |ns: &str| -> Result<String> {
            let mut c = Command::new("ip");
            c.args(["netns", "exec", ns]).args(client_args(&me));
            sh(own_session(&mut c))
        };
        let out = match where_ {
            Where::Client(World::Linkrt) => in_ns(&self.l_cli)?,
            Where::Client(World::Bare) => in_ns(&self.b_cli)?,
            Where::Client(World::Before) => in_ns(&self.before()?.cli)?,
            Where::Host(World::Before) | Where::Container(World::Before) => {
                bail!("the before world has only its client namespace")
            }
            Where::Host(World::Bare) => in_ns(&self.b_host)?,
            Where::Container(World::Bare) => in_ns(&self.b_peer)?,
            Where::Host(World::Linkrt) => {
                // Inside linkrt's hooked cgroup, as a host process would be.
                let procs = self.cgroup.join("cgroup.procs");
                let mut c = Command::new("nsenter");
                c.arg(format!("--net=/run/netns/{}", self.l_host))
                    .args([
                        "sh",
                        "-c",
                        &format!("echo $$ > {} && exec \"$@\"", procs.display()),
                        "sh",
                    ])
                    .args(client_args(&me));
                sh(own_session(&mut c))?
            }
            Where::Container(World::Linkrt) => {
                let mut args = vec!["exec".to_string(), "hairpin".into()];
                args.extend(client_args(&self.server_bin.path));
                let mut c = self.linkrt_cmd(&args.iter().map(String::as_str).collect::<Vec<_>>());
                sh(own_session(&mut c))?
            }
        };
        serde_json::from_str(out.trim()).with_context(|| format!("client output {out:?}"))
    }

    /// Starts a baseline's process (a proxy) in the bare world's host namespace.
    pub fn add_peer(&mut self, child: Child) {
        self.peers.push(child);
    }

    pub fn peer_pids(&self) -> Vec<u32> {
        self.peers.iter().map(|c| c.id()).collect()
    }

    /// Stops every baseline process and removes every netfilter rule of the bare world.
    pub fn stop_peers(&mut self) -> Result<()> {
        let mut errs = Vec::new();
        for p in self.peers.drain(..) {
            if let Err(e) = stop_group(p, libc::SIGINT) {
                errs.push(e.to_string());
            }
        }
        if self.made_netns.contains(&self.b_host)
            && let Err(e) = self.in_ns(&self.b_host, &["nft", "flush", "ruleset"])
        {
            errs.push(e.to_string());
        }
        if !errs.is_empty() {
            bail!("stopping the baselines: {}", errs.join("; "));
        }
        Ok(())
    }

    /// The isolation check of the baselines: no BPF program on any interface of any bare-world
    /// namespace, and (with `rules_allowed` false) no netfilter rule in its host namespace.
    pub fn assert_bare_world_clean(&self, rules_allowed: bool) -> Result<()> {
        self.bare_checks.set(self.bare_checks.get() + 1);
        for ns in [&self.b_host, &self.b_cli, &self.b_srv, &self.b_peer] {
            let a = attached_programs(ns)?;
            if !a.is_empty() {
                bail!(
                    "the bare world must have no BPF program attached, but {ns} has: {}",
                    a.iter().map(|a| a.to_string()).collect::<Vec<_>>().join(", ")
                );
            }
        }
        if !rules_allowed {
            let r = self.in_ns(&self.b_host, &["nft", "list", "ruleset"])?;
            if !r.trim().is_empty() {
                bail!("the bare world's host namespace must have no netfilter rule here, but has:\n{r}");
            }
        }
        Ok(())
    }
}

fn note(problems: &mut Vec<String>, what: &str, r: Result<()>) {
    if let Err(e) = r {
        problems.push(format!("{what}: {e:#}"));
    }
}

impl Drop for Env {
    fn drop(&mut self) {
        let mut problems: Vec<String> = Vec::new();
        let p = &mut problems;
        note(p, "stopping the baselines", self.stop_peers());
        for d in self.daemons.drain(..) {
            note(p, "stopping the bare server", stop_group(d, libc::SIGTERM));
        }
        if self.made_netns.contains(&self.l_host) {
            match self.linkrt(&["ps", "-aq"]) {
                Ok(ids) => {
                    for id in ids.split_whitespace() {
                        note(p, "linkrt rm -f", self.linkrt(&["rm", "-f", id]).map(|_| ()));
                    }
                }
                Err(e) => p.push(format!("linkrt ps: {e:#}")),
            }
        }
        if let Some(b) = &self.before
            && self.made_netns.contains(&b.host)
            && b.dir.join("lib").exists()
        {
            match b.run(&["ps", "-aq"]) {
                Ok(ids) => {
                    for id in ids.split_whitespace() {
                        note(p, "old linkrt rm -f", b.run(&["rm", "-f", id]).map(|_| ()));
                    }
                }
                Err(e) => p.push(format!("old linkrt ps: {e:#}")),
            }
        }
        crate::control::cleanup_oci(self, p);
        // Lazy unmounts: linkrt's overlay tmpfs and our bpffs (the pins go with it).
        let mut overlays = vec![self.tmp.join("run/overlay")];
        if let Some(b) = &self.before {
            overlays.push(b.dir.join("run/overlay"));
        }
        for overlay in overlays {
            if is_mountpoint(&overlay) {
                note(
                    p,
                    "unmounting the overlay dir",
                    sh(&mut cmd(&["umount", "-l", &overlay.to_string_lossy()])).map(|_| ()),
                );
            }
        }
        if self.bpffs_mounted {
            note(
                p,
                "unmounting bpffs",
                sh(&mut cmd(&["umount", "-l", &self.tmp.join("bpf").to_string_lossy()])).map(|_| ()),
            );
        }
        for ns in self.made_netns.drain(..).rev() {
            note(
                p,
                "deleting a netns",
                sh(&mut cmd(&["ip", "netns", "del", &ns])).map(|_| ()),
            );
        }
        let mut cgroups = vec![self.cgroup.clone()];
        if let Some(b) = &self.before {
            cgroups.push(b.cgroup.clone());
        }
        for cg in cgroups {
            if cg.exists() {
                note(p, "removing a cgroup", fs::remove_dir(&cg).map_err(Into::into));
            }
        }
        // The linkrt containers' cgroup parent, in every hierarchy (its children went with
        // `rm -f`; a leftover empty one is removed too).
        let parent = self.container_cgroup_parent();
        for h in crate::control::cgroup_hierarchies() {
            let d = h.join(&parent);
            if d.is_dir() {
                for e in fs::read_dir(&d).into_iter().flatten().flatten() {
                    if e.path().is_dir() {
                        note(
                            p,
                            "removing a container cgroup",
                            fs::remove_dir(e.path()).map_err(Into::into),
                        );
                    }
                }
                note(
                    p,
                    "removing the containers' cgroup parent",
                    fs::remove_dir(&d).map_err(Into::into),
                );
            }
        }
        if self.tmp.exists() {
            note(
                p,
                "removing the temp dir",
                fs::remove_dir_all(&self.tmp).map_err(Into::into),
            );
        }
        if self.server_bin.host_dir.exists() {
            note(
                p,
                "removing the load generator's copy",
                fs::remove_dir_all(&self.server_bin.host_dir).map_err(Into::into),
            );
        }
        for e in problems {
            eprintln!("[bench] cleanup: {e}");
        }
    }
}

fn is_mountpoint(dir: &Path) -> bool {
    let d = dir.to_string_lossy();
    fs::read_to_string("/proc/self/mounts")
        .unwrap_or_default()
        .lines()
        .any(|l| l.split_whitespace().nth(1) == Some(&d))
}

/// The veth between a world's client and host namespaces, and the client's route and sysctls.
fn uplink(host: &str, cli: &str) -> Result<()> {
    sh(&mut cmd(&[
        "ip", "link", "add", "up0", "netns", host, "type", "veth", "peer", "name", "eth0", "netns", cli,
    ]))?;
    sh(&mut cmd(&[
        "ip",
        "-n",
        host,
        "addr",
        "add",
        &format!("{HOST_IP}/24"),
        "dev",
        "up0",
    ]))?;
    sh(&mut cmd(&["ip", "-n", host, "link", "set", "up0", "up"]))?;
    sh(&mut cmd(&[
        "ip",
        "-n",
        cli,
        "addr",
        "add",
        &format!("{CLIENT_IP}/24"),
        "dev",
        "eth0",
    ]))?;
    sh(&mut cmd(&["ip", "-n", cli, "link", "set", "eth0", "up"]))?;
    sh(&mut cmd(&["ip", "-n", cli, "route", "add", SUBNET, "via", HOST_IP]))?;
    // CRR hygiene: many ephemeral ports, reuse TIME_WAIT.
    sysctl(cli, "net.ipv4.ip_local_port_range", "1024 65535")?;
    sysctl(cli, "net.ipv4.tcp_tw_reuse", "1")
}

fn sysctl(ns: &str, key: &str, value: &str) -> Result<()> {
    sh(&mut cmd(&[
        "ip",
        "netns",
        "exec",
        ns,
        "sysctl",
        "-qw",
        &format!("{key}={value}"),
    ]))
    .map(|_| ())
}

pub fn sysctl_get(ns: &str, key: &str) -> Result<String> {
    Ok(sh(&mut cmd(&["ip", "netns", "exec", ns, "sysctl", "-n", key]))?
        .trim()
        .to_string())
}

/// Docker's (and linkrt's) MAC for an IP: `02:42:` and the address bytes.
fn mac_for(ip: &str) -> String {
    let o: Vec<u8> = ip.split('.').filter_map(|x| x.parse().ok()).collect();
    format!("02:42:{:02x}:{:02x}:{:02x}:{:02x}", o[0], o[1], o[2], o[3])
}

fn cgroup2_root() -> Result<PathBuf> {
    fs::read_to_string("/proc/self/mounts")?
        .lines()
        .find_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f.len() > 2 && f[2] == "cgroup2").then(|| PathBuf::from(f[1]))
        })
        .context("no cgroup2 mount")
}

/// Makes `c` start in a session (and so a process group) of its own. With the kernel's autogroup
/// scheduling (`kernel.sched_autogroup_enabled`) a session is a scheduling group: linkrt's
/// supervisor starts every container in its own session, so every server, proxy and client of
/// every path gets one too, or a busy machine would favour one world.
pub fn own_session(c: &mut Command) -> &mut Command {
    // SAFETY: setsid is async-signal-safe.
    unsafe {
        c.pre_exec(|| {
            if libc::setsid() < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    c
}

/// Spawns `args` in network namespace `ns` in a session of its own (see [`own_session`]),
/// killed (SIGTERM) if this process dies, as dockerd starts docker-proxy (Pdeathsig).
/// `status_fd` becomes fd 3.
pub fn spawn_in(ns: &str, args: &[&str], status_fd: Option<RawFd>) -> Result<Child> {
    let nsf = fs::File::open(format!("/run/netns/{ns}")).with_context(|| format!("opening netns {ns}"))?;
    let nsfd = nsf.as_raw_fd();
    let mut c = Command::new(args[0]);
    c.args(&args[1..])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    // SAFETY: only async-signal-safe calls between fork and exec; the descriptors stay open
    // in the parent until spawn returns.
    unsafe {
        c.pre_exec(move || {
            if libc::setsid() < 0 || libc::setns(nsfd, libc::CLONE_NEWNET) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            // dup2 clears close-on-exec, unless the descriptor is already 3.
            if let Some(fd) = status_fd
                && (if fd == 3 {
                    libc::fcntl(3, libc::F_SETFD, 0)
                } else {
                    libc::dup2(fd, 3)
                }) < 0
            {
                return Err(std::io::Error::last_os_error());
            }
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let child = c.spawn().with_context(|| format!("starting {args:?} in {ns}"))?;
    drop(nsf);
    Ok(child)
}

/// A pipe whose write end is handed to a child as fd 3 (docker-proxy's status pipe).
pub fn status_pipe() -> Result<(fs::File, OwnedFd)> {
    let mut fds = [0; 2];
    // SAFETY: pipe2 writes two descriptors.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        bail!("pipe2: {}", std::io::Error::last_os_error());
    }
    // SAFETY: both descriptors are new and owned here.
    Ok(unsafe { (fs::File::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

/// Signals a child's process group, waits up to 3 s, then kills the group.
pub fn stop_group(mut child: Child, first: libc::c_int) -> Result<()> {
    let pgid = child.id() as i32;
    // SAFETY: signalling a process group this process created.
    unsafe { libc::kill(-pgid, first) };
    let deadline = Instant::now() + Duration::from_secs(3);
    loop {
        if child.try_wait()?.is_some() {
            break;
        }
        if Instant::now() > deadline {
            // SAFETY: as above.
            unsafe { libc::kill(-pgid, libc::SIGKILL) };
            child.wait()?;
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    // Children that outlived the leader (socat's forks): the group must be empty.
    // SAFETY: as above; ESRCH (no such group) is the expected answer.
    unsafe { libc::kill(-pgid, libc::SIGKILL) };
    Ok(())
}

/// The interface names of netns `ns`.
pub fn interfaces(ns: &str) -> Result<Vec<String>> {
    let links = sh(&mut cmd(&["ip", "-n", ns, "-o", "link", "show"]))?;
    Ok(links
        .lines()
        .filter_map(|l| l.split(": ").nth(1))
        .map(|n| n.split('@').next().unwrap_or(n).to_string())
        .collect())
}

/// A BPF program attached to an interface.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Attachment {
    pub ns: String,
    pub dev: String,
    /// `tcx/ingress`, `tcx/egress`, `tc/ingress`, `xdp`, ...
    pub hook: String,
    pub prog: String,
    pub prog_id: u32,
}

impl std::fmt::Display for Attachment {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {} {} (id {})", self.dev, self.hook, self.prog, self.prog_id)
    }
}

/// Every BPF program attached to an interface of netns `ns`: TCX links through the kernel's
/// BPF_PROG_QUERY (bpftool 7.1 predates TCX and does not list them) and classic tc/XDP
/// attachments through `bpftool net show`.
pub fn attached_programs(ns: &str) -> Result<Vec<Attachment>> {
    let mut v = Vec::new();
    let devs = interfaces(ns)?;
    let nsf = fs::File::open(format!("/run/netns/{ns}"))?;
    let ns_owned = ns.to_string();
    let tcx = std::thread::spawn(move || -> Result<Vec<Attachment>> {
        // SAFETY: setns affects only this short-lived thread.
        if unsafe { libc::setns(nsf.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
            bail!("setns: {}", std::io::Error::last_os_error());
        }
        use aya::programs::{SchedClassifier, TcAttachType};
        let mut v = Vec::new();
        for dev in &devs {
            for (hook, t) in [
                ("tcx/ingress", TcAttachType::Ingress),
                ("tcx/egress", TcAttachType::Egress),
            ] {
                let (_, progs) = SchedClassifier::query_tcx(dev, t)
                    .with_context(|| format!("querying TCX on {dev} in {ns_owned}"))?;
                for p in progs {
                    v.push(Attachment {
                        ns: ns_owned.clone(),
                        dev: dev.clone(),
                        hook: hook.into(),
                        prog: p.name_as_str().unwrap_or("?").to_string(),
                        prog_id: p.id(),
                    });
                }
            }
        }
        Ok(v)
    })
    .join()
    .map_err(|_| anyhow::anyhow!("TCX query thread panicked"))??;
    v.extend(tcx);
    let j = sh(&mut cmd(&["ip", "netns", "exec", ns, "bpftool", "-j", "net", "show"]))?;
    let parsed: serde_json::Value = serde_json::from_str(j.trim()).context("bpftool net show output")?;
    for group in parsed.as_array().into_iter().flatten() {
        for (kind, entries) in group.as_object().into_iter().flatten() {
            for e in entries.as_array().into_iter().flatten() {
                v.push(Attachment {
                    ns: ns.to_string(),
                    dev: e["devname"].as_str().unwrap_or("?").to_string(),
                    hook: match e["kind"].as_str() {
                        Some(k) => format!("{kind}/{k}"),
                        None => kind.clone(),
                    },
                    prog: e["name"].as_str().unwrap_or("?").to_string(),
                    prog_id: e["id"].as_u64().or(e["prog_id"].as_u64()).unwrap_or(0) as u32,
                });
            }
        }
    }
    Ok(v)
}
