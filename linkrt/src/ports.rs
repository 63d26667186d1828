//! Port specs: Docker's `-p`/`--expose` grammar (go-connections `nat.ParsePortSpec`), the
//! host port allocator, and the formats of `docker port` and `docker ps`.
use std::{fmt, net::IpAddr, str::FromStr};

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Proto {
    Tcp,
    Udp,
    Sctp,
}

impl Proto {
    pub fn as_str(self) -> &'static str {
        match self {
            Proto::Tcp => "tcp",
            Proto::Udp => "udp",
            Proto::Sctp => "sctp",
        }
    }

    /// IP protocol number.
    pub fn number(self) -> u8 {
        match self {
            Proto::Tcp => 6,
            Proto::Udp => 17,
            Proto::Sctp => 132,
        }
    }
}

impl FromStr for Proto {
    type Err = ();
    fn from_str(s: &str) -> std::result::Result<Self, ()> {
        match s.to_ascii_lowercase().as_str() {
            "tcp" => Ok(Proto::Tcp),
            "udp" => Ok(Proto::Udp),
            "sctp" => Ok(Proto::Sctp),
            _ => Err(()),
        }
    }
}

/// A container port, `5000/tcp`. Ordered by number, then protocol (tcp < udp < sctp).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct PortKey {
    pub port: u16,
    pub proto: Proto,
}

impl fmt::Display for PortKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.port, self.proto.as_str())
    }
}

/// One requested publication of one container port.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PortBinding {
    pub container: PortKey,
    /// Host IP as given (`""` = all addresses).
    pub host_ip: String,
    /// Host port range to allocate from; `0..=0` = an ephemeral port.
    pub host_start: u16,
    pub host_end: u16,
}

/// An allocated publication: what the datapath implements.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Mapping {
    pub container: PortKey,
    /// `0.0.0.0`, `::` or a specific address.
    pub host_ip: IpAddr,
    pub host_port: u16,
}

impl Mapping {
    /// `0.0.0.0:32768` (IPv6 in brackets).
    pub fn host_addr(&self) -> String {
        std::net::SocketAddr::new(self.host_ip, self.host_port).to_string()
    }
}

/// Mappings stored as ranges (consecutive container and host ports, same protocol and host
/// address): a 10,000-port range is one entry on disk, not 10,000.
pub mod ranges {
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    use super::{Mapping, PortKey, Proto};

    #[derive(Serialize, Deserialize)]
    struct Range {
        proto: Proto,
        container_port: u16,
        host_ip: std::net::IpAddr,
        host_port: u16,
        count: u32,
    }

