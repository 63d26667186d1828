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
