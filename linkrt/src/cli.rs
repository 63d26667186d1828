//! Command-line types (clap). No logic here.
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

#[derive(Parser, Debug)]
#[command(
    name = "linkrt",
    version = concat!(env!("CARGO_PKG_VERSION"), " (commit ", env!("LINKRT_GIT_COMMIT"), ")"),
    about = "Docker's legacy links and port publishing, with an eBPF datapath"
)]
pub struct Cli {
    /// State directory (default /var/lib/linkrt; env LINKRT_ROOT).
    #[arg(long, global = true)]
    pub root: Option<PathBuf>,
    /// Runtime directory (default /run/linkrt; env LINKRT_RUN_ROOT).
    #[arg(long, global = true)]
    pub run_root: Option<PathBuf>,
    /// bpffs directory for pinned maps and links (default /sys/fs/bpf/linkrt; env LINKRT_BPFFS).
    #[arg(long, global = true)]
    pub bpffs: Option<PathBuf>,
    #[command(subcommand)]
    pub cmd: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Create and run a new container from an image
    Run(RunArgs),
    /// Create a new container
    Create(RunArgs),
    /// Start one or more stopped containers
    Start(StartArgs),
    /// Stop one or more running containers
    Stop(StopArgs),
    /// Restart one or more containers
    Restart(StopArgs),
    /// Remove one or more containers
    Rm(RmArgs),
    /// List containers
    Ps(PsArgs),
    /// List port mappings or a specific mapping for the container
    Port(PortArgs),
    /// Return low-level information on containers
    Inspect(InspectArgs),
    /// Fetch the logs of a container
    Logs(LogsArgs),
    /// Kill one or more running containers
    Kill(KillArgs),
    /// Block until one or more containers stop, then print their exit codes
    Wait(WaitArgs),
    /// Rename a container
    Rename(RenameArgs),
    /// Execute a command in a running container
    Exec(ExecArgs),
    /// Manage images
    Image {
        #[command(subcommand)]
        cmd: ImageCmd,
    },
    /// List images
    Images(ImagesArgs),
    /// Load an image from a tar archive or STDIN (docker save, OCI layout)
    Load(LoadArgs),
    /// Import the contents from a tarball to create a filesystem image
    Import(ImportArgs),
    /// Save one or more images to a tar archive (streamed to STDOUT by default)
    Save(SaveArgs),
    /// Remove one or more images
    Rmi(RmiArgs),
    /// Show the eBPF datapath: attached programs, maps and counters
    Status,
    /// Stream datapath events: drops with their reason, new NAT flows
    Monitor(MonitorArgs),
    /// Show or change this instance's settings (Docker's daemon flags), e.g. --icc
    Config(ConfigArgs),
    /// Display system-wide information: kernel features, attach mode, network, runtimes
    Info(InfoArgs),
    /// Generate the autocompletion script for the specified shell
    Completion {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Write man pages (linkrt.1 and one per command) into DIR (used by `cargo xtask install`)
    #[command(name = "__manpages", hide = true)]
    Manpages { dir: PathBuf },
    #[command(name = "__supervise", hide = true)]
    Supervise { id: String },
}

#[derive(Args, Debug, Clone)]
#[command(disable_help_flag = true)]
pub struct RunArgs {
    /// Print help
    #[arg(long, action = clap::ArgAction::Help)]
    pub help: Option<bool>,
    /// Run container in background and print container ID
    #[arg(short, long)]
    pub detach: bool,
    /// Keep STDIN open even if not attached
    #[arg(short, long)]
    pub interactive: bool,
    /// Allocate a pseudo-TTY
    #[arg(short, long)]
    pub tty: bool,
    /// Automatically remove the container and its associated anonymous volumes when it exits
    #[arg(long)]
    pub rm: bool,
    /// Assign a name to the container
    #[arg(long)]
    pub name: Option<String>,
    /// Set environment variables
    #[arg(short = 'e', long = "env")]
    pub env: Vec<String>,
    /// Read in a file of environment variables
    #[arg(long = "env-file")]
    pub env_file: Vec<PathBuf>,
    /// Expose a port or a range of ports
    #[arg(long)]
    pub expose: Vec<String>,
    /// Publish a container's port(s) to the host
    #[arg(short = 'p', long = "publish")]
    pub publish: Vec<String>,
    /// Publish all exposed ports to random ports
    #[arg(short = 'P', long = "publish-all")]
    pub publish_all: bool,
    /// Add link to another container
    #[arg(long)]
    pub link: Vec<String>,
    /// Container host name
    #[arg(short = 'h', long)]
    pub hostname: Option<String>,
    /// Add a custom host-to-IP mapping (host:ip)
    #[arg(long = "add-host")]
    pub add_host: Vec<String>,
    /// Set meta data on a container
    #[arg(short = 'l', long = "label")]
    pub label: Vec<String>,
    /// Restart policy to apply when a container exits (no, on-failure[:max-retries], always, unless-stopped)
    #[arg(long)]
    pub restart: Option<String>,

