//! Which host ports host processes hold, from one dump: the check at publish time costs one
//! dump, not one test bind per port of a range. TCP listeners come from the kernel's socket
//! diagnostics (`NETLINK_SOCK_DIAG`, listening sockets only: the kernel then walks its listener
//! table alone, so a host with 100,000 connections costs what an idle one does, where
//! `/proc/net/tcp` would print every connection); UDP sockets from `/proc/thread-self/net/{udp,
//! udp6}`.
//!
//! A port conflicts as a bind would: a listening TCP socket (not a connection: an accepted one
//! shares its listener's port, a client's is an ephemeral port the kernel lets a SO_REUSEADDR
//! listener share; a socket bound but not listening is in neither dump), or any UDP socket,
//! on the same address or with either side 0.0.0.0. An IPv6 socket on `::` counts for every IPv4 address (dual stack, the default), one
//! on `::ffff:a.b.c.d` for a.b.c.d.
use std::{collections::HashMap, net::Ipv4Addr};

use crate::error::{Error, Result};

/// TCP states from `include/net/tcp_states.h`: listening, or bound and closed.
const TCP_LISTEN: u8 = 0x0a;
const TCP_CLOSE: u8 = 0x07;

/// The host's sockets by (port, protocol number): the IPv4 addresses they are bound to
/// (0.0.0.0 for every address).
#[derive(Debug, Default)]
pub struct HostSockets {
    held: HashMap<(u16, u8), Vec<Ipv4Addr>>,
}

impl HostSockets {
    /// One dump of the calling thread's network namespace.
    pub fn read() -> Result<HostSockets> {
        let mut s = HostSockets::default();
        let mut tables: Vec<(&str, u8)> = vec![("udp", 17), ("udp6", 17)];
        match diag::tcp_listeners() {
            Ok(v) => {
                for (port, ip) in v {
                    if port != 0 {
                        s.held.entry((port, 6)).or_default().push(ip);
                    }
                }
            }
            // A kernel without inet_diag (or that may not load it): the tables it prints.
            Err(e) => {
                log::info!("{e}; reading /proc/net/tcp instead");
                tables.extend([("tcp", 6), ("tcp6", 6)]);
            }
        }
        for (file, proto) in tables {
            let path = format!("/proc/thread-self/net/{file}");
            match std::fs::read_to_string(&path) {
                Ok(text) => s.add(&text, proto),
                // No IPv6 in this kernel: no tcp6/udp6.
                Err(e) if e.kind() == std::io::ErrorKind::NotFound && file.ends_with('6') => {}
                Err(e) => return Err(Error::io("reading", path, e)),
            }
        }
        Ok(s)
    }

    /// Adds the sockets of one `/proc/net` table (its text).
    pub fn add(&mut self, table: &str, proto: u8) {
        for line in table.lines().skip(1) {
            let mut f = line.split_whitespace();
            let (Some(_), Some(local), Some(_), Some(st)) = (f.next(), f.next(), f.next(), f.next()) else {
                continue;
            };
            let Ok(st) = u8::from_str_radix(st, 16) else { continue };
            if proto == 6 && st != TCP_LISTEN && st != TCP_CLOSE {
                continue;
            }
            let Some((addr, port)) = local.split_once(':') else {
                continue;
            };
            let (Ok(port), Some(ip)) = (u16::from_str_radix(port, 16), parse_addr(addr)) else {
                continue;
            };
            if port != 0 {
                self.held.entry((port, proto)).or_default().push(ip);
            }
        }
    }

    /// `Err` with the OS's words when a host process holds `ip:port` (`ip` 0.0.0.0 = any).
    pub fn free(&self, ip: Ipv4Addr, port: u16, proto: u8) -> std::result::Result<(), String> {
        let busy = self
            .held
            .get(&(port, proto))
            .is_some_and(|v| v.iter().any(|a| a.is_unspecified() || ip.is_unspecified() || *a == ip));
        if busy {
            Err("address already in use".into())
        } else {
            Ok(())
        }
    }
}

