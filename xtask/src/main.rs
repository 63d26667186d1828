//! Developer entry points: `cargo xtask setup|build|run|test|bench|install`.
mod build;
mod install;
mod setup;
mod vm;

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
    /// Benchmark port mapping (bare, linkrt, linkrt before issue 11's hardening, iptables,
    /// nftables, docker-proxy, socat), the control plane and memory; a full run rewrites
    /// README.md's benchmark block and docs/bench/.
    Bench {
        /// A short smoke run (under 2 minutes); its numbers mean nothing.
        #[arg(long)]
        quick: bool,
        /// Where to write results.md, results.json and the PNG charts.
        #[arg(long, default_value = "bench-results")]
        out: String,
    },
    /// Set up, build, and run every test (unit, BPF_PROG_TEST_RUN, netns end to end, install,
    /// and the datapath suite on kernel 6.1 in qemu).
    Test {
        /// Run only the privileged suites (package linkrt-tests, or what ARGS select) on this
        /// kernel: `host` (the running kernel) or a Debian series booted in qemu (`6.1`).
        /// Repeatable: `--kernel host --kernel 6.1`.
        #[arg(long = "kernel", value_name = "host|SERIES")]
        kernels: Vec<String>,
        /// How qemu runs the guest: kvm, tcg (software emulation) or auto (KVM where it can boot
        /// a stock kernel).
        #[arg(long, value_enum, default_value = "auto")]
        accel: vm::Accel,
        /// Time limit of one guest run, in seconds.
        #[arg(long, default_value_t = 1800)]
        vm_timeout: u64,
        /// Extra arguments for `cargo test` (e.g. `--test datapath`); after a further `--`, for
        /// the test binaries (a name filter).
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Build release binaries and install them with shell completions and man pages.
    Install {
        /// Installation prefix: binaries in PREFIX/bin, man pages in PREFIX/share/man.
        #[arg(long, default_value = "/usr/local")]
        prefix: std::path::PathBuf,
    },
}

/// The suites `cargo xtask test` runs on the default VM kernel: the BPF_PROG_TEST_RUN suite,
/// and the publish and policy suites, which attach through netlink `cls_bpf` there (no TCX).
const VM_DEFAULT_SUITES: &[&str] = &["datapath", "publish", "policy"];

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
        Cmd::Install { prefix } => install::install(&prefix).map(|_| ExitCode::SUCCESS),
        Cmd::Run { args } => {
            // Each phase timed. On a fresh machine the binary's dependencies compile while the
            // packages install and bpf-linker builds; only the demo's packages are installed
            // (`test` and `bench` install the rest).
            let mut phases = Phases::default();
            let mut bg = build::spawn_linkrt_build()?;
            if let Err(e) = phases.time("setup (the demo's apt packages, bpf-linker)", setup::setup_run) {
                // SIGKILL to cargo: its rustc children finish their crate and exit.
                if let Err(k) = bg.0.kill() {
                    eprintln!("xtask: stopping the background build: {k}");
                }
                return Err(e);
            }
            phases.time("build (eBPF object, then the linkrt binary)", || {
                build::finish_linkrt(bg)
            })?;
            phases.print();
            let bin = build::demo_binary();
            if args.is_empty() {
                return demo(&bin);
            }
            status(as_root(&bin.to_string_lossy(), &args))
        }
        Cmd::Bench { quick, out } => {
            setup::setup()?;
            // Release builds: the numbers are about the datapath, not about debug code.
            build::build_all(true)?;
            // The datapath before issue 11's hardening, built from its commit (cached).
            let before = build::build_before(build::BeforeProfile::Release)?;
            let root = build::workspace_root();
            let mut command = "cargo xtask bench".to_string();
            if quick {
                command.push_str(" --quick");
            }
            status(bench_cmd(
                &root.join("target/release"),
                quick,
                &out,
                &command,
                Some(&before),
            ))
        }
        Cmd::Test {
            kernels,
            accel,
            vm_timeout,
            args,
        } => {
            setup::setup()?;
            build::build_all(false)?;
            let timeout = std::time::Duration::from_secs(vm_timeout);
            if !kernels.is_empty() {
                return kernel_matrix(&kernels, accel, timeout, &args);
            }
            let root = build::workspace_root();
            let bin = root.join("target/debug/linkrt");
            let mut total = Tally::default();
            // A bystander: the demo's containers in an instance of their own, running through the
            // whole suite, then checked untouched (the tests are hermetic).
            let bystander = if args.is_empty() { Bystander::start(&bin) } else { None };
            if args.is_empty() {
                // The benchmark's smoke run first: every path must work (the pre-hardening
                // binary's too, in its cheapest build, cached); timings are not asserted.
                let mut phases = Phases::default();
                let before = phases.time("the pre-hardening linkrt for the benchmark smoke run", || {
                    build::build_before(build::BeforeProfile::Smoke)
                });
                println!("[test] benchmark smoke run (cargo xtask bench --quick, debug build)");
                let out = root.join("target/bench-smoke");
                let ok = match &before {
                    Ok(b) => phases
                        .time("the benchmark smoke run", || {
                            bench_cmd(
                                &root.join("target/debug"),
                                true,
                                &out.to_string_lossy(),
                                "cargo xtask bench --quick",
                                Some(b),
                            )
                            .status()
                            .context("running the smoke run")
                        })
                        .map(|s| s.success())
                        .unwrap_or(false),
                    Err(e) => {
                        println!("[test] building linkrt at {}: {e:#}", build::BEFORE_COMMIT);
                        false
                    }
                };
                phases.print();
                total.one("bench_smoke", ok);
                println!("[test] install into a temporary prefix (cargo xtask install --prefix target/install-test-*)");
                let r = install::check_install();
                if let Err(e) = &r {
                    println!("install check failed: {e:#}");
                }
                total.one("install_into_temp_prefix", r.is_ok());
            }
            // --no-fail-fast: one failing test binary must not hide the others' results.
            let mut cmd = as_root("cargo", &["test".into(), "--workspace".into(), "--no-fail-fast".into()]);
            cmd.args(&args)
                .env("LINKRT_BIN", &bin)
                .env("LINKRT_CNI_BIN", root.join("target/debug/linkrt-cni"))
                .current_dir(&root);
            total.add(&run_tests(cmd)?);
            if args.is_empty() {
                let mut suites = vec!["-p".to_string(), "linkrt-tests".into()];
                for s in VM_DEFAULT_SUITES {
                    suites.extend(["--test".to_string(), s.to_string()]);
                }
                total.add(&on_kernel(vm::DEFAULT_SERIES, accel, timeout, &suites, &[]));
            }
            if args.is_empty() {
                total.one(
                    "hermetic_bystander_instance_untouched",
                    bystander.is_some_and(|b| b.check_and_stop()),
                );
            }
            Ok(total.summary())
        }
    }
}

