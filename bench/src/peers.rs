//! The measured paths and the peers' configurations: Docker's iptables rules, an nftables map,
//! the real docker-proxy (run as dockerd runs it) and socat.
use std::{fmt::Write as _, fs, io::Read, os::fd::AsRawFd, time::Duration};

use anyhow::{Context, Result, bail};

use crate::env::{
    BARE_BRIDGE, Env, HOST_IP, LINKRT_BRIDGE, SRV_IP, SRV_PORT, SUBNET, Where, World, attached_programs, interfaces,
    spawn_in, status_pipe,
};

pub const DOCKER_PROXY: &str = "/usr/sbin/docker-proxy";
/// Where the dummy mappings of the scale runs point (nothing listens there).
const DUMMY_IP: &str = "172.17.1.10";

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum PathId {
    /// Client → container IP in the bare world: no program, no rule (the denominator).
    Bare,
    /// linkrt's eBPF published port.
    Linkrt,
    /// The same published port through the datapath before issue 11's hardening (the old
    /// binary, in the before world).
    LinkrtBefore,
    /// Client → container IP through linkrt's attached programs, no NAT (linkrt's idle cost).
    LinkrtNoNat,
    /// Docker 28's iptables rules (userland-proxy=false), with conntrack, in the bare world.
    Iptables,
    /// DNAT through an nftables map, in the bare world.
    Nftables,
    /// Debian's docker-proxy (docker.io 20.10.24), as dockerd starts it, in the bare world.
    DockerProxy,
    /// socat, a process per connection, in the bare world.
    Socat,
}

impl PathId {
    /// The main table's columns, in order (without the before world: [`PathId::main`]).
    pub const MAIN: [PathId; 7] = [
        PathId::Bare,
        PathId::Linkrt,
        PathId::LinkrtNoNat,
        PathId::Iptables,
        PathId::Nftables,
        PathId::DockerProxy,
        PathId::Socat,
    ];

    /// The paths of the interleaved main run: [`PathId::MAIN`], and the before world's path
    /// right after `linkrt` when the run has that world.
    pub fn main(before: bool) -> Vec<PathId> {
        let mut v = PathId::MAIN.to_vec();
        if before {
            v.insert(2, PathId::LinkrtBefore);
        }
        v
    }

    pub fn name(self) -> &'static str {
        match self {
            PathId::Bare => "bare",
            PathId::Linkrt => "linkrt",
            PathId::LinkrtBefore => "linkrt_before",
            PathId::LinkrtNoNat => "linkrt_nonat",
            PathId::Iptables => "iptables",
            PathId::Nftables => "nftables",
            PathId::DockerProxy => "docker_proxy",
            PathId::Socat => "socat",
        }
    }

    pub fn world(self) -> World {
        match self {
            PathId::Linkrt | PathId::LinkrtNoNat => World::Linkrt,
            PathId::LinkrtBefore => World::Before,
            _ => World::Bare,
        }
    }

    pub fn port(self) -> u16 {
        match self {
            PathId::Bare | PathId::LinkrtNoNat => SRV_PORT,
            PathId::Linkrt | PathId::LinkrtBefore => 8080,
            PathId::Iptables => 8081,
            PathId::Nftables => 8082,
            PathId::DockerProxy => 8083,
            PathId::Socat => 8084,
        }
    }

    pub fn addr(self, env: &Env) -> String {
        match self {
            PathId::Bare => format!("{SRV_IP}:{SRV_PORT}"),
            PathId::LinkrtNoNat => format!("{}:{SRV_PORT}", env.linkrt_srv_ip),
            p => format!("{HOST_IP}:{}", p.port()),
        }
    }

    pub fn client(self) -> Where {
        Where::Client(self.world())
    }
}

