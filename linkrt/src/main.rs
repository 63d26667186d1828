//! The `linkrt` binary: parse, dispatch to `commands/`, map errors to Docker's exit codes.
mod cli;
mod commands;

use std::process::ExitCode;

use clap::Parser;
use cli::{Cli, Command};
use linkrt::Config;

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let code = if e.use_stderr() { 125 } else { 0 };
            let _ = e.print();
            return ExitCode::from(code);
        }
    };
    // Like other CLIs, end quietly when our output is closed (`linkrt status | head`); the
    // supervisor alone keeps Rust's default (EPIPE), since it must outlive its clients.
    if !matches!(cli.cmd, Command::Supervise { .. }) {
        // SAFETY: restoring the default disposition of one signal, before any thread exists.
        unsafe { libc::signal(libc::SIGPIPE, libc::SIG_DFL) };
    }
    let mut cfg = Config::from_env();
    if let Some(r) = &cli.root {
        cfg.root = r.clone();
    }
    if let Some(r) = &cli.run_root {
        cfg.run_root = r.clone();
    }
    if let Some(b) = &cli.bpffs {
        cfg.bpffs = b.clone();
    }
    let is_run = matches!(cli.cmd, Command::Run(_) | Command::Create(_) | Command::Start(_));
    // Listing images reads nothing private when there is no state yet (the built-ins).
    let needs_root = !matches!(
        cli.cmd,
        Command::Images(_)
            | Command::Image {
                cmd: cli::ImageCmd::Ls(_) | cli::ImageCmd::Inspect(_)
            }
            | Command::Completion { .. }
            | Command::Manpages { .. }
    );
    if needs_root && !nix::unistd::geteuid().is_root() {
        eprintln!("linkrt: {}", linkrt::Error::NotRoot);
        return ExitCode::from(125);
    }
    match commands::dispatch(cli.cmd, &cfg) {
        Ok(code) => ExitCode::from(code.clamp(0, 255) as u8),
        Err(commands::Failure { code, msg }) => {
            if is_run {
                // Docker's CLI says this line itself, unprefixed, before the pull's error.
                match msg.split_once('\n') {
                    Some((first, rest)) if first.starts_with("Unable to find image '") => {
                        eprintln!("{first}\nlinkrt: {rest}")
                    }
                    _ => eprintln!("linkrt: {msg}"),
                }
            } else {
                eprintln!("Error: {msg}");
            }
            ExitCode::from(code.clamp(0, 255) as u8)
        }
    }
}
