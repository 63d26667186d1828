use linkrt::{
    Config, container,
    state::{Lock, Store},
    supervise::{self, Attach},
};

use super::CmdResult;
use crate::cli::RunArgs;

/// `run` (create + start) and `create`.
pub fn run(cfg: &Config, a: RunArgs, start: bool) -> CmdResult {
    let opts = container::CreateOptions {
        name: a.name,
        image: a.image,
        cmd: a.cmd,
        env: a.env,
        env_files: a.env_file,
        expose: a.expose,
        publish: a.publish,
        publish_all: a.publish_all,
        links: a.link,
        hostname: a.hostname,
        tty: a.tty,
        interactive: a.interactive,
        auto_remove: a.rm,
        rootfs: a.rootfs,
        workdir: a.workdir,
    };
    let store = Store::new(cfg);
    let lock = Lock::acquire(cfg)?;
    container::reconcile(&store)?;
    let mut c = container::create(&store, &opts)?;
    if !start {
        println!("{}", c.id);
        return Ok(0);
    }
    let attach = if a.detach { Attach::Detached } else { Attach::Foreground };
    let code = supervise::start(cfg, &store, &mut c, attach, lock)?;
    if a.detach {
        println!("{}", c.id);
    }
    Ok(code)
}
