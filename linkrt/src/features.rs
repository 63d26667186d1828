//! What the running kernel offers the datapath, probed from userspace and cached per kernel.
//!
//! Each probe is cheap and leaves nothing behind: a two-instruction program or a one-entry map
//! that the kernel frees when its fd closes, and the `clsact` probe runs in a network namespace
//! of its own that disappears with the probing thread. The result is cached in
//! `<run_root>/features.json`, keyed by the kernel release (and by [`PROBE_VERSION`], so a linkrt
//! that probes more refreshes an older cache).
//!
//! [`preflight`] is the check a command that starts containers makes first: a kernel below
//! [`MIN_KERNEL`], no way to attach TC programs (neither TCX nor `clsact`), no cgroup2 mount or no
//! bpffs each give one error naming what is missing, before anything is changed.
use std::{
    io,
    os::fd::{FromRawFd, OwnedFd},
    path::{Path, PathBuf},
};

use serde::{Deserialize, Serialize};

use crate::{
    config::Config,
    error::{Error, Result},
    state,
};

/// The oldest kernel linkrt supports: `bpf_redirect_peer` and `bpf_redirect_neigh` (5.10), the
/// ring buffer of `linkrt monitor` (5.8) and the cgroup `recvmsg4` hook (5.2) are all there.
pub const MIN_KERNEL: (u32, u32) = (5, 10);

/// The kernel that brought TCX links (`BPF_TCX_INGRESS`/`EGRESS`); older ones need `clsact`.
pub const TCX_KERNEL: (u32, u32) = (6, 6);

/// Bumped whenever the set of probes changes: an older cache is probed again.
pub const PROBE_VERSION: u32 = 1;

/// The cache file under the run directory.
pub const CACHE_FILE: &str = "features.json";

/// The result of one probe.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase", tag = "support", content = "error")]
pub enum Support {
    Yes,
    No,
    /// The probe itself failed (e.g. not permitted); the text says how.
    Unknown(String),
}

impl Support {
    pub fn yes(&self) -> bool {
        matches!(self, Support::Yes)
    }

    fn from_probe(r: std::result::Result<bool, String>) -> Self {
        match r {
            Ok(true) => Support::Yes,
            Ok(false) => Support::No,
            Err(e) => Support::Unknown(e),
        }
    }
}

/// Everything the probes found on one kernel.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Features {
    pub probe_version: u32,
    /// `uname -r`.
    pub kernel: String,
    /// TCX links on TC hooks (6.6+).
    pub tcx: Support,
    /// The `clsact` qdisc (`sch_ingress`), which netlink `cls_bpf` attachment needs.
    pub clsact: Support,
    /// Kernel BTF at `/sys/kernel/btf/vmlinux`.
    pub btf: Support,
    /// `BPF_MAP_TYPE_RINGBUF` (5.8+): `linkrt monitor`'s events.
    pub ring_buffer: Support,
    /// `BPF_MAP_TYPE_LRU_HASH` (4.10+): the conntrack tables.
    pub lru_hash: Support,
    /// `BPF_PROG_TYPE_CGROUP_SOCK_ADDR` (4.17+): the connect/sendmsg/recvmsg hooks.
    pub cgroup_sock_addr: Support,
    /// `bpf_redirect_peer` from TC (5.10+).
    pub redirect_peer: Support,
    /// `bpf_redirect_neigh` from TC (5.10+).
    pub redirect_neigh: Support,
    /// `BPF_MAP_LOOKUP_BATCH` and friends (5.6+).
    pub batch_map_ops: Support,
}

/// How TC programs are attached on this kernel.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AttachMode {
    /// TCX links, pinned in bpffs (6.6+).
    Tcx,
    /// Netlink `cls_bpf` filters (direct action) on a `clsact` qdisc.
    Netlink,
    /// Neither is available.
    None,
}

