//! Seccomp: Docker's profile format and semantics, turned into the OCI runtime spec's filter.
//!
//! A profile (Docker's JSON format, as `--security-opt seccomp=FILE` takes it, or the built-in
//! default of [`super::seccomp_default`]) is a default action plus rules. A rule applies only
//! when its `includes` hold (every listed capability is granted, the architecture is listed,
//! the kernel is at least `minKernel`) and its `excludes` do not (no listed capability is
//! granted, the architecture is not listed), exactly as moby evaluates it.
use std::collections::HashSet;

use oci_spec::runtime::{
    Arch, LinuxSeccomp, LinuxSeccompAction, LinuxSeccompArgBuilder, LinuxSeccompBuilder, LinuxSeccompOperator,
    LinuxSyscallBuilder,
};
use serde::Deserialize;

use super::seccomp_default;
use crate::error::{Error, Result};

/// A comparison of a syscall argument (the default profile's static form).
#[derive(Clone, Copy, Debug)]
pub struct Arg {
    pub index: u32,
    pub value: u64,
    pub value_two: u64,
    pub op: Op,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
pub enum Op {
    #[serde(rename = "SCMP_CMP_NE")]
    Ne,
    #[serde(rename = "SCMP_CMP_LT")]
    Lt,
    #[serde(rename = "SCMP_CMP_LE")]
    Le,
    #[serde(rename = "SCMP_CMP_EQ")]
    Eq,
    #[serde(rename = "SCMP_CMP_GE")]
    Ge,
    #[serde(rename = "SCMP_CMP_GT")]
    Gt,
    #[serde(rename = "SCMP_CMP_MASKED_EQ")]
    MaskedEq,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RuleAction {
    Allow,
    Errno(u32),
}

/// When a rule applies (`includes`) or does not (`excludes`).
#[derive(Clone, Copy, Debug)]
pub struct Cond {
    pub caps: &'static [&'static str],
    pub arches: &'static [&'static str],
    pub min_kernel: Option<(u32, u32)>,
}

impl Cond {
    pub const NONE: Cond = Cond {
        caps: &[],
        arches: &[],
        min_kernel: None,
    };
}

/// A rule of the built-in profile.
#[derive(Clone, Copy, Debug)]
pub struct Rule {
    pub names: &'static [&'static str],
    pub action: RuleAction,
    pub args: &'static [Arg],
    pub include: Cond,
    pub exclude: Cond,
}