/// Makes `p` the only configured baseline, with `extra` dummy mappings placed before the
/// measured one (the worst case for linear rule lists), and checks the isolation rules.
pub fn setup(env: &mut Env, p: PathId, extra: usize) -> Result<()> {
    env.stop_peers()?;
    match p {
        PathId::Bare => env.assert_bare_world_clean(false)?,
        PathId::Linkrt | PathId::LinkrtNoNat => assert_linkrt_world(env)?,
        PathId::LinkrtBefore => assert_before_world(env)?,
        PathId::Iptables => {
            let f = env.tmp.join("iptables.rules");
            fs::write(&f, docker_iptables(p.port(), extra, BARE_BRIDGE))?;
            env.in_ns(&env.b_host, &["iptables-restore", &f.to_string_lossy()])?;
            env.assert_bare_world_clean(true)?;
        }
        PathId::Nftables => {
            let f = env.tmp.join("nft.rules");
            fs::write(&f, nft_map(p.port(), extra))?;
            env.in_ns(&env.b_host, &["nft", "-f", &f.to_string_lossy()])?;
            env.assert_bare_world_clean(true)?;
        }
        PathId::DockerProxy => {
            let mut specs: Vec<(&str, u16, &str, u16)> = (0..extra)
                .map(|i| {
                    let d = dummy_port(i);
                    ("tcp", d, DUMMY_IP, d)
                })
                .collect();
            specs.push(("tcp", p.port(), SRV_IP, SRV_PORT));
            specs.push(("udp", p.port(), SRV_IP, SRV_PORT));
            start_docker_proxies(env, &specs)?;
            env.assert_bare_world_clean(false)?;
        }
        PathId::Socat => {
            for proto in ["TCP", "UDP"] {
                // Its own process group: socat forks a child per peer, and all must go.
                // -T 5: a UDP "session" child ends after 5 s without traffic.
                let listen = format!("{proto}-LISTEN:{},fork,reuseaddr", p.port());
                let to = format!("{proto}:{SRV_IP}:{SRV_PORT}");
                let child = spawn_in(&env.b_host, &["socat", "-T", "5", &listen, &to], None)?;
                env.add_peer(child);
            }
            wait_listening(env, p.port())?;
            env.assert_bare_world_clean(false)?;
        }
    }
    Ok(())
}

/// The linkrt paths really cross linkrt: its programs are on both hooks of every interface of
/// the linkrt world's host namespace but loopback and the bridge, i.e. the uplink and every
/// container veth (also a positive control for [`attached_programs`]), and it has no netfilter rule.
pub fn assert_linkrt_world(env: &Env) -> Result<()> {
    assert_programs_everywhere(env, &env.l_host, "linkrt")
}

/// The same for the before world and the old binary's programs (they are named `lrt_*` too).
pub fn assert_before_world(env: &Env) -> Result<()> {
    assert_programs_everywhere(env, &env.before()?.host, "before")
}

fn assert_programs_everywhere(env: &Env, host: &str, world: &str) -> Result<()> {
    let a = attached_programs(host)?;
    let devs: Vec<String> = interfaces(host)?
        .into_iter()
        .filter(|d| d != "lo" && d != LINKRT_BRIDGE)
        .collect();
    if !devs.iter().any(|d| d == "up0") || devs.len() < 2 {
        bail!("the {world} world's host namespace lacks its uplink or container veths: {devs:?}");
    }
    for dev in &devs {
        for hook in ["tcx/ingress", "tcx/egress"] {
            if !a
                .iter()
                .any(|x| &x.dev == dev && x.hook == hook && x.prog.starts_with("lrt_"))
            {
                bail!("linkrt's programs are not attached to {dev} ({hook}) in the {world} world: {a:?}");
            }
        }
    }
    let r = env.in_ns(host, &["nft", "list", "ruleset"])?;
    if !r.trim().is_empty() {
        bail!("the {world} world has netfilter rules:\n{r}");
    }
    Ok(())
}

/// Host ports of the dummy mappings: 12000-61999 (repeating past 50,000 mappings, so an nft
/// map holds at most 50,000 of them; iptables keeps every rule).
fn dummy_port(i: usize) -> u16 {
    (12000 + (i % 50000)) as u16
}

