//! The kernel matrix: linkrt's privileged test suites on another kernel, in qemu.
//!
//! Modelled on aya's `xtask integration-test vm` and kunai's `scripts/ci/test_kernel.sh` (boot a
//! distribution kernel with `-kernel`/`-initrd`, read the guest's output, decide on a marker it
//! prints), with one difference: the tests are not packed into the initramfs. The guest gets this
//! machine's root file system read-only over virtio-9p, so the test binaries cargo built, the
//! linkrt binary, runc, iproute2 and python are all there at their usual paths.
//!
//! - [`fetch_kernel`] (run by `cargo xtask setup`) downloads Debian's `linux-image-<series>.0-N-amd64`
//!   with `apt-get download` (the package is never installed: no boot hooks, no update-grub), unpacks
//!   `vmlinuz`, its config and the modules the tests can need into `target/vm/kernel-<series>/`,
//!   runs `depmod` there, and writes a small initramfs: static busybox, the virtio/9p modules and a
//!   first-stage init.
//! - That init mounts the host's `/` read-only, tmpfs on `/run`, `/tmp`, `/var/tmp` and `/dev/shm`,
//!   proc, sysfs, cgroup2 (a pure v2 layout, as on a default Debian 12 host), bpffs and a second,
//!   writable 9p export (the job directory) on `/run/vm`, then `switch_root`s into the job's
//!   `init.sh`.
//! - `init.sh` (written per run by [`run`]) brings `lo` up, points the kernel's module loader at the
//!   unpacked modules, runs each test binary in its package directory, records the exit codes in the
//!   job directory and powers off. The guest has no network device.
//! - The first serial port carries the kernel log (kept as `target/vm/<series>-console.log`), the
//!   second the tests' output, which is passed through and counted like `cargo test`'s.
use std::{
    fs,
    io::{BufRead, BufReader, Write},
    path::{Path, PathBuf},
    process::{Command, Stdio},
    sync::mpsc,
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail};

use crate::build::workspace_root;

/// The kernel series `cargo xtask test` runs the datapath suite on by default (Debian 12's).
pub const DEFAULT_SERIES: &str = "6.1";

/// Modules the first-stage init loads (with their dependencies) before it can mount the root.
const BOOT_MODULES: &[&str] = &["virtio_pci", "9pnet_virtio", "9p"];

const QEMU: &str = "qemu-system-x86_64";

/// Where unpacked kernels and the logs of the last runs live.
pub fn cache_dir() -> PathBuf {
    workspace_root().join("target/vm")
}

/// One unpacked kernel, ready to boot.
#[derive(Debug)]
pub struct Kernel {
    /// `6.1`
    pub series: String,
    /// `6.1.0-57-amd64`, the guest's `uname -r`.
    pub release: String,
    /// The Debian package it came from, with its version.
    pub package: String,
    /// `target/vm/kernel-<series>`: `vmlinuz`, `config`, `initramfs.cpio`, `lib/modules/<release>`.
    pub dir: PathBuf,
}

impl Kernel {
    fn vmlinuz(&self) -> PathBuf {
        self.dir.join("vmlinuz")
    }

    fn initramfs(&self) -> PathBuf {
        self.dir.join("initramfs.cpio")
    }

    /// The unpacked kernel of `series`, or a clear error naming the command that fetches it.
    pub fn cached(series: &str) -> Result<Kernel> {
        let dir = cache_dir().join(format!("kernel-{series}"));
        let manifest = dir.join("kernel.txt");
        let text = fs::read_to_string(&manifest).with_context(|| {
            format!(
                "kernel {series} is not unpacked ({} missing): run `cargo xtask setup` (it fetches Debian's {series} kernel package)",
                manifest.display()
            )
        })?;
        let field = |k: &str| {
            text.lines()
                .find_map(|l| l.strip_prefix(k)?.strip_prefix('='))
                .map(str::to_owned)
                .with_context(|| format!("{}: no {k}= line", manifest.display()))
        };
        let k = Kernel {
            series: series.to_string(),
            release: field("release")?,
            package: field("package")?,
            dir,
        };
        for f in [k.vmlinuz(), k.initramfs()] {
            if !f.is_file() {
                bail!("{} missing: run `cargo xtask setup` again", f.display());
            }
        }
        Ok(k)
    }
}

