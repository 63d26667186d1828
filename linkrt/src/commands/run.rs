use linkrt::{
    Config,
    lifecycle::{self, Attach},
    state::{Lock, Store},
};

use super::{CmdResult, Failure};
use crate::cli::RunArgs;

/// `run` (create + start) and `create`.
pub fn run(cfg: &Config, a: RunArgs, start: bool) -> CmdResult {
    let opts = lifecycle::CreateOptions {
        name: a.name,
        image: a.image,
        cmd: a.cmd,
        entrypoint: a.entrypoint,
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
        log_opts: a.log_opt,
        add_hosts: a.add_host,
        labels: a.label,
        restart: a.restart.unwrap_or_default(),
    };
    let store = Store::new(cfg);
    let lock = Lock::acquire(cfg)?;
    let mut snap = lifecycle::reconcile(&store, &lock)?;
    let mut c = lifecycle::create(&store, &lock, &mut snap, &opts)?;
    if !start {
        println!("{}", c.id);
        return Ok(0);
    }
    let attach = if a.detach { Attach::Detached } else { Attach::Foreground };
    if a.detach {
        // Docker's CLI prints the ID once the container exists, before its start: a start
        // that fails leaves a Created container the user can name.
        println!("{}", c.id);
        std::io::Write::flush(&mut std::io::stdout()).map_err(|e| Failure {
            code: 125,
            msg: format!("writing the container ID: {e}"),
        })?;
    }
    Ok(lifecycle::start(&store, lock, &mut snap, &mut c, attach)?)
}
