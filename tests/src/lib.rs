//! Helpers for linkrt's privileged tests: private network namespaces, private bpffs mounts,
//! crafted packets. Every name is random so that parallel runs never collide, and every guard
//! cleans up on drop (also when the test panics).
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
    let out = Command::new(cmd[0]).args(&cmd[1..]).output().unwrap_or_else(|e| panic!("spawn {cmd:?}: {e}"));
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
        Command::new("ip").args(["netns", "exec", &self.name]).args(cmd).output().expect("spawn ip netns exec")
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

/// A private bpffs mounted on a fresh directory, unmounted and removed on drop.
pub struct BpfFs {
    pub dir: PathBuf,
}

impl BpfFs {
    pub fn new() -> Self {
        let dir = std::env::temp_dir().join(format!("linkrt-bpffs-{}", rand_suffix(8)));
        fs::create_dir_all(&dir).unwrap();
        nix::mount::mount(Some("bpf"), &dir, Some("bpf"), nix::mount::MsFlags::empty(), Some("mode=0700"))
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

/// A linkrt configuration private to one test: its own state dirs and bpffs.
pub struct TestConfig {
    pub cfg: linkrt::Config,
    _state: TempDir,
    _bpffs: BpfFs,
}

impl TestConfig {
    pub fn new() -> Self {
        let state = TempDir::new("linkrt-state");
        let bpffs = BpfFs::new();
        let cfg = linkrt::Config {
            root: state.path.join("lib"),
            run_root: state.path.join("run"),
            bpffs: bpffs.dir.join("linkrt"),
        };
        TestConfig { cfg, _state: state, _bpffs: bpffs }
    }
}

impl Default for TestConfig {
    fn default() -> Self {
        Self::new()
    }
}
