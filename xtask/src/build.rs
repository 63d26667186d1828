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

/// Only the `linkrt` binary (what `cargo xtask run` runs): not the tests or the benchmark.
pub fn build_linkrt() -> Result<()> {
    build_ebpf()?;
    build_userspace(false, &["--package", "linkrt", "--bin", "linkrt"], "the linkrt binary")
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
