//! Building the eBPF object with Debian's rustc and the userspace with rustup's.
use std::{
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{Context, Result, bail};

pub const DEBIAN_RUSTC: &str = "/usr/bin/rustc";

pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

pub fn build_ebpf() -> Result<()> {
    let root = workspace_root();
    println!("[build] eBPF object with {DEBIAN_RUSTC} (RUSTC_BOOTSTRAP=1) + bpf-linker");
    let st = Command::new("cargo")
        .args([
            "build",
            "--package",
            "linkrt-ebpf",
            "--target",
            "bpfel-unknown-none",
            "--release",
        ])
        .env("RUSTC", DEBIAN_RUSTC)
        .env("RUSTC_BOOTSTRAP", "1")
        .env("CARGO_TARGET_DIR", root.join("target/bpf"))
        // A rustup toolchain's RUSTFLAGS or wrapper must not leak into the BPF build.
        .env_remove("RUSTFLAGS")
        .env_remove("RUSTC_WRAPPER")
        .current_dir(&root)
        .status()
        .context("running cargo for the eBPF crate")?;
    if !st.success() {
        bail!("building linkrt-ebpf failed (is the toolchain installed? run `cargo xtask setup`)");
    }
    Ok(())
}

pub fn build_all(release: bool) -> Result<()> {
    build_ebpf()?;
    build_userspace(release, &["--workspace", "--all-targets"], "workspace, all targets")
}

/// The `demo` profile (Cargo.toml): no optimization and no debug info, for `cargo xtask run`.
pub const DEMO_PROFILE: &str = "demo";

/// The `linkrt` binary that `cargo xtask run` runs.
pub fn demo_binary() -> PathBuf {
    workspace_root().join("target").join(DEMO_PROFILE).join("linkrt")
}

const LINKRT_BIN: [&str; 6] = ["--package", "linkrt", "--bin", "linkrt", "--profile", DEMO_PROFILE];

/// Starts compiling the `linkrt` binary's dependencies in the background (the output goes to
/// `target/xtask-run-build.log`), so that they build while `setup` installs packages and
/// bpf-linker. The binary itself is built again once the eBPF object exists ([`finish_linkrt`]).
pub fn spawn_linkrt_build() -> Result<(std::process::Child, PathBuf)> {
    let root = workspace_root();
    std::fs::create_dir_all(root.join("target")).context("creating target/")?;
    let log = root.join("target/xtask-run-build.log");
    let out = std::fs::File::create(&log).with_context(|| format!("creating {}", log.display()))?;
    let err = out.try_clone().context("duplicating the build log")?;
    println!(
        "[build] userspace (the linkrt binary, profile {DEMO_PROFILE}) in the background: {}",
        log.display()
    );
    let child = Command::new("cargo")
        .arg("build")
        .args(LINKRT_BIN)
        .current_dir(&root)
        .stdout(out)
        .stderr(err)
        .spawn()
        .context("starting cargo build")?;
    Ok((child, log))
}

/// The eBPF object, then the `linkrt` binary that embeds it (its dependencies already built by
/// [`spawn_linkrt_build`]): not the tests or the benchmark.
pub fn finish_linkrt(bg: (std::process::Child, PathBuf)) -> Result<()> {
    let (mut child, log) = bg;
    let ebpf = build_ebpf();
    let st = child.wait().context("waiting for the background cargo build")?;
    ebpf?;
    if !st.success() {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        let tail: Vec<&str> = text.lines().rev().take(40).collect();
        bail!(
            "building the linkrt binary failed ({st}); the end of {}:\n{}",
            log.display(),
            tail.into_iter().rev().collect::<Vec<_>>().join("\n")
        );
    }
    build_userspace(false, &LINKRT_BIN, "the linkrt binary, with the eBPF object")
}

fn build_userspace(release: bool, what: &[&str], label: &str) -> Result<()> {
    let root = workspace_root();
    println!("[build] userspace ({label}) with rustup's cargo");
    let mut cmd = Command::new("cargo");
    cmd.arg("build").args(what).current_dir(&root);
    if release {
        cmd.arg("--release");
    }
    if !cmd.status().context("running cargo build")?.success() {
        bail!("building userspace failed");
    }
    Ok(())
}

/// The datapath before issue 11's hardening, for the benchmark's `linkrt_before` path: the
/// commit just before the hardening's first commit (`git log --oneline 0c47e0b..` lists the
/// hardening, from `46ea43d`/`dd5f268` on). It builds and runs with today's toolchain as it is.
pub const BEFORE_COMMIT: &str = "0c47e0b";

/// How the old commit's `linkrt` is built.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BeforeProfile {
    /// `cargo xtask bench`: release, as the tree under test.
    Release,
    /// The smoke run inside `cargo xtask test`: the cheapest build that runs (that commit's dev
    /// profile with no optimization and no debug info); its numbers are not read.
    Smoke,
}

/// The old commit's `linkrt` binary.
pub struct BeforeBuild {
    pub binary: PathBuf,
    /// Abbreviated commit (for the report).
    pub commit: String,
}

