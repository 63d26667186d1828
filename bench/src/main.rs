//! `linkrt-bench`: the port-mapping benchmark (`cargo xtask bench`) and its load generator.
mod control;
mod env;
mod load;
mod model;
mod peers;
mod readme;
mod report;
mod run;

use std::{net::SocketAddr, path::PathBuf};

use anyhow::{Context, Result, bail};
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
        /// A linkrt binary built from an older commit (the datapath before issue 11's
        /// hardening): measured as the `linkrt_before` path, in a world of its own.
        #[arg(long, requires = "before_commit")]
        linkrt_before: Option<PathBuf>,
        /// The commit `--linkrt-before` was built from (quoted in the report).
        #[arg(long, requires = "linkrt_before")]
        before_commit: Option<String>,
        /// The command line to quote in the report.
        #[arg(long, default_value = "cargo xtask bench")]
        command: String,
        /// A full run only: rewrite this README's block between the bench markers...
        #[arg(long, requires = "docs")]
        readme: Option<PathBuf>,
        /// ...and copy the results and charts to this directory (as the README links it).
        #[arg(long, requires = "readme")]
        docs: Option<PathBuf>,
        /// Every sample this long: checks the full run's structure quickly (numbers meaningless).
        #[arg(long, hide = true)]
        secs: Option<f64>,
    },
    /// Regenerate a README's benchmark block from a results.json (full runs only).
    Readme {
        #[arg(long, default_value = "bench-results/results.json")]
        json: PathBuf,
        #[arg(long, default_value = "README.md")]
        readme: PathBuf,
        /// The charts' directory as the README links it.
        #[arg(long, default_value = "docs/bench")]
        docs: String,
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
        Cmd::Readme { json, readme, docs } => readme::update_readme(&readme, &json, &docs),
        Cmd::Run {
            quick,
            out,
            linkrt,
            linkrt_before,
            before_commit,
            command,
            readme,
            docs,
            secs,
        } => {
            if (quick || secs.is_some()) && readme.is_some() {
                bail!("only a full run may rewrite the README (drop --readme/--docs, or --quick/--secs)");
            }
            std::fs::create_dir_all(&out).with_context(|| format!("creating {}", out.display()))?;
            env::install_signal_handlers();
            let r = run::run(&run::Options {
                quick,
                linkrt,
                linkrt_before: linkrt_before.zip(before_commit),
                command,
                secs,
            })?;
            let json = out.join("results.json");
            std::fs::write(&json, serde_json::to_string_pretty(&r)?)?;
            // Everything below is generated from the JSON as written.
            let r: model::Report = serde_json::from_str(&std::fs::read_to_string(&json)?)?;
            let md = report::markdown(&r, &json.to_string_lossy(), ".");
            std::fs::write(out.join("results.md"), &md)?;
            let charts = report::charts(&r, &out)?;
            if let (Some(readme_path), Some(docs)) = (readme, docs) {
                std::fs::create_dir_all(&docs)?;
                for f in ["results.json", "ratios.png", "scale.png", "control.png"] {
                    if out.join(f).exists() {
                        std::fs::copy(out.join(f), docs.join(f)).with_context(|| format!("copying {f}"))?;
                    }
                }
                let docs_json = docs.join("results.json");
                std::fs::write(
                    docs.join("results.md"),
                    report::markdown(&r, &docs_json.to_string_lossy(), "."),
                )?;
                readme::update_readme(&readme_path, &json, &docs.to_string_lossy())?;
                println!(
                    "README: {} rewritten; {} updated",
                    readme_path.display(),
                    docs.display()
                );
            }
            println!("{md}");
            for c in charts {
                println!("chart: {c}");
            }
            println!("results: {}", json.display());
            Ok(())
        }
    }
}
