//! Loading, pinning and attaching the eBPF datapath.
//!
//! linkrt is daemonless: maps are pinned under `<bpffs>/maps` and TCX links under
//! `<bpffs>/links`, so the datapath keeps running after the CLI exits.
use std::{
    fs,
    io,
    path::{Path, PathBuf},
};

use aya::{
    Ebpf, EbpfLoader,
    maps::{Map, MapData, PerCpuArray},
    programs::{
        LinkOrder, SchedClassifier, TcAttachType,
        links::{FdLink, LinkError, PinnedLink},
        tc::TcAttachOptions,
    },
};
use linkrt_common::{Counter, maps};

use crate::{
    config::Config,
    error::{Error, Result},
};

/// The eBPF object built by `cargo xtask build` (empty when it was not built).
static EBPF_OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/linkrt-ebpf.o"));

const BPF_FS_MAGIC: i64 = 0xcafe4a11;

/// The raw eBPF object, for tests that load it themselves (BPF_PROG_TEST_RUN).
pub fn object() -> Result<&'static [u8]> {
    if EBPF_OBJECT.is_empty() { Err(Error::EbpfNotBuilt) } else { Ok(EBPF_OBJECT) }
}

/// Makes sure `dir` is a directory on a bpffs, mounting a bpffs there if it is not.
pub fn ensure_bpffs(dir: &Path) -> Result<()> {
    fs::create_dir_all(dir).map_err(|e| Error::io("creating", dir, e))?;
    if is_bpffs(dir)? {
        return Ok(());
    }
    nix::mount::mount(Some("bpf"), dir, Some("bpf"), nix::mount::MsFlags::empty(), Some("mode=0700"))
        .map_err(|e| Error::io("mounting bpffs on", dir, e.into()))
}

fn is_bpffs(dir: &Path) -> Result<bool> {
    let st = nix::sys::statfs::statfs(dir).map_err(|e| Error::io("statfs", dir, e.into()))?;
    Ok(st.filesystem_type().0 as i64 == BPF_FS_MAGIC)
}

/// Direction of a TC attachment on the host side of a container veth.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Hook {
    /// veth ingress: packets sent by the container.
    FromContainer,
    /// veth egress: packets delivered to the container.
    ToContainer,
}

impl Hook {
    pub const ALL: [Hook; 2] = [Hook::FromContainer, Hook::ToContainer];

    fn program(self) -> &'static str {
        match self {
            Hook::FromContainer => maps::PROG_FROM_CONTAINER,
            Hook::ToContainer => maps::PROG_TO_CONTAINER,
        }
    }

    fn attach_type(self) -> TcAttachType {
        match self {
            Hook::FromContainer => TcAttachType::Ingress,
            Hook::ToContainer => TcAttachType::Egress,
        }
    }

    fn suffix(self) -> &'static str {
        match self {
            Hook::FromContainer => "in",
            Hook::ToContainer => "out",
        }
    }
}

/// A loaded datapath: programs verified and ready to attach, maps shared through bpffs pins.
pub struct Datapath {
    ebpf: Ebpf,
    cfg: Config,
}

impl Datapath {
    /// Loads the programs, reusing (or creating) the pinned maps.
    pub fn load(cfg: &Config) -> Result<Self> {
        let obj = object()?;
        ensure_bpffs(&cfg.bpffs)?;
        for d in [cfg.maps_dir(), cfg.links_dir()] {
            fs::create_dir_all(&d).map_err(|e| Error::io("creating", &d, e))?;
        }
        let mut ebpf = EbpfLoader::new().default_map_pin_directory(cfg.maps_dir()).load(obj)?;
        for hook in Hook::ALL {
            let name = hook.program();
            prog(&mut ebpf, name)?.load().map_err(|source| Error::Program { name, source })?;
        }
        Ok(Datapath { ebpf, cfg: cfg.clone() })
    }

    /// Attaches both programs to `ifname` (in the calling thread's netns) with TCX, pinning the
    /// links. An existing pinned link is updated in place (atomic program replacement).
    pub fn attach(&mut self, ifname: &str) -> Result<()> {
        for hook in Hook::ALL {
            let pin = link_pin(&self.cfg, ifname, hook);
            let name = hook.program();
            let p = prog(&mut self.ebpf, name)?;
            let perr = |source| Error::Program { name, source };
            let id = if pin.exists() {
                let old = PinnedLink::from_pin(&pin)
                    .map_err(|e| Error::sys(format!("opening pinned link {}: {e}", pin.display())))?;
                let link = FdLink::from(old).try_into().map_err(|e: LinkError| Error::sys(e.to_string()))?;
                p.attach_to_link(link).map_err(perr)?
            } else {
                p.attach_with_options(ifname, hook.attach_type(), TcAttachOptions::TcxOrder(LinkOrder::default()))
                    .map_err(perr)?
            };
            let link = p.take_link(id).map_err(perr)?;
            let fd: FdLink = link.try_into().map_err(|e: LinkError| Error::sys(e.to_string()))?;
            // Re-pinning an updated link: the old pin file still names the same link.
            let _ = fs::remove_file(&pin);
            fd.pin(&pin).map_err(|source| Error::Pin { path: pin.clone(), source })?;
        }
        Ok(())
    }
}

/// bpffs forbids dots in names, hence `<ifname>_in` / `<ifname>_out`.
fn link_pin(cfg: &Config, ifname: &str, hook: Hook) -> PathBuf {
    cfg.links_dir().join(format!("{ifname}_{}", hook.suffix()))
}

/// Removes the pinned links of `ifname`; the kernel detaches them (the interface may be gone).
pub fn detach(cfg: &Config, ifname: &str) -> Result<()> {
    for hook in Hook::ALL {
        let pin = link_pin(cfg, ifname, hook);
        match fs::remove_file(&pin) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(Error::io("unpinning", pin, e)),
        }
    }
    Ok(())
}

/// Names of the interfaces that have pinned links.
pub fn attached_interfaces(cfg: &Config) -> Vec<String> {
    let mut v: Vec<String> = fs::read_dir(cfg.links_dir())
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| e.file_name().to_str().and_then(|n| n.strip_suffix("_in")).map(str::to_owned))
        .collect();
    v.sort();
    v
}

fn prog<'a>(ebpf: &'a mut Ebpf, name: &'static str) -> Result<&'a mut SchedClassifier> {
    let p = ebpf.program_mut(name).ok_or_else(|| Error::sys(format!("program {name} missing from the eBPF object")))?;
    p.try_into().map_err(|source| Error::Program { name, source })
}

/// Reads the datapath counters from the pinned map (summed over CPUs).
pub fn stats(cfg: &Config) -> Result<Vec<(&'static str, u64)>> {
    let path = cfg.maps_dir().join(maps::STATS);
    let data = MapData::from_pin(&path).map_err(|source| Error::Map { name: maps::STATS, source })?;
    let arr: PerCpuArray<MapData, u64> =
        PerCpuArray::try_from(Map::PerCpuArray(data)).map_err(|source| Error::Map { name: maps::STATS, source })?;
    Counter::ALL
        .iter()
        .map(|c| {
            let v = arr.get(&(*c as u32), 0).map_err(|source| Error::Map { name: maps::STATS, source })?;
            Ok((c.name(), v.iter().sum()))
        })
        .collect()
}