fn check(cmd: &mut Command) -> Result<()> {
    let st = cmd.status().with_context(|| format!("running {cmd:?}"))?;
    if !st.success() {
        bail!("{cmd:?} failed: {st}");
    }
    Ok(())
}

fn output(cmd: &mut Command) -> Result<String> {
    let out = cmd.output().with_context(|| format!("running {cmd:?}"))?;
    if !out.status.success() {
        bail!(
            "{cmd:?} failed: {}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The newest `linux-image-<series>.0-N-amd64` in apt's lists (the generic flavour: the cloud one
/// has no 9p).
fn newest_package(series: &str) -> Result<Option<String>> {
    let pattern = format!("^linux-image-{}\\.0-[0-9]+-amd64$", series.replace('.', "\\."));
    let list = output(Command::new("apt-cache").args(["search", "--names-only", &pattern]))?;
    let abi = |name: &str| -> Option<u32> {
        name.strip_prefix(&format!("linux-image-{series}.0-"))?
            .strip_suffix("-amd64")?
            .parse()
            .ok()
    };
    Ok(list
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter(|n| abi(n).is_some())
        .max_by_key(|n| abi(n))
        .map(str::to_owned))
}

/// Whether a path inside the kernel package is worth unpacking: the kernel, its config, and the
/// modules of networking, file systems, virtio, and what they depend on (not the GPU, sound,
/// wireless... drivers, three quarters of the package).
fn wanted(path: &str, release: &str) -> bool {
    let path = path.trim_start_matches("./");
    if path == format!("boot/vmlinuz-{release}") || path == format!("boot/config-{release}") {
        return true;
    }
    let Some(rel) = path.strip_prefix(&format!("lib/modules/{release}/")) else {
        return false;
    };
    if rel.ends_with('/') {
        return false;
    }
    if !rel.ends_with(".ko") {
        // modules.order, modules.builtin, modules.builtin.modinfo (depmod reads them).
        return !rel.contains('/');
    }
    const TREES: &[&str] = &[
        "kernel/net/",
        "kernel/fs/",
        "kernel/lib/",
        "kernel/crypto/",
        "kernel/arch/",
        "kernel/block/",
        "kernel/kernel/",
        "kernel/mm/",
        "kernel/security/",
        "kernel/virt/",
        "kernel/drivers/virtio/",
        "kernel/drivers/char/",
        "kernel/drivers/block/",
        "kernel/drivers/net/vxlan/",
        "kernel/drivers/net/ipvlan/",
    ];
    TREES.iter().any(|t| rel.starts_with(t))
        || rel
            .strip_prefix("kernel/drivers/net/")
            .is_some_and(|f| !f.contains('/'))
}

/// Downloads and unpacks Debian's kernel of `series` (e.g. `6.1`) unless it is already there.
pub fn fetch_kernel(series: &str) -> Result<Kernel> {
    if let Ok(k) = Kernel::cached(series) {
        println!(
            "[setup] kernel {series}: {} already unpacked in {}",
            k.package,
            k.dir.display()
        );
        return Ok(k);
    }
    let mut pkg = newest_package(series)?;
    if pkg.is_none() {
        println!("[setup] apt-get update (looking for Debian's {series} kernel)");
        check(Command::new("apt-get").args(["update", "-qq"]))?;
        pkg = newest_package(series)?;
    }
    let pkg = pkg.with_context(|| {
        format!("no package linux-image-{series}.0-N-amd64 in apt's lists (Debian 12 ships 6.1): cannot fetch kernel {series}")
    })?;
    let release = pkg.trim_start_matches("linux-image-").to_string();
    let dir = cache_dir().join(format!("kernel-{series}"));
    let staging = cache_dir().join(format!("kernel-{series}.partial"));
    if staging.exists() {
        fs::remove_dir_all(&staging).with_context(|| format!("removing {}", staging.display()))?;
    }
    fs::create_dir_all(&staging).with_context(|| format!("creating {}", staging.display()))?;
    println!(
        "[setup] apt-get download {pkg} (unpacked into {}, not installed)",
        dir.display()
    );
    check(
        Command::new("apt-get")
            // Root downloads into a directory the _apt sandbox user cannot write: say so to apt.
            .args(["download", "-qq", "-o", "APT::Sandbox::User=root", &pkg])
            .current_dir(&staging),
    )?;
    let deb = fs::read_dir(&staging)?
        .flatten()
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|e| e == "deb"))
        .context("apt-get download left no .deb")?;
    let version = output(Command::new("dpkg-deb").args(["-f"]).arg(&deb).arg("Version"))?;
    let listing = output(
        Command::new("sh")
            .arg("-c")
            .arg(format!("dpkg-deb --fsys-tarfile '{}' | tar -t", deb.display())),
    )?;
    let list: Vec<&str> = listing.lines().filter(|p| wanted(p, &release)).collect();
    if !list.iter().any(|p| p.ends_with(&format!("vmlinuz-{release}"))) {
        bail!("{pkg} has no boot/vmlinuz-{release}");
    }
    let list_file = staging.join("files.txt");
    fs::write(&list_file, list.join("\n") + "\n")?;
    check(Command::new("sh").arg("-c").arg(format!(
        "dpkg-deb --fsys-tarfile '{}' | tar -x --no-recursion -C '{}' -T '{}'",
        deb.display(),
        staging.display(),
        list_file.display()
    )))?;
    fs::rename(staging.join(format!("boot/vmlinuz-{release}")), staging.join("vmlinuz"))?;
    fs::rename(staging.join(format!("boot/config-{release}")), staging.join("config"))?;
    for f in [deb, list_file, staging.join("boot")] {
        if f.is_dir() {
            fs::remove_dir_all(&f)?;
        } else {
            fs::remove_file(&f)?;
        }
    }
    check(Command::new("depmod").arg("-b").arg(&staging).arg(&release))?;
    let modules = staging.join("lib/modules").join(&release);
    let order = boot_modules(&modules)?;
    write_initramfs(&staging.join("initramfs.cpio"), &modules, &order)?;
    fs::write(
        staging.join("kernel.txt"),
        format!("series={series}\nrelease={release}\npackage={pkg} {}\n", version.trim()),
    )?;
    if dir.exists() {
        fs::remove_dir_all(&dir)?;
    }
    fs::rename(&staging, &dir)?;
    let k = Kernel::cached(series)?;
    println!("[setup] kernel {series}: {} unpacked in {}", k.package, k.dir.display());
    Ok(k)
}

/// The module files (relative to the modules directory) the first-stage init loads, dependencies
/// first, from depmod's `modules.dep` (which lists a module's dependencies last-to-load first).
fn boot_modules(modules: &Path) -> Result<Vec<String>> {
    let dep = fs::read_to_string(modules.join("modules.dep")).context("reading modules.dep")?;
    let builtin = fs::read_to_string(modules.join("modules.builtin")).unwrap_or_default();
    let name = |p: &str| {
        Path::new(p)
            .file_stem()
            .map(|s| s.to_string_lossy().replace('-', "_"))
            .unwrap_or_default()
    };
    let deps: std::collections::HashMap<String, (String, Vec<String>)> = dep
        .lines()
        .filter_map(|l| {
            let (m, d) = l.split_once(':')?;
            Some((
                name(m),
                (m.to_string(), d.split_whitespace().map(str::to_owned).collect()),
            ))
        })
        .collect();
    let mut order: Vec<String> = Vec::new();
    for want in BOOT_MODULES {
        if builtin.lines().any(|l| name(l) == *want) {
            continue;
        }
        let (path, ds) = deps
            .get(*want)
            .with_context(|| format!("module {want} is neither built in nor in modules.dep"))?;
        for p in ds.iter().rev().chain(std::iter::once(path)) {
            if !order.contains(p) {
                order.push(p.clone());
            }
        }
    }
    Ok(order)
}

/// The first-stage init: mounts the host's root and the job directory, then `switch_root`s.
const STAGE1: &str = r#"#!/bin/busybox sh
bb=/bin/busybox
fail() { echo "vm: init failed: $*"; $bb poweroff -f; }
$bb mount -t proc proc /proc || fail "mount /proc"
$bb mount -t devtmpfs devtmpfs /dev || fail "mount /dev"
while read m; do $bb insmod "/modules/$m" || fail "insmod $m"; done < /modules/order
opts=trans=virtio,version=9p2000.L,msize=512000
$bb mount -t 9p -o "$opts,ro,cache=loose" hostroot /newroot || fail "mount the host's root (9p)"
r=/newroot
$bb mount -t tmpfs -o mode=755 tmpfs $r/run || fail "tmpfs /run"
$bb mkdir -p $r/run/vm
$bb mount -t 9p -o "$opts" job $r/run/vm || fail "mount the job directory (9p)"
$bb mount -t proc proc $r/proc || fail "mount proc"
$bb mount -t sysfs sysfs $r/sys || fail "mount sysfs"
$bb mount -t cgroup2 cgroup2 $r/sys/fs/cgroup || fail "mount cgroup2"
$bb mount -t bpf -o mode=700 bpf $r/sys/fs/bpf || fail "mount bpffs"
$bb mount -t debugfs debugfs $r/sys/kernel/debug
$bb mount --move /dev $r/dev || fail "move /dev"
$bb mkdir -p $r/dev/pts $r/dev/shm
$bb mount -t devpts -o gid=5,mode=620,ptmxmode=666 devpts $r/dev/pts || fail "mount devpts"
for d in dev/shm tmp var/tmp; do $bb mount -t tmpfs -o mode=1777 tmpfs $r/$d || fail "tmpfs /$d"; done
$bb umount /proc
exec $bb switch_root $r /bin/sh /run/vm/init.sh
"#;

/// A `newc` cpio archive (the initramfs format the kernel unpacks), written entry by entry.
struct Cpio<W: Write> {
    out: W,
    ino: u32,
    len: u64,
}

impl<W: Write> Cpio<W> {
    fn entry(&mut self, name: &str, mode: u32, rdev: (u32, u32), data: &[u8]) -> Result<()> {
        self.ino += 1;
        let header = format!(
            "070701{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}",
            self.ino,
            mode,
            0,
            0,
            1,
            0,
            data.len(),
            0,
            0,
            rdev.0,
            rdev.1,
            name.len() + 1,
            0
        );
        self.write(header.as_bytes())?;
        self.write(name.as_bytes())?;
        self.write(&[0])?;
        self.pad()?;
        self.write(data)?;
        self.pad()
    }

    fn write(&mut self, b: &[u8]) -> Result<()> {
        self.out.write_all(b)?;
        self.len += b.len() as u64;
        Ok(())
    }

    fn pad(&mut self) -> Result<()> {
        let n = (4 - self.len % 4) % 4;
        self.write(&[0u8; 3][..n as usize])
    }

    fn dir(&mut self, name: &str) -> Result<()> {
        self.entry(name, 0o040755, (0, 0), &[])
    }

    fn file(&mut self, name: &str, mode: u32, data: &[u8]) -> Result<()> {
        self.entry(name, 0o100000 | mode, (0, 0), data)
    }

    fn finish(mut self) -> Result<()> {
        self.entry("TRAILER!!!", 0, (0, 0), &[])?;
        self.out.flush()?;
        Ok(())
    }
}

fn write_initramfs(path: &Path, modules: &Path, order: &[String]) -> Result<()> {
    let busybox = fs::read("/usr/bin/busybox").context("reading /usr/bin/busybox (package busybox-static)")?;
    let f = fs::File::create(path).with_context(|| format!("creating {}", path.display()))?;
    let mut c = Cpio {
        out: std::io::BufWriter::new(f),
        ino: 0,
        len: 0,
    };
    for d in ["bin", "dev", "proc", "newroot", "modules"] {
        c.dir(d)?;
    }
    // The kernel opens /dev/console for init before anything is mounted.
    c.entry("dev/console", 0o020600, (5, 1), &[])?;
    c.file("bin/busybox", 0o755, &busybox)?;
    c.file("init", 0o755, STAGE1.as_bytes())?;
    let mut names = Vec::new();
    for m in order {
        let file = Path::new(m).file_name().unwrap().to_string_lossy().into_owned();
        let data = fs::read(modules.join(m)).with_context(|| format!("reading module {m}"))?;
        c.file(&format!("modules/{file}"), 0o644, &data)?;
        names.push(file);
    }
    c.file("modules/order", 0o644, (names.join("\n") + "\n").as_bytes())?;
    c.finish()
}

/// How the guest's CPU is run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Accel {
    /// KVM where it can boot a stock kernel, else software emulation (see [`choose_accel`]).
    Auto,
    Kvm,
    /// Software emulation (qemu's TCG, multi-threaded): slower, needs nothing from the host.
    Tcg,
}

