//! Helpers for linkrt's privileged tests: private network namespaces, private bpffs mounts,
//! crafted packets. Every name is random so that parallel runs never collide, and every guard
//! cleans up on drop (also when the test panics).
pub mod cni;
pub mod pkt;

use std::{
    fs,
    path::{Path, PathBuf},
    process::{Command, Output},
};

use rand::Rng;

/// Fails the test loudly when it cannot run: these tests must never pass by skipping.
pub fn require_root() {
    if !nix::unistd::geteuid().is_root() {
        panic!("this test needs root (CAP_SYS_ADMIN, CAP_NET_ADMIN, CAP_BPF): run it with `cargo xtask test`");
    }
}

/// A random lowercase suffix for names of namespaces, interfaces and directories.
pub fn rand_suffix(n: usize) -> String {
    let mut r = rand::thread_rng();
    (0..n).map(|_| (b'a' + r.gen_range(0..26)) as char).collect()
}

/// Runs a command, panicking with its output if it fails.
pub fn sh(cmd: &[&str]) -> Output {
    let out = Command::new(cmd[0])
        .args(&cmd[1..])
        .output()
        .unwrap_or_else(|e| panic!("spawn {cmd:?}: {e}"));
    if !out.status.success() {
        panic!(
            "{cmd:?} failed ({}):\nstdout: {}\nstderr: {}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    out
}

/// A named network namespace (`ip netns add`), deleted on drop.
pub struct NetNs {
    pub name: String,
}

impl NetNs {
    pub fn new(prefix: &str) -> Self {
        let name = format!("{prefix}-{}", rand_suffix(8));
        sh(&["ip", "netns", "add", &name]);
        let ns = NetNs { name };
        ns.exec(&["ip", "link", "set", "lo", "up"]);
        ns
    }

    pub fn path(&self) -> PathBuf {
        Path::new("/run/netns").join(&self.name)
    }

    /// Runs a command inside the namespace, panicking on failure.
    pub fn exec(&self, cmd: &[&str]) -> Output {
        let mut full = vec!["ip", "netns", "exec", &self.name];
        full.extend_from_slice(cmd);
        sh(&full)
    }

    /// Runs a command inside the namespace and returns its output whatever the exit status.
    pub fn try_exec(&self, cmd: &[&str]) -> Output {
        Command::new("ip")
            .args(["netns", "exec", &self.name])
            .args(cmd)
            .output()
            .expect("spawn ip netns exec")
    }

    /// Runs `f` on a dedicated thread that has entered this namespace (setns never touches the
    /// test's own thread).
    pub fn run<T: Send>(&self, f: impl FnOnce() -> T + Send) -> T {
        let path = self.path();
        std::thread::scope(|s| {
            s.spawn(move || {
                let fd = fs::File::open(&path).unwrap_or_else(|e| panic!("open {}: {e}", path.display()));
                nix::sched::setns(fd, nix::sched::CloneFlags::CLONE_NEWNET).expect("setns");
                f()
            })
            .join()
            .expect("namespace thread panicked")
        })
    }
}

impl Drop for NetNs {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.name]).status();
    }
}

/// Whether the named netns of the container with this ID exists (`ip netns` shows it).
pub fn netns_exists(id: &str) -> bool {
    Path::new("/run/netns").join(format!("linkrt-{}", &id[..12])).exists()
}

/// A private bpffs mounted on a fresh directory, unmounted and removed on drop.
pub struct BpfFs {
    pub dir: PathBuf,
}

impl BpfFs {
    pub fn new() -> Self {
        let dir = std::env::temp_dir().join(format!("linkrt-bpffs-{}", rand_suffix(8)));
        fs::create_dir_all(&dir).unwrap();
        nix::mount::mount(
            Some("bpf"),
            &dir,
            Some("bpf"),
            nix::mount::MsFlags::empty(),
            Some("mode=0700"),
        )
        .unwrap_or_else(|e| panic!("mount bpffs on {}: {e}", dir.display()));
        BpfFs { dir }
    }
}

