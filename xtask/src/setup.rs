//! `cargo xtask setup`: installs what building and testing linkrt needs, idempotently.
//!
//! Follows `shared/toolchain/RECIPE.md`: Debian's rustc-web (LLVM 22) with the prebuilt BPF
//! `core`, llvm-22-dev, and bpf-linker 0.13 built against it (`LLVM_PREFIX`).
use std::{
    fs,
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{Context, Result, bail};

use crate::build::DEBIAN_RUSTC;

const BPF_LINKER_VERSION: &str = "0.13.0";

/// Debian packages for the eBPF toolchain (LLVM major filled in from rustc-web).
const TOOLCHAIN: &[&str] = &["rustc-web", "libstd-rust-web-dev-bpf"];

/// What `cargo xtask run` needs: the demo's images take their programs from these packages
/// (redis-server, python3, busybox), the OCI runtimes, and the tools `demo.sh` calls.
const RUN_TOOLS: &[&str] = &[
    "iproute2",
    "iputils-ping",
    "curl",
    "procps",
    "util-linux",
    // Static: it also serves as the whole root filesystem of `--rootfs` test images.
    "busybox-static",
    "python3",
    "redis-server",
    // OCI runtimes: containers are started by runc (or crun where the host allows it).
    "runc",
    "crun",
    // kmod's depmod indexes the 6.1 kernel's unpacked modules for the kernel matrix, and its
    // modprobe loads them inside the guest.
    "kmod",
];

/// What the tests and the benchmark need besides [`RUN_TOOLS`] (`cargo xtask setup`, `test`,
/// `bench`).
const TOOLS: &[&str] = &[
    "ethtool",
    "bpftool",
    "redis-tools",
    // Image formats (umoci unpacks OCI layouts for the image tests) and the CNI reference plugins.
    "umoci",
    "containernetworking-plugins",
    // The benchmark's peers and charts; docker.io only for /usr/sbin/docker-proxy (dockerd is never started).
    "docker.io",
    "iptables",
    "nftables",
    "socat",
    "fonts-dejavu-core",
    // The kernel matrix (`cargo xtask test --kernel 6.1`): qemu boots Debian's 6.1 kernel.
    "qemu-system-x86",
];

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| o.stdout.starts_with(b"0\n"))
        .unwrap_or(false)
}

fn installed(pkg: &str) -> bool {
    Command::new("dpkg-query")
        .args(["-W", "-f=${Status}", pkg])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).contains("install ok installed"))
        .unwrap_or(false)
}

/// Installs the missing packages with apt-get; services stay stopped (policy-rc.d).
fn apt_install(pkgs: &[String]) -> Result<()> {
    let missing: Vec<&String> = pkgs.iter().filter(|p| !installed(p)).collect();
    if missing.is_empty() {
        println!("[setup] apt: already installed: {}", pkgs.join(" "));
        return Ok(());
    }
    let list: Vec<&str> = missing.iter().map(|s| s.as_str()).collect();
    if !is_root() {
        bail!(
            "not root: run these commands as root, then re-run:\n  apt-get update\n  DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends {}",
            list.join(" ")
        );
    }
    println!("[setup] apt-get update");
    run(Command::new("apt-get").args(["update", "-qq"]))?;
    // Keep package scripts from starting services (redis-server) on this machine.
    let policy = Path::new("/usr/sbin/policy-rc.d");
    let ours = !policy.exists();
    if ours {
        fs::write(policy, "#!/bin/sh\nexit 101\n").context("writing policy-rc.d")?;
        run(Command::new("chmod").args(["755", "/usr/sbin/policy-rc.d"]))?;
    }
    println!("[setup] apt-get install {}", list.join(" "));
    let r = run(Command::new("apt-get")
        .args(["install", "-y", "-qq", "--no-install-recommends"])
        .args(&list)
        .env("DEBIAN_FRONTEND", "noninteractive")
        .env("NEEDRESTART_SUSPEND", "1")
        .stdout(std::process::Stdio::null()));
    if ours {
        let _ = fs::remove_file(policy);
    }
    r
}

fn run(cmd: &mut Command) -> Result<()> {
    let st = cmd.status().with_context(|| format!("running {cmd:?}"))?;
    if !st.success() {
        bail!("{cmd:?} failed: {st}");
    }
    Ok(())
}