fn git(root: &Path, args: &[&str]) -> Result<String> {
    let o = Command::new("git")
        .args(args)
        .current_dir(root)
        .output()
        .context("running git")?;
    if !o.status.success() {
        bail!("git {args:?} failed: {}", String::from_utf8_lossy(&o.stderr).trim());
    }
    Ok(String::from_utf8_lossy(&o.stdout).trim().to_string())
}

/// Builds `linkrt` at [`BEFORE_COMMIT`] the way that commit builds itself (its xtask/build.rs
/// and linkrt/build.rs): the eBPF object with Debian's rustc (RUSTC_BOOTSTRAP=1) and
/// bpf-linker for bpfel-unknown-none, then the binary with rustup's cargo, the object passed
/// through `LINKRT_EBPF_OBJ`, both from that commit's own Cargo.lock (`--locked`). Everything
/// lives under `target/bench-before/<full commit>/`: the sources (`git archive`), and target
/// dirs of their own (`bpf/`, `target/`), so a second run is a no-op build of a cached tree.
pub fn build_before(profile: BeforeProfile) -> Result<BeforeBuild> {
    let root = workspace_root();
    let full = git(
        &root,
        &["rev-parse", "--verify", &format!("{BEFORE_COMMIT}^{{commit}}")],
    )
    .with_context(|| format!("the pre-hardening commit {BEFORE_COMMIT} is not in this repository"))?;
    let commit = git(&root, &["rev-parse", "--short", &full])?;
    let dir = root.join("target/bench-before").join(&full);
    let src = dir.join("src");
    let stamp = dir.join("src.complete");
    if !stamp.exists() {
        println!(
            "[build] linkrt at {commit} (before issue 11's hardening): git archive into {}",
            src.display()
        );
        if src.exists() {
            std::fs::remove_dir_all(&src).with_context(|| format!("removing {}", src.display()))?;
        }
        std::fs::create_dir_all(&src).with_context(|| format!("creating {}", src.display()))?;
        let mut archive = Command::new("git")
            .args(["archive", "--format=tar", &full])
            .current_dir(&root)
            .stdout(std::process::Stdio::piped())
            .spawn()
            .context("running git archive")?;
        let tar = Command::new("tar")
            .arg("-x")
            .arg("-C")
            .arg(&src)
            .stdin(archive.stdout.take().context("git archive's output")?)
            .status()
            .context("running tar")?;
        if !archive.wait()?.success() || !tar.success() {
            bail!("extracting {full} into {} failed", src.display());
        }
        std::fs::write(&stamp, format!("{full}\n"))?;
    }
    // A release build of the same (immutable) sources serves the smoke run too.
    let release = dir.join("target/release/linkrt");
    if profile == BeforeProfile::Smoke && release.is_file() {
        println!(
            "[build] linkrt at {commit}: the cached release build {}",
            release.display()
        );
        return Ok(BeforeBuild {
            binary: release,
            commit,
        });
    }
    println!("[build] linkrt at {commit}: eBPF object with {DEBIAN_RUSTC} (RUSTC_BOOTSTRAP=1) + bpf-linker");
    let st = Command::new("cargo")
        .args([
            "build",
            "--locked",
            "--package",
            "linkrt-ebpf",
            "--target",
            "bpfel-unknown-none",
            "--release",
        ])
        .env("RUSTC", DEBIAN_RUSTC)
        .env("RUSTC_BOOTSTRAP", "1")
        .env("CARGO_TARGET_DIR", dir.join("bpf"))
        .env_remove("RUSTFLAGS")
        .env_remove("RUSTC_WRAPPER")
        .current_dir(&src)
        .status()
        .context("running cargo for the old eBPF crate")?;
    if !st.success() {
        bail!("building linkrt-ebpf at {commit} failed");
    }
    let obj = dir.join("bpf/bpfel-unknown-none/release/linkrt-ebpf");
    if !obj.is_file() {
        bail!("the eBPF object of {commit} is not at {}", obj.display());
    }
    println!("[build] linkrt at {commit}: the binary ({profile:?}) with rustup's cargo");
    let mut cmd = Command::new("cargo");
    cmd.args(["build", "--locked", "--package", "linkrt", "--bin", "linkrt"])
        .env("LINKRT_EBPF_OBJ", &obj)
        .env("CARGO_TARGET_DIR", dir.join("target"))
        .env_remove("RUSTFLAGS")
        .env_remove("RUSTC_WRAPPER")
        .current_dir(&src);
    let out = match profile {
        BeforeProfile::Release => {
            cmd.arg("--release");
            "release"
        }
        BeforeProfile::Smoke => {
            for c in [
                "profile.dev.opt-level=0",
                "profile.dev.debug=false",
                "profile.dev.incremental=false",
                "profile.dev.package.\"*\".opt-level=0",
            ] {
                cmd.args(["--config", c]);
            }
            "debug"
        }
    };
    if !cmd.status().context("running cargo build")?.success() {
        bail!("building linkrt at {commit} failed");
    }
    let binary = dir.join("target").join(out).join("linkrt");
    if !binary.is_file() {
        bail!("no binary at {}", binary.display());
    }
    Ok(BeforeBuild { binary, commit })
}
