//! Loading, pinning and attaching the eBPF datapath.
//!
//! linkrt is daemonless: maps are pinned under `<bpffs>/maps` and TCX links under
//! `<bpffs>/links`, so the datapath keeps running after the CLI exits.
use std::{
    fs, io,
    path::{Path, PathBuf},
};

use aya::{
    Ebpf, EbpfLoader,
    maps::{Array, Map, MapData, PerCpuArray},
    programs::{
        CgroupAttachMode, CgroupSockAddr, LinkOrder, SchedClassifier, TcAttachType,
        links::{FdLink, LinkError, PinnedLink},
        tc::TcAttachOptions,
    },
};
use linkrt_common::{
    Counter, maps,
    nat::{Backend, CtKey, CtVal, PortKey},
    policy::{Endpoint, PolicyKey},
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

fn is_bpffs(dir: &Path) -> Result<bool> {
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

    fn attach_type(self) -> TcAttachType {
        match self {
            Hook::Ingress => TcAttachType::Ingress,
            Hook::Egress => TcAttachType::Egress,
        }
    }

    fn suffix(self) -> &'static str {
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

const PROGRAMS: [&str; 4] = [
    maps::PROG_FROM_CONTAINER,
    maps::PROG_TO_CONTAINER,
    maps::PROG_UPLINK_IN,
    maps::PROG_UPLINK_OUT,
];

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
            crate::state::create_private_dir(&d)?;
        }
        let mut ebpf = EbpfLoader::new().default_map_pin_directory(cfg.maps_dir()).load(obj)?;
        for name in PROGRAMS {
            prog(&mut ebpf, name)?
                .load()
                .map_err(|source| Error::Program { name, source })?;
        }
        for name in SOCK_PROGRAMS {
            sock_prog(&mut ebpf, name)?
                .load()
                .map_err(|source| Error::Program { name, source })?;
        }
        Ok(Datapath { ebpf, cfg: cfg.clone() })
    }

    /// Attaches the programs of `role` to `ifname` (in the calling thread's netns) with TCX,
    /// pinning the links. An existing pinned link is updated in place (atomic replacement).
    pub fn attach(&mut self, ifname: &str, role: Role) -> Result<()> {
        for hook in Hook::ALL {
            let pin = link_pin(&self.cfg, ifname, hook);
            let name = role.program(hook);
            let p = prog(&mut self.ebpf, name)?;
            let perr = |source| Error::Program { name, source };
            let id = if pin.exists() {
                let old = PinnedLink::from_pin(&pin)
                    .map_err(|e| Error::sys(format!("opening pinned link {}: {e}", pin.display())))?;
                let link = FdLink::from(old)
                    .try_into()
                    .map_err(|e: LinkError| Error::sys(e.to_string()))?;
                p.attach_to_link(link).map_err(perr)?
            } else {
                p.attach_with_options(
                    ifname,
                    hook.attach_type(),
                    TcAttachOptions::TcxOrder(LinkOrder::default()),
                )
                .map_err(perr)?
            };
            let link = p.take_link(id).map_err(perr)?;
            let fd: FdLink = link.try_into().map_err(|e: LinkError| Error::sys(e.to_string()))?;
            // Re-pinning an updated link: the old pin file still names the same link.
            let _ = fs::remove_file(&pin);
            fd.pin(&pin).map_err(|source| Error::Pin {
                path: pin.clone(),
                source,
            })?;
        }
        Ok(())
    }
}

/// bpffs forbids dots in names, hence `<ifname>_in` / `<ifname>_out`.
fn link_pin(cfg: &Config, ifname: &str, hook: Hook) -> PathBuf {
    cfg.links_dir().join(format!("{ifname}_{}", hook.suffix()))
}

const SOCK_PROGRAMS: [&str; 3] = [maps::PROG_CONNECT4, maps::PROG_SENDMSG4, maps::PROG_RECVMSG4];

