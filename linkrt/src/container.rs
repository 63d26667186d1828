//! Container lifecycle: create, start, stop, remove, and the repair of interrupted commands.
//!
//! Every function that changes state expects the caller to hold [`state::Lock`], except the
//! waiting parts of `stop`/`rm -f`, which release it while the supervisor cleans up.
use std::{
    collections::BTreeMap,
    fs::{self, OpenOptions},
    io::Write,
    net::{Ipv4Addr, SocketAddr, TcpListener, UdpSocket},
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use rand::RngCore;

use crate::{
    bpf,
    config::Config,
    error::{Error, Result},
    image::{self, Image},
    init::{ImageFile, RootFs},
    links, names, network,
    ports::{self, Mapping, PortKey},
    state::{self, Container, Link, Lock, Spec, State, Status, Store},
};

pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Everything `linkrt run`/`create` accepts.
#[derive(Clone, Debug, Default)]
pub struct CreateOptions {
    pub name: Option<String>,
    pub image: String,
    pub cmd: Vec<String>,
    /// `-e`/`--env` values as given.
    pub env: Vec<String>,
    pub env_files: Vec<PathBuf>,
    pub expose: Vec<String>,
    pub publish: Vec<String>,
    pub publish_all: bool,
    pub links: Vec<String>,
    pub hostname: Option<String>,
    pub tty: bool,
    pub interactive: bool,
    pub auto_remove: bool,
    pub rootfs: Option<PathBuf>,
    pub workdir: Option<String>,
}

/// Parses `--env-file` content (Docker's rules: `#` comments and blank lines skipped,
/// `KEY` alone is taken from our environment, no whitespace in keys).
pub fn parse_env_file(path: &Path) -> Result<Vec<String>> {
    let text = fs::read(path).map_err(|e| {
        Error::user(format!(
            "open {}: {}",
            path.display(),
            e.to_string().split(" (os error").next().unwrap_or("").to_lowercase()
        ))
    })?;
    let text = String::from_utf8(text)
        .map_err(|_| Error::user(format!("env file {} contains invalid utf8 bytes", path.display())))?;
    let mut out = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim_start();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (key, val) = match line.split_once('=') {
            Some((k, v)) => (k, Some(v)),
            None => (line, None),
        };
        if key.is_empty() {
            return Err(Error::user(format!("no variable name on line '{line}'")));
        }
        if key.contains(char::is_whitespace) {
            return Err(Error::user(format!(
                "variable '{}' contains whitespaces",
                key.trim_end()
            )))
            .map_err(|e: Error| Error::user(format!("poorly formatted environment: {e} (line {})", n + 1)));
        }
        match val {
            Some(v) => out.push(format!("{key}={v}")),
            None => {
                if let Ok(v) = std::env::var(key) {
                    out.push(format!("{key}={v}"));
                }
            }
        }
    }
    Ok(out)
}

/// Parses `-e` values: `KEY=VALUE`, or `KEY` taken from our environment (dropped if unset).
pub fn parse_env_opt(raw: &str) -> Result<Option<String>> {
    match raw.split_once('=') {
        Some(("", _)) => Err(Error::user(format!("invalid environment variable: {raw}"))),
        Some(_) => Ok(Some(raw.to_string())),
        None if raw.is_empty() => Err(Error::user("invalid environment variable: ")),
        None => Ok(std::env::var(raw).ok().map(|v| format!("{raw}={v}"))),
    }
}

