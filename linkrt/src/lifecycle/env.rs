//! A container's environment: `--env-file` and `-e` (Docker's rules and limits), and the
//! environment of its processes, with link variables from the sources' current state.
use std::path::Path;

use crate::{
    error::{Error, Result},
    links,
    state::Container,
};

pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Docker's limit for one line of an env file (bufio.Scanner's 64 KiB token).
const MAX_LINE: usize = 64 * 1024;
/// linkrt's limit for a whole env file.
const MAX_FILE: u64 = 16 << 20;

/// Parses `--env-file` content (Docker's rules: `#` comments and blank lines skipped,
/// `KEY` alone is taken from our environment, no whitespace in keys). Devices, FIFOs and
/// oversized files or lines are refused instead of read forever.
pub fn parse_env_file(path: &Path) -> Result<Vec<String>> {
    let text = crate::state::read_limited(path, MAX_FILE).map_err(|e| {
        Error::user(format!(
            "open {}: {}",
            path.display(),
            e.to_string().split(" (os error").next().unwrap_or("").to_lowercase()
        ))
    })?;
    let text = String::from_utf8(text)
        .map_err(|_| Error::user(format!("env file {} contains invalid utf8 bytes", path.display())))?;
    let mut out = Vec::new();
    for (n, line) in text.lines().enumerate() {
        if line.len() > MAX_LINE {
            return Err(Error::user(format!(
                "poorly formatted environment: line {} of {} is longer than {MAX_LINE} bytes (bufio.Scanner: token too long)",
                n + 1,
                path.display()
            )));
        }
        let line = line.trim_start();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (key, val) = match line.split_once('=') {
            Some((k, v)) => (k, Some(v)),
            None => (line, None),
        };
        if key.is_empty() {
            return Err(Error::user(format!("no variable name on line '{line}'")));
        }
        if key.contains(char::is_whitespace) {
            return Err(Error::user(format!(
                "poorly formatted environment: variable '{}' contains whitespaces (line {})",
                key.trim_end(),
                n + 1
            )));
        }
        match val {
            Some(v) => out.push(format!("{key}={v}")),
            None => {
                if let Ok(v) = std::env::var(key) {
                    out.push(format!("{key}={v}"));
                }
            }
        }
    }
    Ok(out)
}

/// Parses `-e` values (the CLI's `ValidateEnv`): `KEY=VALUE`, or `KEY` taken from our
/// environment; a `KEY` we do not have stays bare, and unsets KEY in the container.
pub fn parse_env_opt(raw: &str) -> Result<Option<String>> {
    match raw.split_once('=') {
        Some(("", _)) => Err(Error::user(format!("invalid environment variable: {raw}"))),
        Some(_) => Ok(Some(raw.to_string())),
        None if raw.is_empty() => Err(Error::user("invalid environment variable: ")),
        None => Ok(Some(match std::env::var(raw) {
            Ok(v) => format!("{raw}={v}"),
            Err(_) => raw.to_string(),
        })),
    }
}

/// `HostConfig.Links` entries: `/db:/web/db` (a removed source's entry stays, as in Docker).
pub fn link_strings(c: &Container, all: &[Container]) -> Vec<String> {
    c.spec
        .links
        .iter()
        .map(|l| {
            let name = all
                .iter()
                .find(|s| s.id == l.source_id)
                .map_or(l.source_name.as_str(), |s| s.name.as_str());
            format!("/{name}:/{}/{}", c.name, l.alias)
        })
        .collect()
}

