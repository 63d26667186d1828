//! `linkrt-bench`: the port-mapping benchmark (`cargo xtask bench`) and its load generator.
mod load;
mod report;
mod run;

use std::{net::SocketAddr, path::PathBuf};

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "linkrt-bench")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run the whole benchmark (as root) and write the results.
    Run {
        /// A short smoke run (seconds, not minutes); numbers are not meaningful.
        #[arg(long)]
        quick: bool,
        /// Output directory for results.md, results.json and the PNG charts.
        #[arg(long, default_value = "bench-results")]
        out: PathBuf,
        /// The linkrt binary.
        #[arg(long)]
        linkrt: PathBuf,
        /// The command line to quote in the report.
        #[arg(long, default_value = "cargo xtask bench")]
        command: String,
    },
    /// The load server (runs inside a container).
    Serve {
        #[arg(long)]
        port: u16,
    },
    /// One client workload; prints a JSON sample.
    Client {
        #[arg(long)]
        mode: String,
        #[arg(long)]
        addr: SocketAddr,
        #[arg(long)]
        secs: f64,
    },
}

fn main() -> Result<()> {
    match Cli::parse().cmd {
        Cmd::Serve { port } => load::serve(port),
        Cmd::Client { mode, addr, secs } => {
            let s = load::client(&mode, addr, secs)?;
            println!("{}", serde_json::to_string(&s)?);
            Ok(())
        }
        Cmd::Run {
            quick,
            out,
            linkrt,
            command,
        } => {
            std::fs::create_dir_all(&out).with_context(|| format!("creating {}", out.display()))?;
            let r = run::run(&run::Options { quick, linkrt })?;
            let md = report::markdown(&r, &command);
            std::fs::write(out.join("results.md"), &md)?;
            std::fs::write(out.join("results.json"), serde_json::to_string_pretty(&r)?)?;
            let charts = report::charts(&r, &out)?;
            println!("{md}");
            for c in charts {
                println!("chart: {c}");
            }
            println!("results: {}", out.join("results.json").display());
            Ok(())
        }
    }
}
