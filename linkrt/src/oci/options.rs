//! The isolation and resource options of `run`/`create`, parsed and validated with Docker's
//! rules and error texts: `--memory`, `--cpus`, `--pids-limit`, `--security-opt`, `-v`.
use std::path::{Component, Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// Docker's `units.RAMInBytes` for `--memory`: `32m`, `1.5g`, `512MiB`, `100000` (binary
/// units), at least 6 MiB.
pub fn parse_memory(s: &str) -> Result<i64> {
    let bytes = parse_size(s).map_err(|BadSize| {
        Error::user(format!(
            "invalid argument \"{s}\" for \"-m, --memory\" flag: invalid size: '{s}'"
        ))
    })?;
    if bytes > 0 && bytes < 6 * 1024 * 1024 {
        return Err(Error::user("Minimum memory limit allowed is 6MB"));
    }
    Ok(bytes)
}

/// Not a size.
#[derive(Debug)]
pub struct BadSize;

/// `units.RAMInBytes`: a size with an optional binary unit.
pub fn parse_size(s: &str) -> std::result::Result<i64, BadSize> {
    let t = s.trim_end_matches(['b', 'B']);
    let t = t.strip_suffix(['i', 'I']).unwrap_or(t);
    let (num, mult) = match t.char_indices().last() {
        Some((i, c)) if c.is_ascii_alphabetic() => {
            let m: i64 = match c.to_ascii_lowercase() {
                'k' => 1 << 10,
                'm' => 1 << 20,
                'g' => 1 << 30,
                't' => 1 << 40,
                'p' => 1 << 50,
                _ => return Err(BadSize),
            };
            (t[..i].trim_end_matches(' '), m)
        }
        _ => (t, 1),
    };
    if num.is_empty() || !num.chars().all(|c| c.is_ascii_digit() || c == '.') || num.starts_with('.') {
        return Err(BadSize);
    }
    let v: f64 = num.parse().map_err(|_| BadSize)?;
    let bytes = v * mult as f64;
    if !bytes.is_finite() || bytes > i64::MAX as f64 {
        return Err(BadSize);
    }
    Ok(bytes as i64)
}

/// `--cpus 1.5` → nano CPUs, with Docker's texts and range.
pub fn parse_cpus(s: &str) -> Result<i64> {
    let bad = || {
        Error::user(format!(
            "invalid argument \"{s}\" for \"--cpus\" flag: failed to parse {s} as a rational number"
        ))
    };
    let (int, frac) = s.split_once('.').unwrap_or((s, ""));
    if int.is_empty() && frac.is_empty() || !int.chars().chain(frac.chars()).all(|c| c.is_ascii_digit()) {
        return Err(bad());
    }
    if frac.len() > 9 {
        return Err(Error::user(format!(
            "invalid argument \"{s}\" for \"--cpus\" flag: value is too precise"
        )));
    }
    let int: i64 = if int.is_empty() {
        0
    } else {
        int.parse().map_err(|_| bad())?
    };
    let frac_n: i64 = format!("{frac:0<9}").parse().map_err(|_| bad())?;
    let nano = int
        .checked_mul(1_000_000_000)
        .and_then(|v| v.checked_add(frac_n))
        .ok_or_else(bad)?;
    let ncpu = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1) as i64;
    if nano != 0 && (nano < 10_000_000 || nano > ncpu * 1_000_000_000) {
        return Err(Error::user(format!(
            "Range of CPUs is from 0.01 to {ncpu}.00, as there are only {ncpu} CPUs available"
        )));
    }
    Ok(nano)
}

/// What `--security-opt` can change.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SecurityOpts {
    /// `seccomp=unconfined`.
    #[serde(default)]
    pub seccomp_unconfined: bool,
    /// `seccomp=FILE`: the profile file's content (read at `create`, as Docker's CLI does).
    #[serde(default)]
    pub seccomp_profile: Option<String>,
    #[serde(default)]
    pub no_new_privileges: bool,
}

