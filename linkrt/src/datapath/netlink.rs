//! The TC attach mode for kernels without TCX (before 6.6): a `cls_bpf` filter in direct-action
//! mode on a `clsact` qdisc, at a fixed priority and handle (bpfman's `multiprog/tc.rs` is the
//! model). A netlink filter cannot be pinned like a link, so linkrt records each one it made
//! under `<run_root>/tc/<ifname>_<in|out>.json` (interface index, priority, handle, program),
//! finds it again by a netlink dump to check it (the program id it runs, for the stale-maps
//! check), replaces its program in place when healing, and deletes it by that record.
//!
//! The filter holds its program: it outlives the CLI that attached it, like a pinned TCX link.
use std::{
    io,
    os::fd::{AsRawFd, FromRawFd, OwnedFd},
    path::PathBuf,
};

use aya::programs::{
    SchedClassifier,
    tc::{NlOptions, SchedClassifierLink, TcAttachOptions, TcError, TcHandle, qdisc_add_clsact},
};
use serde::{Deserialize, Serialize};

use super::loader::Hook;
use crate::{
    config::Config,
    error::{Error, Result},
    state,
};

/// linkrt's filter priority: first among `cls_bpf` filters (TCX programs, where the kernel has
/// them, run before any filter).
pub const PRIORITY: u16 = 1;
/// linkrt's filter handle at [`PRIORITY`] ("LR").
pub const HANDLE: u32 = 0x4c52;

/// Where a filter made by linkrt is.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    pub ifindex: u32,
    pub priority: u16,
    pub handle: u32,
    pub program: String,
}

/// A `cls_bpf` filter found on an interface.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Filter {
    pub priority: u16,
    pub handle: u32,
    pub name: String,
    pub prog_id: u32,
    pub direct_action: bool,
}

fn dir(cfg: &Config) -> PathBuf {
    cfg.run_root.join("tc")
}

fn record_path(cfg: &Config, ifname: &str, hook: Hook) -> PathBuf {
    dir(cfg).join(format!("{ifname}_{}.json", hook.suffix()))
}

/// `TC_H_MAKE(TC_H_CLSACT, TC_H_MIN_INGRESS/EGRESS)`.
fn parent(hook: Hook) -> u32 {
    match hook {
        Hook::Ingress => 0xffff_fff2,
        Hook::Egress => 0xffff_fff3,
    }
}

fn read_record(cfg: &Config, ifname: &str, hook: Hook) -> Option<Record> {
    let data = std::fs::read(record_path(cfg, ifname, hook)).ok()?;
    serde_json::from_slice(&data).ok()
}

fn ifindex(ifname: &str) -> Option<u32> {
    nix::net::if_::if_nametoindex(ifname).ok()
}

fn tc_err(what: &str, ifname: &str, e: impl std::fmt::Display) -> Error {
    Error::sys(format!("{what} on {ifname}: {e}"))
}

/// Attaches `prog` (named `name`) to `ifname`'s `hook` as linkrt's filter, replacing the
/// program of linkrt's filter in place when there is one, and records it.
pub fn attach(cfg: &Config, prog: &mut SchedClassifier, name: &'static str, ifname: &str, hook: Hook) -> Result<()> {
    match qdisc_add_clsact(ifname) {
        Ok(()) => {}
        Err(TcError::NetlinkError(e)) if e.raw_os_error() == Some(libc::EEXIST) => {}
        Err(e) => return Err(tc_err("adding the clsact qdisc", ifname, e)),
    }
    let index = ifindex(ifname).ok_or_else(|| Error::sys(format!("no interface {ifname}")))?;
    let ours = filters(index, hook)
        .map_err(|e| tc_err("listing tc filters", ifname, e))?
        .into_iter()
        .find(|f| f.priority == PRIORITY && f.handle == HANDLE);
    let perr = |source| Error::Program { name, source };
    let id = match ours {
        Some(f) if !f.name.starts_with("lrt_") => {
            return Err(Error::sys(format!(
                "{ifname}: tc filter priority {PRIORITY} handle {HANDLE:#x} belongs to another program ({})",
                f.name
            )));
        }
        // In place: the filter keeps its place and never lets a packet through unfiltered.
        Some(_) => {
            let link =
                SchedClassifierLink::attached(ifname, hook.attach_type(), PRIORITY, TcHandle::from(HANDLE), None)
                    .map_err(|e| tc_err("finding linkrt's filter", ifname, e))?;
            prog.attach_to_link(link).map_err(perr)?
        }
        None => prog
            .attach_with_options(
                ifname,
                hook.attach_type(),
                TcAttachOptions::Netlink(NlOptions {
                    priority: PRIORITY,
                    handle: TcHandle::from(HANDLE),
                    classid: None,
                }),
            )
            .map_err(perr)?,
    };
    let link = prog.take_link(id).map_err(perr)?;
    // Dropping the link would delete the filter: it must outlive this process.
    std::mem::forget(link);
    let rec = Record {
        ifindex: index,
        priority: PRIORITY,
        handle: HANDLE,
        program: name.to_string(),
    };
    state::create_private_dir(&dir(cfg))?;
    state::write_atomic(
        &record_path(cfg, ifname, hook),
        &serde_json::to_vec(&rec).expect("serializable"),
    )
}