impl Default for BpfFs {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for BpfFs {
    fn drop(&mut self) {
        let _ = nix::mount::umount2(&self.dir, nix::mount::MntFlags::MNT_DETACH);
        let _ = fs::remove_dir(&self.dir);
    }
}

/// For a test that unmounts a [`Host`]'s bpffs: linkrt mounts a new one at `cfg.bpffs`, inside
/// the emptied mount point. On drop (declare it before the host, so that the host and its
/// containers go first) that one is unmounted and removed, and so is the old mount point,
/// which the host's own [`BpfFs`] could not remove while it held the new one.
pub struct Remount(pub PathBuf);

impl Drop for Remount {
    fn drop(&mut self) {
        let _ = nix::mount::umount2(&self.0, nix::mount::MntFlags::MNT_DETACH);
        let _ = fs::remove_dir(&self.0);
        if let Some(parent) = self.0.parent() {
            let _ = fs::remove_dir(parent);
        }
    }
}

/// A private temporary directory, removed on drop.
pub struct TempDir {
    pub path: PathBuf,
}

impl TempDir {
    pub fn new(prefix: &str) -> Self {
        let path = std::env::temp_dir().join(format!("{prefix}-{}", rand_suffix(8)));
        fs::create_dir_all(&path).unwrap();
        TempDir { path }
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.path);
    }
}

/// A linkrt configuration private to one test: its own state dirs, bpffs, socket-hook
/// cgroup and parent of the containers' cgroups.
pub struct TestConfig {
    pub cfg: linkrt::Config,
    _state: TempDir,
    _bpffs: BpfFs,
    _cgroup: CgroupDir,
    _parent: CgroupParent,
}

/// The parent of one test instance's container cgroups (in every hierarchy), removed on drop.
pub struct CgroupParent {
    pub name: String,
}

impl Drop for CgroupParent {
    fn drop(&mut self) {
        let layout = linkrt::oci::cgroup::Layout::detect();
        for d in layout.dirs(std::path::Path::new(&self.name)) {
            // Children first (containers the runtime did not remove, the probe's).
            if let Ok(rd) = fs::read_dir(&d) {
                for e in rd.flatten() {
                    if e.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                        let _ = fs::remove_dir(e.path());
                    }
                }
            }
            let _ = fs::remove_dir(&d);
        }
    }
}

/// A private cgroup v2 directory (for the socket hooks), removed on drop.
pub struct CgroupDir {
    pub path: PathBuf,
}

impl CgroupDir {
    pub fn new() -> Self {
        let root = linkrt::Config::default().cgroup_dir().expect("a cgroup2 mount");
        let path = root.join(format!("linkrt-test-{}", rand_suffix(8)));
        fs::create_dir(&path).unwrap_or_else(|e| panic!("mkdir {}: {e}", path.display()));
        CgroupDir { path }
    }
}

impl Default for CgroupDir {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for CgroupDir {
    fn drop(&mut self) {
        for _ in 0..50 {
            if fs::remove_dir(&self.path).is_ok() {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
    }
}

impl TestConfig {
    pub fn new() -> Self {
        let state = TempDir::new("linkrt-state");
        let bpffs = BpfFs::new();
        let cgroup = CgroupDir::new();
        let parent = CgroupParent {
            name: format!("linkrt-test-{}", rand_suffix(8)),
        };
        let cfg = linkrt::Config {
            root: state.path.join("lib"),
            run_root: state.path.join("run"),
            bpffs: bpffs.dir.join("linkrt"),
            cgroup: Some(cgroup.path.clone()),
            cgroup_parent: parent.name.clone(),
        };
        TestConfig {
            cfg,
            _state: state,
            _bpffs: bpffs,
            _cgroup: cgroup,
            _parent: parent,
        }
    }
}

impl Default for TestConfig {
    fn default() -> Self {
        Self::new()
    }
}

/// The linkrt binary under test (`LINKRT_BIN`, set by `cargo xtask test`).
pub fn linkrt_bin() -> PathBuf {
    std::env::var_os("LINKRT_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/debug/linkrt"))
}

/// The output of one linkrt call.
#[derive(Debug)]
pub struct Out {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Out {
    /// Panics unless the command succeeded; returns stdout.
    pub fn ok(self) -> String {
        assert_eq!(self.code, 0, "command failed: {self:?}");
        self.stdout
    }
}

/// A private "host": its own network namespace, state dirs and bpffs, where linkrt runs like
/// on a real machine. Everything is removed on drop, containers included.
pub struct Host {
    pub ns: NetNs,
    pub t: TestConfig,
    /// A tmpfs mounted on the state directory (a small disk to fill), unmounted on drop.
    state_mount: Option<PathBuf>,
}

impl Host {
    pub fn new() -> Self {
        require_root();
        let bin = linkrt_bin();
        assert!(bin.exists(), "{} missing: run `cargo xtask test`", bin.display());
        Host {
            ns: NetNs::new("lrt-host"),
            t: TestConfig::new(),
            state_mount: None,
        }
    }