impl SecurityOpts {
    /// Docker's `parseSecurityOpt` (`no-new-privileges`, `seccomp=`, `apparmor=` and `label=`,
    /// the last two accepted and without effect: this host has no LSM profiles to apply).
    pub fn parse(opts: &[String]) -> Result<SecurityOpts> {
        let mut s = SecurityOpts::default();
        for opt in opts {
            if opt == "no-new-privileges" {
                s.no_new_privileges = true;
                continue;
            }
            let (k, v) = opt
                .split_once('=')
                .or_else(|| opt.split_once(':'))
                .ok_or_else(|| Error::user(format!("invalid --security-opt 1: {opt:?}")))?;
            match k {
                "label" | "apparmor" => {}
                "seccomp" if v == "unconfined" => s.seccomp_unconfined = true,
                "seccomp" => {
                    let data = crate::state::read_limited(Path::new(v), 1 << 20)
                        .map_err(|e| Error::user(format!("opening seccomp profile ({v}) failed: {e}")))?;
                    let text = String::from_utf8(data)
                        .map_err(|_| Error::user(format!("opening seccomp profile ({v}) failed: not UTF-8")))?;
                    // Refuse a bad profile now rather than at start.
                    serde_json::from_str::<super::seccomp::Profile>(&text)
                        .map_err(|e| Error::user(format!("decoding seccomp profile failed: {e}")))?;
                    s.seccomp_profile = Some(text);
                }
                "no-new-privileges" => {
                    s.no_new_privileges = match v {
                        "true" | "1" | "t" | "T" | "TRUE" | "True" => true,
                        "false" | "0" | "f" | "F" | "FALSE" | "False" => false,
                        _ => return Err(Error::user(format!("invalid --security-opt 2: {opt:?}"))),
                    }
                }
                _ => return Err(Error::user(format!("invalid --security-opt 2: {opt:?}"))),
            }
        }
        Ok(s)
    }
}

/// A `-v HOST:CTR[:MODE]` bind mount.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Volume {
    pub source: PathBuf,
    pub destination: String,
    pub read_only: bool,
    /// `rprivate` unless a propagation mode was given.
    pub propagation: String,
}

impl Volume {
    /// Docker's Linux parser for `-v`, with its texts. linkrt has no named volumes.
    pub fn parse(spec: &str) -> Result<Volume> {
        let invalid = || Error::user(format!("invalid volume specification: '{spec}'"));
        let parts: Vec<&str> = spec.split(':').collect();
        let is_mode = |m: &str| {
            m.split(',').all(|x| {
                matches!(
                    x,
                    "ro" | "rw"
                        | "z"
                        | "Z"
                        | "shared"
                        | "rshared"
                        | "slave"
                        | "rslave"
                        | "private"
                        | "rprivate"
                        | "nocopy"
                )
            })
        };
        let (src, dst, mode) = match parts.as_slice() {
            [dst] => (None, *dst, ""),
            [dst, mode] if is_mode(mode) => (None, *dst, *mode),
            [src, dst] => (Some(*src), *dst, ""),
            [src, dst, mode] => (Some(*src), *dst, *mode),
            _ => return Err(invalid()),
        };
        if dst.is_empty() || src == Some("") {
            return Err(invalid());
        }
        if !dst.starts_with('/') {
            return Err(Error::user(format!(
                "invalid volume specification: '{spec}': invalid mount config for type \"bind\": invalid mount path: '{dst}' mount path must be absolute"
            )));
        }
        if Path::new(dst)
            .components()
            .all(|c| matches!(c, Component::RootDir | Component::ParentDir | Component::CurDir))
        {
            return Err(Error::user("invalid specification: destination can't be '/'"));
        }
        let mut read_only = false;
        let mut propagation = "rprivate".to_string();
        if !mode.is_empty() {
            for m in mode.split(',') {
                match m {
                    "ro" => read_only = true,
                    "rw" | "z" | "Z" | "nocopy" => {}
                    "shared" | "rshared" | "slave" | "rslave" | "private" | "rprivate" => propagation = m.to_string(),
                    _ => return Err(Error::user(format!("invalid mode: {mode}"))),
                }
            }
        }
        let Some(src) = src else {
            return Err(Error::user(format!(
                "invalid volume specification: '{spec}': linkrt has no named or anonymous volumes; bind a host directory with -v /host/path:{dst}"
            )));
        };
        if !src.starts_with('/') {
            return Err(Error::user(format!(
                "invalid volume specification: '{spec}': linkrt has no named volumes (\"{src}\"); bind a host path with -v /host/path:{dst}"
            )));
        }
        let source = PathBuf::from(src);
        if std::fs::symlink_metadata(&source).is_err() {
            return Err(Error::user(format!(
                "invalid mount config for type \"bind\": bind source path does not exist: {src}"
            )));
        }
        Ok(Volume {
            source,
            destination: dst.to_string(),
            read_only,
            propagation,
        })
    }
}