/// The program id of linkrt's recorded filter on `ifname`'s `hook`, if it is there (on the
/// same interface, not one made again under the name).
pub fn attached_program(cfg: &Config, ifname: &str, hook: Hook) -> Option<u32> {
    let rec = read_record(cfg, ifname, hook)?;
    if ifindex(ifname) != Some(rec.ifindex) {
        return None;
    }
    filters(rec.ifindex, hook)
        .ok()?
        .into_iter()
        .find(|f| f.priority == rec.priority && f.handle == rec.handle && f.name.starts_with("lrt_"))
        .map(|f| f.prog_id)
}

/// Deletes linkrt's recorded filter of `ifname`'s `hook` (if the interface is still the one
/// recorded: a deleted interface took its filters along) and its record.
pub fn detach(cfg: &Config, ifname: &str, hook: Hook) -> Result<()> {
    let path = record_path(cfg, ifname, hook);
    if let Some(rec) = read_record(cfg, ifname, hook)
        && ifindex(ifname) == Some(rec.ifindex)
    {
        match delete_filter(rec.ifindex, hook, rec.priority, rec.handle) {
            Ok(()) => {}
            // Gone already (the interface's qdisc was removed, or another tool deleted it).
            Err(e)
                if matches!(
                    e.raw_os_error(),
                    Some(libc::ENOENT) | Some(libc::ENODEV) | Some(libc::EINVAL)
                ) => {}
            Err(e) => return Err(tc_err("deleting linkrt's tc filter", ifname, e)),
        }
    }
    match std::fs::remove_file(&path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(Error::io("removing", path, e)),
    }
}

/// Names of the interfaces with a recorded filter.
pub fn recorded_interfaces(cfg: &Config) -> Vec<String> {
    std::fs::read_dir(dir(cfg))
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            e.file_name()
                .to_str()
                .and_then(|n| n.strip_suffix("_in.json"))
                .map(str::to_owned)
        })
        .collect()
}

// --- rtnetlink, just enough for filters: a dump and a delete. ---

const RTM_DELTFILTER: u16 = 45;
const RTM_NEWTFILTER: u16 = 44;
const RTM_GETTFILTER: u16 = 46;
const NLMSG_ERROR: u16 = 2;
const NLMSG_DONE: u16 = 3;
const NLM_F_REQUEST: u16 = 1;
const NLM_F_ACK: u16 = 4;
const NLM_F_DUMP: u16 = 0x300;
const TCA_KIND: u16 = 1;
const TCA_OPTIONS: u16 = 2;
const TCA_BPF_NAME: u16 = 7;
const TCA_BPF_FLAGS: u16 = 8;
const TCA_BPF_ID: u16 = 11;
const TCA_BPF_FLAG_ACT_DIRECT: u32 = 1;
const NLA_TYPE_MASK: u16 = 0x3fff;
const ETH_P_ALL: u16 = 0x0003;