fn sock_prog<'a>(ebpf: &'a mut Ebpf, name: &'static str) -> Result<&'a mut CgroupSockAddr> {
    let p = ebpf
        .program_mut(name)
        .ok_or_else(|| Error::sys(format!("program {name} missing from the eBPF object")))?;
    p.try_into().map_err(|source| Error::Program { name, source })
}

/// The network namespace cookie of the calling thread's namespace.
pub fn netns_cookie() -> Result<u64> {
    use std::os::fd::AsRawFd;
    let sock =
        std::net::UdpSocket::bind("127.0.0.1:0").map_err(|e| Error::io("creating a socket in", "the host netns", e))?;
    let mut cookie: u64 = 0;
    let mut len = std::mem::size_of::<u64>() as libc::socklen_t;
    // SAFETY: SO_NETNS_COOKIE (71) writes a u64.
    let r = unsafe {
        libc::getsockopt(
            sock.as_raw_fd(),
            libc::SOL_SOCKET,
            71,
            (&mut cookie as *mut u64).cast(),
            &mut len,
        )
    };
    if r != 0 {
        return Err(Error::sys(format!("SO_NETNS_COOKIE: {}", io::Error::last_os_error())));
    }
    Ok(cookie)
}

impl Datapath {
    /// Attaches the socket hooks (host-local access to published ports) to `cgroup`, once, and
    /// scopes them to the calling thread's network namespace.
    pub fn attach_cgroup(&mut self, cgroup: &Path) -> Result<()> {
        let mut cfg_map: Array<&mut MapData, u64> = Array::try_from(
            self.ebpf
                .map_mut(maps::CONFIG)
                .ok_or_else(|| Error::sys("CONFIG map missing"))?,
        )
        .map_err(|source| Error::Map {
            name: maps::CONFIG,
            source,
        })?;
        cfg_map
            .set(linkrt_common::nat::CONFIG_NETNS_COOKIE, netns_cookie()?, 0)
            .map_err(|source| Error::Map {
                name: maps::CONFIG,
                source,
            })?;
        let dir = fs::File::open(cgroup).map_err(|e| Error::io("opening cgroup", cgroup, e))?;
        for name in SOCK_PROGRAMS {
            let pin = self.cfg.links_dir().join(format!("cgroup_{name}"));
            if pin.exists() {
                continue;
            }
            let p = sock_prog(&mut self.ebpf, name)?;
            let perr = |source| Error::Program { name, source };
            // A bpf_link (kernel >= 5.7) always coexists with other programs on the cgroup.
            let id = p.attach(&dir, CgroupAttachMode::Single).map_err(perr)?;
            let link = p.take_link(id).map_err(perr)?;
            let fd: FdLink = link.try_into().map_err(|e: LinkError| Error::sys(e.to_string()))?;
            fd.pin(&pin).map_err(|source| Error::Pin {
                path: pin.clone(),
                source,
            })?;
        }
        Ok(())
    }
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
        .filter_map(|e| {
            e.file_name()
                .to_str()
                .and_then(|n| n.strip_suffix("_in"))
                .map(str::to_owned)
        })
        .filter(|n| !n.starts_with("cgroup_"))
        .collect();
    v.sort();
    v
}

fn prog<'a>(ebpf: &'a mut Ebpf, name: &'static str) -> Result<&'a mut SchedClassifier> {
    let p = ebpf
        .program_mut(name)
        .ok_or_else(|| Error::sys(format!("program {name} missing from the eBPF object")))?;
    p.try_into().map_err(|source| Error::Program { name, source })
}

/// Reads the datapath counters from the pinned map (summed over CPUs).
pub fn stats(cfg: &Config) -> Result<Vec<(&'static str, u64)>> {
    let path = cfg.maps_dir().join(maps::STATS);
    let data = MapData::from_pin(&path).map_err(|source| Error::Map {
        name: maps::STATS,
        source,
    })?;
    let arr: PerCpuArray<MapData, u64> =
        PerCpuArray::try_from(Map::PerCpuArray(data)).map_err(|source| Error::Map {
            name: maps::STATS,
            source,
        })?;
    Counter::ALL
        .iter()
        .map(|c| {
            let v = arr.get(&(*c as u32), 0).map_err(|source| Error::Map {
                name: maps::STATS,
                source,
            })?;
            Ok((c.name(), v.iter().sum()))
        })
        .collect()
}