/// A `/proc/net` address: 8 hex digits (IPv4) or 32 (IPv6), each 32-bit word printed as the
/// kernel holds it. IPv6 other than `::` and `::ffff:a.b.c.d` is `None` (no IPv4 conflict).
fn parse_addr(hex: &str) -> Option<Ipv4Addr> {
    let word = |s: &str| u32::from_str_radix(s, 16).ok().map(|w| w.to_ne_bytes());
    match hex.len() {
        8 => word(hex).map(Ipv4Addr::from),
        32 => {
            let w: Vec<[u8; 4]> = (0..4).map(|i| word(&hex[i * 8..i * 8 + 8])).collect::<Option<_>>()?;
            if w[0] != [0; 4] || w[1] != [0; 4] {
                return None;
            }
            match w[2] {
                [0, 0, 0, 0] if w[3] == [0; 4] => Some(Ipv4Addr::UNSPECIFIED),
                [0, 0, 0xff, 0xff] => Some(Ipv4Addr::from(w[3])),
                _ => None,
            }
        }
        _ => None,
    }
}

/// TCP listeners through `NETLINK_SOCK_DIAG` (`linux/inet_diag.h`).
mod diag {
    use std::{net::Ipv4Addr, os::fd::AsRawFd};

    use nix::sys::socket::{AddressFamily, MsgFlags, NetlinkAddr, SockFlag, SockProtocol, SockType};

    use crate::error::{Error, Result};

    const SOCK_DIAG_BY_FAMILY: u16 = 20;
    const NLMSG_ERROR: u16 = 2;
    const NLMSG_DONE: u16 = 3;
    const NLM_F_REQUEST: u16 = 1;
    const NLM_F_DUMP: u16 = 0x300;
    const TCPF_LISTEN: u32 = 1 << 10;
    /// `nlmsghdr` (16) + `inet_diag_req_v2` (56).
    const REQ_LEN: usize = 72;
    /// `inet_diag_msg` up to the end of its `inet_diag_sockid` (4 + 48).
    const MSG_MIN: usize = 52;

    fn err(what: &'static str, e: impl Into<std::io::Error>) -> Error {
        Error::io(what, "the kernel's socket diagnostics (NETLINK_SOCK_DIAG)", e.into())
    }

    /// The request for every listening TCP socket of `family`.
    pub(super) fn request(family: u8, seq: u32) -> [u8; REQ_LEN] {
        let mut b = [0u8; REQ_LEN];
        b[0..4].copy_from_slice(&(REQ_LEN as u32).to_ne_bytes());
        b[4..6].copy_from_slice(&SOCK_DIAG_BY_FAMILY.to_ne_bytes());
        b[6..8].copy_from_slice(&(NLM_F_REQUEST | NLM_F_DUMP).to_ne_bytes());
        b[8..12].copy_from_slice(&seq.to_ne_bytes());
        b[16] = family;
        b[17] = libc::IPPROTO_TCP as u8;
        b[20..24].copy_from_slice(&TCPF_LISTEN.to_ne_bytes());
        b
    }

    /// The (port, IPv4 address) of one `inet_diag_msg`: an IPv6 socket on `::` holds every
    /// IPv4 address, one on `::ffff:a.b.c.d` that one; another IPv6 address none.
    pub(super) fn parse_msg(m: &[u8]) -> Option<(u16, Ipv4Addr)> {
        if m.len() < MSG_MIN {
            return None;
        }
        let family = m[0];
        let port = u16::from_be_bytes([m[4], m[5]]);
        let src = &m[8..24];
        let ip = match i32::from(family) {
            libc::AF_INET => Ipv4Addr::new(src[0], src[1], src[2], src[3]),
            libc::AF_INET6 if src[..10].iter().all(|b| *b == 0) => match (src[10], src[11]) {
                (0, 0) if src[12..].iter().all(|b| *b == 0) => Ipv4Addr::UNSPECIFIED,
                (0xff, 0xff) => Ipv4Addr::new(src[12], src[13], src[14], src[15]),
                _ => return None,
            },
            _ => return None,
        };
        Some((port, ip))
    }