impl AttachMode {
    pub fn as_str(self) -> &'static str {
        match self {
            AttachMode::Tcx => "tcx",
            AttachMode::Netlink => "netlink",
            AttachMode::None => "none",
        }
    }
}

impl std::fmt::Display for AttachMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Features {
    /// `(major, minor)` of the kernel release, `(0, 0)` when it cannot be read.
    pub fn kernel_version(&self) -> (u32, u32) {
        parse_release(&self.kernel).unwrap_or((0, 0))
    }

    /// TCX where the kernel has it, else netlink on `clsact`.
    pub fn attach_mode(&self) -> AttachMode {
        if self.tcx.yes() {
            AttachMode::Tcx
        } else if self.clsact.yes() {
            AttachMode::Netlink
        } else {
            AttachMode::None
        }
    }

    /// Every probe with its display name, in a fixed order (for `linkrt info`).
    pub fn list(&self) -> [(&'static str, &Support); 9] {
        [
            ("TCX", &self.tcx),
            ("clsact", &self.clsact),
            ("BTF", &self.btf),
            ("RingBuffer", &self.ring_buffer),
            ("LRUHash", &self.lru_hash),
            ("CgroupSockAddr", &self.cgroup_sock_addr),
            ("RedirectPeer", &self.redirect_peer),
            ("RedirectNeigh", &self.redirect_neigh),
            ("BatchMapOps", &self.batch_map_ops),
        ]
    }
}

/// `(major, minor)` from a release such as `6.1.0-57-amd64`.
pub fn parse_release(s: &str) -> Option<(u32, u32)> {
    let mut it = s.split(|c: char| !c.is_ascii_digit());
    Some((it.next()?.parse().ok()?, it.next()?.parse().ok()?))
}

/// The kernel's answers; a fake in tests.
pub trait Probe {
    fn kernel_release(&self) -> String;
    fn tcx(&self) -> std::result::Result<bool, String>;
    fn clsact(&self) -> std::result::Result<bool, String>;
    fn btf(&self) -> std::result::Result<bool, String>;
    fn ring_buffer(&self) -> std::result::Result<bool, String>;
    fn lru_hash(&self) -> std::result::Result<bool, String>;
    fn cgroup_sock_addr(&self) -> std::result::Result<bool, String>;
    fn redirect_peer(&self) -> std::result::Result<bool, String>;
    fn redirect_neigh(&self) -> std::result::Result<bool, String>;
    fn batch_map_ops(&self) -> std::result::Result<bool, String>;
}

/// Runs every probe.
pub fn detect(p: &dyn Probe) -> Features {
    Features {
        probe_version: PROBE_VERSION,
        kernel: p.kernel_release(),
        tcx: Support::from_probe(p.tcx()),
        clsact: Support::from_probe(p.clsact()),
        btf: Support::from_probe(p.btf()),
        ring_buffer: Support::from_probe(p.ring_buffer()),
        lru_hash: Support::from_probe(p.lru_hash()),
        cgroup_sock_addr: Support::from_probe(p.cgroup_sock_addr()),
        redirect_peer: Support::from_probe(p.redirect_peer()),
        redirect_neigh: Support::from_probe(p.redirect_neigh()),
        batch_map_ops: Support::from_probe(p.batch_map_ops()),
    }
}

pub fn cache_path(cfg: &Config) -> PathBuf {
    cfg.run_root.join(CACHE_FILE)
}

/// The features of the running kernel: from the cache when it was written for this kernel
/// release by this probe version, else probed and cached. Unknown results are not cached, so a
/// probe that could not run is tried again next time.
pub fn load_or_probe(cfg: &Config, p: &dyn Probe) -> Result<Features> {
    let path = cache_path(cfg);
    let release = p.kernel_release();
    if let Ok(data) = std::fs::read(&path)
        && let Ok(f) = serde_json::from_slice::<Features>(&data)
        && f.kernel == release
        && f.probe_version == PROBE_VERSION
    {
        return Ok(f);
    }
    let f = detect(p);
    if f.list().iter().all(|(_, s)| !matches!(s, Support::Unknown(_))) {
        state::create_private_dir(&cfg.run_root)?;
        state::write_atomic(&path, &serde_json::to_vec_pretty(&f).expect("serializable"))?;
    }
    Ok(f)
}

/// The features of the running kernel ([`load_or_probe`] with the real probes).
pub fn current(cfg: &Config) -> Result<Features> {
    load_or_probe(cfg, &KernelProbe)
}

const BPF_FS_MAGIC: i64 = 0xcafe4a11;
const CGROUP2_SUPER_MAGIC: i64 = 0x63677270;

/// The file system type of `p`, or of its nearest existing ancestor (`p` need not exist yet).
fn fs_type_of_nearest(p: &Path) -> Option<(PathBuf, i64)> {
    let mut cur = Some(p);
    while let Some(d) = cur {
        if let Ok(st) = nix::sys::statfs::statfs(d) {
            // fs_type_t is a C long: i64 only on 64-bit targets.
            #[allow(clippy::unnecessary_cast)]
            return Some((d.to_path_buf(), st.filesystem_type().0 as i64));
        }
        cur = d.parent();
    }
    None
}

/// What [`preflight`] checks that is not a kernel feature: the mounts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Mounts {
    /// The cgroup2 directory for the socket hooks, when there is one.
    pub cgroup2: std::result::Result<PathBuf, String>,
    /// Whether `cfg.bpffs` is on a bpf file system, or can be mounted as one (linkrt mounts a
    /// bpffs where there is none, see `bpf::ensure_bpffs`).
    pub bpffs: std::result::Result<(), String>,
}