/// The accelerator to use, and why.
pub fn choose_accel(requested: Accel) -> Result<(Accel, String)> {
    let kvm = Path::new("/dev/kvm");
    // PVM ("pagetable-based virtual machine") provides /dev/kvm inside a VM without hardware
    // virtualisation, but only for guest kernels built for it: a stock kernel hangs right after
    // its real-mode setup. This machine kind is such a host.
    let pvm = Path::new("/sys/module/kvm_pvm").exists();
    match requested {
        Accel::Tcg => Ok((Accel::Tcg, "software emulation (--accel tcg)".into())),
        Accel::Kvm => {
            if !kvm.exists() {
                bail!("--accel kvm: /dev/kvm does not exist (no KVM on this machine); use --accel tcg");
            }
            if pvm {
                bail!(
                    "--accel kvm: this host's KVM is PVM (kvm_pvm), which boots only PVM-enabled guest kernels, not Debian's; use --accel tcg"
                );
            }
            Ok((Accel::Kvm, "KVM".into()))
        }
        Accel::Auto => {
            if !kvm.exists() {
                bail!(
                    "/dev/kvm does not exist, so the kernel test cannot use KVM: enable KVM (nested virtualisation) or run it emulated with --accel tcg"
                );
            }
            if pvm {
                return Ok((
                    Accel::Tcg,
                    "software emulation: this host's /dev/kvm is PVM (kvm_pvm), which cannot boot a stock Debian kernel".into(),
                ));
            }
            if fs::OpenOptions::new().read(true).write(true).open(kvm).is_err() {
                bail!("/dev/kvm exists but cannot be opened read-write (run as root, or add yourself to group kvm)");
            }
            Ok((Accel::Kvm, "KVM".into()))
        }
    }
}