    /// Every listening TCP socket of the calling thread's network namespace, IPv4 and IPv6.
    pub fn tcp_listeners() -> Result<Vec<(u16, Ipv4Addr)>> {
        let fd = nix::sys::socket::socket(
            AddressFamily::Netlink,
            SockType::Raw,
            SockFlag::SOCK_CLOEXEC,
            SockProtocol::NetlinkSockDiag,
        )
        .map_err(|e| err("opening", e))?;
        let mut out = Vec::new();
        let mut buf = vec![0u8; 64 * 1024];
        for (seq, family) in [(1u32, libc::AF_INET as u8), (2, libc::AF_INET6 as u8)] {
            nix::sys::socket::sendto(
                fd.as_raw_fd(),
                &request(family, seq),
                &NetlinkAddr::new(0, 0),
                MsgFlags::empty(),
            )
            .map_err(|e| err("asking", e))?;
            'dump: loop {
                let n = match nix::sys::socket::recv(fd.as_raw_fd(), &mut buf, MsgFlags::empty()) {
                    Err(nix::errno::Errno::EINTR) => continue,
                    r => r.map_err(|e| err("reading", e))?,
                };
                if n == 0 {
                    break;
                }
                let mut at = 0;
                while at + 16 <= n {
                    let len = u32::from_ne_bytes(buf[at..at + 4].try_into().expect("4 bytes")) as usize;
                    let ty = u16::from_ne_bytes(buf[at + 4..at + 6].try_into().expect("2 bytes"));
                    if len < 16 || at + len > n {
                        return Err(Error::sys("a truncated socket diagnostics message"));
                    }
                    match ty {
                        NLMSG_DONE => break 'dump,
                        NLMSG_ERROR if len < 20 => return Err(Error::sys("a truncated socket diagnostics error")),
                        NLMSG_ERROR => {
                            let code = i32::from_ne_bytes(buf[at + 16..at + 20].try_into().expect("4 bytes"));
                            // No IPv6 in this kernel: no IPv6 sockets.
                            if family == libc::AF_INET6 as u8 && -code == libc::ENOENT {
                                break 'dump;
                            }
                            return Err(err("dumping", std::io::Error::from_raw_os_error(-code)));
                        }
                        SOCK_DIAG_BY_FAMILY => out.extend(parse_msg(&buf[at + 16..at + len])),
                        _ => {}
                    }
                    at += (len + 3) & !3;
                }
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn diag_messages_parse_as_proc_net_does() {
        let msg = |family: i32, port: u16, src: [u8; 16]| {
            let mut m = vec![0u8; 72];
            m[0] = family as u8;
            m[1] = 10;
            m[4..6].copy_from_slice(&port.to_be_bytes());
            m[8..24].copy_from_slice(&src);
            m
        };
        let mut v4 = [0u8; 16];
        v4[..4].copy_from_slice(&[127, 0, 0, 1]);
        assert_eq!(
            diag::parse_msg(&msg(libc::AF_INET, 8080, v4)),
            Some((8080, Ipv4Addr::LOCALHOST))
        );
        assert_eq!(
            diag::parse_msg(&msg(libc::AF_INET6, 53, [0; 16])),
            Some((53, Ipv4Addr::UNSPECIFIED)),
            "[::] holds every IPv4 address"
        );
        let mut mapped = [0u8; 16];
        mapped[10..].copy_from_slice(&[0xff, 0xff, 10, 0, 0, 1]);
        assert_eq!(
            diag::parse_msg(&msg(libc::AF_INET6, 54, mapped)),
            Some((54, Ipv4Addr::new(10, 0, 0, 1)))
        );
        let mut plain = [0u8; 16];
        plain[..2].copy_from_slice(&[0x20, 0x01]);
        assert_eq!(diag::parse_msg(&msg(libc::AF_INET6, 55, plain)), None);
        assert_eq!(diag::parse_msg(&[0u8; 10]), None, "too short");
        let r = diag::request(libc::AF_INET6 as u8, 7);
        assert_eq!(u32::from_ne_bytes(r[0..4].try_into().unwrap()), 72);
        assert_eq!((r[16], r[17]), (libc::AF_INET6 as u8, libc::IPPROTO_TCP as u8));
    }

    #[test]
    fn this_hosts_listeners_and_only_listeners_hold_tcp_ports() {
        let l4 = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let l6 = std::net::TcpListener::bind("[::]:0").unwrap();
        // A connection's own ports are no listeners.
        let c = std::net::TcpStream::connect(l4.local_addr().unwrap()).unwrap();
        let (p4, p6, pc) = (
            l4.local_addr().unwrap().port(),
            l6.local_addr().unwrap().port(),
            c.local_addr().unwrap().port(),
        );
        let s = HostSockets::read().unwrap();
        assert!(s.free(Ipv4Addr::LOCALHOST, p4, 6).is_err(), "our listener on {p4}");
        assert!(s.free(Ipv4Addr::new(10, 9, 9, 9), p4, 6).is_ok(), "only on 127.0.0.1");
        assert!(
            s.free(Ipv4Addr::new(10, 9, 9, 9), p6, 6).is_err(),
            "[::]:{p6} holds every address"
        );
        assert!(s.free(Ipv4Addr::UNSPECIFIED, pc, 6).is_ok(), "a connection's port {pc}");
    }

    const HEAD: &str =
        "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n";

    fn hex4(a: Ipv4Addr) -> String {
        format!("{:08X}", u32::from_ne_bytes(a.octets()))
    }

    #[test]
    fn listeners_and_bound_sockets_hold_ports_connections_do_not() {
        let lo = Ipv4Addr::new(127, 0, 0, 1);
        let tcp = format!(
            "{HEAD}   0: {}:1F90 00000000:0000 0A 0:0 0:0 0 0 0 1\n   1: {}:1F91 00000000:0000 07 0:0 0:0 0 0 0 2\n   2: {}:9C40 0200000A:01BB 01 0:0 0:0 0 0 0 3\n   3: {}:1F92 0200000A:01BB 06 0:0 0:0 0 0 0 4\n",
            hex4(Ipv4Addr::UNSPECIFIED),
            hex4(lo),
            hex4(Ipv4Addr::new(10, 0, 0, 1)),
            hex4(Ipv4Addr::new(10, 0, 0, 1)),
        );
        let mut s = HostSockets::default();
        s.add(&tcp, 6);
        let any = Ipv4Addr::UNSPECIFIED;
        let other = Ipv4Addr::new(10, 0, 0, 1);
        // A listener on 0.0.0.0:8080 holds 8080 on every address.
        assert_eq!(s.free(other, 8080, 6), Err("address already in use".into()));
        assert_eq!(s.free(any, 8080, 6), Err("address already in use".into()));
        assert!(s.free(any, 8080, 17).is_ok(), "UDP is another port space");
        // A socket bound to 127.0.0.1:8081 holds it there, and for 0.0.0.0, not elsewhere.
        assert!(s.free(lo, 8081, 6).is_err());
        assert!(s.free(any, 8081, 6).is_err());
        assert!(s.free(other, 8081, 6).is_ok());
        // An established connection's or TIME_WAIT's local port is no listener.
        assert!(s.free(any, 40000, 6).is_ok());
        assert!(s.free(any, 8082, 6).is_ok());
    }

    #[test]
    fn ipv6_wildcards_hold_ipv4_ports_and_every_udp_socket_counts() {
        let udp6 = format!(
            "{HEAD}   0: 00000000000000000000000000000000:0035 00000000000000000000000000000000:0000 07 0:0 0:0 0 0 0 1\n   1: 0000000000000000FFFF0000{}:0036 00000000000000000000000000000000:0000 01 0:0 0:0 0 0 0 2\n   2: 20010DB8000000000000000000000001:0037 00000000000000000000000000000000:0000 07 0:0 0:0 0 0 0 3\n",
            hex4(Ipv4Addr::new(10, 0, 0, 1))
        );
        let mut s = HostSockets::default();
        s.add(&udp6, 17);
        let a = Ipv4Addr::new(10, 0, 0, 1);
        assert!(s.free(a, 53, 17).is_err(), "[::]:53 holds 10.0.0.1:53");
        assert!(
            s.free(a, 54, 17).is_err(),
            "[::ffff:10.0.0.1]:54, connected, still holds it"
        );
        assert!(s.free(Ipv4Addr::new(10, 0, 0, 2), 54, 17).is_ok());
        assert!(s.free(a, 55, 17).is_ok(), "a plain IPv6 address is no IPv4 conflict");
        assert_eq!(parse_addr("zz"), None);
    }

    #[test]
    fn this_hosts_tables_parse() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        let s = HostSockets::read().unwrap();
        assert!(
            s.free(Ipv4Addr::LOCALHOST, port, 6).is_err(),
            "our own listener on {port}"
        );
    }
}