impl Mounts {
    pub fn detect(cfg: &Config) -> Mounts {
        let filesystems = std::fs::read_to_string("/proc/filesystems").unwrap_or_default();
        Mounts::decide(
            cfg,
            cfg.cgroup_dir().map(|d| {
                let t = fs_type_of_nearest(&d);
                (d, t)
            }),
            fs_type_of_nearest(&cfg.bpffs),
            &filesystems,
        )
    }

    /// The decision, from the facts: the cgroup2 directory and the file system found at (or
    /// nearest above) it, the same for the bpffs directory, and `/proc/filesystems`.
    pub fn decide(
        cfg: &Config,
        cgroup: Option<(PathBuf, Option<(PathBuf, i64)>)>,
        bpffs_at: Option<(PathBuf, i64)>,
        filesystems: &str,
    ) -> Mounts {
        let cgroup2 = match cgroup {
            None => Err("no cgroup2 file system is mounted (see /proc/self/mounts)".to_string()),
            Some((d, Some((at, t)))) if at == d && t == CGROUP2_SUPER_MAGIC => Ok(d),
            Some((d, Some((at, _)))) if at != d => Err(format!("{} does not exist", d.display())),
            Some((d, _)) => Err(format!("{} is not a cgroup2 directory", d.display())),
        };
        let kernel_has_bpffs = filesystems.lines().any(|l| l.split_whitespace().last() == Some("bpf"));
        let bpffs = match bpffs_at {
            Some((_, t)) if t == BPF_FS_MAGIC => Ok(()),
            _ if kernel_has_bpffs => Ok(()),
            _ => Err(format!(
                "the kernel has no bpf file system (\"bpf\" is not in /proc/filesystems: CONFIG_BPF_SYSCALL), so none can be mounted for {}",
                cfg.bpffs.display()
            )),
        };
        Mounts { cgroup2, bpffs }
    }
}

