//! One short adapter per verb: arguments → library call → output.
mod completion;
mod config;
mod exec;
mod image;
mod info;
mod inspect;
mod lifecycle;
mod logs;
mod monitor;
mod port;
mod ps;
mod run;
mod status;

use linkrt::Config;

use crate::cli::Command;

/// A command's failure: the message and Docker's exit code.
pub struct Failure {
    pub code: i32,
    pub msg: String,
}

impl From<linkrt::Error> for Failure {
    fn from(e: linkrt::Error) -> Self {
        Failure {
            code: e.exit_code(),
            msg: e.to_string(),
        }
    }
}

impl Failure {
    /// A failure of a non-run command (Docker's CLI exits 1).
    pub fn cli(e: linkrt::Error) -> Self {
        Failure {
            code: 1,
            msg: e.to_string(),
        }
    }
}

pub type CmdResult = Result<i32, Failure>;

/// `linkrt::features::preflight`: a host that cannot run containers is refused (exit 125)
/// before anything is changed.
fn preflight(cfg: &Config) -> Result<(), Failure> {
    linkrt::features::preflight(cfg).map_err(Failure::from)
}

pub fn dispatch(cmd: Command, cfg: &Config) -> CmdResult {
    match cmd {
        // Commands that start containers check the host first (kernel, TC attach, cgroup2, bpffs).
        Command::Run(a) => preflight(cfg).and_then(|()| run::run(cfg, a, true)),
        Command::Create(a) => preflight(cfg).and_then(|()| run::run(cfg, a, false)),
        Command::Start(a) => preflight(cfg).and_then(|()| lifecycle::start(cfg, a)),
        Command::Stop(a) => lifecycle::stop(cfg, a, false),
        Command::Restart(a) => lifecycle::stop(cfg, a, true),
        Command::Rm(a) => lifecycle::rm(cfg, a),
        Command::Kill(a) => lifecycle::kill(cfg, a),
        Command::Wait(a) => lifecycle::wait(cfg, a),
        Command::Rename(a) => lifecycle::rename(cfg, a),
        Command::Ps(a) => ps::ps(cfg, a),
        Command::Port(a) => port::port(cfg, a),
        Command::Inspect(a) => inspect::inspect(cfg, a),
        Command::Logs(a) => logs::logs(cfg, a),
        Command::Exec(a) => exec::exec(cfg, a),
        Command::Image { cmd } => image::dispatch(cfg, cmd),
        Command::Images(a) => image::ls(cfg, a),
        Command::Load(a) => image::load(cfg, a),
        Command::Import(a) => image::import(cfg, a),
        Command::Save(a) => image::save(cfg, a),
        Command::Rmi(a) => image::rmi(cfg, a),
        Command::Status => status::status(cfg),
        Command::Monitor(a) => monitor::monitor(cfg, a),
        Command::Config(a) => config::config(cfg, a),
        Command::Info(a) => info::info(cfg, a),
        Command::Completion { shell } => completion::completion(shell),
        Command::Manpages { dir } => completion::manpages(&dir),
        Command::Supervise { id } => Ok(linkrt::process::supervisor::supervise_main(cfg, &id)),
    }
}
