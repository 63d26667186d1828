//! Containers as OCI bundles, started by a real OCI runtime (runc or crun).
//!
//! linkrt makes the network namespace, the veth and the eBPF state; everything about the
//! process — namespaces, root filesystem, capabilities, seccomp, `/dev`, `/proc` masks,
//! cgroups — is described in the bundle's `config.json` ([`spec`]) and done by the runtime.
pub mod caps;
pub mod cgroup;
pub mod inroot;
pub mod options;
pub mod rootfs;
pub mod runtime;
pub mod seccomp;
mod seccomp_default;
pub mod spec;
pub mod user;

use std::{collections::BTreeSet, path::PathBuf};

use oci_spec::runtime::{LinuxSeccomp, Process, Spec};

use crate::{
    config::Config,
    error::{Error, Result},
    state::{Container, Store},
};

/// The bundle directory of a container (`config.json`, the runtime's log and pid file).
pub fn bundle_dir(store: &Store, id: &str) -> PathBuf {
    store.dir(id).join("bundle")
}

/// The capability set of `c`.
pub fn capabilities(c: &Container) -> Result<BTreeSet<String>> {
    caps::effective(&c.spec.cap_add, &c.spec.cap_drop, c.spec.privileged)
}

/// The seccomp filter of `c`: Docker's default, the `seccomp=FILE` profile, or none
/// (`--privileged`, `seccomp=unconfined`).
fn seccomp_filter(c: &Container, caps: &BTreeSet<String>) -> Result<Option<LinuxSeccomp>> {
    let s = &c.spec.security;
    if c.spec.privileged || s.seccomp_unconfined {
        return Ok(None);
    }
    let profile = match &s.seccomp_profile {
        Some(text) => {
            serde_json::from_str(text).map_err(|e| Error::user(format!("decoding seccomp profile failed: {e}")))?
        }
        None => seccomp::Profile::docker_default(),
    };
    let caps: std::collections::HashSet<String> = caps.iter().cloned().collect();
    seccomp::to_oci(&profile, &caps, &seccomp::Host::current()).map(Some)
}

/// Sets `HOME` from the user's passwd entry when the environment has none or an empty one
/// (runc's rule, `os.Getenv("HOME") == ""`: `-e HOME=` still gets `/root`), in place.
fn with_home(mut env: Vec<String>, home: &str) -> Vec<String> {
    let home = format!("HOME={}", if home.is_empty() { "/" } else { home });
    match env.iter().position(|e| e.starts_with("HOME=")) {
        Some(i) if env[i] == "HOME=" => env[i] = home,
        Some(_) => {}
        None => env.push(home),
    }
    env
}

/// Writes the bundle of `c` (its root is mounted, its network namespace exists).
pub fn write_bundle(
    cfg: &Config,
    store: &Store,
    c: &Container,
    env: Vec<String>,
    root: &rootfs::Prepared,
) -> Result<()> {
    let caps = capabilities(c)?;
    let seccomp = seccomp_filter(c, &caps)?;
    let user = user::resolve(&inroot::Root::open(&root.rootfs)?, &c.spec.user)?;
    let dir = store.dir(&c.id);
    let input = spec::SpecInput {
        hostname: c.spec.hostname.clone(),
        args: c.spec.cmd.clone(),
        env: with_home(env, &user.home),
        cwd: c.spec.workdir.clone(),
        terminal: c.spec.tty,
        uid: user.uid,
        gid: user.gid,
        additional_gids: user.additional_gids,
        caps,
        privileged: c.spec.privileged,
        no_new_privileges: c.spec.security.no_new_privileges,
        seccomp,
        rootfs: root.rootfs.clone(),
        readonly_rootfs: c.spec.read_only,
        netns: crate::network::netns_path(c.short_id()),
        etc_binds: vec![
            (dir.join("resolv.conf"), "resolv.conf"),
            (dir.join("hostname"), "hostname"),
            (dir.join("hosts"), "hosts"),
        ],
        usr: root.usr.clone(),
        host_dirs: root.host_dirs.clone(),
        volumes: c.spec.volumes.clone(),
        cgroups_path: cgroup::container_path(&cfg.cgroup_parent, &c.id),
        memory: c.spec.memory,
        nano_cpus: c.spec.nano_cpus,
        pids_limit: c.spec.pids_limit,
        devices: if c.spec.privileged {
            spec::host_devices()
        } else {
            Vec::new()
        },
    };
    let s = spec::build(&input)?;
    let b = bundle_dir(store, &c.id);
    crate::state::create_private_dir(&b)?;
    let data = serde_json::to_vec(&s).map_err(|e| Error::sys(format!("serializing the OCI spec: {e}")))?;
    crate::state::write_atomic(&b.join("config.json"), &data)
}

/// The process of an `exec`: the container's own process settings (capabilities, seccomp
/// applies to the whole container, no-new-privileges, user) with another command, environment,
/// working directory and terminal.
pub fn exec_process(
    store: &Store,
    c: &Container,
    args: Vec<String>,
    env: Vec<String>,
    cwd: String,
    tty: bool,
    user_spec: Option<&str>,
) -> Result<Process> {
    let path = bundle_dir(store, &c.id).join("config.json");
    let data = std::fs::read(&path).map_err(|e| Error::io("reading", &path, e))?;
    let spec: Spec = serde_json::from_slice(&data).map_err(|e| Error::sys(format!("{}: {e}", path.display())))?;
    let mut p = spec
        .process()
        .clone()
        .ok_or_else(|| Error::sys(format!("{}: no process", path.display())))?;
    let home = match user_spec {
        Some(u) => {
            let root = inroot::Root::open(&rootfs::overlay_dir(&store.cfg, &c.id).join("merged"))?;
            let eu = user::resolve(&root, u)?;
            let usr = oci_spec::runtime::UserBuilder::default()
                .uid(eu.uid)
                .gid(eu.gid)
                .additional_gids(eu.additional_gids)
                .build()
                .map_err(|e| Error::sys(format!("building the exec user: {e}")))?;
            p.set_user(usr);
            eu.home
        }
        None => p
            .env()
            .iter()
            .flatten()
            .find_map(|e| e.strip_prefix("HOME=").map(str::to_owned))
            .unwrap_or_else(|| "/root".into()),
    };
    p.set_args(Some(args));
    p.set_env(Some(with_home(env, &home)));
    p.set_cwd(cwd.into());
    p.set_terminal(Some(tty));
    p.set_console_size(None);
    Ok(p)
}
