use linkrt::{
    Config,
    container::{self, Attach},
    state::{Lock, Store},
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
        runtime: a.runtime,
        cap_add: a.cap_add,
        cap_drop: a.cap_drop,
        privileged: a.privileged,
        security_opt: a.security_opt,
        memory: a.memory,
        cpus: a.cpus,
        pids_limit: a.pids_limit,
        user: a.user,
        read_only: a.read_only,
        volumes: a.volume,
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
    let code = container::start(cfg, &store, &mut c, attach, lock)?;
    if a.detach {
        println!("{}", c.id);
    }
    Ok(code)
}