/// `struct nlmsghdr` + `struct tcmsg`.
#[repr(C)]
#[derive(Clone, Copy, Default)]
struct Request {
    len: u32,
    ty: u16,
    flags: u16,
    seq: u32,
    pid: u32,
    family: u8,
    _pad1: u8,
    _pad2: u16,
    ifindex: i32,
    handle: u32,
    parent: u32,
    info: u32,
}

struct Socket(OwnedFd);

impl Socket {
    fn open() -> io::Result<Socket> {
        // SAFETY: plain socket(2).
        let fd = unsafe {
            libc::socket(
                libc::AF_NETLINK,
                libc::SOCK_RAW | libc::SOCK_CLOEXEC,
                libc::NETLINK_ROUTE,
            )
        };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: a new fd we own.
        Ok(Socket(unsafe { OwnedFd::from_raw_fd(fd) }))
    }

    fn send(&self, req: &Request) -> io::Result<()> {
        // SAFETY: `req` is plain old data of `req.len` bytes.
        let r = unsafe { libc::send(self.0.as_raw_fd(), (req as *const Request).cast(), req.len as usize, 0) };
        if r < 0 { Err(io::Error::last_os_error()) } else { Ok(()) }
    }

    /// Reads replies until the kernel's ack (or the end of a dump); calls `each` on every
    /// `RTM_NEWTFILTER` payload (after the header).
    fn replies(&self, mut each: impl FnMut(&[u8])) -> io::Result<()> {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            // SAFETY: recv(2) into our buffer.
            let n = unsafe { libc::recv(self.0.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
            if n < 0 {
                let e = io::Error::last_os_error();
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(e);
            }
            let mut msg = &buf[..n as usize];
            while msg.len() >= 16 {
                let len = u32::from_ne_bytes(msg[0..4].try_into().expect("4 bytes")) as usize;
                let ty = u16::from_ne_bytes(msg[4..6].try_into().expect("2 bytes"));
                if len < 16 || len > msg.len() {
                    return Err(io::Error::other("truncated netlink message"));
                }
                let payload = &msg[16..len];
                match ty {
                    NLMSG_DONE => return Ok(()),
                    NLMSG_ERROR => {
                        let code = payload
                            .get(0..4)
                            .map(|b| i32::from_ne_bytes(b.try_into().expect("4 bytes")))
                            .unwrap_or(-libc::EIO);
                        return if code == 0 {
                            Ok(())
                        } else {
                            Err(io::Error::from_raw_os_error(-code))
                        };
                    }
                    RTM_NEWTFILTER => each(payload),
                    _ => {}
                }
                msg = &msg[((len + 3) & !3).min(msg.len())..];
            }
        }
    }
}

/// Netlink attributes: (type, payload).
fn attrs(mut b: &[u8]) -> impl Iterator<Item = (u16, &[u8])> {
    std::iter::from_fn(move || {
        if b.len() < 4 {
            return None;
        }
        let len = u16::from_ne_bytes([b[0], b[1]]) as usize;
        let ty = u16::from_ne_bytes([b[2], b[3]]) & NLA_TYPE_MASK;
        if len < 4 || len > b.len() {
            return None;
        }
        let data = &b[4..len];
        b = &b[((len + 3) & !3).min(b.len())..];
        Some((ty, data))
    })
}

/// Parses one `RTM_NEWTFILTER` payload (`struct tcmsg` and attributes): a `bpf` filter, or
/// `None` for any other kind (or the dump's per-priority chain headers).
fn parse_filter(p: &[u8]) -> Option<Filter> {
    const TCMSG: usize = 20;
    if p.len() < TCMSG {
        return None;
    }
    let handle = u32::from_ne_bytes(p[8..12].try_into().ok()?);
    let info = u32::from_ne_bytes(p[16..20].try_into().ok()?);
    let mut kind = None;
    let (mut name, mut prog_id, mut flags) = (String::new(), None, 0u32);
    for (ty, data) in attrs(&p[TCMSG..]) {
        match ty {
            TCA_KIND => kind = Some(data.split(|b| *b == 0).next().unwrap_or_default().to_vec()),
            TCA_OPTIONS => {
                for (t, d) in attrs(data) {
                    match t {
                        TCA_BPF_NAME => {
                            name = String::from_utf8_lossy(d.split(|b| *b == 0).next().unwrap_or_default()).into_owned()
                        }
                        TCA_BPF_ID if d.len() >= 4 => prog_id = Some(u32::from_ne_bytes(d[..4].try_into().ok()?)),
                        TCA_BPF_FLAGS if d.len() >= 4 => flags = u32::from_ne_bytes(d[..4].try_into().ok()?),
                        _ => {}
                    }
                }
            }
            _ => {}
        }
    }
    if kind.as_deref() != Some(b"bpf") {
        return None;
    }
    Some(Filter {
        priority: (info >> 16) as u16,
        handle,
        name,
        prog_id: prog_id?,
        direct_action: flags & TCA_BPF_FLAG_ACT_DIRECT != 0,
    })
}

/// Every `cls_bpf` filter on the `clsact` hook of interface `ifindex` (none when the
/// interface has no `clsact` qdisc).
pub fn filters(ifindex: u32, hook: Hook) -> io::Result<Vec<Filter>> {
    let sock = Socket::open()?;
    sock.send(&Request {
        len: std::mem::size_of::<Request>() as u32,
        ty: RTM_GETTFILTER,
        flags: NLM_F_REQUEST | NLM_F_DUMP,
        seq: 1,
        ifindex: ifindex as i32,
        parent: parent(hook),
        ..Default::default()
    })?;
    let mut out = Vec::new();
    match sock.replies(|p| out.extend(parse_filter(p))) {
        Ok(()) => Ok(out),
        // No clsact qdisc: no filters.
        Err(e) if e.raw_os_error() == Some(libc::EINVAL) || e.raw_os_error() == Some(libc::ENOENT) => Ok(out),
        Err(e) => Err(e),
    }
}

fn delete_filter(ifindex: u32, hook: Hook, priority: u16, handle: u32) -> io::Result<()> {
    let sock = Socket::open()?;
    sock.send(&Request {
        len: std::mem::size_of::<Request>() as u32,
        ty: RTM_DELTFILTER,
        flags: NLM_F_REQUEST | NLM_F_ACK,
        seq: 1,
        ifindex: ifindex as i32,
        handle,
        parent: parent(hook),
        info: (u32::from(priority) << 16) | u32::from(ETH_P_ALL.to_be()),
        ..Default::default()
    })?;
    sock.replies(|_| {})
}

#[cfg(test)]
mod tests {
    use super::*;

