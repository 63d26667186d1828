use linkrt::{Config, exec};

use super::{CmdResult, Failure};
use crate::cli::ExecArgs;

pub fn exec(cfg: &Config, a: ExecArgs) -> CmdResult {
    let o = exec::ExecOptions {
        cmd: a.cmd,
        env: a.env,
        workdir: a.workdir,
        user: a.user,
        interactive: a.interactive,
        tty: a.tty,
        detach: a.detach,
    };
    exec::exec(cfg, &a.container, &o).map_err(|e| match e {
        linkrt::Error::Start { code, msg } => Failure {
            code,
            msg: format!("OCI runtime exec failed: exec failed: unable to start container process: {msg}: unknown"),
        },
        e => Failure::cli(e),
    })
}