    /// A host whose state directory is a tmpfs of `bytes` (to fill it up).
    pub fn with_small_state_disk(bytes: u64) -> Self {
        let mut h = Host::new();
        let root = h.t.cfg.root.clone();
        fs::create_dir_all(&root).unwrap();
        let opts = format!("size={bytes},mode=0700");
        nix::mount::mount(
            Some("tmpfs"),
            &root,
            Some("tmpfs"),
            nix::mount::MsFlags::empty(),
            Some(opts.as_str()),
        )
        .unwrap_or_else(|e| panic!("mount tmpfs on {}: {e}", root.display()));
        h.state_mount = Some(root);
        h
    }

    /// Runs `linkrt ARGS` with extra environment variables.
    pub fn linkrt_env(&self, env: &[(&str, &str)], args: &[&str]) -> Out {
        let mut c = self.command(args);
        c.envs(env.iter().copied());
        let o = run_with_timeout(&mut c, std::time::Duration::from_secs(120));
        Out {
            code: exit_code(&o.status),
            stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
        }
    }

    /// Runs `linkrt ARGS` with these variables removed from its environment.
    pub fn linkrt_unset(&self, unset: &[&str], args: &[&str]) -> Out {
        let mut c = self.command(args);
        for u in unset {
            c.env_remove(u);
        }
        let o = run_with_timeout(&mut c, std::time::Duration::from_secs(120));
        Out {
            code: exit_code(&o.status),
            stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
        }
    }

    /// Starts `linkrt ARGS` in the background with extra environment variables.
    pub fn spawn_env(&self, env: &[(&str, &str)], args: &[&str]) -> std::process::Child {
        self.command(args)
            .envs(env.iter().copied())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("spawn linkrt")
    }

    /// Starts `linkrt ARGS` in the background, stdout piped.
    pub fn spawn(&self, args: &[&str]) -> std::process::Child {
        self.command(args)
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("spawn linkrt")
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut c = Command::new("nsenter");
        c.arg(format!("--net={}", self.ns.path().display()))
            .arg(linkrt_bin())
            .args(args)
            .env("LINKRT_ROOT", &self.t.cfg.root)
            .env("LINKRT_RUN_ROOT", &self.t.cfg.run_root)
            .env("LINKRT_BPFFS", &self.t.cfg.bpffs)
            .env("LINKRT_CGROUP", self.t.cfg.cgroup.as_ref().unwrap())
            .env("LINKRT_CGROUP_PARENT", &self.t.cfg.cgroup_parent)
            .stdin(std::process::Stdio::null());
        c
    }

    /// Runs `linkrt ARGS` in this host (with a 120 s guard).
    pub fn linkrt(&self, args: &[&str]) -> Out {
        self.linkrt_env(&[], args)
    }

    /// `linkrt ARGS`, which must succeed; returns trimmed stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        self.linkrt(args).ok().trim_end().to_string()
    }

    /// Runs a host command (curl, ip, ...) inside this host's network namespace.
    pub fn sh(&self, cmd: &[&str]) -> Output {
        self.ns.try_exec(cmd)
    }