    fn attr(ty: u16, data: &[u8]) -> Vec<u8> {
        let mut v = ((4 + data.len()) as u16).to_ne_bytes().to_vec();
        v.extend(ty.to_ne_bytes());
        v.extend(data);
        while v.len() % 4 != 0 {
            v.push(0);
        }
        v
    }

    /// A `tc filter` dump entry as the kernel writes it: tcmsg, kind, options.
    #[test]
    fn a_cls_bpf_dump_entry_parses_to_its_priority_handle_name_and_program() {
        let mut p = vec![0u8; 20];
        p[8..12].copy_from_slice(&HANDLE.to_ne_bytes());
        p[16..20].copy_from_slice(&((u32::from(PRIORITY) << 16) | 0x0300).to_ne_bytes());
        p.extend(attr(TCA_KIND, b"bpf\0"));
        let mut opts = attr(TCA_BPF_NAME, b"lrt_uplink_in\0");
        opts.extend(attr(TCA_BPF_ID, &77u32.to_ne_bytes()));
        opts.extend(attr(TCA_BPF_FLAGS, &1u32.to_ne_bytes()));
        p.extend(attr(TCA_OPTIONS, &opts));
        assert_eq!(
            parse_filter(&p),
            Some(Filter {
                priority: PRIORITY,
                handle: HANDLE,
                name: "lrt_uplink_in".into(),
                prog_id: 77,
                direct_action: true,
            })
        );
        // Another kind (u32, flower...) is not ours to look at.
        let mut other = p[..20].to_vec();
        other.extend(attr(TCA_KIND, b"u32\0"));
        assert_eq!(parse_filter(&other), None);
        assert_eq!(parse_filter(&p[..10]), None);
    }
}
