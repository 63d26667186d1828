//! The OCI runtime spec (`config.json`) of a container, with Docker's defaults: its 14
//! capabilities, its seccomp profile, masked and read-only `/proc` paths, a private minimal
//! `/dev` with Docker's device cgroup rules, a read-only `/sys`, private cgroup, IPC, PID, UTS
//! and mount namespaces, and the network namespace linkrt made, joined by path.
//!
//! [`build`] is a pure function of [`SpecInput`], so the whole spec is unit-tested.
use std::{collections::BTreeSet, path::PathBuf};

use oci_spec::runtime::{
    Capability, LinuxBuilder, LinuxCapabilitiesBuilder, LinuxCpuBuilder, LinuxDevice, LinuxDeviceCgroup,
    LinuxDeviceCgroupBuilder, LinuxDeviceType, LinuxMemoryBuilder, LinuxNamespaceBuilder, LinuxNamespaceType,
    LinuxPidsBuilder, LinuxResourcesBuilder, LinuxSeccomp, Mount, MountBuilder, ProcessBuilder, RootBuilder, Spec,
    SpecBuilder, UserBuilder,
};

use super::options::Volume;
use crate::error::{Error, Result};

/// Docker's masked paths (moby `daemon/pkg/oci/defaults.go`); the per-CPU `thermal_throttle`
/// directories are added where they exist, as Docker does.
pub const MASKED_PATHS: [&str; 12] = [
    "/proc/acpi",
    "/proc/asound",
    "/proc/interrupts",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/sys/devices/virtual/powercap",
    "/sys/firmware",
];

/// Docker's read-only paths.
pub const READONLY_PATHS: [&str; 5] = ["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"];

/// The `/usr` of an embedded image: an overlay of the image's own `/usr` files over the
/// host's `/usr` (never written: writes go to `upper`).
#[derive(Clone, Debug)]
pub struct UsrOverlay {
    /// Lower layers, top first (the image's `/usr` files, then the host's `/usr`).
    pub lower: Vec<PathBuf>,
    pub upper: PathBuf,
    pub work: PathBuf,
}

/// Everything the spec depends on.
#[derive(Clone, Debug)]
pub struct SpecInput {
    pub hostname: String,
    pub args: Vec<String>,
    pub env: Vec<String>,
    pub cwd: String,
    pub terminal: bool,
    pub uid: u32,
    pub gid: u32,
    pub additional_gids: Vec<u32>,
    /// The capability set (names such as `CAP_CHOWN`), from [`super::caps::effective`].
    pub caps: BTreeSet<String>,
    pub privileged: bool,
    pub no_new_privileges: bool,
    /// `None`: unconfined (`--privileged`, `--security-opt seccomp=unconfined`).
    pub seccomp: Option<LinuxSeccomp>,
    pub rootfs: PathBuf,
    pub readonly_rootfs: bool,
    pub netns: PathBuf,
    /// Host files bind-mounted over `/etc/hosts`, `/etc/hostname`, `/etc/resolv.conf`.
    pub etc_binds: Vec<(PathBuf, &'static str)>,
    pub usr: Option<UsrOverlay>,
    /// Host top-level directories that are not symlinks into `/usr` (a host without merged
    /// `/usr`): bound read-only at the same place.
    pub host_dirs: Vec<PathBuf>,
    pub volumes: Vec<Volume>,
    pub cgroups_path: PathBuf,
    pub memory: Option<i64>,
    pub nano_cpus: Option<i64>,
    pub pids_limit: Option<i64>,
    /// Device nodes to create (`--privileged`: every device of the host's `/dev`).
    pub devices: Vec<LinuxDevice>,
}

fn err(e: oci_spec::OciSpecError) -> Error {
    Error::sys(format!("building the OCI spec: {e}"))
}

fn mount(dst: &str, typ: &str, src: &str, opts: &[&str]) -> Result<Mount> {
    MountBuilder::default()
        .destination(dst)
        .typ(typ)
        .source(src)
        .options(opts.iter().map(|s| s.to_string()).collect::<Vec<_>>())
        .build()
        .map_err(err)
}

fn bind(src: &std::path::Path, dst: &str, ro: bool, propagation: &str) -> Result<Mount> {
    let mut opts = vec!["rbind", propagation];
    if ro {
        opts.push("ro");
    }
    mount(dst, "bind", &src.to_string_lossy(), &opts)
}

fn dev_rule(
    allow: bool,
    typ: Option<LinuxDeviceType>,
    major: Option<i64>,
    minor: Option<i64>,
) -> Result<LinuxDeviceCgroup> {
    let mut b = LinuxDeviceCgroupBuilder::default().allow(allow).access("rwm");
    if let Some(t) = typ {
        b = b.typ(t);
    }
    if let Some(m) = major {
        b = b.major(m);
    }
    if let Some(m) = minor {
        b = b.minor(m);
    }
    b.build().map_err(err)
}

/// Docker's device cgroup rules: deny everything, then allow null, zero, urandom, random,
/// tty and console, and deny fuse; `--privileged` allows every device.
pub fn device_rules(privileged: bool) -> Result<Vec<LinuxDeviceCgroup>> {
    use LinuxDeviceType::C;
    if privileged {
        return Ok(vec![dev_rule(true, None, None, None)?]);
    }
    let mut v = vec![dev_rule(false, None, None, None)?];
    for (maj, min) in [(1, 5), (1, 3), (1, 9), (1, 8), (5, 0), (5, 1)] {
        v.push(dev_rule(true, Some(C), Some(maj), Some(min))?);
    }
    v.push(dev_rule(false, Some(C), Some(10), Some(229))?);
    Ok(v)
}

/// Masked paths for this host: Docker's list plus the CPUs' `thermal_throttle` directories.
pub fn masked_paths() -> Vec<String> {
    let mut v: Vec<String> = MASKED_PATHS.iter().map(|s| s.to_string()).collect();
    for cpu in 0..std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1) {
        let p = format!("/sys/devices/system/cpu/cpu{cpu}/thermal_throttle");
        if std::path::Path::new(&p).exists() {
            v.push(p);
        }
    }
    v
}