/// Whether containers can start on this host: every missing requirement, named, as one user
/// error (exit 125). Nothing is changed by the check.
pub fn check(f: &Features, m: &Mounts) -> Result<()> {
    let mut missing = Vec::new();
    let (maj, min) = f.kernel_version();
    if (maj, min) < MIN_KERNEL {
        missing.push(format!(
            "kernel {} is older than {}.{}, the oldest linkrt supports (it needs bpf_redirect_peer and bpf_redirect_neigh)",
            f.kernel, MIN_KERNEL.0, MIN_KERNEL.1
        ));
    } else if f.attach_mode() == AttachMode::None {
        missing.push(format!(
            "kernel {} can attach no TC program: no TCX (kernel {}.{}+) and no clsact qdisc ({}; build or load sch_ingress, CONFIG_NET_SCH_INGRESS)",
            f.kernel,
            TCX_KERNEL.0,
            TCX_KERNEL.1,
            match &f.clsact {
                Support::Unknown(e) => e.clone(),
                _ => "the kernel does not know the qdisc kind".into(),
            }
        ));
    }
    if let Err(e) = &m.cgroup2 {
        missing.push(format!(
            "no cgroup v2 for the socket hooks: {e} (mount one: mount -t cgroup2 none /sys/fs/cgroup/unified, or set LINKRT_CGROUP)"
        ));
    }
    if let Err(e) = &m.bpffs {
        missing.push(format!("no bpffs for pinned maps and links: {e}"));
    }
    if missing.is_empty() {
        Ok(())
    } else {
        Err(Error::user(missing.join("; ")))
    }
}

/// The check a command that starts containers makes before it changes anything.
pub fn preflight(cfg: &Config) -> Result<()> {
    // The mounts first: a missing bpffs must not be hidden by a probe that needs it.
    let m = Mounts::detect(cfg);
    let f = match load_or_probe(cfg, &KernelProbe) {
        Ok(f) => f,
        // The cache could not be written (e.g. a read-only run directory): use the probes anyway.
        Err(_) => detect(&KernelProbe),
    };
    check(&f, &m)
}

/// The probes against the running kernel.
pub struct KernelProbe;

fn os_err(call: &str, e: io::Error) -> String {
    format!("{call}: {e}")
}

// Raw `bpf(2)` for the two probes aya does not offer (TCX links, batch operations).
const BPF_MAP_CREATE: libc::c_long = 0;
const BPF_PROG_LOAD: libc::c_long = 5;
const BPF_MAP_LOOKUP_BATCH: libc::c_long = 24;
const BPF_LINK_CREATE: libc::c_long = 28;
const BPF_PROG_TYPE_SCHED_CLS: u32 = 3;
const BPF_MAP_TYPE_HASH: u32 = 1;
const BPF_TCX_INGRESS: u32 = 46;

fn sys_bpf<T>(cmd: libc::c_long, attr: &mut T) -> io::Result<libc::c_long> {
    // SAFETY: `attr` is a #[repr(C)] prefix of `union bpf_attr`, zero-padded, of the given size;
    // the kernel reads (and for some commands writes) only that many bytes.
    let r = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            cmd,
            attr as *mut T as *mut libc::c_void,
            std::mem::size_of::<T>(),
        )
    };
    if r < 0 { Err(io::Error::last_os_error()) } else { Ok(r) }
}

fn fd(r: libc::c_long) -> OwnedFd {
    // SAFETY: a successful BPF_PROG_LOAD/BPF_MAP_CREATE returns a new fd that we own.
    unsafe { OwnedFd::from_raw_fd(r as i32) }
}

#[repr(C)]
#[derive(Default)]
struct ProgLoadAttr {
    prog_type: u32,
    insn_cnt: u32,
    insns: u64,
    license: u64,
    log_level: u32,
    log_size: u32,
    log_buf: u64,
    kern_version: u32,
    prog_flags: u32,
    prog_name: [u8; 16],
    prog_ifindex: u32,
    expected_attach_type: u32,
}

#[repr(C)]
#[derive(Default)]
struct LinkCreateAttr {
    prog_fd: u32,
    target_ifindex: u32,
    attach_type: u32,
    flags: u32,
    rest: [u64; 4],
}

