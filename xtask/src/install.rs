//! `cargo xtask install [--prefix DIR]`: the release binaries, shell completions and man pages.
//!
//! Layout under the prefix (default `/usr/local`):
//!
//! ```text
//! bin/linkrt                                    (and bin/linkrt-cni when the workspace has it)
//! share/bash-completion/completions/linkrt
//! share/zsh/site-functions/_linkrt
//! share/fish/vendor_completions.d/linkrt.fish
//! share/man/man1/linkrt.1, linkrt-<command>.1
//! ```
//!
//! The systemd unit `lib/systemd/system/linkrt-restore.service` (installed, not enabled) is the
//! boot hook of the restart policies: it runs `linkrt start --restartable` once at boot.
use std::{
    fs,
    os::unix::fs::PermissionsExt,
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{Context, Result, bail};

use crate::build::{self, workspace_root};

/// Binaries `install` looks for in the workspace.
const BINARIES: &[&str] = &["linkrt", "linkrt-cni"];

const BASH: &str = "share/bash-completion/completions/linkrt";
const ZSH: &str = "share/zsh/site-functions/_linkrt";
const FISH: &str = "share/fish/vendor_completions.d/linkrt.fish";
const MAN: &str = "share/man/man1";
const UNIT: &str = "lib/systemd/system/linkrt-restore.service";

/// The workspace's binary targets among [`BINARIES`] (`cargo metadata`).
fn workspace_binaries() -> Result<Vec<String>> {
    let out = Command::new("cargo")
        .args(["metadata", "--no-deps", "--format-version", "1"])
        .current_dir(workspace_root())
        .output()
        .context("running cargo metadata")?;
    if !out.status.success() {
        bail!("cargo metadata failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    let meta: serde_json::Value = serde_json::from_slice(&out.stdout).context("parsing cargo metadata")?;
    let mut found = Vec::new();
    for pkg in meta["packages"].as_array().into_iter().flatten() {
        for t in pkg["targets"].as_array().into_iter().flatten() {
            let is_bin = t["kind"].as_array().is_some_and(|k| k.iter().any(|k| k == "bin"));
            if let Some(name) = t["name"].as_str()
                && is_bin
                && BINARIES.contains(&name)
            {
                found.push(name.to_string());
            }
        }
    }
    if !found.iter().any(|b| b == "linkrt") {
        bail!("the workspace has no `linkrt` binary");
    }
    Ok(found)
}

/// Writes `data` to `dest` through a temporary file and a rename (a running binary can be replaced).
fn put(dest: &Path, data: &[u8], mode: u32) -> Result<()> {
    let dir = dest.parent().context("destination has no parent")?;
    fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let tmp = dir.join(format!(".{}.tmp", dest.file_name().unwrap().to_string_lossy()));
    fs::write(&tmp, data).with_context(|| format!("writing {}", tmp.display()))?;
    fs::set_permissions(&tmp, fs::Permissions::from_mode(mode))?;
    fs::rename(&tmp, dest).with_context(|| format!("installing {}", dest.display()))?;
    Ok(())
}

fn run_output(cmd: &mut Command) -> Result<Vec<u8>> {
    let out = cmd.output().with_context(|| format!("running {cmd:?}"))?;
    if !out.status.success() {
        bail!(
            "{cmd:?} failed: {}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(out.stdout)
}

/// Builds release binaries and installs everything under `prefix`; returns the installed files.
pub fn install(prefix: &Path) -> Result<Vec<PathBuf>> {
    build::build_ebpf()?;
    let bins = workspace_binaries()?;
    println!("[install] cargo build --release ({})", bins.join(", "));
    let mut cargo = Command::new("cargo");
    cargo.args(["build", "--release"]).current_dir(workspace_root());
    for b in &bins {
        cargo.args(["--bin", b]);
    }
    if !cargo.status().context("running cargo build --release")?.success() {
        bail!("cargo build --release failed");
    }
    let mut files = Vec::new();
    for b in &bins {
        let src = workspace_root().join("target/release").join(b);
        let dest = prefix.join("bin").join(b);
        put(
            &dest,
            &fs::read(&src).with_context(|| format!("reading {}", src.display()))?,
            0o755,
        )?;
        files.push(dest);
    }
    let linkrt = prefix.join("bin/linkrt");
    for (shell, rel) in [("bash", BASH), ("zsh", ZSH), ("fish", FISH)] {
        let script = run_output(Command::new(&linkrt).args(["completion", shell]))?;
        let dest = prefix.join(rel);
        put(&dest, &script, 0o644)?;
        files.push(dest);
    }
    let man = prefix.join(MAN);
    run_output(Command::new(&linkrt).arg("__manpages").arg(&man))?;
    let mut pages: Vec<PathBuf> = fs::read_dir(&man)?
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "1"))
        .collect();
    pages.sort();
    for p in &pages {
        fs::set_permissions(p, fs::Permissions::from_mode(0o644))?;
    }
    files.extend(pages);
    let has_restore = Command::new(&linkrt)
        .args(["start", "--help"])
        .output()
        .map(|o| o.status.success() && String::from_utf8_lossy(&o.stdout).contains("--restartable"))
        .unwrap_or(false);
    if has_restore {
        let unit = format!(
            "[Unit]\nDescription=Start the linkrt containers whose restart policy restarts them after a reboot\n\
             After=network-online.target local-fs.target\nWants=network-online.target\n\n\
             [Service]\nType=oneshot\nExecStart={} start --restartable\nRemainAfterExit=yes\n\n\
             [Install]\nWantedBy=multi-user.target\n",
            linkrt.display()
        );
        let dest = prefix.join(UNIT);
        put(&dest, unit.as_bytes(), 0o644)?;
        files.push(dest);
        println!("[install] {UNIT} installed, not enabled (systemctl enable linkrt-restore)");
    } else {
        println!(
            "[install] no systemd unit: this linkrt has no `start --restartable` (the boot hook of restart policies)"
        );
    }
    for f in &files {
        println!("[install] {}", f.display());
    }
    Ok(files)
}

/// The test `cargo xtask test` runs: install into a temporary prefix and check what is there.
pub fn check_install() -> Result<()> {
    let prefix = workspace_root().join(format!("target/install-test-{}", std::process::id()));
    if prefix.exists() {
        fs::remove_dir_all(&prefix)?;
    }
    let r = install(&prefix).and_then(|files| verify(&prefix, &files));
    let cleanup = fs::remove_dir_all(&prefix).with_context(|| format!("removing {}", prefix.display()));
    r.and(cleanup)
}

fn verify(prefix: &Path, files: &[PathBuf]) -> Result<()> {
    let linkrt = prefix.join("bin/linkrt");
    let mode = fs::metadata(&linkrt)?.permissions().mode();
    if mode & 0o111 == 0 {
        bail!("{} is not executable ({mode:o})", linkrt.display());
    }
    // The version line names the commit this checkout is at.
    let commit = Command::new("git")
        .args(["rev-parse", "--short=12", "HEAD"])
        .current_dir(workspace_root())
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_else(|| "unknown".into());
    let want = format!("linkrt {} (commit {commit})", env!("CARGO_PKG_VERSION"));
    let got = String::from_utf8(run_output(Command::new(&linkrt).arg("--version"))?)?;
    if got.trim() != want {
        bail!("{} --version printed {:?}, want {want:?}", linkrt.display(), got.trim());
    }
    // Bash loads the completion and registers it for `linkrt`.
    let bash = prefix.join(BASH);
    let reg = String::from_utf8(run_output(
        Command::new("bash")
            .arg("-c")
            .arg(format!("source '{}' && complete -p linkrt", bash.display())),
    )?)?;
    if !reg.contains("linkrt") {
        bail!("bash completion did not register for linkrt: {reg:?}");
    }
    let zsh = fs::read_to_string(prefix.join(ZSH))?;
    if !zsh.starts_with("#compdef linkrt") || !zsh.contains("--publish=[") {
        bail!("zsh completion lacks #compdef linkrt or the run options");
    }
    let fish = fs::read_to_string(prefix.join(FISH))?;
    if !fish.contains("complete -c linkrt") || !fish.contains("-l publish") {
        bail!("fish completion lacks `complete -c linkrt` or the run options");
    }
    for page in [
        "linkrt",
        "linkrt-run",
        "linkrt-info",
        "linkrt-ps",
        "linkrt-port",
        "linkrt-image-ls",
    ] {
        let p = prefix.join(MAN).join(format!("{page}.1"));
        let text = fs::read_to_string(&p).with_context(|| format!("man page {} missing", p.display()))?;
        if !text.contains(".TH") {
            bail!("{} is not a man page (no .TH)", p.display());
        }
    }
    let run_page = fs::read_to_string(prefix.join(MAN).join("linkrt-run.1"))?;
    if !run_page.contains("publish") || !run_page.contains("link") {
        bail!("linkrt-run.1 does not document --publish and --link");
    }
    // Hidden commands and clap's `help` get no page.
    for p in ["linkrt-__supervise.1", "linkrt-help.1", "linkrt-help-run.1"] {
        if prefix.join(MAN).join(p).exists() {
            bail!("a man page was written for a hidden command: {p}");
        }
    }
    // The boot hook of the restart policies: the unit runs the installed binary.
    let unit = fs::read_to_string(prefix.join(UNIT)).with_context(|| format!("{UNIT} missing"))?;
    if !unit.contains(&format!("ExecStart={} start --restartable", linkrt.display())) {
        bail!(
            "{UNIT} does not run `{} start --restartable`:\n{unit}",
            linkrt.display()
        );
    }
    println!("[install] {} files checked under {}", files.len(), prefix.display());
    Ok(())
}