fn new_id() -> String {
    let mut b = [0u8; 32];
    rand::thread_rng().fill_bytes(&mut b);
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// Validates everything and writes the container record (status `Created`).
pub fn create(store: &Store, opts: &CreateOptions) -> Result<Container> {
    let img: Image = image::find(&opts.image)?;
    img.check_requirements()?;
    if let Some(r) = &opts.rootfs
        && !r.is_dir()
    {
        return Err(Error::user(format!(
            "invalid --rootfs {}: not a directory",
            r.display()
        )));
    }
    let all = store.all()?;
    let name = match &opts.name {
        Some(n) => {
            let n = names::validate(n)?;
            if let Some(c) = all.iter().find(|c| c.name == n) {
                return Err(Error::user(format!(
                    "Conflict. The container name \"/{n}\" is already in use by container \"{}\". You have to remove (or rename) that container to be able to reuse that name.",
                    c.id
                )));
            }
            n
        }
        None => names::generate(|n| all.iter().any(|c| c.name == n)),
    };
    // Environment: image ENV, then --env-file, then -e (Docker's order), last one wins.
    let mut env = img.env.clone();
    let mut user_env = Vec::new();
    for f in &opts.env_files {
        user_env.extend(parse_env_file(f)?);
    }
    for e in &opts.env {
        user_env.extend(parse_env_opt(e)?);
    }
    links::merge_env(&mut env, &user_env);

    let mut exposed: Vec<PortKey> = img.exposed()?;
    for e in &opts.expose {
        exposed.extend(ports::parse_expose(e)?);
    }
    let mut bindings = Vec::new();
    for p in &opts.publish {
        bindings.extend(ports::parse_publish(p)?);
    }
    exposed.extend(bindings.iter().map(|b| b.container));
    exposed.sort();
    exposed.dedup();

    let mut link_list: Vec<Link> = Vec::new();
    for l in &opts.links {
        let (src, alias) = links::parse_link(l)?;
        let source = state::find_in(&all, &src)
            .map_err(|_| Error::user(format!("could not get container for {src}: No such container: {src}")))?;
        if !source.state.status.eq(&Status::Running) {
            return Err(Error::user(format!(
                "Cannot link to a non running container: /{} AS /{name}/{alias}",
                source.name
            )));
        }
        link_list.retain(|x| x.alias != alias);
        link_list.push(Link {
            source_id: source.id.clone(),
            alias,
        });
    }

    let id = new_id();
    let hostname = opts.hostname.clone().unwrap_or_else(|| id[..12].to_string());
    let mut cmd = if opts.cmd.is_empty() {
        img.cmd.clone()
    } else {
        opts.cmd.clone()
    };
    if cmd.is_empty() {
        cmd = vec!["/bin/sh".into()];
    }
    let c = Container {
        id,
        name,
        created: state::now_rfc3339(),
        spec: Spec {
            image: opts.image.clone(),
            cmd,
            workdir: opts.workdir.clone().unwrap_or(img.workdir.clone()),
            env,
            exposed,
            port_bindings: bindings,
            publish_all: opts.publish_all,
            links: link_list,
            hostname,
            tty: opts.tty,
            interactive: opts.interactive,
            auto_remove: opts.auto_remove,
            rootfs: opts.rootfs.clone(),
        },
        state: State::default(),
        restart_count: 0,
    };
    store.save(&c)?;
    state::failpoint("create");
    Ok(c)
}

/// `HostConfig.Links` entries: `/db:/web/db`.
pub fn link_strings(c: &Container, all: &[Container]) -> Vec<String> {
    c.spec
        .links
        .iter()
        .filter_map(|l| {
            all.iter()
                .find(|s| s.id == l.source_id)
                .map(|s| format!("/{}:/{}/{}", s.name, c.name, l.alias))
        })
        .collect()
}

/// The environment of a process in `c` (PID 1 or `exec`), with link variables computed from
/// the sources' current state, in Docker's order.
pub fn process_env(c: &Container, all: &[Container], tty: bool) -> Vec<String> {
    let mut env = vec![format!("PATH={DEFAULT_PATH}"), format!("HOSTNAME={}", c.spec.hostname)];
    if tty {
        env.push("TERM=xterm".into());
    }
    for l in &c.spec.links {
        if let Some(src) = all.iter().find(|s| s.id == l.source_id) {
            let ip = src
                .state
                .ip
                .clone()
                .or_else(|| c.state.link_ips.get(&src.id).cloned())
                .unwrap_or_default();
            env.extend(links::env_vars(
                &c.name,
                &l.alias,
                &ip,
                &src.spec.env,
                &src.spec.exposed,
            ));
        }
    }
    links::merge_env(&mut env, &c.spec.env);
    if !env.iter().any(|e| e.starts_with("HOME=")) {
        env.push("HOME=/root".into());
    }
    env
}

/// The recipient's /etc/hosts from its links' last known IPs.
fn render_hosts(c: &Container, all: &[Container]) -> String {
    let mut entries = Vec::new();
    for l in &c.spec.links {
        if let (Some(src), Some(ip)) = (
            all.iter().find(|s| s.id == l.source_id),
            c.state.link_ips.get(&l.source_id),
        ) {
            entries.push((ip.clone(), l.alias.clone(), src.spec.hostname.clone(), src.name.clone()));
        }
    }
    let hl: Vec<links::HostsLink<'_>> = entries
        .iter()
        .map(|(ip, alias, sid, name)| links::HostsLink {
            ip,
            alias,
            short_id: sid,
            name,
        })
        .collect();
    links::hosts_file(&hl, c.state.ip.as_deref(), &c.spec.hostname)
}

/// Rewrites a file in place (same inode), so that a bind mount of it sees the new content.
fn rewrite_in_place(path: &Path, content: &str) -> Result<()> {
    let mut f = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .open(path)
        .map_err(|e| Error::io("opening", path, e))?;
    f.write_all(content.as_bytes())
        .map_err(|e| Error::io("writing", path, e))
}

fn resolv_conf() -> String {
    let host = fs::read_to_string("/etc/resolv.conf").unwrap_or_default();
    let mut out = String::new();
    let mut ns = 0;
    for line in host.lines() {
        let l = line.trim();
        if let Some(addr) = l.strip_prefix("nameserver") {
            let a = addr.trim();
            if a.starts_with("127.") || a == "::1" {
                continue;
            }
            ns += 1;
        }
        if l.starts_with("nameserver") || l.starts_with("search") || l.starts_with("options") {
            out.push_str(l);
            out.push('\n');
        }
    }
    if ns == 0 {
        out.push_str("nameserver 8.8.8.8\nnameserver 8.8.4.4\n");
    }
    out
}

/// Whether a host process could bind `ip:port` (so it is not already held).
fn host_port_free(ip: &str, port: u16, proto: ports::Proto) -> bool {
    let Ok(addr) = ip.parse::<std::net::IpAddr>() else {
        return false;
    };
    let sa = SocketAddr::new(addr, port);
    match proto {
        ports::Proto::Tcp => TcpListener::bind(sa).is_ok(),
        ports::Proto::Udp => UdpSocket::bind(sa).is_ok(),
        ports::Proto::Sctp => true,
    }
}

fn ports_state_path(cfg: &Config) -> PathBuf {
    cfg.root.join("ports.v1.json")
}

/// Allocates the host ports of `c` against every running container's mappings.
fn allocate_ports(cfg: &Config, c: &Container, all: &[Container]) -> Result<Vec<Mapping>> {
    let mut bindings = c.spec.port_bindings.clone();
    if c.spec.publish_all {
        for e in &c.spec.exposed {
            if !bindings.iter().any(|b| b.container == *e) {
                bindings.push(ports::PortBinding {
                    container: *e,
                    host_ip: String::new(),
                    host_start: 0,
                    host_end: 0,
                });
            }
        }
    }
    if bindings.is_empty() {
        return Ok(Vec::new());
    }
    let in_use: Vec<Mapping> = all
        .iter()
        .filter(|o| o.id != c.id && o.state.status == Status::Running)
        .flat_map(|o| o.state.ports.clone())
        .collect();
    let path = ports_state_path(cfg);
    let mut last: BTreeMap<String, u16> = fs::read(&path)
        .ok()
        .and_then(|d| serde_json::from_slice(&d).ok())
        .unwrap_or_default();
    let maps = ports::allocate(&bindings, &in_use, &mut last, ports::ephemeral_range(), &host_port_free)?;
    for m in &maps {
        if m.container.proto == ports::Proto::Sctp && m.host_port != m.container.port {
            return Err(Error::user(format!(
                "SCTP port translation is not supported ({}:{} -> {}): the SCTP checksum (CRC32c) covers the ports; publish SCTP with equal host and container ports, e.g. -p {}:{}/sctp",
                m.host_ip, m.host_port, m.container, m.container.port, m.container.port
            )));
        }
        if m.host_ip.contains(':') {
            return Err(Error::user(format!(
                "IPv6 host addresses are not supported by the linkrt datapath yet: {}",
                m.host_addr()
            )));
        }
    }
    state::write_atomic(&path, &serde_json::to_vec(&last).expect("serializable"))?;
    Ok(maps)
}

/// What [`prepare_start`] made, to hand to the supervisor or to undo.
pub struct Prepared {
    pub rootfs: RootFs,
    pub env: Vec<String>,
}

/// Sets up the network, the files and the record of `c` for a start (caller holds the lock).
/// On error everything made here is undone.
pub fn prepare_start(store: &Store, c: &mut Container) -> Result<Prepared> {
    let all = store.all()?;
    for l in &c.spec.links {
        let src = all.iter().find(|s| s.id == l.source_id);
        match src {
            Some(s) if s.state.status == Status::Running => {}
            Some(s) => {
                return Err(Error::user(format!(
                    "Cannot link to a non running container: /{} AS /{}/{}",
                    s.name, c.name, l.alias
                )));
            }
            None => {
                return Err(Error::user(format!(
                    "could not get container for {}: No such container: {}",
                    l.alias, l.source_id
                )));
            }
        }
    }
    let r = prepare_inner(store, c, &all);
    if r.is_err() {
        let _ = teardown_network(store, c);
    }
    r
}

fn prepare_inner(store: &Store, c: &mut Container, all: &[Container]) -> Result<Prepared> {
    let cfg = &store.cfg;
    let subnet = network::Subnet::from_env()?;
    network::ensure_bridge(&subnet)?;
    c.state.ports = allocate_ports(cfg, c, all)?;
    let ip: Ipv4Addr = network::allocate_ip(cfg, &subnet, &c.id)?;
    // Write-ahead: the record names what is about to exist, so that a command killed from
    // here on leaves state that `reconcile` can tear down.
    c.state.ip = Some(ip.to_string());
    c.state.mac = Some(network::mac_for(ip));
    c.state.veth = Some(network::veth_name(c.short_id()));
    store.save(c)?;
    let ep = network::setup_endpoint(c.short_id(), ip, &subnet)?;
    let mut dp = bpf::Datapath::load(cfg)?;
    dp.attach(&ep.veth, bpf::Role::Container)?;
    for up in network::uplinks()? {
        dp.attach(&up, bpf::Role::Uplink)?;
    }
    bpf::set_local_addrs(cfg, &network::local_addrs()?)?;
    if let Some(cg) = cfg.cgroup_dir() {
        dp.attach_cgroup(&cg)?;
    }
    bpf::publish(cfg, &c.state.ports, &ep.ip.to_string())?;
    state::failpoint("start-network");

    for l in &c.spec.links {
        if let Some(s) = all.iter().find(|s| s.id == l.source_id)
            && let Some(ip) = &s.state.ip
        {
            c.state.link_ips.insert(s.id.clone(), ip.clone());
        }
    }
    let dir = store.dir(&c.id);
    rewrite_in_place(&dir.join("hosts"), &render_hosts(c, all))?;
    rewrite_in_place(&dir.join("hostname"), &format!("{}\n", c.spec.hostname))?;
    rewrite_in_place(&dir.join("resolv.conf"), &resolv_conf())?;

    store.save(c)?;
    sync_policy(store)?;
    prepared_for(store, c)
}

/// The root filesystem and environment of a start of `c` (after [`prepare_start`]).
pub fn prepared_for(store: &Store, c: &Container) -> Result<Prepared> {
    let cfg = &store.cfg;
    let all = store.all()?;
    let dir = store.dir(&c.id);
    let img = image::find(&c.spec.image)?;
    let ov = overlay_dir(cfg, &c.id)?;
    let rootfs = RootFs {
        hostname: c.spec.hostname.clone(),
        netns: network::netns_path(c.short_id()),
        lower: c.spec.rootfs.clone().unwrap_or_else(|| PathBuf::from("/")),
        upper: ov.join("upper"),
        work: ov.join("work"),
        merged: ov.join("merged"),
        etc_files: vec![
            (dir.join("hosts"), "hosts"),
            (dir.join("hostname"), "hostname"),
            (dir.join("resolv.conf"), "resolv.conf"),
        ],
        image_files: img
            .files
            .iter()
            .map(|f| {
                let content = match (&f.source, &f.symlink) {
                    (Some(s), _) => ImageFile::Content(image::file_content(s).unwrap_or("")),
                    (None, Some(t)) => ImageFile::Symlink(t.clone()),
                    (None, None) => ImageFile::Content(""),
                };
                (f.path.clone(), content)
            })
            .collect(),
        dirs: img.dirs.clone(),
    };
    let env = process_env(c, &all, c.spec.tty);
    Ok(Prepared { rootfs, env })
}

const TMPFS_MAGIC: i64 = 0x01021994;

/// The container's overlay dirs, on a tmpfs (an upper layer may not live inside the host's
/// `/`, the lower layer). They survive stop/start, not a reboot of the host.
fn overlay_dir(cfg: &Config, id: &str) -> Result<PathBuf> {
    let base = cfg.run_root.join("overlay");
    state::create_private_dir(&base)?;
    let on_tmpfs = nix::sys::statfs::statfs(&base)
        .map(|s| s.filesystem_type().0 == TMPFS_MAGIC)
        .unwrap_or(false);
    if !on_tmpfs {
        nix::mount::mount(
            Some("tmpfs"),
            &base,
            Some("tmpfs"),
            nix::mount::MsFlags::empty(),
            Some("mode=0700"),
        )
        .map_err(|e| Error::io("mounting tmpfs on", &base, e.into()))?;
    }
    let d = base.join(id);
    for sub in ["upper", "work", "merged"] {
        state::create_private_dir(&d.join(sub))?;
    }
    Ok(d)
}

/// After the source `c` got a (new) IP: rewrite the /etc/hosts of every running recipient.
pub fn refresh_recipients(store: &Store, c: &Container) -> Result<()> {
    let Some(ip) = &c.state.ip else { return Ok(()) };
    let all = store.all()?;
    for mut r in all
        .iter()
        .filter(|r| r.state.status == Status::Running && r.spec.links.iter().any(|l| l.source_id == c.id))
        .cloned()
    {
        r.state.link_ips.insert(c.id.clone(), ip.clone());
        store.save(&r)?;
        rewrite_in_place(&store.dir(&r.id).join("hosts"), &render_hosts(&r, &all))?;
    }
    Ok(())
}

/// Removes the network of `c` (veth, netns, datapath links, IP lease). Idempotent.
pub fn teardown_network(store: &Store, c: &Container) -> Result<()> {
    let mut errs = Vec::new();
    let veth = network::veth_name(c.short_id());
    if (!c.state.ports.is_empty() || c.state.ip.is_some())
        && let Err(e) = bpf::unpublish(&store.cfg, &c.state.ports, c.state.ip.as_deref())
    {
        // Maps not created yet (the datapath never loaded): nothing to remove.
        if store.cfg.maps_dir().join(linkrt_common::maps::PORTMAP).exists() {
            errs.push(e);
        }
    }
    if let Err(e) = bpf::detach(&store.cfg, &veth) {
        errs.push(e);
    }
    if let Err(e) = network::teardown_endpoint(c.short_id()) {
        errs.push(e);
    }
    if let Err(e) = network::release_ip(&store.cfg, &c.id) {
        errs.push(e);
    }
    if errs.is_empty() {
        Ok(())
    } else {
        Err(Error::Multiple(errs))
    }
}

/// Whether inter-container communication is unrestricted (Docker's `--icc`). Secure by
/// default: off. `LINKRT_ICC=true|false` changes it, and the choice is kept in the state dir.
pub fn icc_enabled(cfg: &Config) -> Result<bool> {
    let path = cfg.root.join("bridge.v1.json");
    if let Ok(v) = std::env::var("LINKRT_ICC") {
        let on = match v.as_str() {
            "1" | "true" => true,
            "0" | "false" => false,
            _ => return Err(Error::user(format!("invalid LINKRT_ICC {v:?}: want true or false"))),
        };
        state::write_atomic(&path, serde_json::json!({ "icc": on }).to_string().as_bytes())?;
        return Ok(on);
    }
    Ok(fs::read(&path)
        .ok()
        .and_then(|d| serde_json::from_slice::<serde_json::Value>(&d).ok())
        .and_then(|v| v["icc"].as_bool())
        .unwrap_or(false))
}

/// Brings the datapath's link policy in line with the running containers: each link
/// (recipient → source) allows the source's exposed ports, and ping.
pub fn sync_policy(store: &Store) -> Result<()> {
    if !store.cfg.maps_dir().join(linkrt_common::maps::POLICY).exists() {
        return Ok(());
    }
    let all = store.all()?;
    // Running containers, and the one being started (network set up, not yet marked running).
    let running: Vec<&Container> = all
        .iter()
        .filter(|c| c.state.status == Status::Running || (c.state.veth.is_some() && c.state.ip.is_some()))
        .collect();
    let ip_of = |c: &Container| c.state.ip.as_deref().and_then(|i| i.parse::<Ipv4Addr>().ok());
    let mut st = bpf::PolicyState {
        icc: icc_enabled(&store.cfg)?,
        ..Default::default()
    };
    for c in &running {
        let (Some(ip), Some(veth), Some(mac)) = (ip_of(c), c.state.veth.as_deref(), c.state.mac.as_deref()) else {
            continue;
        };
        let Ok(ifindex) = nix::net::if_::if_nametoindex(veth) else {
            continue;
        };
        let mut m = [0u8; 6];
        for (i, part) in mac.split(':').enumerate().take(6) {
            m[i] = u8::from_str_radix(part, 16).unwrap_or(0);
        }
        st.endpoints.push((ifindex, ip, m));
        for l in &c.spec.links {
            let Some(src) = running.iter().find(|s| s.id == l.source_id) else {
                continue;
            };
            let Some(sip) = ip_of(src) else { continue };
            st.allow.push((ip, sip, 0, 1));
            for p in &src.spec.exposed {
                st.allow.push((ip, sip, p.port, p.proto.number()));
            }
        }
    }
    bpf::sync_policy(&store.cfg, &st)
}

/// Records a start: running, with its PIDs.
pub fn mark_running(store: &Store, c: &mut Container, pid: i32, supervisor: i32) -> Result<()> {
    c.state.status = Status::Running;
    c.state.pid = pid;
    c.state.supervisor_pid = supervisor;
    c.state.exit_code = 0;
    c.state.error.clear();
    c.state.started_at = Some(state::now_rfc3339());
    c.state.finished_at = None;
    store.save(c)?;
    refresh_recipients(store, c)?;
    sync_policy(store)
}

/// Undoes a failed start: network removed, status `Created` with the exit code and error.
/// Removes the container when it was run with `--rm`.
pub fn mark_start_failed(store: &Store, c: &mut Container, code: i32, msg: &str) -> Result<()> {
    let r = teardown_network(store, c);
    c.state = State {
        exit_code: code,
        error: msg.to_string(),
        ..State::default()
    };
    if c.spec.auto_remove {
        remove_files(store, c)?;
    } else {
        store.save(c)?;
    }
    r
}

/// Records the exit of the container's PID 1 and tears its network down (takes the lock).
pub fn finish(cfg: &Config, id: &str, exit_code: i32) -> Result<()> {
    let _lock = Lock::acquire(cfg)?;
    let store = Store::new(cfg);
    let _ = fs::remove_file(state::pids_path(cfg, id));
    let Ok(mut c) = store.load(id) else { return Ok(()) };
    let r = teardown_network(&store, &c);
    state::failpoint("finish");
    c.state.status = Status::Exited;
    c.state.exit_code = exit_code;
    c.state.pid = 0;
    c.state.supervisor_pid = 0;
    c.state.finished_at = Some(state::now_rfc3339());
    c.state.ip = None;
    c.state.mac = None;
    c.state.veth = None;
    c.state.ports.clear();
    if c.spec.auto_remove {
        remove_files(&store, &c)?;
    } else {
        store.save(&c)?;
    }
    sync_policy(&store)?;
    r
}

/// Deletes the container's files: overlay layers and its state directory.
fn remove_files(store: &Store, c: &Container) -> Result<()> {
    let ov = store.cfg.run_root.join("overlay").join(&c.id);
    let _ = nix::mount::umount2(&ov.join("merged"), nix::mount::MntFlags::MNT_DETACH);
    let _ = fs::remove_dir_all(&ov);
    state::failpoint("rm");
    store.remove_dir(&c.id)
}

/// Whether `pid` is a live process (a zombie whose parent never reaps it counts as dead).
pub fn pid_alive(pid: i32) -> bool {
    if pid <= 0 || nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None).is_err() {
        return false;
    }
    match fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => !matches!(
            stat.rsplit_once(") ").and_then(|(_, rest)| rest.chars().next()),
            Some('Z' | 'X')
        ),
        Err(_) => false,
    }
}

