//! Loading, pinning and attaching the eBPF programs.
//!
//! linkrt is daemonless: maps are pinned under `<bpffs>/maps` and TCX links under
//! `<bpffs>/links`, so the datapath keeps running after the CLI exits. On a kernel without
//! TCX (or with `LINKRT_ATTACH_MODE=netlink`) the TC programs are netlink `cls_bpf` filters
//! instead, recorded in the run directory ([`super::netlink`]).
use std::{
    fs, io,
    path::{Path, PathBuf},
};

use aya::{
    EbpfLoader,
    programs::{
        CgroupAttachMode, LinkOrder, ProgramError, SchedClassifier, TcAttachType,
        links::{FdLink, LinkError, PinnedLink},
        tc::TcAttachOptions,
    },
};
use linkrt_common::maps;

use super::{
    features::{self, AttachMode},
    maps::{Pinned, write_static_config},
    netlink,
    programs::{self, Programs},
};
use crate::{
    config::Config,
    error::{Error, Result},
};

/// The eBPF object built by `cargo xtask build` (empty when it was not built).
static EBPF_OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/linkrt-ebpf.o"));

const BPF_FS_MAGIC: i64 = 0xcafe4a11;

/// The raw eBPF object, for tests that load it themselves (BPF_PROG_TEST_RUN).
pub fn object() -> Result<&'static [u8]> {
    if EBPF_OBJECT.is_empty() {
        Err(Error::EbpfNotBuilt)
    } else {
        Ok(EBPF_OBJECT)
    }
}

/// Makes sure `dir` is a directory on a bpffs, mounting a bpffs there if it is not.
pub fn ensure_bpffs(dir: &Path) -> Result<()> {
    // The standard place: mount the system's bpffs first when nobody did (minimal systems).
    let sys = Path::new("/sys/fs/bpf");
    if dir.starts_with(sys) && sys.is_dir() && !is_bpffs(sys).unwrap_or(false) {
        nix::mount::mount(
            Some("bpf"),
            sys,
            Some("bpf"),
            nix::mount::MsFlags::empty(),
            Some("mode=0700"),
        )
        .map_err(|e| Error::io("mounting bpffs on", sys, e.into()))?;
    }
    crate::state::create_private_dir(dir)?;
    if is_bpffs(dir)? {
        // Root-only, also when the directory already existed.
        use std::os::unix::fs::PermissionsExt;
        fs::set_permissions(dir, fs::Permissions::from_mode(0o700)).map_err(|e| Error::io("chmod", dir, e))?;
        return Ok(());
    }
    nix::mount::mount(
        Some("bpf"),
        dir,
        Some("bpf"),
        nix::mount::MsFlags::empty(),
        Some("mode=0700"),
    )
    .map_err(|e| Error::io("mounting bpffs on", dir, e.into()))
}

pub(super) fn is_bpffs(dir: &Path) -> Result<bool> {
    let st = nix::sys::statfs::statfs(dir).map_err(|e| Error::io("statfs", dir, e.into()))?;
    Ok(st.filesystem_type().0 as i64 == BPF_FS_MAGIC)
}

/// Direction of a TC attachment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Hook {
    Ingress,
    Egress,
}

impl Hook {
    pub const ALL: [Hook; 2] = [Hook::Ingress, Hook::Egress];

    pub(super) fn attach_type(self) -> TcAttachType {
        match self {
            Hook::Ingress => TcAttachType::Ingress,
            Hook::Egress => TcAttachType::Egress,
        }
    }

    pub fn suffix(self) -> &'static str {
        match self {
            Hook::Ingress => "in",
            Hook::Egress => "out",
        }
    }
}

/// What an interface is to the datapath.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// The host side of a container's veth.
    Container,
    /// Any other interface of the host (where published ports are reached from outside).
    Uplink,
}

impl Role {
    fn program(self, hook: Hook) -> &'static str {
        match (self, hook) {
            (Role::Container, Hook::Ingress) => maps::PROG_FROM_CONTAINER,
            (Role::Container, Hook::Egress) => maps::PROG_TO_CONTAINER,
            (Role::Uplink, Hook::Ingress) => maps::PROG_UPLINK_IN,
            (Role::Uplink, Hook::Egress) => maps::PROG_UPLINK_OUT,
        }
    }
}