/// A profile in Docker's JSON format (what `--security-opt seccomp=FILE` reads).
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Profile {
    pub default_action: String,
    #[serde(default)]
    pub default_errno_ret: Option<u32>,
    #[serde(default)]
    pub arch_map: Option<Vec<ArchMapEntry>>,
    #[serde(default)]
    pub architectures: Option<Vec<String>>,
    #[serde(default)]
    pub syscalls: Option<Vec<ProfileSyscall>>,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ArchMapEntry {
    pub architecture: String,
    #[serde(default)]
    pub sub_architectures: Option<Vec<String>>,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ProfileSyscall {
    #[serde(default)]
    pub names: Option<Vec<String>>,
    #[serde(default)]
    pub name: Option<String>,
    pub action: String,
    #[serde(default)]
    pub errno_ret: Option<u32>,
    #[serde(default)]
    pub args: Option<Vec<ProfileArg>>,
    #[serde(default)]
    pub includes: Option<ProfileCond>,
    #[serde(default)]
    pub excludes: Option<ProfileCond>,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ProfileArg {
    pub index: u32,
    pub value: u64,
    #[serde(default)]
    pub value_two: u64,
    pub op: Op,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ProfileCond {
    #[serde(default)]
    pub caps: Option<Vec<String>>,
    #[serde(default)]
    pub arches: Option<Vec<String>>,
    #[serde(default)]
    pub min_kernel: Option<String>,
}

impl Profile {
    /// Docker's default profile.
    pub fn docker_default() -> Profile {
        let cond = |c: &Cond| {
            (c.caps.len() + c.arches.len() > 0 || c.min_kernel.is_some()).then(|| ProfileCond {
                caps: (!c.caps.is_empty()).then(|| c.caps.iter().map(|s| s.to_string()).collect()),
                arches: (!c.arches.is_empty()).then(|| c.arches.iter().map(|s| s.to_string()).collect()),
                min_kernel: c.min_kernel.map(|(a, b)| format!("{a}.{b}")),
            })
        };
        Profile {
            default_action: "SCMP_ACT_ERRNO".into(),
            default_errno_ret: Some(seccomp_default::DEFAULT_ERRNO),
            arch_map: Some(
                seccomp_default::ARCH_MAP
                    .iter()
                    .map(|(a, subs)| ArchMapEntry {
                        architecture: a.to_string(),
                        sub_architectures: Some(subs.iter().map(|s| s.to_string()).collect()),
                    })
                    .collect(),
            ),
            architectures: None,
            syscalls: Some(
                seccomp_default::RULES
                    .iter()
                    .map(|r| ProfileSyscall {
                        names: Some(r.names.iter().map(|s| s.to_string()).collect()),
                        name: None,
                        action: match r.action {
                            RuleAction::Allow => "SCMP_ACT_ALLOW".into(),
                            RuleAction::Errno(_) => "SCMP_ACT_ERRNO".into(),
                        },
                        errno_ret: match r.action {
                            RuleAction::Errno(e) => Some(e),
                            RuleAction::Allow => None,
                        },
                        args: (!r.args.is_empty()).then(|| {
                            r.args
                                .iter()
                                .map(|a| ProfileArg {
                                    index: a.index,
                                    value: a.value,
                                    value_two: a.value_two,
                                    op: a.op,
                                })
                                .collect()
                        }),
                        includes: cond(&r.include),
                        excludes: cond(&r.exclude),
                    })
                    .collect(),
            ),
        }
    }

    /// Reads a profile file (`--security-opt seccomp=FILE`), with Docker's error texts.
    pub fn from_file(path: &std::path::Path) -> Result<Profile> {
        let data = crate::state::read_limited(path, 1 << 20)
            .map_err(|e| Error::user(format!("opening seccomp profile ({}) failed: {e}", path.display())))?;
        serde_json::from_slice(&data).map_err(|e| Error::user(format!("decoding seccomp profile failed: {e}")))
    }
}

/// The host facts a profile is evaluated against.
#[derive(Clone, Debug)]
pub struct Host {
    /// Go's name of the architecture (`amd64`, `arm64`, ...), as profiles list them.
    pub arch: &'static str,
    /// libseccomp's name of the native architecture (`SCMP_ARCH_X86_64`, ...).
    pub scmp_arch: &'static str,
    pub kernel: (u32, u32),
}

impl Host {
    pub fn current() -> Host {
        let (arch, scmp_arch) = match std::env::consts::ARCH {
            "x86_64" => ("amd64", "SCMP_ARCH_X86_64"),
            "aarch64" => ("arm64", "SCMP_ARCH_AARCH64"),
            "x86" => ("386", "SCMP_ARCH_X86"),
            "arm" => ("arm", "SCMP_ARCH_ARM"),
            "riscv64" => ("riscv64", "SCMP_ARCH_RISCV64"),
            "s390x" => ("s390x", "SCMP_ARCH_S390X"),
            "powerpc64" => ("ppc64le", "SCMP_ARCH_PPC64LE"),
            other => (other, "SCMP_ARCH_NATIVE"),
        };
        Host {
            arch,
            scmp_arch,
            kernel: kernel_version(),
        }
    }
}

/// The running kernel's (major, minor), (0, 0) when unknown.
pub fn kernel_version() -> (u32, u32) {
    let rel = nix::sys::utsname::uname()
        .map(|u| u.release().to_string_lossy().into_owned())
        .unwrap_or_default();
    parse_kernel(&rel).unwrap_or((0, 0))
}

fn parse_kernel(s: &str) -> Option<(u32, u32)> {
    let mut it = s.split(|c: char| !c.is_ascii_digit());
    Some((it.next()?.parse().ok()?, it.next()?.parse().ok()?))
}

fn action(name: &str, errno: Option<u32>) -> Result<(LinuxSeccompAction, Option<u32>)> {
    let a = match name {
        "SCMP_ACT_ALLOW" => LinuxSeccompAction::ScmpActAllow,
        "SCMP_ACT_ERRNO" => return Ok((LinuxSeccompAction::ScmpActErrno, errno)),
        "SCMP_ACT_KILL" | "SCMP_ACT_KILL_THREAD" => LinuxSeccompAction::ScmpActKill,
        "SCMP_ACT_KILL_PROCESS" => LinuxSeccompAction::ScmpActKillProcess,
        "SCMP_ACT_TRAP" => LinuxSeccompAction::ScmpActTrap,
        "SCMP_ACT_TRACE" => return Ok((LinuxSeccompAction::ScmpActTrace, errno)),
        "SCMP_ACT_LOG" => LinuxSeccompAction::ScmpActLog,
        other => return Err(Error::user(format!("unrecognized seccomp action: {other}"))),
    };
    Ok((a, None))
}

fn scmp_arch(name: &str) -> Option<Arch> {
    serde_json::from_value(serde_json::Value::String(name.to_string())).ok()
}

fn op(o: Op) -> LinuxSeccompOperator {
    match o {
        Op::Ne => LinuxSeccompOperator::ScmpCmpNe,
        Op::Lt => LinuxSeccompOperator::ScmpCmpLt,
        Op::Le => LinuxSeccompOperator::ScmpCmpLe,
        Op::Eq => LinuxSeccompOperator::ScmpCmpEq,
        Op::Ge => LinuxSeccompOperator::ScmpCmpGe,
        Op::Gt => LinuxSeccompOperator::ScmpCmpGt,
        Op::MaskedEq => LinuxSeccompOperator::ScmpCmpMaskedEq,
    }
}

fn applies(inc: &Option<ProfileCond>, exc: &Option<ProfileCond>, caps: &HashSet<String>, host: &Host) -> bool {
    if let Some(i) = inc {
        if let Some(a) = &i.arches
            && !a.iter().any(|x| x == host.arch)
        {
            return false;
        }
        if let Some(c) = &i.caps
            && !c.iter().all(|x| caps.contains(x))
        {
            return false;
        }
        if let Some(k) = &i.min_kernel
            && parse_kernel(k).is_some_and(|min| host.kernel < min)
        {
            return false;
        }
    }
    if let Some(e) = exc {
        if let Some(a) = &e.arches
            && a.iter().any(|x| x == host.arch)
        {
            return false;
        }
        if let Some(c) = &e.caps
            && c.iter().any(|x| caps.contains(x))
        {
            return false;
        }
    }
    true
}

/// Evaluates `profile` for a container holding `caps` (names such as `CAP_SYS_ADMIN`) on
/// `host`, giving the runtime spec's filter.
pub fn to_oci(profile: &Profile, caps: &HashSet<String>, host: &Host) -> Result<LinuxSeccomp> {
    let bad = |e: oci_spec::OciSpecError| Error::sys(format!("building the seccomp filter: {e}"));
    let (default_action, default_errno) = action(&profile.default_action, profile.default_errno_ret)?;
    let mut arches: Vec<Arch> = Vec::new();
    if let Some(list) = &profile.architectures {
        arches.extend(list.iter().filter_map(|a| scmp_arch(a)));
    }
    for m in profile.arch_map.iter().flatten() {
        if m.architecture == host.scmp_arch {
            arches.extend(scmp_arch(&m.architecture));
            arches.extend(m.sub_architectures.iter().flatten().filter_map(|a| scmp_arch(a)));
        }
    }
    arches.dedup();
    let mut syscalls = Vec::new();
    for s in profile.syscalls.iter().flatten() {
        if !applies(&s.includes, &s.excludes, caps, host) {
            continue;
        }
        let mut names: Vec<String> = s.names.clone().unwrap_or_default();
        names.extend(s.name.clone());
        if names.is_empty() {
            continue;
        }
        let (act, errno) = action(&s.action, s.errno_ret)?;
        let mut b = LinuxSyscallBuilder::default().names(names).action(act);
        if let Some(e) = errno {
            b = b.errno_ret(e);
        }
        if let Some(args) = &s.args {
            let args = args
                .iter()
                .map(|a| {
                    LinuxSeccompArgBuilder::default()
                        .index(a.index as usize)
                        .value(a.value)
                        .value_two(a.value_two)
                        .op(op(a.op))
                        .build()
                })
                .collect::<std::result::Result<Vec<_>, _>>()
                .map_err(bad)?;
            b = b.args(args);
        }
        syscalls.push(b.build().map_err(bad)?);
    }
    let mut b = LinuxSeccompBuilder::default()
        .default_action(default_action)
        .architectures(arches)
        .syscalls(syscalls);
    if let Some(e) = default_errno {
        b = b.default_errno_ret(e);
    }
    b.build().map_err(bad)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn host() -> Host {
        Host {
            arch: "amd64",
            scmp_arch: "SCMP_ARCH_X86_64",
            kernel: (6, 1),
        }
    }

    fn allowed(f: &LinuxSeccomp, name: &str) -> bool {
        f.syscalls().iter().flatten().any(|s| {
            s.action() == LinuxSeccompAction::ScmpActAllow
                && s.names().iter().any(|n| n == name)
                && s.args().as_ref().is_none_or(|a| a.is_empty())
        })
    }

    fn default_caps() -> HashSet<String> {
        super::super::caps::DOCKER_DEFAULT
            .iter()
            .map(|s| s.to_string())
            .collect()
    }

    #[test]
    fn docker_default_allow_list_semantics() {
        let f = to_oci(&Profile::docker_default(), &default_caps(), &host()).unwrap();
        assert_eq!(f.default_action(), LinuxSeccompAction::ScmpActErrno);
        assert_eq!(f.default_errno_ret(), Some(1));
        let arches = f.architectures().clone().unwrap();
        assert_eq!(arches, vec![Arch::ScmpArchX86_64, Arch::ScmpArchX86, Arch::ScmpArchX32]);
        for ok in ["read", "openat", "execve", "arch_prctl", "chroot", "setuid", "kill"] {
            assert!(allowed(&f, ok), "{ok} allowed");
        }
        // Escapes and kernel-wide state stay closed without the capability that opens them.
        for no in [
            "bpf",
            "open_by_handle_at",
            "mount",
            "umount2",
            "keyctl",
            "add_key",
            "unshare",
            "ptrace",
            "init_module",
            "kexec_load",
            "reboot",
            "setns",
            "perf_event_open",
            "clock_settime",
        ] {
            assert!(!allowed(&f, no), "{no} must not be allowed by default");
        }
        // clone is allowed only without namespace flags (a masked argument rule).
        let clone = f
            .syscalls()
            .iter()
            .flatten()
            .find(|s| s.names().iter().any(|n| n == "clone"))
            .unwrap();
        assert_eq!(clone.args().as_ref().unwrap()[0].value(), 2114060288);
        // clone3 is ENOSYS (38) so that libc falls back to clone.
        assert!(
            f.syscalls()
                .iter()
                .flatten()
                .any(|s| s.names().iter().any(|n| n == "clone3")
                    && s.action() == LinuxSeccompAction::ScmpActErrno
                    && s.errno_ret() == Some(38))
        );
    }

    #[test]
    fn capabilities_open_their_syscalls() {
        let mut caps = default_caps();
        caps.insert("CAP_SYS_ADMIN".into());
        caps.insert("CAP_SYS_PTRACE".into());
        let f = to_oci(&Profile::docker_default(), &caps, &host()).unwrap();
        for name in ["bpf", "mount", "unshare", "setns", "ptrace", "clone"] {
            assert!(allowed(&f, name), "{name} with CAP_SYS_ADMIN/CAP_SYS_PTRACE");
        }
        // The masked clone rule is excluded once CAP_SYS_ADMIN is granted.
        assert!(
            !f.syscalls()
                .iter()
                .flatten()
                .any(|s| s.names().iter().any(|n| n == "clone") && s.args().as_ref().is_some_and(|a| !a.is_empty()))
        );
    }

    #[test]
    fn user_profiles_in_dockers_format() {
        let p: Profile = serde_json::from_str(
            r#"{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[{"names":["mkdir"],"action":"SCMP_ACT_ERRNO","errnoRet":13},
               {"name":"chmod","action":"SCMP_ACT_ERRNO","includes":{"minKernel":"99.0"}}]}"#,
        )
        .unwrap();
        let f = to_oci(&p, &default_caps(), &host()).unwrap();
        assert_eq!(f.default_action(), LinuxSeccompAction::ScmpActAllow);
        let s = f.syscalls().clone().unwrap();
        assert_eq!(s.len(), 1, "the minKernel rule does not apply");
        assert_eq!(s[0].errno_ret(), Some(13));
        let bad: Profile = serde_json::from_str(r#"{"defaultAction":"SCMP_ACT_NOPE"}"#).unwrap();
        assert!(to_oci(&bad, &default_caps(), &host()).is_err());
    }
}