    /// The processes of this instance only: its supervisors (which carry this instance's
    /// `LINKRT_ROOT`) and all their descendants (the containers' processes).
    pub fn instance_processes(&self) -> Vec<u32> {
        let root = format!("LINKRT_ROOT={}", self.t.cfg.root.display());
        let mut parent = std::collections::HashMap::new();
        let mut roots = Vec::new();
        for e in fs::read_dir("/proc").unwrap().flatten() {
            let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else {
                continue;
            };
            if let Ok(stat) = fs::read_to_string(e.path().join("stat"))
                && let Some(ppid) = stat
                    .rsplit_once(") ")
                    .and_then(|(_, r)| r.split(' ').nth(1)?.parse::<u32>().ok())
            {
                parent.insert(pid, ppid);
            }
            let cmd = fs::read(e.path().join("cmdline")).unwrap_or_default();
            let env = fs::read(e.path().join("environ")).unwrap_or_default();
            if cmd.windows(11).any(|w| w == b"__supervise") && env.split(|b| *b == 0).any(|v| v == root.as_bytes()) {
                roots.push(pid);
            }
        }
        let mut all: Vec<u32> = parent
            .keys()
            .copied()
            .filter(|p| {
                let mut cur = *p;
                for _ in 0..64 {
                    if roots.contains(&cur) {
                        return true;
                    }
                    match parent.get(&cur) {
                        Some(pp) if *pp != 0 => cur = *pp,
                        _ => return false,
                    }
                }
                false
            })
            .collect();
        all.sort();
        all
    }

    /// Runs a command in another network namespace `ns`, inside the cgroup where linkrt's socket
    /// hooks are attached (what the hooks' netns check must leave alone).
    pub fn process_in_hooked_cgroup(&self, ns: &NetNs, cmd: &[&str]) -> Output {
        let procs = self.t.cfg.cgroup.as_ref().unwrap().join("cgroup.procs");
        let mut c = Command::new("nsenter");
        c.arg(format!("--net={}", ns.path().display()))
            .args([
                "sh",
                "-c",
                &format!("echo $$ > {} && exec \"$@\"", procs.display()),
                "sh",
            ])
            .args(cmd);
        run_with_timeout(&mut c, std::time::Duration::from_secs(60))
    }

    /// Runs a command as a process of this host (its netns, inside the cgroup where linkrt's
    /// socket hooks are attached).
    pub fn host_process(&self, cmd: &[&str]) -> Output {
        self.process_in_hooked_cgroup(&self.ns, cmd)
    }

    /// A datapath counter as `linkrt status` shows it.
    pub fn counter(&self, name: &str) -> u64 {
        let st = self.ok(&["status"]);
        st.lines()
            .find_map(|l| l.trim().strip_prefix(name)?.trim().parse().ok())
            .unwrap_or_else(|| panic!("no counter {name} in:\n{st}"))
    }

    /// IP leases as stored (empty when none was ever made).
    pub fn leases(&self) -> String {
        // Addresses are held in the state's index (container ID → IP, among other things).
        linkrt::state::index::Index::load(&self.t.cfg)
            .map(|i| i.addresses().map(|(ip, id)| format!("{ip} {id}\n")).collect::<String>())
            .unwrap_or_default()
    }

    /// Interfaces in this host's namespace.
    pub fn links(&self) -> String {
        String::from_utf8_lossy(&self.ns.exec(&["ip", "-o", "link"]).stdout).into_owned()
    }