fn pinned_hash<K: aya::Pod, V: aya::Pod>(
    cfg: &Config,
    name: &'static str,
) -> Result<aya::maps::HashMap<MapData, K, V>> {
    let path = cfg.maps_dir().join(name);
    let data = MapData::from_pin(&path).map_err(|source| Error::Map { name, source })?;
    let map = match name {
        maps::CT | maps::POLICY_CT => Map::LruHashMap(data),
        _ => Map::HashMap(data),
    };
    aya::maps::HashMap::try_from(map).map_err(|source| Error::Map { name, source })
}

fn ip_be(ip: &str) -> Result<u32> {
    let a: std::net::Ipv4Addr = ip
        .parse()
        .map_err(|_| Error::sys(format!("not an IPv4 address: {ip}")))?;
    Ok(u32::from_ne_bytes(a.octets()))
}

fn port_key(m: &crate::ports::Mapping) -> Result<PortKey> {
    let ip = if m.host_ip == "0.0.0.0" { 0 } else { ip_be(&m.host_ip)? };
    Ok(PortKey {
        ip,
        port: m.host_port.to_be(),
        proto: m.container.proto.number(),
        _pad: 0,
    })
}

/// Publishes `maps` to the container at `ip` (entries in the pinned `PORTMAP`).
/// IPv6 host addresses are not supported by the datapath yet and are refused.
pub fn publish(cfg: &Config, mappings: &[crate::ports::Mapping], ip: &str) -> Result<()> {
    let mut pm = pinned_hash::<PortKey, Backend>(cfg, maps::PORTMAP)?;
    let backend_ip = ip_be(ip)?;
    for m in mappings {
        let key = port_key(m)?;
        let val = Backend {
            ip: backend_ip,
            port: m.container.port.to_be(),
            _pad: 0,
        };
        pm.insert(key, val, 0).map_err(|source| Error::Map {
            name: maps::PORTMAP,
            source,
        })?;
    }
    Ok(())
}

/// Removes the mappings of a container and every tracked flow to or from `ip`, so that no
/// stale flow (UDP in particular) survives the mapping.
pub fn unpublish(cfg: &Config, mappings: &[crate::ports::Mapping], ip: Option<&str>) -> Result<()> {
    let mut pm = pinned_hash::<PortKey, Backend>(cfg, maps::PORTMAP)?;
    for m in mappings {
        let key = port_key(m)?;
        match pm.remove(&key) {
            Ok(()) | Err(aya::maps::MapError::KeyNotFound) => {}
            Err(source) => {
                return Err(Error::Map {
                    name: maps::PORTMAP,
                    source,
                });
            }
        }
    }
    if let Some(ip) = ip {
        let ip = ip_be(ip)?;
        let mut ct = pinned_hash::<CtKey, CtVal>(cfg, maps::CT)?;
        let stale: Vec<CtKey> = ct
            .keys()
            .filter_map(|k| k.ok())
            .filter(|k| k.saddr == ip || k.daddr == ip)
            .collect();
        for k in stale {
            let _ = ct.remove(&k);
        }
    }
    Ok(())
}

/// Replaces the set of the host's own addresses (for 0.0.0.0 mappings).
pub fn set_local_addrs(cfg: &Config, addrs: &[std::net::Ipv4Addr]) -> Result<()> {
    let mut la = pinned_hash::<u32, u32>(cfg, maps::LOCAL_ADDRS)?;
    let want: Vec<u32> = addrs.iter().map(|a| u32::from_ne_bytes(a.octets())).collect();
    let old: Vec<u32> = la.keys().filter_map(|k| k.ok()).collect();
    for k in old.iter().filter(|k| !want.contains(k)) {
        let _ = la.remove(k);
    }
    for k in want {
        la.insert(k, 1, 0).map_err(|source| Error::Map {
            name: maps::LOCAL_ADDRS,
            source,
        })?;
    }
    Ok(())
}