    pub fn serialize<S: Serializer>(v: &[Mapping], s: S) -> Result<S::Ok, S::Error> {
        let mut out: Vec<Range> = Vec::new();
        for m in v {
            if let Some(r) = out.last_mut()
                && r.proto == m.container.proto
                && r.host_ip == m.host_ip
                && u32::from(r.container_port) + r.count == u32::from(m.container.port)
                && u32::from(r.host_port) + r.count == u32::from(m.host_port)
            {
                r.count += 1;
                continue;
            }
            out.push(Range {
                proto: m.container.proto,
                container_port: m.container.port,
                host_ip: m.host_ip,
                host_port: m.host_port,
                count: 1,
            });
        }
        out.serialize(s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<Mapping>, D::Error> {
        let rs = Vec::<Range>::deserialize(d)?;
        let mut v = Vec::with_capacity(rs.iter().map(|r| r.count as usize).sum::<usize>().min(1 << 17));
        for r in rs {
            if r.count == 0
                || u32::from(r.container_port) + r.count - 1 > 65535
                || u32::from(r.host_port) + r.count - 1 > 65535
            {
                return Err(serde::de::Error::custom("port range out of bounds"));
            }
            v.extend((0..r.count).map(|i| Mapping {
                container: PortKey {
                    port: r.container_port + i as u16,
                    proto: r.proto,
                },
                host_ip: r.host_ip,
                host_port: r.host_port + i as u16,
            }));
        }
        Ok(v)
    }
}

/// A run's length in a record written one object per port (no `count`).
fn one_port() -> u32 {
    1
}

/// Exposed ports stored as runs of consecutive ports of one protocol: `{"port":1024,
/// "proto":"sctp","count":60000}`. A record written one object per port (no `count`) reads
/// the same.
pub mod key_ranges {
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    use super::{PortKey, Proto};

    #[derive(Serialize, Deserialize)]
    struct Run {
        port: u16,
        proto: Proto,
        #[serde(default = "super::one_port")]
        count: u32,
    }

    pub fn serialize<S: Serializer>(v: &[PortKey], s: S) -> Result<S::Ok, S::Error> {
        let mut out: Vec<Run> = Vec::new();
        for k in v {
            if let Some(r) = out.last_mut()
                && r.proto == k.proto
                && u32::from(r.port) + r.count == u32::from(k.port)
            {
                r.count += 1;
                continue;
            }
            out.push(Run {
                port: k.port,
                proto: k.proto,
                count: 1,
            });
        }
        out.serialize(s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<PortKey>, D::Error> {
        let mut v = Vec::new();
        for r in Vec::<Run>::deserialize(d)? {
            if r.count == 0 || u32::from(r.port) + r.count - 1 > 65535 {
                return Err(serde::de::Error::custom("port range out of bounds"));
            }
            v.extend((0..r.count).map(|i| PortKey {
                port: r.port + i as u16,
                proto: r.proto,
            }));
        }
        Ok(v)
    }
}

/// Requested publications stored as runs: consecutive container ports of one protocol and
/// host address whose host ports (or host port ranges) advance with them, as one `-p A-B:C-D`
/// makes. A record written one object per binding (no `count`) reads the same.
pub mod binding_ranges {
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    use super::{PortBinding, PortKey};

    #[derive(Serialize, Deserialize)]
    struct Run {
        container: PortKey,
        host_ip: String,
        host_start: u16,
        host_end: u16,
        #[serde(default = "super::one_port")]
        count: u32,
    }

    /// Whether `b` is the next binding of run `r`. An ephemeral binding (`0..=0`) stays 0.
    fn extends(r: &Run, b: &PortBinding) -> bool {
        let step = |x: u16| if x == 0 { 0 } else { u32::from(x) + r.count };
        r.container.proto == b.container.proto
            && r.host_ip == b.host_ip
            && u32::from(r.container.port) + r.count == u32::from(b.container.port)
            && step(r.host_start) == u32::from(b.host_start)
            && step(r.host_end) == u32::from(b.host_end)
    }

    pub fn serialize<S: Serializer>(v: &[PortBinding], s: S) -> Result<S::Ok, S::Error> {
        let mut out: Vec<Run> = Vec::new();
        for b in v {
            if let Some(r) = out.last_mut()
                && extends(r, b)
            {
                r.count += 1;
                continue;
            }
            out.push(Run {
                container: b.container,
                host_ip: b.host_ip.clone(),
                host_start: b.host_start,
                host_end: b.host_end,
                count: 1,
            });
        }
        out.serialize(s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<PortBinding>, D::Error> {
        let mut v = Vec::new();
        for r in Vec::<Run>::deserialize(d)? {
            let last = |x: u16| if x == 0 { 0 } else { u32::from(x) + r.count - 1 };
            if r.count == 0
                || u32::from(r.container.port) + r.count - 1 > 65535
                || last(r.host_end) > 65535
                || r.host_start > r.host_end
            {
                return Err(serde::de::Error::custom("port range out of bounds"));
            }
            let at = |x: u16, i: u32| if x == 0 { 0 } else { x + i as u16 };
            v.extend((0..r.count).map(|i| PortBinding {
                container: PortKey {
                    port: r.container.port + i as u16,
                    proto: r.container.proto,
                },
                host_ip: r.host_ip.clone(),
                host_start: at(r.host_start, i),
                host_end: at(r.host_end, i),
            }));
        }
        Ok(v)
    }
}

/// go-connections `ParsePortRange`: `N` or `N-M`, each a u16, M ≥ N.
fn parse_range(s: &str) -> Option<(u16, u16)> {
    if s.is_empty() {
        return None;
    }
    match s.split_once('-') {
        None => {
            let p = parse_u16(s)?;
            Some((p, p))
        }
        Some((a, b)) => {
            let b = b.split('-').next().unwrap_or(b);
            let (a, b) = (parse_u16(a)?, parse_u16(b)?);
            (b >= a).then_some((a, b))
        }
    }
}

fn parse_u16(s: &str) -> Option<u16> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

/// go-connections `SplitProtoPort`.
fn split_proto(raw: &str) -> (&str, &str) {
    let mut parts = raw.split('/');
    let port = parts.next().unwrap_or("");
    if raw.is_empty() || port.is_empty() {
        return ("", "");
    }
    match parts.next() {
        None | Some("") => ("tcp", port),
        Some(p) => (p, port),
    }
}

/// Parses one `-p` value into one binding per container port.
pub fn parse_publish(raw: &str) -> Result<Vec<PortBinding>> {
    let parts: Vec<&str> = raw.split(':').collect();
    let n = parts.len();
    let container_raw = parts[n - 1];
    let (ip, host) = match n {
        1 => (String::new(), ""),
        2 => (String::new(), parts[0]),
        3 => (parts[0].to_string(), parts[1]),
        _ => (parts[..n - 2].join(":"), parts[n - 2]),
    };
    let (proto, container) = split_proto(container_raw);
    let mut ip = ip;
    if ip.starts_with('[') {
        match ip.strip_prefix('[').and_then(|s| s.strip_suffix(']')) {
            Some(inner) if !inner.contains(['[', ']']) => ip = inner.to_string(),
            _ => {
                return Err(Error::user(format!(
                    "Invalid ip address {ip}: address {ip}:: missing port in address"
                )));
            }
        }
    }
    if !ip.is_empty() && ip.parse::<IpAddr>().is_err() {
        return Err(Error::user(format!("Invalid ip address: {ip}")));
    }
    if container.is_empty() {
        return Err(Error::user(format!("No port specified: {raw}<empty>")));
    }
    let (cstart, cend) = parse_range(container)
        .filter(|(s, _)| *s > 0)
        .ok_or_else(|| Error::user(format!("Invalid containerPort: {container}")))?;
    let (hstart, hend) = if host.is_empty() {
        (0, 0)
    } else {
        parse_range(host).ok_or_else(|| Error::user(format!("Invalid hostPort: {host}")))?
    };
    if !host.is_empty() && (cend - cstart) != (hend - hstart) && cend != cstart {
        return Err(Error::user(format!(
            "Invalid ranges specified for container and host Ports: {container} and {host}"
        )));
    }
    let proto: Proto = proto
        .parse()
        .map_err(|_| Error::user(format!("Invalid proto: {proto}")))?;
    let mut out = Vec::new();
    for i in 0..=(cend - cstart) {
        let container = PortKey {
            port: cstart + i,
            proto,
        };
        let (s, e) = if host.is_empty() {
            (0, 0)
        } else if cstart == cend {
            (hstart, hend)
        } else {
            (hstart + i, hstart + i)
        };
        out.push(PortBinding {
            container,
            host_ip: ip.clone(),
            host_start: s,
            host_end: e,
        });
    }
    Ok(out)
}

/// The long `--publish` syntax (`published=8080,target=80,protocol=udp`), turned into the
/// short one as Docker's CLI does (`convertToStandardNotation`: protocol tcp by default, other
/// keys ignored). `host_ip=ADDR` is honoured (Docker 28's CLI drops it, publishing on every
/// address; linkrt never publishes wider than asked). A value without `=` is returned as is.
pub fn convert_long_publish(raw: &str) -> Result<String> {
    if !raw.contains('=') {
        return Ok(raw.to_string());
    }
    let mut params: std::collections::HashMap<&str, &str> = [("protocol", "tcp")].into();
    for param in raw.split(',') {
        match param.split_once('=') {
            Some((k, v)) if !k.is_empty() => {
                params.insert(k, v);
            }
            _ => {
                return Err(Error::user(format!(
                    "invalid publish opts format (should be name=value but got '{param}')"
                )));
            }
        }
    }
    let get = |k: &str| params.get(k).copied().unwrap_or("");
    let short = format!("{}:{}/{}", get("published"), get("target"), get("protocol"));
    Ok(match get("host_ip") {
        "" => short,
        ip if ip.contains(':') && !ip.starts_with('[') => format!("[{ip}]:{short}"),
        ip => format!("{ip}:{short}"),
    })
}

/// Parses an `--expose` value: `PORT[-END][/proto]`.
pub fn parse_expose(raw: &str) -> Result<Vec<PortKey>> {
    if raw.contains(':') {
        return Err(Error::user(format!("invalid port format for --expose: {raw}")));
    }
    let (proto, port) = split_proto(raw);
    let (s, e) = parse_range(port).filter(|(s, _)| *s > 0).ok_or_else(|| {
        Error::user(format!(
            "invalid range format for --expose: {raw}, error: Invalid range specified for the Port: {port}"
        ))
    })?;
    let proto: Proto = proto
        .parse()
        .map_err(|_| Error::user(format!("Invalid proto: {proto}")))?;
    Ok((s..=e).map(|port| PortKey { port, proto }).collect())
}

/// `docker port` lines: `5000/tcp -> 0.0.0.0:32768`, sorted by container port.
pub fn port_lines(maps: &[Mapping]) -> Vec<String> {
    let mut m = maps.to_vec();
    m.sort_by(|a, b| {
        a.container
            .cmp(&b.container)
            .then(a.host_ip.cmp(&b.host_ip))
            .then(a.host_port.cmp(&b.host_port))
    });
    m.iter()
        .map(|x| format!("{} -> {}", x.container, x.host_addr()))
        .collect()
}

/// One entry of Docker's `Ports` list of a container: a published port (`ip` set), or an
/// exposed one.
#[derive(Clone, Debug, PartialEq, Eq)]
struct PortSummary {
    ip: String,
    public: u16,
    private: u16,
    proto: &'static str,
}

/// Docker's host:port join (`net.JoinHostPort`).
fn join_host_port(ip: &str, port: &str) -> String {
    if ip.contains(':') {
        format!("[{ip}]:{port}")
    } else {
        format!("{ip}:{port}")
    }
}

/// The PORTS column of `docker ps`, as the Docker CLI's `DisplayablePorts` makes it: entries
/// sorted by container port, host IP, host port, protocol; exposed ports and identity mappings
/// (host port = container port) grouped per protocol (and host IP) into consecutive ranges,
/// the groups in the order they were started; translated mappings listed last, one by one.
pub fn ps_ports(exposed: &[PortKey], maps: &[Mapping]) -> String {
    // The mappings of each container port, found once (a 60,000-port range is 60,000 of them).
    let mut by_port: std::collections::HashMap<PortKey, Vec<&Mapping>> = Default::default();
    for m in maps {
        by_port.entry(m.container).or_default().push(m);
    }
    let mut ports: Vec<PortSummary> = Vec::with_capacity(exposed.len().max(maps.len()));
    for e in exposed {
        let mine = by_port.get(e).map(Vec::as_slice).unwrap_or_default();
        for m in mine {
            ports.push(PortSummary {
                ip: m.host_ip.to_string(),
                public: m.host_port,
                private: e.port,
                proto: e.proto.as_str(),
            });
        }
        if mine.is_empty() {
            ports.push(PortSummary {
                ip: String::new(),
                public: 0,
                private: e.port,
                proto: e.proto.as_str(),
            });
        }
    }
    ports.sort_by(|a, b| {
        a.private
            .cmp(&b.private)
            .then_with(|| a.ip.cmp(&b.ip))
            .then(a.public.cmp(&b.public))
            .then(a.proto.cmp(b.proto))
    });
    let form = |key: &str, first: u16, last: u16| {
        let (ip, proto) = match key.split_once('/') {
            Some((ip, proto)) => (ip, proto),
            None => ("", key),
        };
        let mut g = first.to_string();
        if first != last {
            g = format!("{g}-{last}");
        }
        if !ip.is_empty() {
            g = format!("{}->{g}", join_host_port(ip, &g));
        }
        format!("{g}/{proto}")
    };
    let mut groups: std::collections::HashMap<String, (u16, u16)> = Default::default();
    let mut keys: Vec<String> = Vec::new();
    let mut result: Vec<String> = Vec::new();
    let mut host_mappings: Vec<String> = Vec::new();
    for p in &ports {
        let mut key = p.proto.to_string();
        if !p.ip.is_empty() {
            if p.public != p.private {
                host_mappings.push(format!(
                    "{}->{}/{}",
                    join_host_port(&p.ip, &p.public.to_string()),
                    p.private,
                    p.proto
                ));
                continue;
            }
            key = format!("{}/{}", p.ip, p.proto);
        }
        match groups.get_mut(&key) {
            None => {
                groups.insert(key.clone(), (p.private, p.private));
                keys.push(key);
            }
            Some(g) if g.1.checked_add(1) == Some(p.private) => g.1 = p.private,
            Some(g) => {
                result.push(form(&key, g.0, g.1));
                *g = (p.private, p.private);
            }
        }
    }
    for k in &keys {
        let g = groups[k];
        result.push(form(k, g.0, g.1));
    }
    result.extend(host_mappings);
    result.join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(s: &str) -> String {
        parse_publish(s).unwrap_err().to_string()
    }

    #[test]
    fn docker_error_texts() {
        assert_eq!(err("abc"), "Invalid containerPort: abc");
        assert_eq!(err("0"), "Invalid containerPort: 0");
        assert_eq!(err("8080:0"), "Invalid containerPort: 0");
        assert_eq!(err("70000:80"), "Invalid hostPort: 70000");
        assert_eq!(
            err("1-5:1-3"),
            "Invalid ranges specified for container and host Ports: 1-3 and 1-5"
        );
        assert_eq!(err("80:"), "No port specified: 80:<empty>");
        assert_eq!(err("1.2.3:80:80"), "Invalid ip address: 1.2.3");
        assert_eq!(err("80/xyz"), "Invalid proto: xyz");
        assert_eq!(err("5-3"), "Invalid containerPort: 5-3");
    }

    #[test]
    fn long_publish_syntax() {
        let c = |s: &str| convert_long_publish(s).unwrap();
        assert_eq!(c("published=8080,target=80"), "8080:80/tcp");
        assert_eq!(c("target=53,published=5353,protocol=udp"), "5353:53/udp");
        assert_eq!(c("target=80"), ":80/tcp");
        assert_eq!(
            c("published=8080,target=80,mode=host,host_ip=127.0.0.1"),
            "127.0.0.1:8080:80/tcp"
        );
        assert_eq!(c("published=1,target=2,host_ip=::1"), "[::1]:1:2/tcp");
        assert_eq!(c("8080:80"), "8080:80");
        assert_eq!(
            convert_long_publish("published=8080,80").unwrap_err().to_string(),
            "invalid publish opts format (should be name=value but got '80')"
        );
        let b = parse_publish(&c("target=80,published=8080,protocol=udp")).unwrap();
        assert_eq!(
            (b[0].host_start, b[0].container.port, b[0].container.proto),
            (8080, 80, Proto::Udp)
        );
        assert_eq!(
            parse_publish(&c("published=8080")).unwrap_err().to_string(),
            "No port specified: 8080:/tcp<empty>"
        );
    }

    #[test]
    fn forms() {
        let b = parse_publish("127.0.0.1:80:5000").unwrap();
        assert_eq!(
            b,
            vec![PortBinding {
                container: PortKey {
                    port: 5000,
                    proto: Proto::Tcp
                },
                host_ip: "127.0.0.1".into(),
                host_start: 80,
                host_end: 80
            }]
        );
        let b = parse_publish("127.0.0.1::5000/udp").unwrap();
        assert_eq!((b[0].host_start, b[0].container.proto), (0, Proto::Udp));
        let b = parse_publish("8000-9000:5000").unwrap();
        assert_eq!((b.len(), b[0].host_start, b[0].host_end), (1, 8000, 9000));
        let b = parse_publish("7000-7002:5000-5002/sctp").unwrap();
        assert_eq!(
            b.iter().map(|x| (x.host_start, x.container.port)).collect::<Vec<_>>(),
            vec![(7000, 5000), (7001, 5001), (7002, 5002)]
        );
        let b = parse_publish("[::1]:80:80").unwrap();
        assert_eq!(b[0].host_ip, "::1");
        let b = parse_publish("5000/TCP").unwrap();
        assert_eq!(b[0].container.proto, Proto::Tcp);
    }

    #[test]
    fn ps_column() {
        let tcp = |port| PortKey {
            port,
            proto: Proto::Tcp,
        };
        let m = |h, c| Mapping {
            container: tcp(c),
            host_ip: "0.0.0.0".parse().unwrap(),
            host_port: h,
        };
        assert_eq!(ps_ports(&[tcp(6379)], &[]), "6379/tcp");
        assert_eq!(ps_ports(&[tcp(5000)], &[m(80, 5000)]), "0.0.0.0:80->5000/tcp");
        let ks = |v: &[u16]| v.iter().map(|p| tcp(*p)).collect::<Vec<_>>();
        assert_eq!(
            ps_ports(&ks(&[5000, 5001, 5002]), &[m(5000, 5000), m(5001, 5001), m(5002, 5002)]),
            "0.0.0.0:5000-5002->5000-5002/tcp"
        );
        assert_eq!(
            ps_ports(&ks(&[5000, 5001]), &[m(8000, 5000), m(8005, 5001)]),
            "0.0.0.0:8000->5000/tcp, 0.0.0.0:8005->5001/tcp"
        );
        // The CLI's rule: a run broken by a gap is emitted at once, the open groups after
        // (in the order they were started), translated mappings last.
        let udp = |port| PortKey {
            port,
            proto: Proto::Udp,
        };
        assert_eq!(
            ps_ports(
                &[tcp(80), tcp(81), tcp(82), tcp(90), udp(53), tcp(9988)],
                &[m(8080, 80), m(81, 81), m(82, 82)]
            ),
            "90/tcp, 53/udp, 0.0.0.0:81-82->81-82/tcp, 9988/tcp, 0.0.0.0:8080->80/tcp"
        );
        assert_eq!(ps_ports(&ks(&[1, 2, 4, 5, 7]), &[]), "1-2/tcp, 4-5/tcp, 7/tcp");
        let at = |ip: &str, h, c| Mapping {
            container: tcp(c),
            host_ip: ip.parse().unwrap(),
            host_port: h,
        };
        // By container port, then host IP as a string.
        assert_eq!(
            ps_ports(&ks(&[80]), &[at("127.0.0.1", 80, 80), at("10.0.0.1", 8080, 80)]),
            "127.0.0.1:80->80/tcp, 10.0.0.1:8080->80/tcp"
        );
        assert_eq!(
            port_lines(&[m(32769, 5001), m(32768, 5000)]),
            vec!["5000/tcp -> 0.0.0.0:32768", "5001/tcp -> 0.0.0.0:32769"]
        );
    }
}

/// The ephemeral range (`/proc/sys/net/ipv4/ip_local_port_range`, Docker's default 32768-60999).
pub fn ephemeral_range() -> (u16, u16) {
    std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|s| {
            let mut it = s.split_whitespace().map(|x| x.parse::<u16>().ok());
            Some((it.next()??, it.next()??))
        })
        .filter(|(a, b)| a <= b)
        .unwrap_or((32768, 60999))
}

/// Host ports in use, indexed for O(1) conflict checks (a wildcard address conflicts with
/// every address; a specific one with itself and the wildcard).
#[derive(Default)]
struct InUse {
    wild: std::collections::HashSet<(Proto, u16)>,
    specific: std::collections::HashSet<(Proto, u16, IpAddr)>,
    any_specific: std::collections::HashSet<(Proto, u16)>,
}

impl InUse {
    fn insert(&mut self, m: &Mapping) {
        let k = (m.container.proto, m.host_port);
        if m.host_ip.is_unspecified() {
            self.wild.insert(k);
        } else {
            self.specific.insert((k.0, k.1, m.host_ip));
            self.any_specific.insert(k);
        }
    }

    fn busy(&self, proto: Proto, port: u16, ip: IpAddr) -> bool {
        self.wild.contains(&(proto, port))
            || if ip.is_unspecified() {
                self.any_specific.contains(&(proto, port))
            } else {
                self.specific.contains(&(proto, port, ip))
            }
    }
}

/// Allocates host ports for a container's bindings, given the mappings in use.
///
/// `last` holds the last ephemeral port handed out per protocol (Docker allocates round-robin
/// through the ephemeral range); `host_free(ip, port, proto)` says whether a host process
/// holds the port.
pub fn allocate(
    bindings: &[PortBinding],
    in_use: &[Mapping],
    last: &mut std::collections::BTreeMap<String, u16>,
    range: (u16, u16),
    host_free: &dyn Fn(IpAddr, u16, Proto) -> std::result::Result<(), String>,
) -> Result<Vec<Mapping>> {
    let mut used = InUse::default();
    for m in in_use {
        used.insert(m);
    }
    let mut out = Vec::new();
    for b in bindings {
        let ip: IpAddr = if b.host_ip.is_empty() {
            IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED)
        } else {
            b.host_ip
                .parse()
                .map_err(|_| Error::user(format!("Invalid ip address: {}", b.host_ip)))?
        };
        let proto = b.container.proto;
        let busy = |port: u16, used: &InUse| used.busy(proto, port, ip);
        let port = if b.host_start != 0 && b.host_start == b.host_end {
            let p = b.host_start;
            let shown = std::net::SocketAddr::new(ip, p).to_string();
            if busy(p, &used) {
                return Err(Error::user(format!(
                    "Bind for {shown} failed: port is already allocated"
                )));
            }
            if let Err(why) = host_free(ip, p, proto) {
                // Docker 28's words (its port allocator's bind error).
                return Err(Error::user(format!(
                    "failed to bind host port {shown}/{}: {why}",
                    proto.as_str()
                )));
            }
            p
        } else {
            let (lo, hi) = if b.host_start == 0 {
                range
            } else {
                (b.host_start, b.host_end)
            };
            let key = format!("{}/{}", ip, proto.as_str());
            let n = (hi - lo) as u32 + 1;
            // Round-robin from after the last port handed out in this range.
            let start = match last.get(&key) {
                Some(&l) if b.host_start == 0 && l >= lo && l < hi => l + 1,
                _ => lo,
            };
            let found = (0..n)
                .map(|i| lo + (((start - lo) as u32 + i) % n) as u16)
                .find(|&p| !busy(p, &used) && host_free(ip, p, proto).is_ok());
            match found {
                Some(p) => {
                    if b.host_start == 0 {
                        last.insert(key, p);
                    }
                    p
                }
                None => {
                    return Err(Error::user(format!(
                        "Bind for {ip}:{}-{} failed: port is already allocated",
                        lo, hi
                    )));
                }
            }
        };
        let m = Mapping {
            container: b.container,
            host_ip: ip,
            host_port: port,
        };
        used.insert(&m);
        out.push(m);
    }
    Ok(out)
}

#[cfg(test)]
mod range_tests {
    use super::*;

    #[derive(Serialize, Deserialize, PartialEq, Debug)]
    struct W {
        #[serde(with = "ranges")]
        m: Vec<Mapping>,
    }

    #[test]
    fn mappings_are_stored_as_ranges() {
        let m = |c: u16, h: u16, p: Proto, ip: &str| Mapping {
            container: PortKey { port: c, proto: p },
            host_ip: ip.parse().unwrap(),
            host_port: h,
        };
        let mut v: Vec<Mapping> = (0..10_000)
            .map(|i| m(5000 + i, 20000 + i, Proto::Tcp, "0.0.0.0"))
            .collect();
        v.push(m(53, 5353, Proto::Udp, "0.0.0.0"));
        v.push(m(80, 8080, Proto::Tcp, "127.0.0.1"));
        let w = W { m: v };
        let json = serde_json::to_string(&w).unwrap();
        assert!(json.len() < 400, "{json}");
        assert_eq!(serde_json::from_str::<W>(&json).unwrap(), w);
        assert!(
            serde_json::from_str::<W>(
                r#"{"m":[{"proto":"tcp","container_port":65535,"host_ip":"0.0.0.0","host_port":1,"count":2}]}"#
            )
            .is_err()
        );
    }

    #[derive(Serialize, Deserialize, PartialEq, Debug)]
    struct Spec {
        #[serde(with = "key_ranges")]
        exposed: Vec<PortKey>,
        #[serde(with = "binding_ranges")]
        bindings: Vec<PortBinding>,
    }

    #[test]
    fn exposed_ports_and_bindings_are_stored_as_runs() {
        let mut bindings = parse_publish("1024-61023:1024-61023/sctp").unwrap();
        bindings.extend(parse_publish("127.0.0.1:8000-8100:80").unwrap());
        bindings.extend(parse_publish("81-82").unwrap());
        bindings.extend(parse_publish("9000-9001:90-91/udp").unwrap());
        let mut exposed: Vec<PortKey> = bindings.iter().map(|b| b.container).collect();
        exposed.push(PortKey {
            port: 1025,
            proto: Proto::Tcp,
        });
        let w = Spec { exposed, bindings };
        let json = serde_json::to_string(&w).unwrap();
        // 60,000 ports of one range are one run, not 60,000 objects.
        assert!(json.len() < 800, "{} bytes: {json}", json.len());
        assert_eq!(serde_json::from_str::<Spec>(&json).unwrap(), w);
        // A record written one object per port reads the same.
        let old = r#"{"exposed":[{"port":80,"proto":"tcp"},{"port":81,"proto":"tcp"}],
            "bindings":[{"container":{"port":80,"proto":"tcp"},"host_ip":"","host_start":0,"host_end":0}]}"#;
        let o = serde_json::from_str::<Spec>(old).unwrap();
        assert_eq!(o.exposed.len(), 2);
        assert_eq!(o.bindings, parse_publish("80").unwrap());
        for bad in [
            r#"{"exposed":[{"port":65535,"proto":"tcp","count":2}],"bindings":[]}"#,
            r#"{"exposed":[{"port":1,"proto":"tcp","count":0}],"bindings":[]}"#,
            r#"{"exposed":[],"bindings":[{"container":{"port":1,"proto":"tcp"},"host_ip":"","host_start":65535,"host_end":65535,"count":2}]}"#,
            r#"{"exposed":[],"bindings":[{"container":{"port":1,"proto":"tcp"},"host_ip":"","host_start":9,"host_end":8}]}"#,
        ] {
            assert!(serde_json::from_str::<Spec>(bad).is_err(), "{bad}");
        }
    }
}

#[cfg(test)]
mod alloc_tests {
    use super::*;

    fn alloc(
        spec: &str,
        in_use: &[Mapping],
        last: &mut std::collections::BTreeMap<String, u16>,
    ) -> Result<Vec<Mapping>> {
        allocate(
            &parse_publish(spec).unwrap(),
            in_use,
            last,
            (32768, 60999),
            &|ip, p, _| match (ip.to_string().as_str(), p) {
                (_, 9999) => Err("address already in use".into()),
                ("10.9.9.9", _) => Err("cannot assign requested address".into()),
                _ => Ok(()),
            },
        )
    }

    #[test]
    fn allocation_rules() {
        let mut last = Default::default();
        let a = alloc("8000-9000:5000", &[], &mut last).unwrap();
        assert_eq!(a[0].host_port, 8000);
        let b = alloc("8000-9000:5000", &a, &mut last).unwrap();
        assert_eq!(b[0].host_port, 8001);
        let e1 = alloc("5000", &[], &mut last).unwrap();
        let e2 = alloc("5000", &[], &mut last).unwrap();
        assert_eq!((e1[0].host_port, e2[0].host_port), (32768, 32769));
        let f = alloc("8088:80", &[], &mut last).unwrap();
        assert_eq!(
            alloc("8088:80", &f, &mut last).unwrap_err().to_string(),
            "Bind for 0.0.0.0:8088 failed: port is already allocated"
        );
        // Another address, or another protocol, does not conflict with a specific IP.
        let l = alloc("127.0.0.1:7000:80", &[], &mut last).unwrap();
        assert!(alloc("127.0.0.2:7000:80", &l, &mut last).is_ok());
        assert!(alloc("7000:80/udp", &l, &mut last).is_ok());
        assert!(alloc("7000:80", &l, &mut last).is_err());
        assert_eq!(
            alloc("9999:80", &[], &mut last).unwrap_err().to_string(),
            "failed to bind host port 0.0.0.0:9999/tcp: address already in use"
        );
        assert_eq!(
            alloc("10.9.9.9:8080:80/udp", &[], &mut last).unwrap_err().to_string(),
            "failed to bind host port 10.9.9.9:8080/udp: cannot assign requested address"
        );
    }
}
