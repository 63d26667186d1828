//! `create`: every option validated in Docker's words, then one record written (status
//! `Created`). Nothing is made before validation ends.
use std::path::PathBuf;

use rand::RngCore;

use super::env::{parse_env_file, parse_env_opt};
use crate::{
    error::{Error, Result},
    image, links, names, oci,
    ports::{self, PortKey},
    state::{self, Container, Link, Lock, LogOpts, Snapshot, Spec, State, Store},
};

/// Everything `linkrt run`/`create` accepts.
#[derive(Clone, Debug, Default)]
pub struct CreateOptions {
    pub name: Option<String>,
    pub image: String,
    pub cmd: Vec<String>,
    /// `--entrypoint` (`Some("")` clears the image's).
    pub entrypoint: Option<String>,
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
    pub runtime: Option<String>,
    pub cap_add: Vec<String>,
    pub cap_drop: Vec<String>,
    pub privileged: bool,
    pub security_opt: Vec<String>,
    pub memory: Option<String>,
    pub cpus: Option<String>,
    pub pids_limit: Option<i64>,
    pub user: Option<String>,
    pub read_only: bool,
    pub volumes: Vec<String>,
    pub log_opts: Vec<String>,
    /// `--add-host NAME:IP`.
    pub add_hosts: Vec<String>,
    /// `--label KEY[=VALUE]`.
    pub labels: Vec<String>,
    /// `--restart POLICY`.
    pub restart: String,
}

/// Docker's CLI `ValidateLabel`, then `ConvertKVStringsToMap` (`KEY` alone is `KEY=`).
pub fn parse_labels(raw: &[String]) -> Result<std::collections::BTreeMap<String, String>> {
    let mut m = std::collections::BTreeMap::new();
    for l in raw {
        let (k, v) = l.split_once('=').unwrap_or((l.as_str(), ""));
        let trimmed = k.trim_start_matches([' ', '\t', '\n', '\x0b', '\x0c', '\r']);
        let flag = |why: String| Error::user(format!("invalid argument \"{l}\" for \"-l, --label\" flag: {why}"));
        if trimmed.is_empty() {
            return Err(flag(format!("invalid label '{l}': empty name")));
        }
        if trimmed.contains([' ', '\t', '\n', '\x0b', '\x0c', '\r']) {
            return Err(flag(format!("label '{trimmed}' contains whitespaces")));
        }
        m.insert(k.to_string(), v.to_string());
    }
    Ok(m)
}