/// Number of entries of a pinned hash map (for `linkrt status`).
pub fn map_len(cfg: &Config, name: &'static str) -> Result<usize> {
    Ok(match name {
        maps::CT => pinned_hash::<CtKey, CtVal>(cfg, name)?.keys().count(),
        maps::POLICY_CT => pinned_hash::<CtKey, u32>(cfg, name)?.keys().count(),
        maps::PORTMAP => pinned_hash::<PortKey, Backend>(cfg, name)?.keys().count(),
        maps::POLICY => pinned_hash::<PolicyKey, u32>(cfg, name)?.keys().count(),
        maps::ENDPOINTS => pinned_hash::<u32, Endpoint>(cfg, name)?.keys().count(),
        _ => pinned_hash::<u32, u32>(cfg, name)?.keys().count(),
    })
}

/// What the link policy looks like for the current set of running containers.
#[derive(Debug, Default)]
pub struct PolicyState {
    /// Container veths: (host-side ifindex, IPv4, MAC).
    pub endpoints: Vec<(u32, std::net::Ipv4Addr, [u8; 6])>,
    /// Allowed flows: (recipient, source, port, protocol number); port 0 + proto 1 = ping.
    pub allow: Vec<(std::net::Ipv4Addr, std::net::Ipv4Addr, u16, u8)>,
    /// Inter-container communication unrestricted (Docker's `--icc=true`).
    pub icc: bool,
}

fn sync_hash<K: aya::Pod + PartialEq, V: aya::Pod>(cfg: &Config, name: &'static str, want: &[(K, V)]) -> Result<()> {
    let mut m = pinned_hash::<K, V>(cfg, name)?;
    let old: Vec<K> = m.keys().filter_map(|k| k.ok()).collect();
    for k in old.iter().filter(|k| !want.iter().any(|(w, _)| w == *k)) {
        let _ = m.remove(k);
    }
    for (k, v) in want {
        m.insert(k, v, 0).map_err(|source| Error::Map { name, source })?;
    }
    Ok(())
}

/// Makes the datapath's policy maps match `st`, and forgets tracked flows of addresses that
/// no running container holds any more (so a reused IP inherits nothing).
pub fn sync_policy(cfg: &Config, st: &PolicyState) -> Result<()> {
    let be = |a: &std::net::Ipv4Addr| u32::from_ne_bytes(a.octets());
    let eps: Vec<(u32, Endpoint)> = st
        .endpoints
        .iter()
        .map(|(i, ip, mac)| {
            (
                *i,
                Endpoint {
                    ip: be(ip),
                    mac: *mac,
                    _pad: [0; 2],
                },
            )
        })
        .collect();
    let ips: Vec<(u32, u32)> = st.endpoints.iter().map(|(i, ip, _)| (be(ip), *i)).collect();
    let pol: Vec<(PolicyKey, u32)> = st
        .allow
        .iter()
        .map(|(r, s, port, proto)| {
            (
                PolicyKey {
                    saddr: be(r),
                    daddr: be(s),
                    dport: port.to_be(),
                    proto: *proto,
                    _pad: 0,
                },
                1,
            )
        })
        .collect();
    sync_hash(cfg, maps::ENDPOINTS, &eps)?;
    sync_hash(cfg, maps::CONTAINER_IPS, &ips)?;
    sync_hash(cfg, maps::POLICY, &pol)?;
    let live: Vec<u32> = ips.iter().map(|(ip, _)| *ip).collect();
    let mut pct = pinned_hash::<CtKey, u32>(cfg, maps::POLICY_CT)?;
    let stale: Vec<CtKey> = pct
        .keys()
        .filter_map(|k| k.ok())
        .filter(|k| !live.contains(&k.saddr) || !live.contains(&k.daddr))
        .collect();
    for k in stale {
        let _ = pct.remove(&k);
    }
    let path = cfg.maps_dir().join(maps::CONFIG);
    let data = MapData::from_pin(&path).map_err(|source| Error::Map {
        name: maps::CONFIG,
        source,
    })?;
    let mut arr: Array<MapData, u64> = Array::try_from(Map::Array(data)).map_err(|source| Error::Map {
        name: maps::CONFIG,
        source,
    })?;
    arr.set(linkrt_common::policy::CONFIG_ICC, st.icc as u64, 0)
        .map_err(|source| Error::Map {
            name: maps::CONFIG,
            source,
        })
}