#[repr(C)]
#[derive(Default)]
struct MapCreateAttr {
    map_type: u32,
    key_size: u32,
    value_size: u32,
    max_entries: u32,
    map_flags: u32,
}

#[repr(C)]
#[derive(Default)]
struct BatchAttr {
    in_batch: u64,
    out_batch: u64,
    keys: u64,
    values: u64,
    count: u32,
    map_fd: u32,
    elem_flags: u64,
    flags: u64,
}

/// `r0 = 0; exit` as a SCHED_CLS program.
fn trivial_tc_prog() -> io::Result<OwnedFd> {
    // mov64 r0, 0 (0xb7) ; exit (0x95)
    let insns: [u64; 2] = [0x0000_0000_0000_00b7, 0x0000_0000_0000_0095];
    let license = b"GPL\0";
    let mut attr = ProgLoadAttr {
        prog_type: BPF_PROG_TYPE_SCHED_CLS,
        insn_cnt: insns.len() as u32,
        insns: insns.as_ptr() as u64,
        license: license.as_ptr() as u64,
        ..Default::default()
    };
    sys_bpf(BPF_PROG_LOAD, &mut attr).map(fd)
}

impl Probe for KernelProbe {
    fn kernel_release(&self) -> String {
        nix::sys::utsname::uname()
            .map(|u| u.release().to_string_lossy().into_owned())
            .unwrap_or_default()
    }

    /// A TCX link on interface index 0: a kernel with TCX looks the device up and answers
    /// ENODEV; one without rejects the attach type with EINVAL. Nothing is attached either way.
    fn tcx(&self) -> std::result::Result<bool, String> {
        use std::os::fd::AsRawFd;
        let prog = trivial_tc_prog().map_err(|e| os_err("loading a SCHED_CLS program", e))?;
        let mut attr = LinkCreateAttr {
            prog_fd: prog.as_raw_fd() as u32,
            target_ifindex: 0,
            attach_type: BPF_TCX_INGRESS,
            ..Default::default()
        };
        match sys_bpf(BPF_LINK_CREATE, &mut attr) {
            Err(e) if e.raw_os_error() == Some(libc::ENODEV) => Ok(true),
            Err(e) if e.raw_os_error() == Some(libc::EINVAL) => Ok(false),
            Err(e) => Err(os_err("BPF_LINK_CREATE (BPF_TCX_INGRESS)", e)),
            Ok(r) => {
                drop(fd(r));
                Err("BPF_LINK_CREATE on ifindex 0 unexpectedly succeeded".into())
            }
        }
    }