/// 10,000 host ports that no measured or dummy mapping uses (for the control-plane batches).
pub fn batch_ports() -> Vec<u16> {
    (1..12000).filter(|p| !(8080..=8084).contains(p)).take(10_000).collect()
}

/// Starts docker-proxy processes the way dockerd does (libnetwork portmapper/proxy_linux.go):
/// `-proto P -host-ip IP -host-port N -container-ip IP -container-port N`, a status pipe on fd 3
/// that reports "0\n" once it listens, Pdeathsig SIGTERM, and SIGINT to stop. dockerd passes the
/// binding's host IP, 0.0.0.0 for `-p 8083:5000`. All are started first, then awaited.
pub fn start_docker_proxies(env: &mut Env, specs: &[(&str, u16, &str, u16)]) -> Result<()> {
    let mut pending = Vec::new();
    for (proto, hp, ip, cp) in specs {
        let (r, w) = status_pipe()?;
        let (hp, cp) = (hp.to_string(), cp.to_string());
        let args = [
            DOCKER_PROXY,
            "-proto",
            proto,
            "-host-ip",
            "0.0.0.0",
            "-host-port",
            &hp,
            "-container-ip",
            ip,
            "-container-port",
            &cp,
        ];
        let child = spawn_in(&env.b_host, &args, Some(w.as_raw_fd()))?;
        drop(w);
        env.add_peer(child);
        pending.push((format!("{proto}/{hp}"), r));
    }
    for (what, mut r) in pending {
        let status = read_status(&mut r, Duration::from_secs(16)).with_context(|| format!("docker-proxy {what}"))?;
        if status != "0\n" {
            bail!("docker-proxy {what} did not start: {status:?}");
        }
    }
    Ok(())
}