/// The environment of a process in `c` (PID 1 or `exec`), with link variables computed from
/// the sources' current state, in Docker's order. HOME, when not set, comes from the user's
/// passwd entry (`oci::write_bundle`).
pub fn process_env(c: &Container, all: &[Container], tty: bool) -> Vec<String> {
    let mut env = vec![format!("PATH={DEFAULT_PATH}"), format!("HOSTNAME={}", c.spec.hostname)];
    if tty {
        env.push("TERM=xterm".into());
    }
    for l in &c.spec.links {
        if let Some(src) = all.iter().find(|s| s.id == l.source_id) {
            let ip = src
                .state
                .ip
                .or_else(|| c.state.link_ips.get(&src.id).copied())
                .map(|i| i.to_string())
                .unwrap_or_default();
            env.extend(links::env_vars(
                &c.name,
                &l.alias,
                &ip,
                &src.spec.env,
                &src.spec.exposed,
            ));
        }
    }
    links::merge_env(&mut env, &c.spec.env);
    env
}

/// The kernel's limit on a new program's arguments and environment (`ARG_MAX`, a quarter of
/// the stack limit) and on one string (`MAX_ARG_STRLEN`, 32 pages).
fn exec_limits() -> (usize, usize) {
    // SAFETY: sysconf has no preconditions.
    let arg_max = unsafe { libc::sysconf(libc::_SC_ARG_MAX) };
    let arg_max = if arg_max > 0 { arg_max as usize } else { 2 << 20 };
    (arg_max, 32 * 4096)
}

/// Refuses, before anything is made, a process whose command line and environment the kernel
/// would refuse (E2BIG): the error names the environment and the links that make it large,
/// where the kernel would only say "argument list too long" about the command.
pub fn check_exec_size(c: &Container, all: &[Container], args: &[String], env: &[String]) -> Result<()> {
    let (arg_max, str_max) = exec_limits();
    // Each string with its NUL, and one pointer per string (plus the terminators).
    let size: usize = args
        .iter()
        .chain(env)
        .map(|s| s.len() + 1 + std::mem::size_of::<usize>())
        .sum::<usize>()
        + 16;
    let long = args.iter().chain(env).find(|s| s.len() + 1 > str_max);
    if size <= arg_max && long.is_none() {
        return Ok(());
    }
    let mut why: Vec<String> = c
        .spec
        .links
        .iter()
        .filter_map(|l| {
            let src = all.iter().find(|s| s.id == l.source_id)?;
            let prefix = format!("{}_", l.short_alias().to_ascii_uppercase().replace('-', "_"));
            let n = env.iter().filter(|e| e.starts_with(&prefix)).count();
            (n > 0).then(|| {
                format!(
                    "the link to /{} as {} adds {n} for its {} exposed ports",
                    src.name,
                    l.alias,
                    src.spec.exposed.len()
                )
            })
        })
        .collect();
    if let Some(s) = long {
        why.push(format!(
            "one of them is {} bytes, over the {str_max}-byte limit of a single variable",
            s.len()
        ));
    }
    Err(Error::Start {
        code: 126,
        msg: format!(
            "the environment is too large to start the command: {} bytes in {} variables, over the kernel's limit of {arg_max} bytes (E2BIG){}",
            size,
            env.len(),
            if why.is_empty() {
                String::new()
            } else {
                format!("; {}", why.join("; "))
            }
        ),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_files_refuse_devices_fifos_and_huge_lines() {
        let e = parse_env_file(Path::new("/dev/zero")).unwrap_err().to_string();
        assert!(e.starts_with("open /dev/zero: not a regular file"), "{e}");
        let dir = std::env::temp_dir().join(format!("linkrt-envtest-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let fifo = dir.join("fifo");
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
        assert!(
            parse_env_file(&fifo)
                .unwrap_err()
                .to_string()
                .contains("not a regular file")
        );
        let big = dir.join("big");
        std::fs::write(&big, format!("A={}\n", "x".repeat(70_000))).unwrap();
        assert!(parse_env_file(&big).unwrap_err().to_string().contains("token too long"));
        let ok = dir.join("ok");
        std::fs::write(&ok, "# c\n\nA=1\n  B=two words\n").unwrap();
        assert_eq!(parse_env_file(&ok).unwrap(), ["A=1", "B=two words"]);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
