//! Developer entry points: `cargo xtask setup|build|run|test|bench`.
mod build;
mod setup;

use std::process::{Command, ExitCode};

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "xtask", about = "linkrt developer tasks")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Install the toolchain and test tools (apt packages, bpf-linker). Idempotent.
    Setup,
    /// Build the eBPF object (Debian rustc + bpf-linker) and the userspace binaries.
    Build {
        /// Build userspace in release mode.
        #[arg(long)]
        release: bool,
    },
    /// Set up, build, and run `linkrt ARGS` as root; with no ARGS, run the demo.
    Run {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Benchmark port mapping (bare, linkrt, iptables, nftables, docker-proxy, socat), the control
    /// plane and memory; a full run rewrites README.md's benchmark block and docs/bench/.
    Bench {
        /// A short smoke run (under 2 minutes); its numbers mean nothing.
        #[arg(long)]
        quick: bool,
        /// Where to write results.md, results.json and the PNG charts.
        #[arg(long, default_value = "bench-results")]
        out: String,
    },
    /// Set up, build, and run every test (unit, BPF_PROG_TEST_RUN, netns end to end).
    Test {
        /// Extra arguments for `cargo test` (e.g. a test name filter).
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
}

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("xtask: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> Result<ExitCode> {
    match cli.cmd {
        Cmd::Setup => setup::setup().map(|_| ExitCode::SUCCESS),
        Cmd::Build { release } => build::build_all(release).map(|_| ExitCode::SUCCESS),
        Cmd::Run { args } => {
            setup::setup()?;
            build::build_all(false)?;
            let bin = build::workspace_root().join("target/debug/linkrt");
            if args.is_empty() {
                return demo(&bin);
            }
            status(as_root(&bin.to_string_lossy(), &args))
        }
        Cmd::Bench { quick, out } => {
            setup::setup()?;
            // Release builds: the numbers are about the datapath, not about debug code.
            build::build_all(true)?;
            let root = build::workspace_root();
            let mut command = "cargo xtask bench".to_string();
            if quick {
                command.push_str(" --quick");
            }
            status(bench_cmd(&root.join("target/release"), quick, &out, &command))
        }
        Cmd::Test { args } => {
            setup::setup()?;
            build::build_all(false)?;
            let root = build::workspace_root();
            let bin = root.join("target/debug/linkrt");
            // The benchmark's smoke run first: every path must work; timings are not asserted.
            let mut smoke = (0, 0);
            if args.is_empty() {
                println!("[test] benchmark smoke run (cargo xtask bench --quick, debug build)");
                let out = root.join("target/bench-smoke");
                let ok = bench_cmd(
                    &root.join("target/debug"),
                    true,
                    &out.to_string_lossy(),
                    "cargo xtask bench --quick",
                )
                .status()
                .map(|s| s.success())
                .unwrap_or(false);
                println!("test bench_smoke ... {}", if ok { "ok" } else { "FAILED" });
                smoke = if ok { (1, 0) } else { (0, 1) };
            }
            // --no-fail-fast: one failing test binary must not hide the others' results.
            let mut cmd = as_root("cargo", &["test".into(), "--workspace".into(), "--no-fail-fast".into()]);
            cmd.args(&args).env("LINKRT_BIN", &bin).current_dir(&root);
            run_tests(cmd, smoke)
        }
    }
}

/// Runs the seed scenario as a demo script in a private network namespace.
fn demo(bin: &std::path::Path) -> Result<ExitCode> {
    let script = build::workspace_root().join("xtask/demo.sh");
    let mut cmd = as_root("bash", &[script.to_string_lossy().into_owned()]);
    cmd.env("LINKRT_BIN", bin);
    status(cmd)
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc_geteuid() == 0 }
}

unsafe extern "C" {
    #[link_name = "geteuid"]
    fn libc_geteuid() -> u32;
}

/// A command run as root: directly when we are root, through `sudo -E` otherwise.
fn as_root(prog: &str, args: &[String]) -> Command {
    if is_root() {
        let mut c = Command::new(prog);
        c.args(args);
        c
    } else {
        let mut c = Command::new("sudo");
        c.arg("-E")
            .arg("env")
            .arg(format!("PATH={}", std::env::var("PATH").unwrap_or_default()))
            .arg(prog)
            .args(args);
        c
    }
}

fn bench_cmd(bin_dir: &std::path::Path, quick: bool, out: &str, command: &str) -> Command {
    let mut args = vec![
        "run".to_string(),
        "--out".into(),
        out.to_string(),
        "--linkrt".into(),
        bin_dir.join("linkrt").to_string_lossy().into_owned(),
        "--command".into(),
        command.to_string(),
    ];
    if quick {
        args.push("--quick".into());
    } else {
        // A full run regenerates the README's benchmark block and docs/bench/ from its JSON.
        args.extend(["--readme", "README.md", "--docs", "docs/bench"].map(String::from));
    }
    let mut c = as_root(&bin_dir.join("linkrt-bench").to_string_lossy(), &args);
    c.current_dir(build::workspace_root());
    c
}

/// Runs `cargo test`, passing its output through, and closes with one summary line over all
/// test binaries (`summary: N passed, N failed`).
fn run_tests(mut cmd: Command, (mut passed, mut failed): (u64, u64)) -> Result<ExitCode> {
    use std::io::{BufRead, BufReader};
    let mut child = cmd
        .stdout(std::process::Stdio::piped())
        .spawn()
        .with_context(|| format!("running {cmd:?}"))?;
    for line in BufReader::new(child.stdout.take().unwrap()).lines() {
        let line = line?;
        println!("{line}");
        if let Some(rest) = line.strip_prefix("test result: ") {
            let num = |word: &str| {
                rest.split(';')
                    .find_map(|p| {
                        p.trim()
                            .strip_suffix(word)?
                            .split_whitespace()
                            .last()?
                            .parse::<u64>()
                            .ok()
                    })
                    .unwrap_or(0)
            };
            passed += num("passed");
            failed += num("failed");
        }
    }
    let st = child.wait()?;
    println!("summary: {passed} passed, {failed} failed");
    if !st.success() || passed == 0 || failed > 0 {
        return Ok(ExitCode::FAILURE);
    }
    Ok(ExitCode::SUCCESS)
}

fn status(mut cmd: Command) -> Result<ExitCode> {
    let st = cmd.status().with_context(|| format!("running {cmd:?}"))?;
    match st.code() {
        Some(c) => Ok(ExitCode::from(c as u8)),
        None => bail!("{cmd:?} was killed by a signal"),
    }
}
