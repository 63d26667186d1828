//! The TC attach mode for kernels without TCX (before 6.6): a `cls_bpf` filter in direct-action
//! mode on a `clsact` qdisc, at a fixed priority and handle (bpfman's `multiprog/tc.rs` is the
//! model). A netlink filter cannot be pinned like a link, so linkrt records each one it made
//! under `<run_root>/tc/<ifname>_<in|out>.json` (interface index, priority, handle, program),
//! finds it again by a netlink dump to check it (the program id it runs, for the stale-maps
//! check), replaces its program in place when healing, and deletes it by that record.
//!
//! The filter holds its program: it outlives the CLI that attached it, like a pinned TCX link.
use std::{io, path::PathBuf};

use futures_util::{StreamExt, TryStreamExt};
use netlink_packet_core::{NLM_F_ACK, NLM_F_REQUEST, NetlinkMessage, NetlinkPayload};
use netlink_packet_route::{
    RouteNetlinkMessage,
    tc::{TcAttribute, TcFilterBpfOption, TcHandle as NlTcHandle, TcMessage, TcOption},
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
    super::loader::names_with_suffix(&dir(cfg), "_in.json")
}

/// `cls_bpf`'s "direct action" flag (`TCA_BPF_FLAG_ACT_DIRECT`).
const TCA_BPF_FLAG_ACT_DIRECT: u32 = 1;

/// Reads one filter of a dump: a `bpf` filter, or `None` for any other kind (or the dump's
/// per-priority chain headers, which carry no program).
fn parse_filter(m: &TcMessage) -> Option<Filter> {
    if !m
        .attributes
        .iter()
        .any(|a| matches!(a, TcAttribute::Kind(k) if k == "bpf"))
    {
        return None;
    }
    let (mut name, mut prog_id, mut flags) = (String::new(), None, 0u32);
    for a in &m.attributes {
        if let TcAttribute::Options(opts) = a {
            for o in opts {
                match o {
                    TcOption::Bpf(TcFilterBpfOption::ProgName(n)) => name = n.clone(),
                    TcOption::Bpf(TcFilterBpfOption::ProgId(id)) => prog_id = Some(*id),
                    TcOption::Bpf(TcFilterBpfOption::Flags(f)) => flags = f.bits(),
                    _ => {}
                }
            }
        }
    }
    Some(Filter {
        priority: (m.header.info >> 16) as u16,
        handle: u32::from(m.header.handle),
        name,
        prog_id: prog_id?,
        direct_action: flags & TCA_BPF_FLAG_ACT_DIRECT != 0,
    })
}

/// Every `cls_bpf` filter on the `clsact` hook of interface `ifindex` (none when the
/// interface has no `clsact` qdisc).
pub fn filters(ifindex: u32, hook: Hook) -> io::Result<Vec<Filter>> {
    let r = crate::network::netlink::run_once(|h| async move {
        let mut req = h.traffic_filter(ifindex as i32).get();
        req = match hook {
            Hook::Ingress => req.ingress(),
            Hook::Egress => req.egress(),
        };
        let mut out = Vec::new();
        let mut dump = req.execute();
        loop {
            match dump.try_next().await {
                Ok(Some(m)) => out.extend(parse_filter(&m)),
                Ok(None) => return Ok(Ok(out)),
                Err(e) => return Ok(Err(crate::network::netlink::to_io(e))),
            }
        }
    });
    match r {
        Ok(Ok(out)) => Ok(out),
        // No clsact qdisc: no filters.
        Ok(Err(e)) if matches!(e.raw_os_error(), Some(libc::EINVAL) | Some(libc::ENOENT)) => Ok(Vec::new()),
        Ok(Err(e)) => Err(e),
        Err(e) => Err(io::Error::other(e.to_string())),
    }
}

/// Deletes the one filter at (`priority`, `handle`) of the hook. (rtnetlink's delete request
/// sets neither, which would delete every filter of the hook, so the message is built here.)
fn delete_filter(ifindex: u32, hook: Hook, priority: u16, handle: u32) -> io::Result<()> {
    let mut msg = TcMessage::with_index(ifindex as i32);
    msg.header.parent = NlTcHandle::from(parent(hook));
    msg.header.handle = NlTcHandle::from(handle);
    msg.header.info = (u32::from(priority) << 16) | u32::from(ETH_P_ALL.to_be());
    let mut req = NetlinkMessage::from(RouteNetlinkMessage::DelTrafficFilter(msg));
    req.header.flags = NLM_F_REQUEST | NLM_F_ACK;
    let r = crate::network::netlink::run_once(|mut h| async move {
        let mut replies = match h.request(req) {
            Ok(r) => r,
            Err(e) => return Ok(Err(crate::network::netlink::to_io(e))),
        };
        while let Some(m) = replies.next().await {
            if let NetlinkPayload::Error(e) = m.payload
                && e.code.is_some()
            {
                return Ok(Err(e.to_io()));
            }
        }
        Ok(Ok(()))
    });
    r.map_err(|e| io::Error::other(e.to_string()))?
}

/// The ethertype of linkrt's filters (`ETH_P_ALL`).
const ETH_P_ALL: u16 = 0x0003;

#[cfg(test)]
mod tests {
    use super::*;
    use netlink_packet_route::tc::TcBpfFlags;

    /// A `tc filter` dump entry as the kernel writes it: tcmsg, kind, options.
    #[test]
    fn a_cls_bpf_dump_entry_parses_to_its_priority_handle_name_and_program() {
        let mut m = TcMessage::with_index(3);
        m.header.handle = NlTcHandle::from(HANDLE);
        m.header.info = (u32::from(PRIORITY) << 16) | 0x0300;
        m.attributes.push(TcAttribute::Kind("bpf".into()));
        m.attributes.push(TcAttribute::Options(vec![
            TcOption::Bpf(TcFilterBpfOption::ProgName("lrt_uplink_in".into())),
            TcOption::Bpf(TcFilterBpfOption::ProgId(77)),
            TcOption::Bpf(TcFilterBpfOption::Flags(TcBpfFlags::from_bits_retain(1))),
        ]));
        assert_eq!(
            parse_filter(&m),
            Some(Filter {
                priority: PRIORITY,
                handle: HANDLE,
                name: "lrt_uplink_in".into(),
                prog_id: 77,
                direct_action: true,
            })
        );
        // Another kind (u32, flower...) is not ours to look at.
        let mut other = TcMessage::with_index(3);
        other.attributes.push(TcAttribute::Kind("u32".into()));
        assert_eq!(parse_filter(&other), None);
        // A chain header of the dump: bpf, but no program.
        let mut chain = TcMessage::with_index(3);
        chain.attributes.push(TcAttribute::Kind("bpf".into()));
        assert_eq!(parse_filter(&chain), None);
    }
}
