//! The library's single error type. Messages follow Docker's wording where Docker has one.
use std::{io, path::PathBuf};

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("the eBPF object was not built into this binary: run `cargo xtask build` (needs `cargo xtask setup`)")]
    EbpfNotBuilt,
    #[error("loading eBPF object: {0}")]
    Ebpf(#[from] aya::EbpfError),
    #[error("eBPF program {name}: {source}")]
    Program {
        name: &'static str,
        #[source]
        source: aya::programs::ProgramError,
    },
    #[error("eBPF map {name}: {source}")]
    Map {
        name: &'static str,
        #[source]
        source: aya::maps::MapError,
    },
    #[error("pinning {path}: {source}")]
    Pin {
        path: PathBuf,
        #[source]
        source: aya::pin::PinError,
    },
    #[error("{op} {path}: {source}")]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// A netlink request failed: what was done (`op`), to which interface or netns
    /// (`target`), and the kernel's answer (the errno is `source.raw_os_error()`).
    #[error("{op} {target}: {source}")]
    Netlink {
        op: &'static str,
        target: String,
        #[source]
        source: io::Error,
    },
    #[error("{0}")]
    Sys(String),
    /// A state file that cannot be trusted (truncated, torn, edited).
    #[error("unreadable state {}: {why}", path.display())]
    Corrupt { path: PathBuf, why: String },
    /// A user error reported with Docker's exact text (exit code 125 unless stated).
    #[error("{0}")]
    User(String),
    #[error("No such container: {0}")]
    NoSuchContainer(String),
    #[error("permission denied: linkrt must run as root (it creates namespaces, veths and eBPF programs)")]
    NotRoot,
    /// The container's process could not be started (Docker's exit codes 125/126/127).
    #[error("failed to create task for container: unable to start container process: {msg}: unknown")]
    Start { code: i32, msg: String },
    #[error("{}", .0.iter().map(|e| e.to_string()).collect::<Vec<_>>().join("; "))]
    Multiple(Vec<Error>),
}

impl Error {
    pub fn io(op: &'static str, path: impl Into<PathBuf>, source: io::Error) -> Self {
        Error::Io {
            op,
            path: path.into(),
            source,
        }
    }

    pub fn netlink(op: &'static str, target: impl Into<String>, source: io::Error) -> Self {
        Error::Netlink {
            op,
            target: target.into(),
            source,
        }
    }

    pub fn sys(msg: impl Into<String>) -> Self {
        Error::Sys(msg.into())
    }

    pub fn user(msg: impl Into<String>) -> Self {
        Error::User(msg.into())
    }

    /// Docker's exit code for an error of the runtime (not of the container's command).
    pub fn exit_code(&self) -> i32 {
        match self {
            Error::Start { code, .. } => *code,
            _ => 125,
        }
    }
}