    /// A `clsact` qdisc on `lo` of a private network namespace, made on a thread of its own
    /// (the namespace vanishes with the thread).
    fn clsact(&self) -> std::result::Result<bool, String> {
        std::thread::spawn(|| {
            nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET)
                .map_err(|e| format!("unshare(CLONE_NEWNET): {e}"))?;
            match aya::programs::tc::qdisc_add_clsact("lo") {
                Ok(()) => Ok(true),
                Err(aya::programs::tc::TcError::NetlinkError(e))
                    if matches!(e.raw_os_error(), Some(libc::ENOENT) | Some(libc::EOPNOTSUPP)) =>
                {
                    Ok(false)
                }
                Err(e) => Err(format!("adding a clsact qdisc: {e}")),
            }
        })
        .join()
        .unwrap_or_else(|_| Err("the clsact probe panicked".into()))
    }

    fn btf(&self) -> std::result::Result<bool, String> {
        Ok(Path::new("/sys/kernel/btf/vmlinux").exists())
    }

    fn ring_buffer(&self) -> std::result::Result<bool, String> {
        aya::sys::is_map_supported(aya::maps::MapType::RingBuf).map_err(|e| e.to_string())
    }

    fn lru_hash(&self) -> std::result::Result<bool, String> {
        aya::sys::is_map_supported(aya::maps::MapType::LruHash).map_err(|e| e.to_string())
    }

    fn cgroup_sock_addr(&self) -> std::result::Result<bool, String> {
        aya::sys::is_program_supported(aya::programs::ProgramType::CgroupSockAddr).map_err(|e| e.to_string())
    }

    fn redirect_peer(&self) -> std::result::Result<bool, String> {
        aya::sys::is_helper_supported(
            aya::programs::ProgramType::SchedClassifier,
            aya::sys::BpfHelper::BPF_FUNC_redirect_peer,
        )
        .map_err(|e| e.to_string())
    }

    fn redirect_neigh(&self) -> std::result::Result<bool, String> {
        aya::sys::is_helper_supported(
            aya::programs::ProgramType::SchedClassifier,
            aya::sys::BpfHelper::BPF_FUNC_redirect_neigh,
        )
        .map_err(|e| e.to_string())
    }

    /// `BPF_MAP_LOOKUP_BATCH` on an empty one-entry hash map: ENOENT (nothing to read) where the
    /// command exists, EINVAL where it does not.
    fn batch_map_ops(&self) -> std::result::Result<bool, String> {
        use std::os::fd::AsRawFd;
        let mut create = MapCreateAttr {
            map_type: BPF_MAP_TYPE_HASH,
            key_size: 4,
            value_size: 4,
            max_entries: 1,
            map_flags: 0,
        };
        let map = sys_bpf(BPF_MAP_CREATE, &mut create)
            .map(fd)
            .map_err(|e| os_err("creating a hash map", e))?;
        let mut out_batch = 0u32;
        let mut keys = [0u32; 1];
        let mut values = [0u32; 1];
        let mut attr = BatchAttr {
            out_batch: &mut out_batch as *mut u32 as u64,
            keys: keys.as_mut_ptr() as u64,
            values: values.as_mut_ptr() as u64,
            count: 1,
            map_fd: map.as_raw_fd() as u32,
            ..Default::default()
        };
        match sys_bpf(BPF_MAP_LOOKUP_BATCH, &mut attr) {
            Ok(_) => Ok(true),
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => Ok(true),
            Err(e) if e.raw_os_error() == Some(libc::EINVAL) => Ok(false),
            Err(e) => Err(os_err("BPF_MAP_LOOKUP_BATCH", e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::cell::Cell;

    use super::*;

    /// A kernel described by its answers; counts how often it was asked.
    struct Fake {
        release: &'static str,
        tcx: bool,
        clsact: std::result::Result<bool, String>,
        probes: Cell<u32>,
    }

    impl Fake {
        fn new(release: &'static str, tcx: bool) -> Self {
            Fake {
                release,
                tcx,
                clsact: Ok(true),
                probes: Cell::new(0),
            }
        }
    }

    impl Probe for Fake {
        fn kernel_release(&self) -> String {
            self.release.into()
        }
        fn tcx(&self) -> std::result::Result<bool, String> {
            self.probes.set(self.probes.get() + 1);
            Ok(self.tcx)
        }
        fn clsact(&self) -> std::result::Result<bool, String> {
            self.clsact.clone()
        }
        fn btf(&self) -> std::result::Result<bool, String> {
            Ok(true)
        }
        fn ring_buffer(&self) -> std::result::Result<bool, String> {
            Ok(true)
        }
        fn lru_hash(&self) -> std::result::Result<bool, String> {
            Ok(true)
        }
        fn cgroup_sock_addr(&self) -> std::result::Result<bool, String> {
            Ok(true)
        }
        fn redirect_peer(&self) -> std::result::Result<bool, String> {
            Ok(true)
        }
        fn redirect_neigh(&self) -> std::result::Result<bool, String> {
            Ok(false)
        }
        fn batch_map_ops(&self) -> std::result::Result<bool, String> {
            Err("BPF_MAP_LOOKUP_BATCH: Operation not permitted (os error 1)".into())
        }
    }

    fn cfg(dir: &Path) -> Config {
        Config {
            root: dir.join("lib"),
            run_root: dir.join("run"),
            bpffs: dir.join("bpf"),
            cgroup: None,
            cgroup_parent: "linkrt".into(),
        }
    }

    fn tempdir(tag: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("linkrt-features-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    fn mounts_ok() -> Mounts {
        Mounts {
            cgroup2: Ok("/sys/fs/cgroup".into()),
            bpffs: Ok(()),
        }
    }

    #[test]
    fn probe_results_map_to_features_and_attach_mode() {
        let f = detect(&Fake::new("6.18.44-fc", true));
        assert_eq!(f.kernel_version(), (6, 18));
        assert_eq!(f.tcx, Support::Yes);
        assert_eq!(f.redirect_neigh, Support::No);
        assert!(matches!(f.batch_map_ops, Support::Unknown(ref e) if e.contains("not permitted")));
        assert_eq!(f.attach_mode(), AttachMode::Tcx);

        let old = detect(&Fake::new("6.1.0-57-amd64", false));
        assert_eq!(old.kernel_version(), (6, 1));
        assert_eq!(old.attach_mode(), AttachMode::Netlink);

        let mut none = Fake::new("6.1.0-57-amd64", false);
        none.clsact = Ok(false);
        assert_eq!(detect(&none).attach_mode(), AttachMode::None);
    }

    #[test]
    fn the_cache_is_keyed_by_kernel_release_and_probe_version() {
        let d = tempdir("cache");
        let c = cfg(&d);
        let mut fake = Fake::new("6.1.0-57-amd64", false);
        fake.clsact = Ok(true);
        // An Unknown result is not cached: fix the fake so everything is known.
        struct Known<'a>(&'a Fake);
        impl Probe for Known<'_> {
            fn kernel_release(&self) -> String {
                self.0.kernel_release()
            }
            fn tcx(&self) -> std::result::Result<bool, String> {
                self.0.tcx()
            }
            fn clsact(&self) -> std::result::Result<bool, String> {
                self.0.clsact()
            }
            fn btf(&self) -> std::result::Result<bool, String> {
                Ok(true)
            }
            fn ring_buffer(&self) -> std::result::Result<bool, String> {
                Ok(true)
            }
            fn lru_hash(&self) -> std::result::Result<bool, String> {
                Ok(true)
            }
            fn cgroup_sock_addr(&self) -> std::result::Result<bool, String> {
                Ok(true)
            }
            fn redirect_peer(&self) -> std::result::Result<bool, String> {
                Ok(true)
            }
            fn redirect_neigh(&self) -> std::result::Result<bool, String> {
                Ok(true)
            }
            fn batch_map_ops(&self) -> std::result::Result<bool, String> {
                Ok(true)
            }
        }
        let f1 = load_or_probe(&c, &Known(&fake)).unwrap();
        assert_eq!(fake.probes.get(), 1);
        assert!(cache_path(&c).exists());
        let f2 = load_or_probe(&c, &Known(&fake)).unwrap();
        assert_eq!(fake.probes.get(), 1, "second call must come from the cache");
        assert_eq!(f1, f2);

        // Another kernel (a reboot into 6.18): probed again, cache replaced.
        let newer = Fake::new("6.18.44-fc", true);
        let f3 = load_or_probe(&c, &Known(&newer)).unwrap();
        assert_eq!(newer.probes.get(), 1);
        assert_eq!(f3.attach_mode(), AttachMode::Tcx);

        // A cache written by another probe version is not trusted.
        let mut stale = f3.clone();
        stale.probe_version = PROBE_VERSION + 1;
        std::fs::write(cache_path(&c), serde_json::to_vec(&stale).unwrap()).unwrap();
        load_or_probe(&c, &Known(&newer)).unwrap();
        assert_eq!(newer.probes.get(), 2);

        // A probe that could not run is not cached.
        std::fs::remove_file(cache_path(&c)).unwrap();
        let unknown = Fake::new("6.18.44-fc", true);
        let f4 = load_or_probe(&c, &unknown).unwrap();
        assert!(matches!(f4.batch_map_ops, Support::Unknown(_)));
        assert!(!cache_path(&c).exists());
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn preflight_names_each_missing_requirement() {
        let ok = detect(&Fake::new("6.1.0-57-amd64", false));
        assert!(check(&ok, &mounts_ok()).is_ok());

        let old = detect(&Fake::new("4.19.0-27-amd64", false));
        let e = check(&old, &mounts_ok()).unwrap_err();
        assert_eq!(e.exit_code(), 125);
        assert!(
            e.to_string().contains("kernel 4.19.0-27-amd64 is older than 5.10"),
            "{e}"
        );

        let mut no_tc = Fake::new("5.15.0-100-generic", false);
        no_tc.clsact = Ok(false);
        let e = check(&detect(&no_tc), &mounts_ok()).unwrap_err().to_string();
        assert!(e.contains("no TCX (kernel 6.6+) and no clsact qdisc"), "{e}");

        let e = check(
            &ok,
            &Mounts {
                cgroup2: Err("no cgroup2 file system is mounted (see /proc/self/mounts)".into()),
                bpffs: Err("the kernel has no bpf file system".into()),
            },
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("no cgroup v2 for the socket hooks"), "{e}");
        assert!(
            e.contains("no bpffs for pinned maps and links: the kernel has no bpf file system"),
            "{e}"
        );
    }

    #[test]
    fn mounts_decide_from_statfs_and_proc_filesystems() {
        let c = cfg(Path::new("/x"));
        let with_bpf = "nodev\tsysfs\nnodev\tbpf\n\text4\n";
        let cg = PathBuf::from("/sys/fs/cgroup/unified");
        let ok = Mounts::decide(
            &c,
            Some((cg.clone(), Some((cg.clone(), CGROUP2_SUPER_MAGIC)))),
            None,
            with_bpf,
        );
        assert_eq!(ok.cgroup2, Ok(cg.clone()));
        // No bpffs at /x yet, but the kernel has one: linkrt mounts it.
        assert_eq!(ok.bpffs, Ok(()));

        let m = Mounts::decide(&c, None, Some(("/".into(), 0xef53)), "nodev\tsysfs\n\text4\n");
        assert!(m.cgroup2.unwrap_err().contains("no cgroup2 file system is mounted"));
        assert!(m.bpffs.unwrap_err().contains("the kernel has no bpf file system"));

        let m = Mounts::decide(
            &c,
            Some((cg.clone(), Some(("/sys/fs/cgroup".into(), 0x01021994)))),
            None,
            with_bpf,
        );
        assert!(m.cgroup2.unwrap_err().contains("/sys/fs/cgroup/unified does not exist"));
        let m = Mounts::decide(&c, Some((cg.clone(), Some((cg.clone(), 0x01021994)))), None, with_bpf);
        assert!(m.cgroup2.unwrap_err().contains("is not a cgroup2 directory"));
    }

    #[test]
    fn mounts_of_this_host() {
        // A directory that is not a cgroup: refused by name, whatever the host.
        let d = tempdir("mounts");
        let mut c = cfg(&d);
        c.cgroup = Some(d.join("not-a-cgroup"));
        assert!(Mounts::detect(&c).cgroup2.unwrap_err().contains("does not exist"));
        std::fs::create_dir(d.join("not-a-cgroup")).unwrap();
        assert!(
            Mounts::detect(&c)
                .cgroup2
                .unwrap_err()
                .contains("is not a cgroup2 directory")
        );
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn releases() {
        assert_eq!(parse_release("6.1.0-57-amd64"), Some((6, 1)));
        assert_eq!(parse_release("5.15.0-100-generic"), Some((5, 15)));
        assert_eq!(parse_release("garbage"), None);
    }
}