/// Repairs what interrupted commands left behind (caller holds the lock): containers marked
/// running whose supervisor is gone are stopped and cleaned; half-made container directories
/// and leases of unknown containers are removed.
pub fn reconcile(store: &Store) -> Result<()> {
    for id in store.leftovers() {
        if let Ok(c) = placeholder(&id) {
            let _ = teardown_network(store, &c);
            let _ = remove_files(store, &c);
        }
    }
    let all = store.all()?;
    for c in &all {
        // A start interrupted after the container's process began, before it was recorded:
        // stop that process (its supervisor then records the exit).
        if c.state.status != Status::Running
            && let Some((sup, pid1)) = state::read_pids(&store.cfg, &c.id)
        {
            if pid_alive(sup) && pid_alive(pid1) {
                let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid1), nix::sys::signal::Signal::SIGKILL);
            } else if !pid_alive(sup) {
                let _ = fs::remove_file(state::pids_path(&store.cfg, &c.id));
            }
        }
        if c.state.status == Status::Running && !pid_alive(c.state.supervisor_pid) {
            if pid_alive(c.state.pid) {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(c.state.pid),
                    nix::sys::signal::Signal::SIGKILL,
                );
            }
            let mut c = c.clone();
            let _ = teardown_network(store, &c);
            c.state = State {
                status: Status::Exited,
                exit_code: 137,
                finished_at: Some(state::now_rfc3339()),
                error: "supervisor died".into(),
                ..State::default()
            };
            if c.spec.auto_remove {
                remove_files(store, &c)?;
            } else {
                store.save(&c)?;
            }
        } else if c.state.status != Status::Running && (c.state.veth.is_some() || c.state.ip.is_some()) {
            // An interrupted start: remove what it made and forget it, so that no later repair
            // touches resources (ports, addresses) another container may have taken since.
            let mut c = c.clone();
            let _ = teardown_network(store, &c);
            c.state.ip = None;
            c.state.mac = None;
            c.state.veth = None;
            c.state.ports.clear();
            store.save(&c)?;
        }
    }
    let mut ipam = state::Ipam::load(&store.cfg)?;
    let before = ipam.leases.len();
    ipam.leases
        .retain(|_, owner| all.iter().any(|c| &c.id == owner && c.state.status == Status::Running));
    if ipam.leases.len() != before {
        ipam.save(&store.cfg)?;
    }
    // The datapath outlives the CLI in bpffs pins: put back whatever was lost (issue 11).
    bpf::heal(&store.cfg, &bpf::Wanted::from_containers(&store.cfg, &store.all()?)?)?;
    sync_policy(store)
}