fn new_id() -> String {
    let mut b = [0u8; 32];
    rand::thread_rng().fill_bytes(&mut b);
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// `--log-opt max-size=10m --log-opt max-file=3` (Docker's json-file options).
pub fn parse_log_opts(opts: &[String]) -> Result<LogOpts> {
    let mut l = LogOpts::default();
    for o in opts {
        let (k, v) = o
            .split_once('=')
            .ok_or_else(|| Error::user(format!("invalid log opt format: {o}")))?;
        match k {
            "max-size" => {
                let n = oci::options::parse_size(v).map_err(|_| Error::user(format!("invalid max-size: {v}")))?;
                if n <= 0 {
                    return Err(Error::user(format!("max-size must be a positive number: {v}")));
                }
                l.max_size = n as u64;
            }
            "max-file" => {
                l.max_file = v
                    .parse::<u32>()
                    .ok()
                    .filter(|n| *n >= 1)
                    .ok_or_else(|| Error::user("max-file cannot be less than 1"))?;
            }
            _ => return Err(Error::user(format!("unknown log opt '{k}' for json-file log driver"))),
        }
    }
    Ok(l)
}

/// Validates everything and writes the container record (status `Created`).
pub fn create(store: &Store, lock: &Lock, snap: &mut Snapshot, opts: &CreateOptions) -> Result<Container> {
    // The client-side flags first, as Docker's CLI parses them before anything else.
    let memory = opts.memory.as_deref().map(oci::options::parse_memory).transpose()?;
    let nano_cpus = opts.cpus.as_deref().map(oci::options::parse_cpus).transpose()?;
    let log = parse_log_opts(&opts.log_opts)?;
    let security = oci::options::SecurityOpts::parse(&opts.security_opt)?;
    let volumes = opts
        .volumes
        .iter()
        .map(|v| oci::options::Volume::parse(v))
        .collect::<Result<Vec<_>>>()?;
    oci::caps::validate(&opts.cap_add, &opts.cap_drop)?;
    let extra_hosts = opts
        .add_hosts
        .iter()
        .map(|h| super::etc_files::parse_add_host(h))
        .collect::<Result<Vec<_>>>()?;
    let labels = parse_labels(&opts.labels)?;
    let restart = super::restart::RestartPolicy::parse(&opts.restart)?;
    if opts.auto_remove && !restart.is_none() {
        return Err(Error::user("Conflicting options: --restart and --rm"));
    }
    if let Some(h) = &opts.hostname {
        names::validate_hostname(h)?;
    }
    if let Some(w) = &opts.workdir
        && !w.starts_with('/')
    {
        return Err(Error::user(format!(
            "the working directory '{w}' is invalid, it needs to be an absolute path"
        )));
    }
    let img = image::resolve(&store.cfg, &opts.image)?;
    if let Some(b) = img.builtin() {
        b.check_requirements()?;
    }
    let ic = &img.config;
    if let Some(r) = &opts.rootfs
        && !r.is_dir()
    {
        return Err(Error::user(format!(
            "invalid --rootfs {}: not a directory",
            r.display()
        )));
    }
    let runtime = oci::runtime::Runtime::select(&store.cfg, opts.runtime.as_deref())?;
    let all = &snap.containers;
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
    // Environment in Docker's order: --env-file, then -e, then the image's ENV not set there.
    let mut user_env = Vec::new();
    for f in &opts.env_files {
        user_env.extend(parse_env_file(f)?);
    }
    for e in &opts.env {
        user_env.extend(parse_env_opt(e)?);
    }
    let env = links::container_env(&user_env, &ic.env);

    let mut exposed: Vec<PortKey> = ic.exposed.clone();
    for e in &opts.expose {
        exposed.extend(ports::parse_expose(e)?);
    }
    let mut bindings = Vec::new();
    for p in &opts.publish {
        bindings.extend(ports::parse_publish(&ports::convert_long_publish(p)?)?);
    }
    exposed.extend(bindings.iter().map(|b| b.container));
    exposed.sort();
    exposed.dedup();

    // Docker's daemon step (`registerLinks`): the source must exist (running or not: that is
    // checked at start); a link whose name is already taken under the recipient (a second
    // source under one alias, or an empty alias naming the recipient itself) is ignored.
    let mut link_list: Vec<Link> = Vec::new();
    for l in &opts.links {
        let (src, alias) = links::parse_link(l)?;
        if src.is_empty() {
            return Err(Error::user(
                "could not get container for : invalid name or ID supplied: \"\"",
            ));
        }
        let source = state::find_in(all, &src).map_err(|e| {
            Error::user(format!(
                "could not get container for {src}: {}",
                match e {
                    Error::NoSuchContainer(_) => format!("No such container: {src}"),
                    e => e.to_string(),
                }
            ))
        })?;
        let Some(alias) = links::clean_alias(&alias) else {
            continue;
        };
        if link_list.iter().any(|x| x.alias == alias) {
            continue;
        }
        link_list.push(Link {
            source_id: source.id.clone(),
            alias,
            source_name: source.name.clone(),
        });
    }

    // The veth is named after the first 7 characters of the ID, the netns after 12: an ID
    // whose prefix another container has would share (and tear down) its interfaces.
    let id = loop {
        let id = new_id();
        if !all.iter().any(|c| c.id.get(..7) == id.get(..7)) {
            break id;
        }
    };
    let hostname = opts.hostname.clone().unwrap_or_else(|| id[..12].to_string());
    // Docker's merge: `--entrypoint` replaces the image's entrypoint and drops its command.
    let (mut cmd, args) = match &opts.entrypoint {
        Some(e) if e.is_empty() => (Vec::new(), opts.cmd.clone()),
        Some(e) => (vec![e.clone()], opts.cmd.clone()),
        None if opts.cmd.is_empty() => (ic.entrypoint.clone(), ic.cmd.clone()),
        None => (ic.entrypoint.clone(), opts.cmd.clone()),
    };
    let entrypoint_len = cmd.len();
    cmd.extend(args);
    if cmd.is_empty() {
        return Err(Error::user("No command specified"));
    }
    let c = Container {
        id,
        name,
        created: state::now_rfc3339(),
        spec: Spec {
            image: opts.image.clone(),
            image_id: img.id.clone(),
            cmd,
            entrypoint_len,
            workdir: opts.workdir.clone().unwrap_or(ic.workdir.clone()),
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
            runtime: runtime.name,
            cap_add: opts.cap_add.clone(),
            cap_drop: opts.cap_drop.clone(),
            privileged: opts.privileged,
            security,
            memory,
            nano_cpus,
            pids_limit: opts.pids_limit,
            user: opts.user.clone().unwrap_or(ic.user.clone()),
            read_only: opts.read_only,
            volumes,
            log,
            extra_hosts,
            labels,
            restart,
        },
        state: State::default(),
        restart_count: 0,
        restart_backoff_ms: 0,
    };
    store.save(lock, &c)?;
    snap.containers.push(c.clone());
    state::failpoint("create");
    Ok(c)
}