/// Wall time of each phase of a command, printed at its end.
#[derive(Default)]
struct Phases(Vec<(&'static str, std::time::Duration)>);

impl Phases {
    fn time<T>(&mut self, name: &'static str, f: impl FnOnce() -> Result<T>) -> Result<T> {
        let start = std::time::Instant::now();
        let r = f();
        self.0.push((name, start.elapsed()));
        r
    }

    fn print(&self) {
        for (name, d) in &self.0 {
            println!("[time] {name}: {:.1} s", d.as_secs_f64());
        }
    }
}

/// The bystander instance of `xtask/bystander.sh`.
struct Bystander {
    file: std::path::PathBuf,
    bin: std::path::PathBuf,
}

impl Bystander {
    fn script() -> std::path::PathBuf {
        build::workspace_root().join("xtask/bystander.sh")
    }

    fn run(&self, what: &str) -> bool {
        as_root(
            "bash",
            &[
                Self::script().to_string_lossy().into_owned(),
                what.into(),
                self.file.to_string_lossy().into_owned(),
            ],
        )
        .env("LINKRT_BIN", &self.bin)
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
    }

    /// Starts it; `None` (and the check then fails) if it could not be set up.
    fn start(bin: &std::path::Path) -> Option<Bystander> {
        let b = Bystander {
            file: std::env::temp_dir().join(format!("linkrt-bystander-{}.env", std::process::id())),
            bin: bin.to_path_buf(),
        };
        println!("[test] a bystander instance (the demo's containers) runs through the suite");
        if b.run("start") {
            Some(b)
        } else {
            println!("[test] the bystander instance could not start");
            b.run("stop");
            None
        }
    }

    fn check_and_stop(self) -> bool {
        let ok = self.run("check");
        self.run("stop");
        ok
    }
}

/// Passed and failed tests over several runs, and whether every run finished cleanly.
#[derive(Default)]
struct Tally {
    passed: u64,
    failed: u64,
    broken: bool,
}

impl Tally {
    /// A check of xtask's own, printed like a test.
    fn one(&mut self, name: &str, ok: bool) {
        println!("test {name} ... {}", if ok { "ok" } else { "FAILED" });
        if ok {
            self.passed += 1;
        } else {
            self.failed += 1;
        }
    }

    fn add(&mut self, other: &Tally) {
        self.passed += other.passed;
        self.failed += other.failed;
        self.broken |= other.broken;
    }

    /// Prints the closing line; fails on any failure, a broken run, or no test at all.
    fn summary(&self) -> ExitCode {
        println!("summary: {} passed, {} failed", self.passed, self.failed);
        if self.broken || self.failed > 0 || self.passed == 0 {
            ExitCode::FAILURE
        } else {
            ExitCode::SUCCESS
        }
    }
}

/// `cargo xtask test --kernel K...`: the privileged suites on each kernel, one summary.
fn kernel_matrix(
    kernels: &[String],
    accel: vm::Accel,
    timeout: std::time::Duration,
    args: &[String],
) -> Result<ExitCode> {
    let (mut cargo_args, test_args) = match args.iter().position(|a| a == "--") {
        Some(i) => (args[..i].to_vec(), args[i + 1..].to_vec()),
        None => (args.to_vec(), Vec::new()),
    };
    if !cargo_args
        .iter()
        .any(|a| a == "-p" || a == "--package" || a == "--workspace")
    {
        cargo_args.splice(0..0, ["-p".to_string(), "linkrt-tests".into()]);
    }
    let mut total = Tally::default();
    for k in kernels {
        total.add(&on_kernel(k, accel, timeout, &cargo_args, &test_args));
    }
    Ok(total.summary())
}

/// One kernel of the matrix: `host` runs `cargo test` here, a series boots it in qemu. Never
/// fails: a run that could not happen counts as broken, with its reason printed.
fn on_kernel(
    kernel: &str,
    accel: vm::Accel,
    timeout: std::time::Duration,
    cargo_args: &[String],
    test_args: &[String],
) -> Tally {
    let root = build::workspace_root();
    let bin = root.join("target/debug/linkrt");
    if kernel == "host" {
        println!("[test] kernel host: cargo test {}", cargo_args.join(" "));
        let mut args: Vec<String> = vec!["test".into(), "--no-fail-fast".into()];
        args.extend(cargo_args.iter().cloned());
        if !test_args.is_empty() {
            args.push("--".into());
            args.extend(test_args.iter().cloned());
        }
        let mut cmd = as_root("cargo", &args);
        cmd.env("LINKRT_BIN", &bin)
            .env("LINKRT_CNI_BIN", root.join("target/debug/linkrt-cni"))
            .current_dir(&root);
        return run_tests(cmd).unwrap_or_else(|e| {
            println!("kernel host: {e:#}");
            Tally {
                broken: true,
                ..Default::default()
            }
        });
    }
    let r = (|| -> Result<Tally> {
        let k = vm::Kernel::cached(kernel)?;
        let (accel, why) = vm::choose_accel(accel)?;
        let binaries = vm::test_binaries(cargo_args)?;
        println!(
            "[test] kernel {} ({}) in qemu, {why}: {}",
            k.release,
            k.package,
            binaries.iter().map(|b| b.name.as_str()).collect::<Vec<_>>().join(" ")
        );
        let o = vm::run(&vm::RunOptions {
            kernel: &k,
            accel,
            binaries: &binaries,
            test_args,
            env: &[
                ("LINKRT_BIN".into(), bin.to_string_lossy().into_owned()),
                // Software emulation runs several times slower: the tests' waits stretch.
                (
                    "LINKRT_TEST_TIME_SCALE".into(),
                    if accel == vm::Accel::Tcg { "5" } else { "1" }.into(),
                ),
            ],
            timeout,
            memory_mib: 3072,
            cpus: 2,
        })?;
        for (name, code) in &o.failed_binaries {
            println!(
                "kernel {}: {name} exited {}",
                k.release,
                code.map(|c| c.to_string()).unwrap_or_else(|| "without a status".into())
            );
        }
        println!(
            "kernel {} ({}): {} passed, {} failed, in {:.0} s",
            k.release,
            k.package,
            o.passed,
            o.failed,
            o.elapsed.as_secs_f64()
        );
        Ok(Tally {
            passed: o.passed,
            failed: o.failed,
            broken: !o.failed_binaries.is_empty(),
        })
    })();
    r.unwrap_or_else(|e| {
        println!("kernel {kernel}: {e:#}");
        Tally {
            broken: true,
            ..Default::default()
        }
    })
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

fn bench_cmd(
    bin_dir: &std::path::Path,
    quick: bool,
    out: &str,
    command: &str,
    before: Option<&build::BeforeBuild>,
) -> Command {
    let mut args = vec![
        "run".to_string(),
        "--out".into(),
        out.to_string(),
        "--linkrt".into(),
        bin_dir.join("linkrt").to_string_lossy().into_owned(),
        "--command".into(),
        command.to_string(),
    ];
    if let Some(b) = before {
        args.extend([
            "--linkrt-before".into(),
            b.binary.to_string_lossy().into_owned(),
            "--before-commit".into(),
            b.commit.clone(),
        ]);
    }
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

/// `(passed, failed)` of a libtest `test result:` line.
pub fn parse_result_line(line: &str) -> Option<(u64, u64)> {
    let rest = line.strip_prefix("test result: ")?;
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
    Some((num("passed"), num("failed")))
}

/// Runs `cargo test`, passing its output through, and counts the results over all test binaries.
fn run_tests(mut cmd: Command) -> Result<Tally> {
    use std::io::{BufRead, BufReader};
    let mut child = cmd
        .stdout(std::process::Stdio::piped())
        .spawn()
        .with_context(|| format!("running {cmd:?}"))?;
    let mut t = Tally::default();
    for line in BufReader::new(child.stdout.take().unwrap()).lines() {
        let line = line?;
        println!("{line}");
        if let Some((p, f)) = parse_result_line(&line) {
            t.passed += p;
            t.failed += f;
        }
    }
    let st = child.wait()?;
    t.broken = !st.success();
    Ok(t)
}

fn status(mut cmd: Command) -> Result<ExitCode> {
    let st = cmd.status().with_context(|| format!("running {cmd:?}"))?;
    match st.code() {
        Some(c) => Ok(ExitCode::from(c as u8)),
        None => bail!("{cmd:?} was killed by a signal"),
    }
}