/// A loaded datapath: programs verified (or reused from their pins) and ready to attach,
/// maps shared through bpffs pins.
pub struct Datapath {
    progs: Programs,
    cfg: Config,
    mode: AttachMode,
}

impl Datapath {
    /// Makes sure the maps are pinned and the programs ready, and writes the settings the
    /// datapath owns (subnet, gateway, gateway mode) into `CONFIG`. The verified programs of
    /// an earlier command are reused when they use the pinned maps ([`super::programs`]);
    /// otherwise the object is loaded: lost maps re-created and pinned, programs verified.
    pub fn load(cfg: &Config) -> Result<Self> {
        let obj = object()?;
        // What this kernel lacks is refused by name before anything is created.
        let feats = features::current(cfg)?;
        feats.require()?;
        let mode = feats.choose_attach(std::env::var(features::ATTACH_ENV).ok().as_deref())?;
        ensure_bpffs(&cfg.bpffs)?;
        for d in [cfg.maps_dir(), cfg.links_dir()] {
            crate::state::create_private_dir(&d)?;
        }
        // Without bpf_set_retval (before 5.18) the bind hooks refuse with EPERM, not EADDRINUSE.
        let retval = feats.set_retval != features::Support::No;
        let key = programs::key(obj, retval);
        let progs = match programs::reuse(cfg, &key, retval) {
            Some(p) => p,
            None => {
                let sizes = super::sizes::sizes(&cfg.maps_dir(), |v| std::env::var(v).ok())?;
                let mut loader = EbpfLoader::new();
                loader.default_map_pin_directory(cfg.maps_dir());
                // aya-log's ring buffer is shared by every load (not one per start), so that
                // `monitor --debug` reads every program's logs from one map.
                let logs = cfg.maps_dir().join(super::debug_log::LOG_MAP);
                loader.map_pin_path(super::debug_log::LOG_MAP, logs.as_path());
                for (name, n) in &sizes {
                    loader.map_max_entries(name, *n);
                }
                let mut ebpf = loader.load(obj)?;
                programs::load(cfg, &mut ebpf, &key, retval)?
            }
        };
        write_static_config(&Pinned::new(cfg))?;
        Ok(Datapath {
            progs,
            cfg: cfg.clone(),
            mode,
        })
    }

    /// Whether this load verified the programs (false: they were reused from their pins).
    pub fn verified_now(&self) -> bool {
        self.progs.loaded
    }

    fn tc(&mut self, name: &'static str) -> Result<&mut SchedClassifier> {
        self.progs
            .tc
            .iter_mut()
            .find_map(|(n, p)| (*n == name).then_some(p))
            .ok_or_else(|| Error::sys(format!("program {name} not loaded")))
    }

    /// How this datapath attaches TC programs.
    pub fn mode(&self) -> AttachMode {
        self.mode
    }

    /// Attaches the programs of `role` to `ifname` (in the calling thread's netns): with TCX,
    /// pinning the links, an existing pinned link updated in place (atomic replacement); or
    /// as linkrt's netlink filters, replaced in place too. An attachment of the other mode
    /// (made before an override changed) is removed first, so no packet is seen twice.
    pub fn attach(&mut self, ifname: &str, role: Role) -> Result<()> {
        if self.mode == AttachMode::Netlink {
            for hook in Hook::ALL {
                remove_pin(&link_pin(&self.cfg, ifname, hook))?;
                let name = role.program(hook);
                let cfg = self.cfg.clone();
                netlink::attach(&cfg, self.tc(name)?, name, ifname, hook)?;
            }
            return Ok(());
        }
        // The two hooks in parallel: each new TCX attachment waits for an RCU grace period.
        let cfg = &self.cfg;
        let [ingress, egress] = tc_pair(&mut self.progs, role)?;
        std::thread::scope(|s| {
            let out = s.spawn(|| attach_tcx(cfg, egress, role.program(Hook::Egress), ifname, Hook::Egress));
            let r_in = attach_tcx(cfg, ingress, role.program(Hook::Ingress), ifname, Hook::Ingress);
            let r_out = out
                .join()
                .unwrap_or_else(|_| Err(Error::sys(format!("attaching to {ifname}: the egress thread panicked"))));
            r_in.and(r_out)
        })
    }