/// Runtime names `--runtime` accepts.
pub const RUNTIMES: [&str; 2] = ["runc", "crun"];

/// Refuses a `--runtime` that linkrt does not know, in Docker's words.
pub fn validate_runtime(name: &str) -> Result<()> {
    if RUNTIMES.contains(&name) {
        Ok(())
    } else {
        Err(Error::user(format!("unknown or invalid runtime name: {name}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memory_sizes_as_docker() {
        assert_eq!(parse_memory("32m").unwrap(), 32 << 20);
        assert_eq!(parse_memory("32MB").unwrap(), 32 << 20);
        assert_eq!(parse_memory("1.5g").unwrap(), 3 << 29);
        assert_eq!(parse_memory("64MiB").unwrap(), 64 << 20);
        assert_eq!(parse_memory("104857600").unwrap(), 100 << 20);
        assert_eq!(
            parse_memory("abc").unwrap_err().to_string(),
            "invalid argument \"abc\" for \"-m, --memory\" flag: invalid size: 'abc'"
        );
        assert!(parse_memory("12x").is_err() && parse_memory("").is_err() && parse_memory("-1m").is_err());
        assert_eq!(
            parse_memory("1m").unwrap_err().to_string(),
            "Minimum memory limit allowed is 6MB"
        );
    }

    #[test]
    fn cpus_as_docker() {
        assert_eq!(parse_cpus("1.5").unwrap(), 1_500_000_000);
        assert_eq!(parse_cpus("0.5").unwrap(), 500_000_000);
        assert!(
            parse_cpus("x")
                .unwrap_err()
                .to_string()
                .contains("failed to parse x as a rational number")
        );
        assert!(
            parse_cpus("0.001")
                .unwrap_err()
                .to_string()
                .starts_with("Range of CPUs is from 0.01 to")
        );
        assert!(parse_cpus("4096").unwrap_err().to_string().contains("CPUs available"));
    }

    #[test]
    fn security_opts() {
        let s = SecurityOpts::parse(&["no-new-privileges".into(), "seccomp=unconfined".into()]).unwrap();
        assert!(s.no_new_privileges && s.seccomp_unconfined);
        assert!(
            !SecurityOpts::parse(&["no-new-privileges=false".into()])
                .unwrap()
                .no_new_privileges
        );
        assert_eq!(
            SecurityOpts::parse(&["foo".into()]).unwrap_err().to_string(),
            "invalid --security-opt 1: \"foo\""
        );
        assert_eq!(
            SecurityOpts::parse(&["foo=bar".into()]).unwrap_err().to_string(),
            "invalid --security-opt 2: \"foo=bar\""
        );
        assert!(
            SecurityOpts::parse(&["seccomp=/nonexistent/profile.json".into()])
                .unwrap_err()
                .to_string()
                .starts_with("opening seccomp profile (/nonexistent/profile.json) failed")
        );
    }

    #[test]
    fn volumes_as_docker() {
        let v = Volume::parse("/tmp:/data:ro").unwrap();
        assert_eq!(
            (v.source.to_str().unwrap(), v.destination.as_str(), v.read_only),
            ("/tmp", "/data", true)
        );
        assert!(!Volume::parse("/tmp:/data").unwrap().read_only);
        assert_eq!(
            Volume::parse("/tmp:/data:foo").unwrap_err().to_string(),
            "invalid mode: foo"
        );
        assert_eq!(
            Volume::parse("/a:/b:ro:x").unwrap_err().to_string(),
            "invalid volume specification: '/a:/b:ro:x'"
        );
        assert!(
            Volume::parse("/tmp:rel")
                .unwrap_err()
                .to_string()
                .contains("mount path must be absolute")
        );
        assert_eq!(
            Volume::parse("/tmp:/").unwrap_err().to_string(),
            "invalid specification: destination can't be '/'"
        );
        assert_eq!(
            Volume::parse("/definitely/no/such/path:/x").unwrap_err().to_string(),
            "invalid mount config for type \"bind\": bind source path does not exist: /definitely/no/such/path"
        );
        assert!(
            Volume::parse("name:/x")
                .unwrap_err()
                .to_string()
                .contains("no named volumes")
        );
        assert!(validate_runtime("runc").is_ok());
        assert_eq!(
            validate_runtime("kata").unwrap_err().to_string(),
            "unknown or invalid runtime name: kata"
        );
    }
}