    /// `inspect -f TEMPLATE NAME`.
    pub fn inspect(&self, name: &str, tmpl: &str) -> String {
        self.ok(&["inspect", "-f", tmpl, name])
    }
}

impl Default for Host {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for Host {
    fn drop(&mut self) {
        let ids = self
            .command(&["ps", "-aq", "--no-trunc"])
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
            .unwrap_or_default();
        for id in ids.split_whitespace() {
            let _ = self.command(&["rm", "-f", id]).output();
        }
        let overlay = self.t.cfg.run_root.join("overlay");
        let _ = nix::mount::umount2(&overlay, nix::mount::MntFlags::MNT_DETACH);
        if let Some(m) = &self.state_mount {
            let _ = nix::mount::umount2(m, nix::mount::MntFlags::MNT_DETACH);
        }
    }
}

/// The exit code as a shell reports it (128 + signal when killed).
pub fn exit_code(st: &std::process::ExitStatus) -> i32 {
    use std::os::unix::process::ExitStatusExt;
    st.code().unwrap_or_else(|| 128 + st.signal().unwrap_or(0))
}

/// Runs a command, killing it after `limit`.
pub fn run_with_timeout(c: &mut Command, limit: std::time::Duration) -> Output {
    use std::io::Read;
    let mut child = c
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("spawn {c:?}: {e}"));
    let mut so = child.stdout.take().unwrap();
    let mut se = child.stderr.take().unwrap();
    let to = std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = so.read_to_end(&mut v);
        v
    });
    let te = std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = se.read_to_end(&mut v);
        v
    });
    let start = std::time::Instant::now();
    let status = loop {
        if let Some(st) = child.try_wait().unwrap() {
            break st;
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            panic!("{c:?} timed out after {limit:?}");
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    };
    Output {
        status,
        stdout: to.join().unwrap(),
        stderr: te.join().unwrap(),
    }
}

/// How much longer than on the host the tests' waits may take: `LINKRT_TEST_TIME_SCALE`
/// (set to 5 by `cargo xtask test --kernel` under software emulation), 1 by default.
pub fn time_scale() -> u64 {
    std::env::var("LINKRT_TEST_TIME_SCALE")
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|n| *n >= 1)
        .unwrap_or(1)
}