fn capability(name: &str) -> Result<Capability> {
    serde_json::from_value(serde_json::Value::String(name.to_string()))
        .map_err(|_| Error::sys(format!("capability {name} is unknown to the OCI spec library")))
}

/// Builds the container's runtime spec.
pub fn build(i: &SpecInput) -> Result<Spec> {
    let caps: oci_spec::runtime::Capabilities = i.caps.iter().map(|c| capability(c)).collect::<Result<_>>()?;
    let capabilities = LinuxCapabilitiesBuilder::default()
        .bounding(caps.clone())
        .effective(caps.clone())
        .permitted(caps)
        // Docker leaves the inheritable and ambient sets empty (CVE-2022-24769).
        .inheritable(oci_spec::runtime::Capabilities::new())
        .ambient(oci_spec::runtime::Capabilities::new())
        .build()
        .map_err(err)?;
    let user = UserBuilder::default()
        .uid(i.uid)
        .gid(i.gid)
        .additional_gids(i.additional_gids.clone())
        .build()
        .map_err(err)?;
    let process = ProcessBuilder::default()
        .terminal(i.terminal)
        .user(user)
        .args(i.args.clone())
        .env(i.env.clone())
        .cwd(i.cwd.clone())
        .capabilities(capabilities)
        .no_new_privileges(i.no_new_privileges)
        .build()
        .map_err(err)?;

    let ro_sys = if i.privileged { "rw" } else { "ro" };
    let mut mounts = vec![
        mount("/proc", "proc", "proc", &["nosuid", "noexec", "nodev"])?,
        mount(
            "/dev",
            "tmpfs",
            "tmpfs",
            &["nosuid", "strictatime", "mode=755", "size=65536k"],
        )?,
        mount(
            "/dev/pts",
            "devpts",
            "devpts",
            &["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"],
        )?,
        mount("/sys", "sysfs", "sysfs", &["nosuid", "noexec", "nodev", ro_sys])?,
        mount(
            "/sys/fs/cgroup",
            "cgroup",
            "cgroup",
            &[ro_sys, "nosuid", "noexec", "nodev"],
        )?,
        mount("/dev/mqueue", "mqueue", "mqueue", &["nosuid", "noexec", "nodev"])?,
        mount(
            "/dev/shm",
            "tmpfs",
            "shm",
            &["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"],
        )?,
    ];
    if let Some(u) = &i.usr {
        let lower: Vec<String> = u.lower.iter().map(|p| p.to_string_lossy().into_owned()).collect();
        let opts = [
            format!("lowerdir={}", lower.join(":")),
            format!("upperdir={}", u.upper.display()),
            format!("workdir={}", u.work.display()),
        ];
        let mut o: Vec<&str> = opts.iter().map(String::as_str).collect();
        if i.readonly_rootfs {
            o.push("ro");
        }
        mounts.push(mount("/usr", "overlay", "overlay", &o)?);
    }
    for d in &i.host_dirs {
        mounts.push(bind(d, &d.to_string_lossy(), true, "rprivate")?);
    }
    for (src, name) in &i.etc_binds {
        mounts.push(bind(src, &format!("/etc/{name}"), false, "rprivate")?);
    }
    for v in &i.volumes {
        mounts.push(bind(&v.source, &v.destination, v.read_only, &v.propagation)?);
    }

    let ns = |t: LinuxNamespaceType| LinuxNamespaceBuilder::default().typ(t).build().map_err(err);
    let namespaces = vec![
        ns(LinuxNamespaceType::Mount)?,
        LinuxNamespaceBuilder::default()
            .typ(LinuxNamespaceType::Network)
            .path(i.netns.clone())
            .build()
            .map_err(err)?,
        ns(LinuxNamespaceType::Uts)?,
        ns(LinuxNamespaceType::Pid)?,
        ns(LinuxNamespaceType::Ipc)?,
        ns(LinuxNamespaceType::Cgroup)?,
    ];

    let mut res = LinuxResourcesBuilder::default().devices(device_rules(i.privileged)?);
    if let Some(m) = i.memory.filter(|m| *m > 0) {
        res = res.memory(LinuxMemoryBuilder::default().limit(m).build().map_err(err)?);
    }
    if let Some(n) = i.nano_cpus.filter(|n| *n > 0) {
        // Docker's --cpus: a CFS quota over a 100 ms period.
        let period: u64 = 100_000;
        let quota = (n as i128 * period as i128 / 1_000_000_000) as i64;
        res = res.cpu(
            LinuxCpuBuilder::default()
                .period(period)
                .quota(quota)
                .build()
                .map_err(err)?,
        );
    }
    if let Some(p) = i.pids_limit.filter(|p| *p > 0) {
        res = res.pids(LinuxPidsBuilder::default().limit(p).build().map_err(err)?);
    }
    let mut linux = LinuxBuilder::default()
        .namespaces(namespaces)
        .resources(res.build().map_err(err)?)
        .cgroups_path(i.cgroups_path.clone())
        .devices(i.devices.clone());
    linux = if i.privileged {
        linux
            .masked_paths(Vec::<String>::new())
            .readonly_paths(Vec::<String>::new())
    } else {
        linux
            .masked_paths(masked_paths())
            .readonly_paths(READONLY_PATHS.iter().map(|s| s.to_string()).collect::<Vec<_>>())
    };
    if let Some(s) = &i.seccomp {
        linux = linux.seccomp(s.clone());
    }
    SpecBuilder::default()
        .version("1.0.2")
        .process(process)
        .root(
            RootBuilder::default()
                .path(i.rootfs.clone())
                .readonly(i.readonly_rootfs)
                .build()
                .map_err(err)?,
        )
        .hostname(i.hostname.clone())
        .mounts(mounts)
        .linux(linux.build().map_err(err)?)
        .build()
        .map_err(err)
}