fn llvm_major() -> Result<String> {
    let out = Command::new(DEBIAN_RUSTC)
        .arg("-vV")
        .output()
        .context("running /usr/bin/rustc -vV")?;
    let text = String::from_utf8_lossy(&out.stdout);
    text.lines()
        .find_map(|l| l.strip_prefix("LLVM version: "))
        .and_then(|v| v.split('.').next())
        .map(str::to_owned)
        .context("cannot read the LLVM version of /usr/bin/rustc")
}

fn cargo_home() -> PathBuf {
    std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(std::env::var_os("HOME").unwrap_or_else(|| "/root".into())).join(".cargo"))
}

fn bpf_linker_ok(bl: &Path, llvm: &str) -> bool {
    let version = Command::new(bl).arg("--version").output();
    let Ok(v) = version else { return false };
    if String::from_utf8_lossy(&v.stdout).trim() != format!("bpf-linker {BPF_LINKER_VERSION}") {
        return false;
    }
    let Ok(ldd) = Command::new("ldd").arg(bl).output() else {
        return false;
    };
    let ldd = String::from_utf8_lossy(&ldd.stdout);
    ldd.contains(&format!("libLLVM.so.{llvm}.")) && !ldd.contains("not found")
}

/// Everything: the toolchain, every tool of the tests and the benchmark, the 6.1 kernel.
pub fn setup() -> Result<()> {
    setup_for(&[RUN_TOOLS, TOOLS], true)
}

/// Only what `cargo xtask run` needs: the toolchain and the demo's packages.
pub fn setup_run() -> Result<()> {
    setup_for(&[RUN_TOOLS], false)
}

fn setup_for(tools: &[&[&str]], vm_kernel: bool) -> Result<()> {
    let pkgs: Vec<String> = TOOLCHAIN
        .iter()
        .chain(tools.iter().flat_map(|t| t.iter()))
        .map(|s| s.to_string())
        .collect();
    apt_install(&pkgs)?;
    let llvm = llvm_major()?;
    if !["21", "22", "23"].contains(&llvm.as_str()) {
        bail!("rustc-web uses LLVM {llvm}; bpf-linker {BPF_LINKER_VERSION} supports LLVM 21-23 only");
    }
    apt_install(&[format!("llvm-{llvm}-dev")])?;

    let bl = cargo_home().join("bin/bpf-linker");
    if bpf_linker_ok(&bl, &llvm) {
        println!(
            "[setup] bpf-linker {BPF_LINKER_VERSION} (LLVM {llvm}) already installed at {}",
            bl.display()
        );
    } else {
        println!(
            "[setup] cargo install bpf-linker@{BPF_LINKER_VERSION} --features llvm-{llvm} (LLVM_PREFIX=/usr/lib/llvm-{llvm})"
        );
        // bpf-linker's build.rs reads LLVM_PREFIX; without it it would take /usr/bin/llvm-config (LLVM 14).
        run(Command::new("cargo")
            .args([
                "install",
                "--locked",
                "--force",
                &format!("bpf-linker@{BPF_LINKER_VERSION}"),
            ])
            .args(["--no-default-features", "--features", &format!("llvm-{llvm}")])
            .env("LLVM_PREFIX", format!("/usr/lib/llvm-{llvm}")))?;
        if !bpf_linker_ok(&bl, &llvm) {
            bail!(
                "bpf-linker installed at {} but it does not link against libLLVM {llvm}",
                bl.display()
            );
        }
    }
    // bpf-linker must be on PATH for rustc's bpf target.
    let path = std::env::var("PATH").unwrap_or_default();
    let bin = cargo_home().join("bin");
    if !path.split(':').any(|p| Path::new(p) == bin) {
        // SAFETY: single-threaded at this point.
        unsafe { std::env::set_var("PATH", format!("{}:{path}", bin.display())) };
    }
    // Debian's 6.1 kernel for the VM test, unpacked under target/vm (never installed).
    if vm_kernel {
        crate::vm::fetch_kernel(crate::vm::DEFAULT_SERIES)?;
    }
    println!("[setup] ok");
    Ok(())
}
