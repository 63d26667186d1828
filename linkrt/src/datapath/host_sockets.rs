//! Which host ports host processes hold, from one read of `/proc/thread-self/net/{tcp,tcp6,
//! udp,udp6}`: the check at publish time costs one dump, not one test bind per port of a range.
//!
//! A port conflicts as a bind would: a TCP socket listening or bound (not a connection: an
//! accepted one shares its listener's port, a client's is an ephemeral port the kernel lets a
//! SO_REUSEADDR listener share), or any UDP socket, on the same address or with either side
//! 0.0.0.0. An IPv6 socket on `::` counts for every IPv4 address (dual stack, the default), one
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
        for (file, proto) in [("tcp", 6u8), ("tcp6", 6), ("udp", 17), ("udp6", 17)] {
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

#[cfg(test)]
mod tests {
    use super::*;

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
