//! Embeds the eBPF object built by `cargo xtask build` (Debian rustc + bpf-linker), and the git
//! commit the binary is built from (`linkrt --version`, `linkrt info`).
//!
//! When the object is not there (plain `cargo check`/`clippy` before the eBPF toolchain is
//! installed), an empty placeholder is embedded and loading fails at run time with
//! `Error::EbpfNotBuilt`, which tells the user to run `cargo xtask build`.
//!
//! Outside a git checkout (a source tarball) the commit is `unknown`.
use std::{
    env, fs,
    path::{Path, PathBuf},
    process::Command,
};

fn main() {
    embed_ebpf();
    embed_commit();
}

fn embed_ebpf() {
    let out = PathBuf::from(env::var_os("OUT_DIR").unwrap()).join("linkrt-ebpf.o");
    let src = match env::var_os("LINKRT_EBPF_OBJ") {
        Some(p) => PathBuf::from(p),
        None => PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").unwrap())
            .join("../target/bpf/bpfel-unknown-none/release/linkrt-ebpf"),
    };
    println!("cargo:rerun-if-env-changed=LINKRT_EBPF_OBJ");
    println!("cargo:rerun-if-changed={}", src.display());
    match fs::read(&src) {
        Ok(bytes) => fs::write(&out, bytes).unwrap(),
        Err(_) => {
            println!(
                "cargo:warning=eBPF object {} not found: embedding an empty placeholder (run `cargo xtask build`)",
                src.display()
            );
            fs::write(&out, []).unwrap();
        }
    }
}

fn git(dir: &Path, args: &[&str]) -> Option<String> {
    let out = Command::new("git").args(args).current_dir(dir).output().ok()?;
    if !out.status.success() {
        return None;
    }
    let s = String::from_utf8(out.stdout).ok()?.trim().to_string();
    (!s.is_empty()).then_some(s)
}

/// `LINKRT_GIT_COMMIT`: the 12-digit commit, or `unknown`. Rebuilt when HEAD moves: the files
/// that name it (HEAD, the branch's ref, packed-refs) are watched.
fn embed_commit() {
    let dir = PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").unwrap());
    println!("cargo:rerun-if-env-changed=LINKRT_GIT_COMMIT");
    let commit = env::var("LINKRT_GIT_COMMIT")
        .ok()
        .filter(|c| !c.is_empty())
        .or_else(|| git(&dir, &["rev-parse", "--short=12", "HEAD"]))
        .unwrap_or_else(|| "unknown".into());
    // Only files that exist: cargo reruns a build script on every build for a missing one.
    let watch = |p: PathBuf| {
        if p.exists() {
            println!("cargo:rerun-if-changed={}", p.display());
        }
    };
    if let Some(git_dir) = git(&dir, &["rev-parse", "--absolute-git-dir"]) {
        watch(Path::new(&git_dir).join("HEAD"));
        if let Some(common) = git(&dir, &["rev-parse", "--path-format=absolute", "--git-common-dir"]) {
            watch(Path::new(&common).join("packed-refs"));
            if let Some(branch) = git(&dir, &["symbolic-ref", "-q", "HEAD"]) {
                watch(Path::new(&common).join(branch));
            }
        }
    }
    println!("cargo:rustc-env=LINKRT_GIT_COMMIT={commit}");
}
