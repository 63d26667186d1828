//! `linkrt monitor`: the datapath's events, from the pinned ring buffer.
use std::net::SocketAddrV4;

use aya::maps::{Map, MapData, RingBuf};
use linkrt_common::{DropReason, EVENT_NAT, Event, maps};

use crate::{
    config::Config,
    error::{Error, Result},
};

/// A reader of the datapath's event ring buffer (pinned, so it works from any CLI call).
pub struct EventReader {
    ring: RingBuf<MapData>,
}

/// A decoded datapath event.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DatapathEvent {
    /// A packet dropped, with the reason's counter name (`drop_policy`, ...).
    Drop {
        reason: &'static str,
        proto: u8,
        ethertype: u16,
        src: SocketAddrV4,
        dst: SocketAddrV4,
        /// The interface it arrived on (or was leaving by).
        ifindex: u32,
    },
    /// A new translated flow to a published port.
    Nat {
        proto: u8,
        src: SocketAddrV4,
        dst: SocketAddrV4,
        to: SocketAddrV4,
    },
}

fn proto_name(proto: u8, ethertype: u16) -> String {
    match (ethertype, proto) {
        (0x0806, _) => "arp".into(),
        (0x86dd, _) => "ipv6".into(),
        (0 | 0x0800, 1) => "icmp".into(),
        (0 | 0x0800, 6) => "tcp".into(),
        (0 | 0x0800, 17) => "udp".into(),
        (0 | 0x0800, 132) => "sctp".into(),
        (0 | 0x0800, n) => format!("proto-{n}"),
        (t, _) => format!("ethertype-{t:#06x}"),
    }
}

impl std::fmt::Display for DatapathEvent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DatapathEvent::Nat { proto, src, dst, to } => {
                write!(f, "nat   {} {src} -> {dst} => {to}", proto_name(*proto, 0))
            }
            DatapathEvent::Drop {
                reason,
                proto,
                ethertype,
                src,
                dst,
                ifindex,
            } => {
                let what = proto_name(*proto, *ethertype);
                if *ethertype == 0x0800 {
                    write!(f, "drop  ({reason}) {what} {src} -> {dst}")
                } else {
                    write!(f, "drop  ({reason}) {what} if {ifindex}")
                }
            }
        }
    }
}

impl EventReader {
    pub fn open(cfg: &Config) -> Result<Self> {
        let name = maps::EVENTS;
        let data = MapData::from_pin(cfg.maps_dir().join(name)).map_err(|source| Error::Map { name, source })?;
        let ring = RingBuf::try_from(Map::RingBuf(data)).map_err(|source| Error::Map { name, source })?;
        Ok(EventReader { ring })
    }

    /// The events available now (without waiting: `monitor` waits on the fd).
    pub fn drain(&mut self) -> Vec<DatapathEvent> {
        let mut out = Vec::new();
        while let Some(item) = self.ring.next() {
            if item.len() < std::mem::size_of::<Event>() {
                continue;
            }
            // SAFETY: the eBPF side writes whole `Event`s; read unaligned.
            let ev: Event = unsafe { std::ptr::read_unaligned(item.as_ptr().cast()) };
            out.push(if ev.kind == EVENT_NAT {
                DatapathEvent::Nat {
                    proto: ev.proto,
                    src: ev.src(),
                    dst: ev.dst(),
                    to: ev.nat(),
                }
            } else {
                DatapathEvent::Drop {
                    reason: DropReason::from_code(ev.reason as u32).map_or("drop_unknown", |r| r.name()),
                    proto: ev.proto,
                    ethertype: ev.ethertype,
                    src: ev.src(),
                    dst: ev.dst(),
                    ifindex: ev.nat_addr,
                }
            });
        }
        out
    }
}

impl std::os::fd::AsRawFd for EventReader {
    fn as_raw_fd(&self) -> std::os::fd::RawFd {
        self.ring.as_raw_fd()
    }
}

#[cfg(test)]
mod tests {
    use linkrt_common::DropReason;

    use super::DatapathEvent;

    /// Every drop reason has its own `linkrt monitor` line.
    #[test]
    fn every_drop_reason_has_its_own_monitor_line() {
        let a = "172.17.0.3:40000".parse().unwrap();
        let b = "172.17.0.2:7001".parse().unwrap();
        let mut lines = std::collections::BTreeSet::new();
        for r in DropReason::ALL {
            let ev = DatapathEvent::Drop {
                reason: r.name(),
                proto: 6,
                ethertype: 0x0800,
                src: a,
                dst: b,
                ifindex: 7,
            };
            let line = ev.to_string();
            assert_eq!(
                line,
                format!("drop  ({}) tcp 172.17.0.3:40000 -> 172.17.0.2:7001", r.name())
            );
            lines.insert(line);
        }
        assert_eq!(lines.len(), DropReason::ALL.len());
        let tagged = DatapathEvent::Drop {
            reason: DropReason::Vlan.name(),
            proto: 0,
            ethertype: 0x8100,
            src: a,
            dst: b,
            ifindex: 12,
        };
        assert_eq!(tagged.to_string(), "drop  (drop_vlan) ethertype-0x8100 if 12");
        let names: std::collections::BTreeSet<_> = DropReason::ALL.iter().map(|r| r.name()).collect();
        assert_eq!(names.len(), DropReason::ALL.len(), "reason names are distinct");
        for (i, r) in DropReason::ALL.iter().enumerate() {
            assert_eq!(DropReason::from_code(i as u32), Some(*r));
        }
    }
}
