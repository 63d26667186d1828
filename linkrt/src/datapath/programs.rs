//! The verified programs, pinned once per eBPF object and reused by every later command.
//!
//! Verifying the programs is most of what a start costs, and their code only changes with
//! the object: the first load pins them under `<bpffs>/progs/<key>/<program>`, where the key
//! is a hash of the object and of the bind hooks' variant, and every later load opens those
//! pins instead of loading and verifying again. A program is reused only while every linkrt
//! map it uses is the pinned one: after lost map pins (re-created maps), an upgrade (another
//! object, so another key) or a removed program pin, the programs are loaded anew and the
//! old set is unpinned (programs still attached stay alive in their links until replaced).
use std::{
    collections::BTreeSet,
    fs, io,
    path::{Path, PathBuf},
};

use aya::{
    Ebpf,
    maps::MapInfo,
    programs::{CgroupSockAddr, CgroupSockAddrAttachType, ProgramInfo, SchedClassifier},
};
use linkrt_common::maps;

use crate::{
    config::Config,
    error::{Error, Result},
};

/// The programs a [`super::Datapath`] attaches: the four TC programs and the socket hooks,
/// in the order of `maps::TC_PROGRAMS` and `maps::SOCK_PROGRAMS`.
pub(super) struct Programs {
    pub tc: Vec<(&'static str, SchedClassifier)>,
    /// (logical hook name, the program that serves it).
    pub sock: Vec<(&'static str, CgroupSockAddr)>,
    /// Whether this load verified the programs (false: reused from their pins).
    pub loaded: bool,
}

/// The pin directory's name for `obj` with the bind hooks of `retval`: FNV-1a of both (bpffs
/// forbids dots in names, so it is plain hex).
pub(super) fn key(obj: &[u8], retval: bool) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in obj.iter().chain(std::iter::once(&(retval as u8))) {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    format!("{h:016x}")
}

/// The ID of pinned map `name`, `None` when it is not pinned.
pub(super) fn map_id(cfg: &Config, name: &str) -> Option<u32> {
    MapInfo::from_pin(cfg.maps_dir().join(name)).ok().map(|i| i.id())
}

/// The IDs of the pinned maps (linkrt's and aya-log's), or `None` when one is not pinned.
pub(super) fn pinned_map_ids(cfg: &Config) -> Option<BTreeSet<u32>> {
    maps::ALL_MAPS
        .iter()
        .chain(std::iter::once(&super::debug_log::LOG_MAP))
        .map(|n| map_id(cfg, n))
        .collect()
}

/// Whether `info`'s program uses a linkrt (or aya-log) map that is not one of `pinned`. The
/// object's own data sections (`.rodata`, `.bss`) belong to each program and do not count.
pub(super) fn uses_stale_maps(info: &ProgramInfo, pinned: &BTreeSet<u32>) -> bool {
    let ours = |id: u32| {
        MapInfo::from_id(id).ok().is_some_and(|i| {
            i.name_as_str()
                .is_some_and(|n| n.starts_with("LRT_") || n == super::debug_log::LOG_MAP)
        })
    };
    let used = info.map_ids().ok().flatten().unwrap_or_default();
    used.into_iter().any(|m| !pinned.contains(&m) && ours(m))
}

/// The attach type of socket hook `logical`.
fn sock_attach_type(logical: &str) -> CgroupSockAddrAttachType {
    match logical {
        maps::PROG_CONNECT4 => CgroupSockAddrAttachType::Connect4,
        maps::PROG_SENDMSG4 => CgroupSockAddrAttachType::UDPSendMsg4,
        maps::PROG_RECVMSG4 => CgroupSockAddrAttachType::UDPRecvMsg4,
        maps::PROG_BIND6 => CgroupSockAddrAttachType::Bind6,
        _ => CgroupSockAddrAttachType::Bind4,
    }
}

/// The program of the object that serves as socket hook `logical`: without bpf_set_retval
/// (before 5.18) the variants that refuse with EPERM.
pub(super) fn sock_variant(logical: &'static str, retval: bool) -> &'static str {
    match (logical, retval) {
        (maps::PROG_BIND4, false) => maps::PROG_BIND4_EPERM,
        (maps::PROG_BIND6, false) => maps::PROG_BIND6_EPERM,
        _ => logical,
    }
}

/// Opens the program set pinned in `dir`, when it is whole and uses the pinned maps.
fn open(dir: &Path, retval: bool, pinned: &BTreeSet<u32>) -> Option<Programs> {
    let usable = |info: std::result::Result<ProgramInfo, _>| info.ok().is_some_and(|i| !uses_stale_maps(&i, pinned));
    let mut tc = Vec::new();
    for name in maps::TC_PROGRAMS {
        let p = SchedClassifier::from_pin(dir.join(name)).ok()?;
        if !usable(p.info()) {
            return None;
        }
        tc.push((name, p));
    }
    let mut sock = Vec::new();
    for logical in maps::SOCK_PROGRAMS {
        let p = CgroupSockAddr::from_pin(dir.join(sock_variant(logical, retval)), sock_attach_type(logical)).ok()?;
        if !usable(p.info()) {
            return None;
        }
        sock.push((logical, p));
    }
    Some(Programs {
        tc,
        sock,
        loaded: false,
    })
}

/// The pinned program set of `key` when it can be reused (every map pinned, every program
/// there and using those maps); `None` means a full load is needed.
pub(super) fn reuse(cfg: &Config, key: &str, retval: bool) -> Option<Programs> {
    let pinned = pinned_map_ids(cfg)?;
    open(&cfg.programs_dir().join(key), retval, &pinned)
}

/// Loads (verifies) the programs of `ebpf`, pins them as the set of `key` and returns them
/// opened from their pins. The set is pinned in a directory of its own first and renamed into
/// place, so that a concurrent command never opens half a set; a set that lost the race (or a
/// stale one) is replaced. Every other set is unpinned afterwards.
pub(super) fn load(cfg: &Config, ebpf: &mut Ebpf, key: &str, retval: bool) -> Result<Programs> {
    let root = cfg.programs_dir();
    crate::state::create_private_dir(&root)?;
    let tmp = root.join(format!("tmp_{}_{key}", std::process::id()));
    remove_set(&tmp)?;
    fs::create_dir(&tmp).map_err(|e| Error::io("creating", &tmp, e))?;
    let r = load_into(ebpf, &tmp, retval);
    let progs = match r {
        Ok(p) => p,
        Err(e) => {
            if let Err(u) = remove_set(&tmp) {
                log::warn!("removing {}: {u}", tmp.display());
            }
            return Err(e);
        }
    };
    let dst = root.join(key);
    // A set already there is stale (else it would have been reused) or a concurrent
    // command's, equally good: ours replaces it either way.
    remove_set(&dst)?;
    match fs::rename(&tmp, &dst) {
        Ok(()) => {}
        // Another command pinned its set meanwhile: keep that one, ours is open already.
        Err(e) if matches!(e.raw_os_error(), Some(libc::ENOTEMPTY) | Some(libc::EEXIST)) => remove_set(&tmp)?,
        Err(e) => return Err(Error::io("renaming the program pins", &tmp, e)),
    }
    remove_other_sets(&root, key)?;
    Ok(progs)
}

fn load_into(ebpf: &mut Ebpf, dir: &Path, retval: bool) -> Result<Programs> {
    let pin_err = |path: PathBuf| move |source| Error::Pin { path, source };
    let mut tc = Vec::new();
    for name in maps::TC_PROGRAMS {
        let p: &mut SchedClassifier = program(ebpf, name)?;
        super::loader::verify(|| p.load()).map_err(|source| Error::Program { name, source })?;
        let pin = dir.join(name);
        p.pin(&pin).map_err(pin_err(pin.clone()))?;
        let opened = SchedClassifier::from_pin(&pin).map_err(|source| Error::Program { name, source })?;
        tc.push((name, opened));
    }
    let mut sock = Vec::new();
    for logical in maps::SOCK_PROGRAMS {
        let name = sock_variant(logical, retval);
        let p: &mut CgroupSockAddr = program(ebpf, name)?;
        super::loader::verify(|| p.load()).map_err(|source| Error::Program { name, source })?;
        let pin = dir.join(name);
        p.pin(&pin).map_err(pin_err(pin.clone()))?;
        let opened = CgroupSockAddr::from_pin(&pin, sock_attach_type(logical))
            .map_err(|source| Error::Program { name, source })?;
        sock.push((logical, opened));
    }
    Ok(Programs { tc, sock, loaded: true })
}

fn program<'a, T>(ebpf: &'a mut Ebpf, name: &'static str) -> Result<&'a mut T>
where
    &'a mut T: TryFrom<&'a mut aya::programs::Program, Error = aya::programs::ProgramError>,
{
    let p = ebpf
        .program_mut(name)
        .ok_or_else(|| Error::sys(format!("program {name} missing from the eBPF object")))?;
    p.try_into().map_err(|source| Error::Program { name, source })
}

/// Unpins a program set (its pins, then the directory); nothing there is fine.
fn remove_set(dir: &Path) -> Result<()> {
    match fs::read_dir(dir) {
        Ok(rd) => {
            for e in rd.flatten() {
                let p = e.path();
                match fs::remove_file(&p) {
                    Ok(()) => {}
                    Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                    Err(e) => return Err(Error::io("unpinning", p, e)),
                }
            }
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(Error::io("reading", dir, e)),
    }
    match fs::remove_dir(dir) {
        Ok(()) => Ok(()),
        // Emptied and removed by a concurrent command, or refilled by one (its set stays).
        Err(e) if matches!(e.kind(), io::ErrorKind::NotFound | io::ErrorKind::DirectoryNotEmpty) => Ok(()),
        Err(e) => Err(Error::io("removing", dir, e)),
    }
}

/// Unpins every set but `key`'s, and the half-pinned sets of commands that died.
fn remove_other_sets(root: &Path, key: &str) -> Result<()> {
    let rd = fs::read_dir(root).map_err(|e| Error::io("reading", root, e))?;
    for e in rd.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if name == key {
            continue;
        }
        // tmp_<pid>_<key>: another command is pinning its set right now unless it died.
        if let Some(pid) = name
            .strip_prefix("tmp_")
            .and_then(|r| r.split('_').next())
            .and_then(|p| p.parse::<i32>().ok())
            && pid != std::process::id() as i32
            && nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None).is_ok()
        {
            continue;
        }
        remove_set(&e.path())?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_key_changes_with_the_object_and_the_bind_variant() {
        let a = key(b"object one", true);
        assert_eq!(a, key(b"object one", true));
        assert_ne!(a, key(b"object two", true));
        assert_ne!(a, key(b"object one", false));
        assert_eq!(a.len(), 16);
        assert!(!a.contains('.'), "bpffs forbids dots");
    }

    #[test]
    fn every_socket_hook_has_its_attach_type_and_variant() {
        assert_eq!(sock_variant(maps::PROG_BIND4, false), maps::PROG_BIND4_EPERM);
        assert_eq!(sock_variant(maps::PROG_BIND6, false), maps::PROG_BIND6_EPERM);
        assert_eq!(sock_variant(maps::PROG_CONNECT4, false), maps::PROG_CONNECT4);
        assert_eq!(sock_variant(maps::PROG_BIND4, true), maps::PROG_BIND4);
        let types: Vec<String> = maps::SOCK_PROGRAMS
            .iter()
            .map(|l| format!("{:?}", sock_attach_type(l)))
            .collect();
        assert_eq!(
            types,
            [
                CgroupSockAddrAttachType::Connect4,
                CgroupSockAddrAttachType::UDPSendMsg4,
                CgroupSockAddrAttachType::UDPRecvMsg4,
                CgroupSockAddrAttachType::Bind4,
                CgroupSockAddrAttachType::Bind6,
            ]
            .map(|t| format!("{t:?}"))
        );
    }
}