/// Retries `f` for up to `secs` seconds (times [`time_scale`]) until it returns Some.
pub fn eventually<T>(secs: u64, mut f: impl FnMut() -> Option<T>) -> T {
    let secs = secs * time_scale();
    let start = std::time::Instant::now();
    loop {
        if let Some(v) = f() {
            return v;
        }
        if start.elapsed().as_secs() >= secs {
            panic!("condition not met within {secs} s");
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}

/// A client machine: a namespace joined to a [`Host`] by a veth (host 10.200.0.1/24, client
/// 10.200.0.2/24). Create it before starting containers that publish ports (linkrt attaches
/// its programs to the host's interfaces when a container starts).
pub struct Client {
    pub ns: NetNs,
}

pub const HOST_IP: &str = "10.200.0.1";
pub const CLIENT_IP: &str = "10.200.0.2";

impl Client {
    pub fn new(h: &Host) -> Self {
        let ns = NetNs::new("lrt-cli");
        let up = format!("up{}", rand_suffix(6));
        h.ns.exec(&[
            "ip", "link", "add", &up, "type", "veth", "peer", "name", "eth0", "netns", &ns.name,
        ]);
        h.ns.exec(&["ip", "addr", "add", &format!("{HOST_IP}/24"), "dev", &up]);
        h.ns.exec(&["ip", "link", "set", &up, "up"]);
        ns.exec(&["ip", "addr", "add", &format!("{CLIENT_IP}/24"), "dev", "eth0"]);
        ns.exec(&["ip", "link", "set", "eth0", "up"]);
        Client { ns }
    }

    /// `curl -s URL` from the client; Some(body) on success.
    pub fn curl(&self, url: &str) -> Option<String> {
        let o = self.ns.try_exec(&["curl", "-s", "-m", "3", url]);
        o.status
            .success()
            .then(|| String::from_utf8_lossy(&o.stdout).into_owned())
    }
}

/// Sends one UDP datagram from the namespace `ns` to `addr` and returns (reply, reply source).
pub fn udp_roundtrip(ns: &NetNs, addr: &str, msg: &str) -> Option<(String, String)> {
    let (ip, port) = addr.rsplit_once(':').unwrap();
    let script = format!(
        "import socket\ns=socket.socket(socket.AF_INET,socket.SOCK_DGRAM)\ns.settimeout(2)\ns.sendto(b'{msg}',('{ip}',{port}))\nd,a=s.recvfrom(2048)\nprint(d.decode()+' '+a[0]+':'+str(a[1]))"
    );
    let o = ns.try_exec(&["python3", "-c", &script]);
    let out = String::from_utf8_lossy(&o.stdout).trim().to_string();
    let (data, from) = out.rsplit_once(' ')?;
    Some((data.to_string(), from.to_string()))
}

/// A UDP echo server for a container: `alpine python3 -c ECHO` on `port`.
pub fn udp_echo_script(port: u16) -> String {
    format!(
        "import socket\ns=socket.socket(socket.AF_INET,socket.SOCK_DGRAM)\ns.bind(('',{port}))\nwhile True:\n d,a=s.recvfrom(2048)\n s.sendto(b'echo:'+d,a)"
    )
}

// ---- Attack probes (issue 11). Frames are built with [`pkt`] (the same frames as the
// BPF_PROG_TEST_RUN suite) and sent by python3 with an AF_PACKET socket: CAP_NET_RAW is all a
// probe needs, as in a container with Docker's default capabilities. Scripts are inline.

/// Docker's MAC of a container address: `02:42` and the four bytes.
pub fn container_mac(ip: &str) -> [u8; 6] {
    let o = ip.parse::<std::net::Ipv4Addr>().expect("IPv4").octets();
    [0x02, 0x42, o[0], o[1], o[2], o[3]]
}

/// A python3 program that sends `frames` as they are on `ifname`.
pub fn raw_send_script(ifname: &str, frames: &[Vec<u8>]) -> String {
    let hex: Vec<String> = frames
        .iter()
        .map(|f| f.iter().map(|b| format!("{b:02x}")).collect())
        .collect();
    format!(
        "import socket,binascii,time\ns=socket.socket(socket.AF_PACKET,socket.SOCK_RAW)\ns.bind(('{ifname}',0))\nfor h in '{}'.split():\n s.send(binascii.unhexlify(h))\n time.sleep(0.01)",
        hex.join(" ")
    )
}

/// A python3 program that sends `frames` on `ifname`, then waits up to 2 s for a TCP segment
/// from `from_ip`:`from_port` with SYN and ACK set, and prints `synack` or `none`.
pub fn raw_syn_probe_script(ifname: &str, frames: &[Vec<u8>], from_ip: &str, from_port: u16) -> String {
    // The capture socket is open before the first frame leaves.
    let send = raw_send_script(ifname, frames).replacen(
        "s=socket.socket",
        &format!(
            "r=socket.socket(socket.AF_PACKET,socket.SOCK_RAW,socket.htons(3))\nr.bind(('{ifname}',0))\ns=socket.socket"
        ),
        1,
    );
    format!(
        "{send}\nr.settimeout(0.2)\nend=time.time()+2\nsrc=socket.inet_aton('{from_ip}')\nseen='none'\nwhile time.time()<end and seen=='none':\n try:\n  f=r.recv(2048)\n except socket.timeout:\n  continue\n if f[12:14]==b'\\x08\\x00' and f[23]==6 and f[26:30]==src:\n  l4=14+(f[14]&15)*4\n  if int.from_bytes(f[l4:l4+2],'big')=={from_port} and f[l4+13]&0x12==0x12:\n   seen='synack'\nprint(seen)"
    )
}

/// A UDP server (python3) that prints every datagram it gets, payload then source, one line
/// each, flushed (`linkrt logs` shows them).
pub fn udp_logger_script(port: u16) -> String {
    format!(
        "import socket\ns=socket.socket(socket.AF_INET,socket.SOCK_DGRAM)\ns.bind(('',{port}))\nwhile True:\n d,a=s.recvfrom(65535)\n print(d[:64].decode(errors='replace'),len(d),a[0],flush=True)"
    )
}

/// A UDP echo server (python3) for datagrams of any size: replies `echo:` + the datagram.
pub fn udp_big_echo_script(port: u16) -> String {
    format!(
        "import socket\ns=socket.socket(socket.AF_INET,socket.SOCK_DGRAM)\ns.bind(('',{port}))\nwhile True:\n d,a=s.recvfrom(65535)\n s.sendto(b'echo:'+d,a)"
    )
}

/// A python3 program that sends one UDP datagram (broadcast allowed) to `ip:port`.
pub fn udp_send_script(ip: &str, port: u16, msg: &str) -> String {
    format!(
        "import socket\ns=socket.socket(socket.AF_INET,socket.SOCK_DGRAM)\ns.setsockopt(socket.SOL_SOCKET,socket.SO_BROADCAST,1)\ns.sendto(b'{msg}',('{ip}',{port}))"
    )
}

/// A python3 program: one TCP connection attempt (1 s), exit 0 if it connects.
pub fn tcp_connect_script(ip: &str, port: u16) -> String {
    format!("import socket\ns=socket.socket()\ns.settimeout(1)\ns.connect(('{ip}',{port}))")
}

impl Host {
    /// A container's address.
    pub fn ip_of(&self, name: &str) -> String {
        self.inspect(name, "{{.NetworkSettings.IPAddress}}")
    }

    /// The MAC of the bridge (the containers' gateway) in this host.
    pub fn bridge_mac(&self) -> [u8; 6] {
        let o = self.ns.exec(&["cat", "/sys/class/net/linkrt0/address"]);
        let s = String::from_utf8_lossy(&o.stdout);
        let v: Vec<u8> = s
            .trim()
            .split(':')
            .map(|p| u8::from_str_radix(p, 16).unwrap())
            .collect();
        v.try_into().expect("a MAC")
    }

    /// `linkrt exec NAME python3 -c SCRIPT`: true if it exited 0.
    pub fn py(&self, name: &str, script: &str) -> Out {
        self.linkrt(&["exec", name, "python3", "-c", script])
    }

    /// Whether `linkrt logs NAME` has a line starting with `marker`, waiting up to `secs`.
    pub fn logged(&self, name: &str, marker: &str, secs: u64) -> bool {
        let start = std::time::Instant::now();
        loop {
            let logs = self.linkrt(&["logs", name]).stdout;
            if logs.lines().any(|l| l.starts_with(marker)) {
                return true;
            }
            if start.elapsed().as_secs() >= secs {
                return false;
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
    }

    /// `bytes_memlock` of each map pinned by this instance (its own maps directory), by pin name.
    pub fn map_memory(&self) -> std::collections::BTreeMap<String, u64> {
        let mut out = std::collections::BTreeMap::new();
        let Ok(dir) = fs::read_dir(self.t.cfg.maps_dir()) else {
            return out;
        };
        for e in dir.flatten() {
            let o = Command::new("bpftool")
                .args(["-j", "map", "show", "pinned"])
                .arg(e.path())
                .output()
                .expect("bpftool");
            assert!(
                o.status.success(),
                "bpftool map show pinned {}: {o:?}",
                e.path().display()
            );
            let m: serde_json::Value = serde_json::from_slice(&o.stdout).expect("bpftool json");
            out.insert(
                e.file_name().to_string_lossy().into_owned(),
                m["bytes_memlock"].as_u64().expect("bytes_memlock"),
            );
        }
        out
    }

    /// Where this host's bpffs is mounted (`cfg.bpffs` is a directory inside it).
    pub fn bpffs_mount(&self) -> PathBuf {
        self.t.cfg.bpffs.parent().expect("bpffs dir has a parent").to_path_buf()
    }

    /// Every counter of `linkrt status` (metrics and drops).
    pub fn counters(&self) -> std::collections::HashMap<String, u64> {
        let st = self.ok(&["status"]);
        st.lines()
            .filter_map(|l| {
                let mut w = l.split_whitespace();
                let (n, v) = (w.next()?, w.next()?);
                Some((n.to_string(), v.parse().ok()?))
            })
            .collect()
    }
}

/// A process killed (with its process group) on drop.
pub struct Bg(pub std::process::Child);

impl Bg {
    /// Spawns `cmd` in namespace `ns`, output discarded.
    pub fn spawn_in(ns: &NetNs, cmd: &[&str]) -> Bg {
        let child = Command::new("ip")
            .args(["netns", "exec", &ns.name])
            .args(cmd)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("spawn");
        Bg(child)
    }
}

impl Drop for Bg {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Adds the route of a "LAN" machine to the host's containers (via the host's uplink).
pub fn route_to_bridge(c: &Client) {
    c.ns.exec(&["ip", "route", "add", "172.17.0.0/16", "via", HOST_IP]);
}