/// One test binary to run in the guest.
#[derive(Debug, Clone)]
pub struct TestBinary {
    /// The cargo target's name (`datapath`).
    pub name: String,
    pub path: PathBuf,
    /// Its package's directory (cargo runs tests there).
    pub cwd: PathBuf,
}

/// The test binaries `cargo test ARGS` would run, built if needed
/// (`cargo test --no-run --message-format=json`).
pub fn test_binaries(cargo_args: &[String]) -> Result<Vec<TestBinary>> {
    let out = Command::new("cargo")
        .args(["test", "--no-run", "--message-format=json"])
        .args(cargo_args)
        .current_dir(workspace_root())
        .stderr(Stdio::inherit())
        .output()
        .context("running cargo test --no-run")?;
    if !out.status.success() {
        bail!("cargo test --no-run {} failed", cargo_args.join(" "));
    }
    let mut bins = Vec::new();
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let Ok(v) = serde_json::from_str::<serde_json::Value>(line) else {
            continue;
        };
        if v["reason"] != "compiler-artifact" || v["profile"]["test"] != true {
            continue;
        }
        let (Some(exe), Some(name), Some(manifest)) = (
            v["executable"].as_str(),
            v["target"]["name"].as_str(),
            v["manifest_path"].as_str(),
        ) else {
            continue;
        };
        bins.push(TestBinary {
            name: name.to_string(),
            path: PathBuf::from(exe),
            cwd: Path::new(manifest).parent().unwrap().to_path_buf(),
        });
    }
    if bins.is_empty() {
        bail!("cargo test {} selects no test binary", cargo_args.join(" "));
    }
    Ok(bins)
}