/// Reads a status pipe until EOF, with dockerd's 16 s limit.
fn read_status(r: &mut fs::File, limit: Duration) -> Result<String> {
    let mut pfd = libc::pollfd {
        fd: r.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: one valid pollfd.
    let n = unsafe { libc::poll(&mut pfd, 1, limit.as_millis() as i32) };
    if n <= 0 {
        bail!("no status after {limit:?}");
    }
    let mut s = String::new();
    r.read_to_string(&mut s)?;
    Ok(s)
}

/// Waits until something accepts TCP connections on `port` of the bare world's host.
fn wait_listening(env: &Env, port: u16) -> Result<()> {
    for _ in 0..100 {
        let out = env.in_ns(&env.b_host, &["ss", "-Htln", &format!("sport = :{port}")])?;
        if !out.trim().is_empty() {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    bail!("nothing listens on port {port}")
}

/// Docker 28's rules with `userland-proxy=false` (moby integration/network/bridge/iptablesdoc,
/// usernet-portmap-noproxy): per published port a nat DNAT, a filter ACCEPT and a hairpin
/// MASQUERADE; per container a raw "direct access" DROP; the DOCKER-CT established shortcut.
/// `extra` dummy TCP mappings come first, the measured TCP+UDP mapping last.
pub fn docker_iptables(port: u16, extra: usize, bridge: &str) -> String {
    let mut nat = format!(
        "*nat\n:PREROUTING ACCEPT [0:0]\n:INPUT ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n:POSTROUTING ACCEPT [0:0]\n:DOCKER - [0:0]\n\
         -A PREROUTING -m addrtype --dst-type LOCAL -j DOCKER\n\
         -A OUTPUT -m addrtype --dst-type LOCAL -j DOCKER\n\
         -A POSTROUTING -o {bridge} -m addrtype --src-type LOCAL -j MASQUERADE\n\
         -A POSTROUTING -s {SUBNET} ! -o {bridge} -j MASQUERADE\n"
    );
    let mut accept = String::new();
    let mut dnat = String::new();
    let mut masq = String::new();
    let mut rule = |proto: &str, hp: u16, ip: &str, cp: u16| {
        let _ = writeln!(
            accept,
            "-A DOCKER -d {ip}/32 ! -i {bridge} -o {bridge} -p {proto} -m {proto} --dport {cp} -j ACCEPT"
        );
        let _ = writeln!(
            dnat,
            "-A DOCKER -p {proto} -m {proto} --dport {hp} -j DNAT --to-destination {ip}:{cp}"
        );
        let _ = writeln!(
            masq,
            "-A POSTROUTING -s {ip}/32 -d {ip}/32 -p {proto} -m {proto} --dport {cp} -j MASQUERADE"
        );
    };
    for i in 0..extra {
        let d = dummy_port(i);
        rule("tcp", d, DUMMY_IP, d);
    }
    for proto in ["tcp", "udp"] {
        rule(proto, port, SRV_IP, SRV_PORT);
    }
    nat.push_str(&masq);
    nat.push_str(&dnat);
    nat.push_str("COMMIT\n");
    let filter = format!(
        "*filter\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n:DOCKER - [0:0]\n:DOCKER-BRIDGE - [0:0]\n\
         :DOCKER-CT - [0:0]\n:DOCKER-FORWARD - [0:0]\n:DOCKER-INTERNAL - [0:0]\n:DOCKER-USER - [0:0]\n\
         -A FORWARD -j DOCKER-USER\n-A FORWARD -j DOCKER-FORWARD\n{accept}\
         -A DOCKER ! -i {bridge} -o {bridge} -j DROP\n-A DOCKER-BRIDGE -o {bridge} -j DOCKER\n\
         -A DOCKER-CT -o {bridge} -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT\n\
         -A DOCKER-FORWARD -j DOCKER-CT\n-A DOCKER-FORWARD -j DOCKER-INTERNAL\n-A DOCKER-FORWARD -j DOCKER-BRIDGE\n\
         -A DOCKER-FORWARD -i {bridge} -j ACCEPT\nCOMMIT\n"
    );
    let mut raw = String::from("*raw\n:PREROUTING ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n");
    for ip in [SRV_IP, DUMMY_IP].iter().take(if extra > 0 { 2 } else { 1 }) {
        let _ = writeln!(raw, "-A PREROUTING -d {ip}/32 ! -i {bridge} -j DROP");
    }
    raw.push_str("COMMIT\n");
    format!("{nat}{filter}{raw}")
}

/// The rules Docker adds for one more container publishing `ports` (3 per port), as an
/// `iptables-restore --noflush` batch on top of [`docker_iptables`] (no chain is redeclared:
/// that would flush it).
pub fn docker_iptables_batch(ports: &[u16], ip: &str, bridge: &str) -> String {
    let (mut nat, mut filter) = (String::from("*nat\n"), String::from("*filter\n"));
    for p in ports {
        let _ = writeln!(
            nat,
            "-A POSTROUTING -s {ip}/32 -d {ip}/32 -p tcp -m tcp --dport {p} -j MASQUERADE"
        );
        let _ = writeln!(
            nat,
            "-A DOCKER -p tcp -m tcp --dport {p} -j DNAT --to-destination {ip}:{p}"
        );
        let _ = writeln!(
            filter,
            "-I DOCKER 1 -d {ip}/32 ! -i {bridge} -o {bridge} -p tcp -m tcp --dport {p} -j ACCEPT"
        );
    }
    format!("{nat}COMMIT\n{filter}COMMIT\n")
}

/// The same three rules of one port as Docker programs them: for each, an `iptables -C` exec
/// (moby iptables.go ProgramRule: "only if the rule is not already present") and then the
/// `-A`/`-I` exec, both with `--wait`.
pub fn docker_rule_execs(port: u16, ip: &str, bridge: &str) -> Vec<Vec<String>> {
    let rules: [(&str, &str, &str, String); 3] = [
        (
            "nat",
            "-A",
            "POSTROUTING",
            format!("-s {ip}/32 -d {ip}/32 -p tcp -m tcp --dport {port} -j MASQUERADE"),
        ),
        (
            "nat",
            "-A",
            "DOCKER",
            format!("-p tcp -m tcp --dport {port} -j DNAT --to-destination {ip}:{port}"),
        ),
        (
            "filter",
            "-I",
            "DOCKER",
            format!("-d {ip}/32 ! -i {bridge} -o {bridge} -p tcp -m tcp --dport {port} -j ACCEPT"),
        ),
    ];
    let mut v = Vec::new();
    for (table, action, chain, spec) in rules {
        for a in ["-C", action] {
            let mut c: Vec<String> = ["iptables", "--wait", "-t", table, a, chain].map(String::from).to_vec();
            c.extend(spec.split_whitespace().map(String::from));
            v.push(c);
        }
    }
    v
}

/// DNAT through one nftables map per protocol (the best non-eBPF kernel option).
pub fn nft_map(port: u16, extra: usize) -> String {
    let mut tcp: Vec<String> = (0..extra)
        .map(|i| format!("{} : {DUMMY_IP} . {}", dummy_port(i), dummy_port(i)))
        .collect();
    tcp.sort();
    tcp.dedup();
    tcp.push(format!("{port} : {SRV_IP} . {SRV_PORT}"));
    format!(
        "table ip bench {{\n map pm_tcp {{ type inet_service : ipv4_addr . inet_service; elements = {{ {} }} }}\n map pm_udp {{ type inet_service : ipv4_addr . inet_service; elements = {{ {port} : {SRV_IP} . {SRV_PORT} }} }}\n chain pre {{ type nat hook prerouting priority dstnat; policy accept;\n  fib daddr type local dnat ip to tcp dport map @pm_tcp\n  fib daddr type local dnat ip to udp dport map @pm_udp\n }}\n chain post {{ type nat hook postrouting priority srcnat; policy accept; }}\n}}\n",
        tcp.join(", ")
    )
}

/// One nft transaction adding `ports` to the map of [`nft_map`].
pub fn nft_batch(ports: &[u16], ip: &str) -> String {
    let e: Vec<String> = ports.iter().map(|p| format!("{p} : {ip} . {p}")).collect();
    format!("add element ip bench pm_tcp {{ {} }}\n", e.join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_before_path_joins_the_main_run_only_with_its_world() {
        assert_eq!(PathId::main(false), PathId::MAIN.to_vec());
        let with = PathId::main(true);
        assert_eq!(with.len(), PathId::MAIN.len() + 1);
        assert_eq!(with[..3], [PathId::Bare, PathId::Linkrt, PathId::LinkrtBefore]);
        let p = PathId::LinkrtBefore;
        assert_eq!((p.name(), p.world(), p.port()), ("linkrt_before", World::Before, 8080));
        // The same published port as linkrt's, from the before world's own client namespace.
        assert_eq!(p.client(), Where::Client(World::Before));
        assert_eq!(PathId::Linkrt.port(), p.port());
    }

    #[test]
    fn batches_use_ports_nothing_else_uses() {
        let b = batch_ports();
        assert_eq!(b.len(), 10_000);
        assert!(b.iter().all(|p| *p < dummy_port(0) && !(8080..=8084).contains(p)));
        assert_eq!(dummy_port(49_999), 61_999);
    }

    #[test]
    fn docker_rules_per_port() {
        let r = docker_iptables(8081, 2, "br0");
        // 2 dummies and the measured tcp+udp mapping: a DNAT, an ACCEPT and a MASQUERADE each.
        assert_eq!(r.matches("-j DNAT").count(), 4);
        assert_eq!(
            r.lines()
                .filter(|l| l.starts_with("-A DOCKER -d ") && l.ends_with("-j ACCEPT"))
                .count(),
            4
        );
        assert_eq!(r.matches("--dport 5000 -j MASQUERADE").count(), 2);
        // The measured mapping comes last in the nat DOCKER chain.
        let last = r.lines().rfind(|l| l.contains("-j DNAT")).unwrap();
        assert!(last.contains("-p udp") && last.contains("--dport 8081"), "{last}");
        assert_eq!(docker_rule_execs(9, "172.17.0.9", "br0").len(), 6);
        assert!(nft_map(8082, 3).contains("8082 : 172.17.0.2 . 5000"));
    }
}
