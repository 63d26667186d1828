//! `linkrt completion SHELL` (as `docker completion`) and the hidden `linkrt __manpages DIR`, both
//! generated from the clap definition in `cli.rs`.
use std::path::Path;

use clap::CommandFactory;

use super::{CmdResult, Failure};
use crate::cli::Cli;

pub fn completion(shell: clap_complete::Shell) -> CmdResult {
    let mut cmd = Cli::command();
    clap_complete::generate(shell, &mut cmd, "linkrt", &mut std::io::stdout());
    Ok(0)
}

/// `linkrt.1`, and `linkrt-VERB.1` for every visible command (`linkrt-image-ls.1` for nested ones).
pub fn manpages(dir: &Path) -> CmdResult {
    let fail = |what: &str, e: std::io::Error| Failure {
        code: 1,
        msg: format!("{what}: {e}"),
    };
    std::fs::create_dir_all(dir).map_err(|e| fail(&format!("creating {}", dir.display()), e))?;
    let mut cmd = Cli::command();
    cmd.build();
    write_page(dir, "linkrt", cmd.clone()).map_err(|e| fail("writing linkrt.1", e))?;
    for sub in cmd
        .get_subcommands()
        .filter(|s| !s.is_hide_set() && s.get_name() != "help")
    {
        let name = format!("linkrt-{}", sub.get_name());
        write_page(dir, &name, sub.clone()).map_err(|e| fail(&format!("writing {name}.1"), e))?;
        for nested in sub
            .get_subcommands()
            .filter(|s| !s.is_hide_set() && s.get_name() != "help")
        {
            let name = format!("linkrt-{}-{}", sub.get_name(), nested.get_name());
            write_page(dir, &name, nested.clone()).map_err(|e| fail(&format!("writing {name}.1"), e))?;
        }
    }
    Ok(0)
}

fn write_page(dir: &Path, name: &str, cmd: clap::Command) -> std::io::Result<()> {
    let cmd = cmd
        .name(name.to_string().leak() as &str)
        .bin_name(name.replace('-', " "))
        .version(concat!(
            env!("CARGO_PKG_VERSION"),
            " (commit ",
            env!("LINKRT_GIT_COMMIT"),
            ")"
        ));
    let mut buf = Vec::new();
    clap_mangen::Man::new(cmd).render(&mut buf)?;
    std::fs::write(dir.join(format!("{name}.1")), buf)
}