/// What a run in the guest found.
#[derive(Debug, Default)]
pub struct Outcome {
    pub passed: u64,
    pub failed: u64,
    /// Binaries that exited non-zero (or never reported), with their exit code.
    pub failed_binaries: Vec<(String, Option<i32>)>,
    pub elapsed: Duration,
}

/// Options of one guest run.
pub struct RunOptions<'a> {
    pub kernel: &'a Kernel,
    pub accel: Accel,
    pub binaries: &'a [TestBinary],
    /// Arguments for every test binary (a filter, `--test-threads=1`...).
    pub test_args: &'a [String],
    /// Environment for the test binaries.
    pub env: &'a [(String, String)],
    pub timeout: Duration,
    pub memory_mib: u32,
    pub cpus: u32,
}

fn sh_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// The second-stage init: runs each binary, records `NAME EXIT_CODE` in `/run/vm/status`.
fn stage2(o: &RunOptions) -> String {
    let mut s = String::from(
        "#!/bin/sh\n\
         # Written by `cargo xtask test --kernel`: PID 1 of the guest, on the host's root (read-only).\n\
         export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin HOME=/root LANG=C.UTF-8 TERM=dumb\n\
         exec </dev/null >/dev/ttyS1 2>&1\n\
         echo /run/vm/modprobe > /proc/sys/kernel/modprobe\n\
         /usr/bin/busybox hostname linkrt-vm\n\
         ip link set lo up\n\
         echo \"vm: kernel $(uname -r), $(nproc) CPUs\"\n",
    );
    let env: String = o.env.iter().map(|(k, v)| format!("{k}={} ", sh_quote(v))).collect();
    let args: String = o.test_args.iter().map(|a| format!(" {}", sh_quote(a))).collect();
    for b in o.binaries {
        s.push_str(&format!(
            "echo \"vm: running {name}\"\n\
             (cd {cwd} && env {env}CARGO_MANIFEST_DIR={cwd} RUST_BACKTRACE=1 {bin}{args})\n\
             echo \"{name} $?\" >> /run/vm/status\n",
            name = b.name,
            cwd = sh_quote(&b.cwd.to_string_lossy()),
            bin = sh_quote(&b.path.to_string_lossy()),
        ));
    }
    s.push_str("echo \"vm: done\"\nsync\n/usr/bin/busybox poweroff -f\n");
    s
}