fn placeholder(id: &str) -> Result<Container> {
    if id.len() != 64 {
        return Err(Error::sys("not a container id"));
    }
    Ok(Container {
        id: id.to_string(),
        name: String::new(),
        created: String::new(),
        spec: Spec::default(),
        state: State::default(),
        restart_count: 0,
    })
}

/// Sends `sig` to the container's PID 1 (caller holds the lock).
pub fn signal(c: &Container, sig: nix::sys::signal::Signal) {
    if pid_alive(c.state.pid) {
        let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(c.state.pid), sig);
    }
}

/// Waits (without the lock) until the supervisor of `id` recorded the exit, up to `timeout`.
pub fn wait_stopped(store: &Store, id: &str, timeout: Duration) -> bool {
    let start = Instant::now();
    loop {
        match store.load(id) {
            Ok(c) if c.state.status == Status::Running && pid_alive(c.state.supervisor_pid) => {}
            _ => return true,
        }
        if start.elapsed() > timeout {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// `docker stop`: SIGTERM, then SIGKILL after `timeout` seconds; returns when cleaned up.
pub fn stop(cfg: &Config, what: &str, timeout: u64) -> Result<()> {
    let store = Store::new(cfg);
    let c = {
        let _lock = Lock::acquire(cfg)?;
        reconcile(&store)?;
        let c = store.find(what)?;
        if c.state.status != Status::Running {
            return Ok(());
        }
        signal(&c, nix::sys::signal::Signal::SIGTERM);
        c
    };
    if !wait_stopped(&store, &c.id, Duration::from_secs(timeout)) {
        {
            let _lock = Lock::acquire(cfg)?;
            if let Ok(c) = store.load(&c.id) {
                signal(&c, nix::sys::signal::Signal::SIGKILL);
            }
        }
        if !wait_stopped(&store, &c.id, Duration::from_secs(30)) {
            return Err(Error::sys(format!("container {} did not stop", c.short_id())));
        }
    }
    Ok(())
}

/// `docker rm [-f]`.
pub fn remove(cfg: &Config, what: &str, force: bool) -> Result<()> {
    let store = Store::new(cfg);
    let c = {
        let _lock = Lock::acquire(cfg)?;
        reconcile(&store)?;
        let c = store.find(what)?;
        if c.state.status != Status::Running {
            return remove_files(&store, &c);
        }
        if !force {
            return Err(Error::user(format!(
                "cannot remove container \"/{}\": container is running: stop the container before removing or force remove",
                c.name
            )));
        }
        signal(&c, nix::sys::signal::Signal::SIGKILL);
        c
    };
    if !wait_stopped(&store, &c.id, Duration::from_secs(30)) {
        return Err(Error::sys(format!("container {} did not stop", c.short_id())));
    }
    let _lock = Lock::acquire(cfg)?;
    match store.load(&c.id) {
        Ok(c) => remove_files(&store, &c),
        Err(_) => Ok(()),
    }
}
