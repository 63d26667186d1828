//! Embeds the eBPF object built by `cargo xtask build` (Debian rustc + bpf-linker).
//!
//! When the object is not there (plain `cargo check`/`clippy` before the eBPF toolchain is
//! installed), an empty placeholder is embedded and loading fails at run time with
//! `Error::EbpfNotBuilt`, which tells the user to run `cargo xtask build`.
use std::{env, fs, path::PathBuf};

fn main() {
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