    /// Attaches the socket hooks (host-local access to published ports) to `cgroup`, once, and
    /// scopes them to the calling thread's network namespace.
    pub fn attach_cgroup(&mut self, cgroup: &Path) -> Result<()> {
        Pinned::new(&self.cfg).set_config(linkrt_common::config::CONFIG_NETNS_COOKIE, netns_cookie()?)?;
        let dir = fs::File::open(cgroup).map_err(|e| Error::io("opening cgroup", cgroup, e))?;
        for logical in maps::SOCK_PROGRAMS {
            let pin = cgroup_pin(&self.cfg, logical);
            if PinnedLink::from_pin(&pin).is_ok() {
                continue;
            }
            remove_pin(&pin)?;
            let p = self
                .progs
                .sock
                .iter_mut()
                .find_map(|(l, p)| (*l == logical).then_some(p))
                .ok_or_else(|| Error::sys(format!("socket hook {logical} not loaded")))?;
            let perr = |source| Error::Program { name: logical, source };
            // A bpf_link (kernel >= 5.7) always coexists with other programs on the cgroup.
            let id = p.attach(&dir, CgroupAttachMode::Single).map_err(perr)?;
            let link = p.take_link(id).map_err(perr)?;
            let fd: FdLink = link.try_into().map_err(|e: LinkError| link_err(&pin, e))?;
            fd.pin(&pin).map_err(|source| Error::Pin {
                path: pin.clone(),
                source,
            })?;
        }
        Ok(())
    }
}

/// The programs of `role`'s ingress and egress hooks.
fn tc_pair(progs: &mut Programs, role: Role) -> Result<[&mut SchedClassifier; 2]> {
    let want = [role.program(Hook::Ingress), role.program(Hook::Egress)];
    let mut found: [Option<&mut SchedClassifier>; 2] = [None, None];
    for (n, p) in progs.tc.iter_mut() {
        if let Some(i) = want.iter().position(|w| w == n) {
            found[i] = Some(p);
        }
    }
    match found {
        [Some(a), Some(b)] => Ok([a, b]),
        _ => Err(Error::sys(format!("the programs of {role:?} are not loaded"))),
    }
}

/// One hook of `ifname` through a pinned TCX link: nothing to do when the link already runs
/// `p` (the same verified program, reused); updated in place when it runs another; else a new
/// link. An attachment of the netlink mode (made before an override changed) goes first.
fn attach_tcx(cfg: &Config, p: &mut SchedClassifier, name: &'static str, ifname: &str, hook: Hook) -> Result<()> {
    netlink::detach(cfg, ifname, hook)?;
    let pin = link_pin(cfg, ifname, hook);
    let perr = |source| Error::Program { name, source };
    let existing = if pin.exists() {
        PinnedLink::from_pin(&pin).ok()
    } else {
        None
    };
    let want = p.info().map_err(perr)?.id();
    // In place when the pinned link is alive; a link whose interface was deleted (and perhaps
    // made again under the same name) cannot be updated: attach anew.
    let updated = match existing {
        Some(old) => {
            let fd = FdLink::from(old);
            // Its program must also be on the interface: a link whose interface was deleted
            // (and perhaps made again under the same name) still names its program.
            if fd.info().is_ok_and(|i| i.program_id() == want)
                && SchedClassifier::query_tcx(ifname, hook.attach_type())
                    .is_ok_and(|(_, on)| on.iter().any(|i| i.id() == want))
            {
                return Ok(());
            }
            let link = fd.try_into().map_err(|e: LinkError| link_err(&pin, e))?;
            p.attach_to_link(link).ok()
        }
        None => None,
    };
    let id = match updated {
        Some(id) => id,
        None => {
            remove_pin(&pin)?;
            p.attach_with_options(
                ifname,
                hook.attach_type(),
                TcAttachOptions::TcxOrder(LinkOrder::default()),
            )
            .map_err(perr)?
        }
    };
    let link = p.take_link(id).map_err(perr)?;
    let fd: FdLink = link.try_into().map_err(|e: LinkError| link_err(&pin, e))?;
    // Re-pinning an updated link: the old pin file still names the same link.
    remove_pin(&pin)?;
    fd.pin(&pin).map_err(|source| Error::Pin {
        path: pin.clone(),
        source,
    })?;
    Ok(())
}