/// A directory removed on drop.
struct JobDir(PathBuf);

impl Drop for JobDir {
    fn drop(&mut self) {
        if let Err(e) = fs::remove_dir_all(&self.0) {
            eprintln!("xtask: removing {}: {e}", self.0.display());
        }
    }
}

/// Boots the kernel with the host's root, runs the binaries, and counts the results.
pub fn run(o: &RunOptions) -> Result<Outcome> {
    let qemu =
        which(QEMU).with_context(|| format!("{QEMU} not found: run `cargo xtask setup` (package qemu-system-x86)"))?;
    let started = Instant::now();
    let job = JobDir(cache_dir().join(format!("job-{}-{}", o.kernel.series, std::process::id())));
    if job.0.exists() {
        fs::remove_dir_all(&job.0)?;
    }
    fs::create_dir_all(&job.0).with_context(|| format!("creating {}", job.0.display()))?;
    let write_exec = |name: &str, text: &str| -> Result<()> {
        use std::os::unix::fs::PermissionsExt;
        let p = job.0.join(name);
        fs::write(&p, text)?;
        fs::set_permissions(&p, fs::Permissions::from_mode(0o755))?;
        Ok(())
    };
    write_exec("init.sh", &stage2(o))?;
    // The kernel's module loader runs this for `ip link add type veth`, `tc qdisc add clsact`...
    write_exec(
        "modprobe",
        &format!(
            "#!/bin/sh\nexec /usr/sbin/modprobe -d {} \"$@\"\n",
            sh_quote(&o.kernel.dir.to_string_lossy())
        ),
    )?;
    fs::write(job.0.join("status"), "")?;
    let console = cache_dir().join(format!("{}-console.log", o.kernel.series));

    let mut cmd = Command::new(qemu);
    cmd.args(["-nodefaults", "-no-user-config", "-display", "none", "-no-reboot"]);
    match o.accel {
        Accel::Kvm => cmd.args(["-accel", "kvm", "-cpu", "host"]),
        _ => cmd.args(["-accel", "tcg,thread=multi", "-cpu", "max"]),
    };
    cmd.args(["-m", &format!("{}M", o.memory_mib), "-smp", &o.cpus.to_string()])
        .arg("-kernel")
        .arg(o.kernel.vmlinuz())
        .arg("-initrd")
        .arg(o.kernel.initramfs())
        .arg("-append")
        .arg("console=ttyS0 panic=-1 loglevel=4 random.trust_cpu=on mitigations=off")
        .arg("-serial")
        .arg(format!("file:{}", console.display()))
        .args(["-serial", "stdio"])
        .arg("-fsdev")
        .arg("local,id=hostroot,path=/,security_model=none,readonly=on,multidevs=remap")
        .args(["-device", "virtio-9p-pci,fsdev=hostroot,mount_tag=hostroot"])
        .arg("-fsdev")
        .arg(format!(
            "local,id=job,path={},security_model=none,multidevs=remap",
            job.0.display()
        ))
        .args(["-device", "virtio-9p-pci,fsdev=job,mount_tag=job"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().with_context(|| format!("starting {cmd:?}"))?;
    let stdout = child.stdout.take().unwrap();
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = mpsc::channel::<Option<String>>();
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if tx.send(Some(line.trim_end_matches('\r').to_string())).is_err() {
                break;
            }
        }
        let _ = tx.send(None);
    });
    let errs = std::thread::spawn(move || {
        let mut s = String::new();
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            s.push_str(&line);
            s.push('\n');
        }
        s
    });

    let mut out = Outcome::default();
    let mut current: Option<String> = None;
    let mut done = false;
    let mut timed_out = false;
    loop {
        let left = o.timeout.saturating_sub(started.elapsed());
        match rx.recv_timeout(left.max(Duration::from_millis(1))) {
            Ok(Some(line)) => {
                println!("{line}");
                if let Some((p, f)) = crate::parse_result_line(&line) {
                    out.passed += p;
                    out.failed += f;
                }
                if let Some(name) = line.strip_prefix("vm: running ") {
                    current = Some(name.to_string());
                }
                if line == "vm: done" {
                    done = true;
                }
            }
            Ok(None) => break,
            Err(mpsc::RecvTimeoutError::Timeout) => {
                timed_out = true;
                break;
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
        }
    }
    if timed_out {
        child.kill().context("killing qemu")?;
    }
    let st = child.wait().context("waiting for qemu")?;
    reader.join().expect("reader thread");
    let qemu_err = errs.join().expect("stderr thread");
    out.elapsed = started.elapsed();
    let tail = || {
        let log = fs::read_to_string(&console).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(40)..].join("\n")
    };
    if timed_out {
        bail!(
            "kernel {}: no result within {:?} (last binary started: {}); kernel log {}:\n{}",
            o.kernel.release,
            o.timeout,
            current.as_deref().unwrap_or("none"),
            console.display(),
            tail()
        );
    }
    if !st.success() {
        bail!(
            "{QEMU} failed ({st}): {}\nkernel log {}:\n{}",
            qemu_err.trim(),
            console.display(),
            tail()
        );
    }
    let status = fs::read_to_string(job.0.join("status")).unwrap_or_default();
    for b in o.binaries {
        let code = status
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{} ", b.name))?.trim().parse::<i32>().ok());
        if code != Some(0) {
            out.failed_binaries.push((b.name.clone(), code));
        }
    }
    if !done {
        bail!(
            "kernel {}: the guest stopped before finishing (last binary started: {}); kernel log {}:\n{}",
            o.kernel.release,
            current.as_deref().unwrap_or("none"),
            console.display(),
            tail()
        );
    }
    Ok(out)
}