/// Every device node under the host's `/dev` (for `--privileged`), as Docker's `HostDevices`.
pub fn host_devices() -> Vec<LinuxDevice> {
    use std::os::unix::fs::{FileTypeExt, MetadataExt};
    let mut out = Vec::new();
    let mut stack = vec![PathBuf::from("/dev")];
    while let Some(dir) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&dir) else { continue };
        for e in rd.flatten() {
            let p = e.path();
            let Ok(md) = std::fs::symlink_metadata(&p) else {
                continue;
            };
            let ft = md.file_type();
            if ft.is_dir() {
                // Docker skips these: the container gets its own.
                let name = e.file_name();
                if !matches!(
                    name.to_str(),
                    Some("pts" | "shm" | "fd" | "mqueue" | ".lxc" | ".lxd-mounts" | ".udev")
                ) {
                    stack.push(p);
                }
                continue;
            }
            let typ = if ft.is_char_device() {
                LinuxDeviceType::C
            } else if ft.is_block_device() {
                LinuxDeviceType::B
            } else {
                continue;
            };
            if p == std::path::Path::new("/dev/console") {
                continue;
            }
            let rdev = md.rdev();
            let dev = oci_spec::runtime::LinuxDeviceBuilder::default()
                .path(p)
                .typ(typ)
                .major(nix::sys::stat::major(rdev) as i64)
                .minor(nix::sys::stat::minor(rdev) as i64)
                .file_mode(md.mode() & 0o777)
                .uid(md.uid())
                .gid(md.gid())
                .build();
            if let Ok(d) = dev {
                out.push(d);
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::oci::caps;

    fn input() -> SpecInput {
        SpecInput {
            hostname: "abc".into(),
            args: vec!["sh".into()],
            env: vec!["PATH=/bin".into()],
            cwd: "/".into(),
            terminal: false,
            uid: 0,
            gid: 0,
            additional_gids: vec![],
            caps: caps::effective(&[], &[], false).unwrap(),
            privileged: false,
            no_new_privileges: false,
            seccomp: None,
            rootfs: "/r".into(),
            readonly_rootfs: false,
            netns: "/run/netns/x".into(),
            etc_binds: vec![("/s/hosts".into(), "hosts")],
            usr: None,
            host_dirs: vec![],
            volumes: vec![],
            cgroups_path: "/linkrt/abc".into(),
            memory: Some(32 << 20),
            nano_cpus: Some(1_500_000_000),
            pids_limit: Some(100),
            devices: vec![],
        }
    }

    fn names(c: &Option<oci_spec::runtime::Capabilities>) -> BTreeSet<String> {
        c.iter()
            .flatten()
            .map(|c| serde_json::to_value(c).unwrap().as_str().unwrap().to_string())
            .collect()
    }

    /// The generated spec against Docker's defaults (moby `daemon/pkg/oci/defaults.go`).
    #[test]
    fn matches_dockers_defaults() {
        let s = build(&input()).unwrap();
        let p = s.process().as_ref().unwrap();
        let c = p.capabilities().as_ref().unwrap();
        let docker: BTreeSet<String> = caps::DOCKER_DEFAULT.iter().map(|s| s.to_string()).collect();
        assert_eq!(names(c.bounding()), docker);
        assert_eq!(names(c.effective()), docker);
        assert_eq!(names(c.permitted()), docker);
        assert!(names(c.inheritable()).is_empty() && names(c.ambient()).is_empty());
        let l = s.linux().as_ref().unwrap();
        let masked = l.masked_paths().clone().unwrap();
        for m in MASKED_PATHS {
            assert!(masked.iter().any(|x| x == m), "{m} masked");
        }
        assert_eq!(
            l.readonly_paths().clone().unwrap(),
            ["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"]
        );
        // Devices: deny all; allow c 1:5 1:3 1:9 1:8 5:0 5:1; deny fuse (c 10:229).
        let d = l.resources().as_ref().unwrap().devices().clone().unwrap();
        let rules: Vec<(bool, Option<i64>, Option<i64>)> =
            d.iter().map(|r| (r.allow(), r.major(), r.minor())).collect();
        assert_eq!(
            rules,
            [
                (false, None, None),
                (true, Some(1), Some(5)),
                (true, Some(1), Some(3)),
                (true, Some(1), Some(9)),
                (true, Some(1), Some(8)),
                (true, Some(5), Some(0)),
                (true, Some(5), Some(1)),
                (false, Some(10), Some(229)),
            ]
        );
        let ns: Vec<String> = l
            .namespaces()
            .iter()
            .flatten()
            .map(|n| {
                format!(
                    "{:?}{}",
                    n.typ(),
                    n.path().as_ref().map(|p| p.display().to_string()).unwrap_or_default()
                )
            })
            .collect();
        assert_eq!(ns, ["Mount", "Network/run/netns/x", "Uts", "Pid", "Ipc", "Cgroup"]);
        let mounts: Vec<(String, Vec<String>)> = s
            .mounts()
            .iter()
            .flatten()
            .map(|m| {
                (
                    m.destination().display().to_string(),
                    m.options().clone().unwrap_or_default(),
                )
            })
            .collect();
        let find = |d: &str| mounts.iter().find(|(x, _)| x == d).map(|(_, o)| o.clone()).unwrap();
        assert!(find("/sys").contains(&"ro".to_string()));
        assert!(find("/sys/fs/cgroup").contains(&"ro".to_string()));
        assert!(find("/dev").contains(&"mode=755".to_string()));
        assert!(find("/dev/pts").contains(&"newinstance".to_string()));
        assert!(find("/proc").contains(&"nosuid".to_string()));
        assert_eq!(find("/etc/hosts"), ["rbind", "rprivate"]);
        assert!(!mounts.iter().any(|(d, _)| d == "/dev/kmsg" || d == "/var/lib/linkrt"));
        let r = l.resources().as_ref().unwrap();
        assert_eq!(r.memory().as_ref().unwrap().limit(), Some(32 << 20));
        assert_eq!(r.cpu().as_ref().unwrap().quota(), Some(150_000));
        assert_eq!(r.pids().as_ref().unwrap().limit(), 100);
        assert!(!p.no_new_privileges().unwrap_or(false), "Docker's default");
    }

    #[test]
    fn privileged_opens_everything() {
        let mut i = input();
        i.privileged = true;
        i.caps = caps::effective(&[], &[], true).unwrap();
        let s = build(&i).unwrap();
        let l = s.linux().as_ref().unwrap();
        assert!(l.masked_paths().iter().flatten().next().is_none());
        assert!(l.readonly_paths().iter().flatten().next().is_none());
        let d = l.resources().as_ref().unwrap().devices().clone().unwrap();
        assert!(d.len() == 1 && d[0].allow());
        let c = s.process().as_ref().unwrap().capabilities().as_ref().unwrap();
        assert!(names(c.bounding()).contains("CAP_SYS_ADMIN"));
        let sys = s
            .mounts()
            .iter()
            .flatten()
            .find(|m| m.destination() == std::path::Path::new("/sys"))
            .unwrap();
        assert!(sys.options().as_ref().unwrap().contains(&"rw".to_string()));
    }
}