fn link_err(pin: &Path, e: LinkError) -> Error {
    Error::sys(format!("eBPF link {}: {e}", pin.display()))
}

fn remove_pin(pin: &Path) -> Result<()> {
    match fs::remove_file(pin) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(Error::io("unpinning", pin, e)),
    }
}

/// Runs a program load, again when the verifier gave up because a signal arrived meanwhile
/// (it returns EAGAIN when the loading thread has a signal pending, e.g. a child's SIGCHLD
/// during a long verification on a busy host). Any other error is the answer.
pub fn verify(
    mut load: impl FnMut() -> std::result::Result<(), ProgramError>,
) -> std::result::Result<(), ProgramError> {
    let mut tries = 0;
    loop {
        match load() {
            Err(ProgramError::LoadError { io_error, .. })
                if io_error.raw_os_error() == Some(libc::EAGAIN) && tries < 5 =>
            {
                tries += 1;
            }
            r => return r,
        }
    }
}

/// bpffs forbids dots in names, hence `<ifname>_in` / `<ifname>_out`.
pub(super) fn link_pin(cfg: &Config, ifname: &str, hook: Hook) -> PathBuf {
    cfg.links_dir().join(format!("{ifname}_{}", hook.suffix()))
}

pub(super) fn cgroup_pin(cfg: &Config, prog: &str) -> PathBuf {
    cfg.links_dir().join(format!("cgroup_{prog}"))
}

/// The network namespace cookie of the calling thread's namespace.
pub fn netns_cookie() -> Result<u64> {
    use std::os::fd::AsRawFd;
    let sock =
        std::net::UdpSocket::bind("127.0.0.1:0").map_err(|e| Error::io("creating a socket in", "the host netns", e))?;
    let mut cookie: u64 = 0;
    let mut len = std::mem::size_of::<u64>() as libc::socklen_t;
    // SAFETY: SO_NETNS_COOKIE writes a u64.
    let r = unsafe {
        libc::getsockopt(
            sock.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_NETNS_COOKIE,
            (&mut cookie as *mut u64).cast(),
            &mut len,
        )
    };
    if r != 0 {
        return Err(Error::io(
            "SO_NETNS_COOKIE of",
            "a host socket",
            io::Error::last_os_error(),
        ));
    }
    Ok(cookie)
}

/// Removes the pinned links of `ifname` (the kernel detaches them; the interface may be gone)
/// and linkrt's netlink filters on it.
pub fn detach(cfg: &Config, ifname: &str) -> Result<()> {
    for hook in Hook::ALL {
        remove_pin(&link_pin(cfg, ifname, hook))?;
        netlink::detach(cfg, ifname, hook)?;
    }
    Ok(())
}

/// Names of the interfaces that have pinned links or recorded netlink filters.
pub fn attached_interfaces(cfg: &Config) -> Vec<String> {
    let mut v = tcx_interfaces(cfg);
    v.extend(netlink::recorded_interfaces(cfg));
    v.sort();
    v.dedup();
    v
}

/// The program linkrt attached to `ifname`'s `hook`: that of its pinned TCX link, or of its
/// recorded netlink filter; `None` when neither is there.
pub(super) fn attached_program(cfg: &Config, ifname: &str, hook: Hook) -> Option<u32> {
    PinnedLink::from_pin(link_pin(cfg, ifname, hook))
        .ok()
        .and_then(|l| FdLink::from(l).info().ok())
        .map(|info| info.program_id())
        .or_else(|| netlink::attached_program(cfg, ifname, hook))
}

/// The names of the entries of `dir` that end in `suffix`, without it (a missing directory
/// has none): the interfaces that have a pin or record of one hook.
pub(super) fn names_with_suffix(dir: &Path, suffix: &str) -> Vec<String> {
    fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            e.file_name()
                .to_str()
                .and_then(|n| n.strip_suffix(suffix))
                .map(str::to_owned)
        })
        .collect()
}

/// Names of the interfaces that have pinned TCX links.
pub fn tcx_interfaces(cfg: &Config) -> Vec<String> {
    let mut v: Vec<String> = names_with_suffix(&cfg.links_dir(), "_in")
        .into_iter()
        .filter(|n| !n.starts_with("cgroup_"))
        .collect();
    v.sort();
    v
}