/// A reader of the datapath's event ring buffer (pinned, so it works from any CLI call).
pub struct EventReader {
    ring: aya::maps::RingBuf<MapData>,
}

/// A decoded datapath event.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DatapathEvent {
    /// `drop` or `nat`.
    pub kind: &'static str,
    /// For drops: the reason (counter name).
    pub reason: &'static str,
    pub proto: u8,
    pub src: std::net::SocketAddrV4,
    pub dst: std::net::SocketAddrV4,
    /// For NAT: the container the flow goes to.
    pub to: Option<std::net::SocketAddrV4>,
}

impl std::fmt::Display for DatapathEvent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let proto = match self.proto {
            1 => "icmp".to_string(),
            6 => "tcp".into(),
            17 => "udp".into(),
            132 => "sctp".into(),
            n => format!("proto-{n}"),
        };
        match (self.kind, self.to) {
            ("nat", Some(to)) => write!(f, "nat   {proto} {} -> {} => {to}", self.src, self.dst),
            _ => write!(f, "drop  ({}) {proto} {} -> {}", self.reason, self.src, self.dst),
        }
    }
}

impl EventReader {
    pub fn open(cfg: &Config) -> Result<Self> {
        let path = cfg.maps_dir().join(maps::EVENTS);
        let data = MapData::from_pin(&path).map_err(|source| Error::Map {
            name: maps::EVENTS,
            source,
        })?;
        let ring = aya::maps::RingBuf::try_from(Map::RingBuf(data)).map_err(|source| Error::Map {
            name: maps::EVENTS,
            source,
        })?;
        Ok(EventReader { ring })
    }

    /// Waits up to `timeout` for events and returns those available.
    pub fn next_events(&mut self, timeout: std::time::Duration) -> Vec<DatapathEvent> {
        use std::os::fd::AsRawFd;
        let mut pfd = libc::pollfd {
            fd: self.ring.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd.
        unsafe { libc::poll(&mut pfd, 1, timeout.as_millis().min(i32::MAX as u128) as i32) };
        let mut out = Vec::new();
        while let Some(item) = self.ring.next() {
            if item.len() < std::mem::size_of::<linkrt_common::Event>() {
                continue;
            }
            // SAFETY: the eBPF side writes whole `Event`s; read unaligned.
            let ev: linkrt_common::Event = unsafe { std::ptr::read_unaligned(item.as_ptr().cast()) };
            let ip = |a: u32| std::net::Ipv4Addr::from(a.to_ne_bytes());
            let sa = |a: u32, p: u16| std::net::SocketAddrV4::new(ip(a), u16::from_be(p));
            out.push(DatapathEvent {
                kind: if ev.kind == linkrt_common::EVENT_NAT {
                    "nat"
                } else {
                    "drop"
                },
                reason: Counter::from_index(ev.reason as u32)
                    .map(|c| c.name())
                    .unwrap_or("unknown"),
                proto: ev.proto,
                src: sa(ev.saddr, ev.sport),
                dst: sa(ev.daddr, ev.dport),
                to: (ev.kind == linkrt_common::EVENT_NAT).then(|| sa(ev.nat_addr, ev.nat_port)),
            });
        }
        out
    }
}