    /// Working directory inside the container
    #[arg(short = 'w', long)]
    pub workdir: Option<String>,
    /// Overwrite the default ENTRYPOINT of the image
    #[arg(long, allow_hyphen_values = true)]
    pub entrypoint: Option<String>,
    /// Use this directory as the container's root filesystem (copy-on-write)
    #[arg(long)]
    pub rootfs: Option<PathBuf>,
    /// Runtime to use for this container (runc, crun)
    #[arg(long)]
    pub runtime: Option<String>,
    /// Add Linux capabilities
    #[arg(long = "cap-add")]
    pub cap_add: Vec<String>,
    /// Drop Linux capabilities
    #[arg(long = "cap-drop")]
    pub cap_drop: Vec<String>,
    /// Give extended privileges to this container
    #[arg(long)]
    pub privileged: bool,
    /// Security Options
    #[arg(long = "security-opt")]
    pub security_opt: Vec<String>,
    /// Memory limit
    #[arg(short = 'm', long)]
    pub memory: Option<String>,
    /// Number of CPUs
    #[arg(long)]
    pub cpus: Option<String>,
    /// Tune container pids limit (set -1 for unlimited)
    #[arg(long = "pids-limit", allow_hyphen_values = true)]
    pub pids_limit: Option<i64>,
    /// Username or UID (format: <name|uid>[:<group|gid>])
    #[arg(short = 'u', long)]
    pub user: Option<String>,
    /// Mount the container's root filesystem as read only
    #[arg(long = "read-only")]
    pub read_only: bool,
    /// Bind mount a volume
    #[arg(short = 'v', long = "volume")]
    pub volume: Vec<String>,
    /// Log driver options (json-file: max-size, max-file)
    #[arg(long = "log-opt")]
    pub log_opt: Vec<String>,
    pub image: String,
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    pub cmd: Vec<String>,
}

#[derive(Args, Debug)]
pub struct StartArgs {
    /// Attach STDOUT/STDERR and forward signals
    #[arg(short, long)]
    pub attach: bool,
    /// Attach container's STDIN
    #[arg(short, long)]
    pub interactive: bool,
    /// Start every container its restart policy restarts after a reboot (always, and
    /// unless-stopped unless stopped by hand): the boot hook of the systemd unit
    #[arg(long, conflicts_with_all = ["attach", "interactive", "containers"])]
    pub restartable: bool,
    #[arg(required_unless_present = "restartable")]
    pub containers: Vec<String>,
}

#[derive(Args, Debug)]
pub struct StopArgs {
    /// Seconds to wait before killing the container
    #[arg(short = 't', long = "time", default_value_t = 10)]
    pub time: u64,
    #[arg(required = true)]
    pub containers: Vec<String>,
}

#[derive(Args, Debug)]
pub struct RmArgs {
    /// Force the removal of a running container (uses SIGKILL)
    #[arg(short, long)]
    pub force: bool,
    /// Remove the specified link
    #[arg(short, long)]
    pub link: bool,
    #[arg(required = true)]
    pub containers: Vec<String>,
}

#[derive(Args, Debug)]
pub struct PsArgs {
    /// Show all containers (default shows just running)
    #[arg(short, long)]
    pub all: bool,
    /// Show the latest created container (includes all states)
    #[arg(short, long)]
    pub latest: bool,
    /// Show n last created containers (includes all states)
    #[arg(short = 'n', long = "last")]
    pub last: Option<usize>,
    /// Only display container IDs
    #[arg(short, long)]
    pub quiet: bool,
    /// Don't truncate output
    #[arg(long = "no-trunc")]
    pub no_trunc: bool,
    /// Format output using a Go template ("table ..." for a table)
    #[arg(long)]
    pub format: Option<String>,
    /// Filter output based on conditions provided (name, id, status, ancestor, expose, publish, label)
    #[arg(short = 'f', long = "filter")]
    pub filter: Vec<String>,
    /// Accepted for docker compatibility (`docker ps nostalgic_morse` is not valid docker; ignored names filter here)
    pub names: Vec<String>,
}

#[derive(Args, Debug)]
pub struct KillArgs {
    /// Signal to send to the container
    #[arg(short, long)]
    pub signal: Option<String>,
    #[arg(required = true)]
    pub containers: Vec<String>,
}

#[derive(Args, Debug)]
pub struct WaitArgs {
    #[arg(required = true)]
    pub containers: Vec<String>,
}

#[derive(Args, Debug)]
pub struct RenameArgs {
    pub container: String,
    pub new_name: String,
}

#[derive(Args, Debug)]
pub struct PortArgs {
    pub container: String,
    /// PRIVATE_PORT[/PROTO]
    pub port: Option<String>,
}

#[derive(Args, Debug)]
pub struct InspectArgs {
    /// Format output using a Go template
    #[arg(short, long)]
    pub format: Option<String>,
    #[arg(required = true)]
    pub containers: Vec<String>,
}

#[derive(Args, Debug)]
pub struct LogsArgs {
    /// Follow log output
    #[arg(short, long)]
    pub follow: bool,
    pub container: String,
}

#[derive(Args, Debug)]
pub struct ExecArgs {
    /// Detached mode: run command in the background
    #[arg(short, long)]
    pub detach: bool,
    /// Keep STDIN open even if not attached
    #[arg(short, long)]
    pub interactive: bool,
    /// Allocate a pseudo-TTY
    #[arg(short, long)]
    pub tty: bool,
    /// Set environment variables
    #[arg(short = 'e', long = "env")]
    pub env: Vec<String>,
    /// Working directory inside the container
    #[arg(short = 'w', long)]
    pub workdir: Option<String>,
    /// Username or UID (format: "<name|uid>[:<group|gid>]")
    #[arg(short = 'u', long)]
    pub user: Option<String>,
    pub container: String,
    #[arg(trailing_var_arg = true, allow_hyphen_values = true, required = true)]
    pub cmd: Vec<String>,
}

#[derive(Args, Debug)]
pub struct ConfigArgs {
    /// Inter-container communication (Docker's --icc): true lets every container reach every
    /// other; false (the default) allows links only
    #[arg(long, value_parser = clap::builder::BoolishValueParser::new())]
    pub icc: Option<bool>,
    /// Outbound masquerade (Docker's --ip-masq): true (the default) gives containers'
    /// connections to other machines the uplink's address; false leaves their own
    #[arg(long, value_parser = clap::builder::BoolishValueParser::new())]
    pub ip_masq: Option<bool>,
    /// The host ports masqueraded connections use, FIRST-LAST (default 61000-65535)
    #[arg(long, value_name = "FIRST-LAST", value_parser = linkrt::lifecycle::policy::parse_masq_ports)]
    pub masq_ports: Option<(u16, u16)>,
}

#[derive(Args, Debug)]
pub struct MonitorArgs {
    /// Exit after this many events
    #[arg(short = 'n', long)]
    pub count: Option<usize>,
    /// Exit after this many seconds
    #[arg(long)]
    pub timeout: Option<u64>,
    /// Also show the programs' debug logs (aya-log): each drop with its reason and tuple, each
    /// new translated flow. Also on with LINKRT_LOG=debug. The programs write them only while
    /// such a monitor runs.
    #[arg(long)]
    pub debug: bool,
}

#[derive(Args, Debug)]
pub struct InfoArgs {
    /// Format output using a Go template (fields as in `docker info`: {{.KernelVersion}}, {{.Features.TCX}}...)
    #[arg(short, long)]
    pub format: Option<String>,
}

#[derive(Subcommand, Debug)]
pub enum ImageCmd {
    /// List images
    #[command(alias = "list")]
    Ls(ImagesArgs),
    /// Display detailed information on one or more images
    Inspect(ImageInspectArgs),
    /// Load an image from a tar archive or STDIN
    Load(LoadArgs),
    /// Import the contents from a tarball to create a filesystem image
    Import(ImportArgs),
    /// Save one or more images to a tar archive
    Save(SaveArgs),
    /// Remove one or more images
    #[command(alias = "remove")]
    Rm(RmiArgs),
}

#[derive(Args, Debug)]
pub struct ImagesArgs {
    /// Only show image IDs
    #[arg(short, long)]
    pub quiet: bool,
    /// Don't truncate output
    #[arg(long = "no-trunc")]
    pub no_trunc: bool,
    /// Only images of this repository ([REPOSITORY[:TAG]])
    pub reference: Option<String>,
}

#[derive(Args, Debug)]
pub struct ImageInspectArgs {
    /// Format output using a Go template
    #[arg(short, long)]
    pub format: Option<String>,
    #[arg(required = true)]
    pub images: Vec<String>,
}

#[derive(Args, Debug)]
pub struct LoadArgs {
    /// Read from tar archive file (or OCI layout directory), instead of STDIN
    #[arg(short, long)]
    pub input: Option<PathBuf>,
    /// Suppress the load output
    #[arg(short, long)]
    pub quiet: bool,
}

#[derive(Args, Debug)]
pub struct ImportArgs {
    /// A tarball of a root filesystem (plain, gzip or zstd), or - for STDIN
    pub file: String,
    /// REPOSITORY[:TAG]
    pub reference: Option<String>,
}

#[derive(Args, Debug)]
pub struct SaveArgs {
    /// Write to a file, instead of STDOUT
    #[arg(short, long)]
    pub output: Option<PathBuf>,
    #[arg(required = true)]
    pub images: Vec<String>,
}

#[derive(Args, Debug)]
pub struct RmiArgs {
    /// Force removal of the image
    #[arg(short, long)]
    pub force: bool,
    #[arg(required = true)]
    pub images: Vec<String>,
}