fn which(bin: &str) -> Option<PathBuf> {
    std::env::var("PATH")
        .unwrap_or_default()
        .split(':')
        .chain(["/usr/bin", "/usr/sbin"])
        .map(|d| Path::new(d).join(bin))
        .find(|p| p.is_file())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unpacks_only_what_the_tests_need() {
        let r = "6.1.0-57-amd64";
        for yes in [
            "./boot/vmlinuz-6.1.0-57-amd64",
            "./boot/config-6.1.0-57-amd64",
            "./lib/modules/6.1.0-57-amd64/modules.order",
            "./lib/modules/6.1.0-57-amd64/kernel/net/sched/sch_ingress.ko",
            "./lib/modules/6.1.0-57-amd64/kernel/fs/9p/9p.ko",
            "./lib/modules/6.1.0-57-amd64/kernel/drivers/net/veth.ko",
            "./lib/modules/6.1.0-57-amd64/kernel/drivers/virtio/virtio_pci.ko",
        ] {
            assert!(wanted(yes, r), "{yes}");
        }
        for no in [
            "./boot/System.map-6.1.0-57-amd64",
            "./lib/modules/6.1.0-57-amd64/kernel/",
            "./lib/modules/6.1.0-57-amd64/kernel/drivers/gpu/drm/i915/i915.ko",
            "./lib/modules/6.1.0-57-amd64/kernel/drivers/net/wireless/intel/iwlwifi/iwlwifi.ko",
            "./usr/share/doc/linux-image-6.1.0-57-amd64/changelog.gz",
        ] {
            assert!(!wanted(no, r), "{no}");
        }
    }

    #[test]
    fn cpio_entries_are_aligned() {
        let mut buf = Vec::new();
        let mut c = Cpio {
            out: &mut buf,
            ino: 0,
            len: 0,
        };
        c.file("init", 0o755, b"abcde").unwrap();
        c.finish().unwrap();
        assert!(buf.starts_with(b"070701"));
        assert_eq!(buf.len() % 4, 0);
        // Header (110) + "init\0" (5) padded to 116, data 5 padded to 8.
        assert_eq!(&buf[116..121], b"abcde");
        assert!(buf.windows(10).any(|w| w == b"TRAILER!!!"));
    }

    #[test]
    fn stage2_runs_each_binary_and_records_its_code() {
        let k = Kernel {
            series: "6.1".into(),
            release: "6.1.0-57-amd64".into(),
            package: "p".into(),
            dir: "/k".into(),
        };
        let bins = [TestBinary {
            name: "datapath".into(),
            path: "/w/target/debug/deps/datapath-1".into(),
            cwd: "/w/tests".into(),
        }];
        let s = stage2(&RunOptions {
            kernel: &k,
            accel: Accel::Tcg,
            binaries: &bins,
            test_args: &["it's".into()],
            env: &[("LINKRT_BIN".into(), "/w/target/debug/linkrt".into())],
            timeout: Duration::from_secs(1),
            memory_mib: 1,
            cpus: 1,
        });
        assert!(s.contains("(cd '/w/tests' && env LINKRT_BIN='/w/target/debug/linkrt' CARGO_MANIFEST_DIR='/w/tests' RUST_BACKTRACE=1 '/w/target/debug/deps/datapath-1' 'it'\\''s')"), "{s}");
        assert!(s.contains("echo \"datapath $?\" >> /run/vm/status"));
        assert!(s.ends_with("poweroff -f\n"));
    }
}
