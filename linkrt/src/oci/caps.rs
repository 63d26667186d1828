//! Capabilities, as Docker computes them (moby `daemon/pkg/oci/caps`): its default 14, then
//! `--cap-drop`, `--cap-add` (both accept `NAME`, `CAP_NAME`, any case, and `ALL`), or every
//! capability the kernel knows with `--privileged`.
use std::collections::BTreeSet;

use crate::error::{Error, Result};

/// Docker's default capabilities.
pub const DOCKER_DEFAULT: [&str; 14] = [
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_FSETID",
    "CAP_FOWNER",
    "CAP_MKNOD",
    "CAP_NET_RAW",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETFCAP",
    "CAP_SETPCAP",
    "CAP_NET_BIND_SERVICE",
    "CAP_SYS_CHROOT",
    "CAP_KILL",
    "CAP_AUDIT_WRITE",
];

/// Every capability by number (`capabilities(7)`); the kernel's `cap_last_cap` says how many exist.
const ALL_BY_NUMBER: [&str; 41] = [
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_DAC_READ_SEARCH",
    "CAP_FOWNER",
    "CAP_FSETID",
    "CAP_KILL",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETPCAP",
    "CAP_LINUX_IMMUTABLE",
    "CAP_NET_BIND_SERVICE",
    "CAP_NET_BROADCAST",
    "CAP_NET_ADMIN",
    "CAP_NET_RAW",
    "CAP_IPC_LOCK",
    "CAP_IPC_OWNER",
    "CAP_SYS_MODULE",
    "CAP_SYS_RAWIO",
    "CAP_SYS_CHROOT",
    "CAP_SYS_PTRACE",
    "CAP_SYS_PACCT",
    "CAP_SYS_ADMIN",
    "CAP_SYS_BOOT",
    "CAP_SYS_NICE",
    "CAP_SYS_RESOURCE",
    "CAP_SYS_TIME",
    "CAP_SYS_TTY_CONFIG",
    "CAP_MKNOD",
    "CAP_LEASE",
    "CAP_AUDIT_WRITE",
    "CAP_AUDIT_CONTROL",
    "CAP_SETFCAP",
    "CAP_MAC_OVERRIDE",
    "CAP_MAC_ADMIN",
    "CAP_SYSLOG",
    "CAP_WAKE_ALARM",
    "CAP_BLOCK_SUSPEND",
    "CAP_AUDIT_READ",
    "CAP_PERFMON",
    "CAP_BPF",
    "CAP_CHECKPOINT_RESTORE",
];

/// The capabilities this kernel supports (up to `cap_last_cap`) and this environment can give
/// (in linkrt's own bounding set), as Docker's `GetAllCapabilities`.
pub fn supported() -> Vec<&'static str> {
    let last = std::fs::read_to_string("/proc/sys/kernel/cap_last_cap")
        .ok()
        .and_then(|s| s.trim().parse::<usize>().ok())
        .unwrap_or(ALL_BY_NUMBER.len() - 1);
    let bounding = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("CapBnd:"))
                .and_then(|h| u64::from_str_radix(h.trim(), 16).ok())
        })
        .unwrap_or(u64::MAX);
    ALL_BY_NUMBER
        .iter()
        .enumerate()
        .filter(|(i, _)| *i <= last && bounding & (1 << i) != 0)
        .map(|(_, c)| *c)
        .collect()
}

/// `NAME`/`cap_name`/`ALL` → `CAP_NAME`/`ALL`, refusing unknown names in Docker's words.
fn normalize(list: &[String], flag: &str) -> Result<Vec<String>> {
    list.iter()
        .map(|c| {
            let mut c = c.to_ascii_uppercase();
            if c == "ALL" {
                return Ok(c);
            }
            if !c.starts_with("CAP_") {
                c = format!("CAP_{c}");
            }
            if !ALL_BY_NUMBER.contains(&c.as_str()) {
                return Err(Error::user(format!("invalid {flag}: unknown capability: \"{c}\"")));
            }
            if !supported().contains(&c.as_str()) {
                return Err(Error::user(format!(
                    "invalid {flag}: capability not supported by your kernel or not available in the current environment: \"{c}\""
                )));
            }
            Ok(c)
        })
        .collect()
}

/// Validates `--cap-add`/`--cap-drop` values (at `create`, before anything is made).
pub fn validate(add: &[String], drop: &[String]) -> Result<()> {
    normalize(add, "CapAdd")?;
    normalize(drop, "CapDrop")?;
    Ok(())
}

/// The container's capability set: Docker's `TweakCapabilities`.
pub fn effective(add: &[String], drop: &[String], privileged: bool) -> Result<BTreeSet<String>> {
    let all = || supported().into_iter().map(|s| s.to_string());
    if privileged {
        return Ok(all().collect());
    }
    let add = normalize(add, "CapAdd")?;
    let drop = normalize(drop, "CapDrop")?;
    let has = |l: &[String], c: &str| l.iter().any(|x| x == c);
    let set: BTreeSet<String> = if has(&add, "ALL") {
        all().filter(|c| !has(&drop, c)).collect()
    } else if has(&drop, "ALL") {
        add.into_iter().collect()
    } else {
        DOCKER_DEFAULT
            .iter()
            .map(|s| s.to_string())
            .filter(|c| !has(&drop, c))
            .chain(add)
            .collect()
    };
    Ok(set)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(l: &[&str]) -> Vec<String> {
        l.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn dockers_rules() {
        let d = effective(&[], &[], false).unwrap();
        assert_eq!(d.len(), 14);
        assert!(d.contains("CAP_NET_RAW") && !d.contains("CAP_NET_ADMIN") && !d.contains("CAP_SYS_ADMIN"));
        let e = effective(&v(&["net_admin"]), &v(&["CAP_NET_RAW", "mknod"]), false).unwrap();
        assert!(e.contains("CAP_NET_ADMIN") && !e.contains("CAP_NET_RAW") && !e.contains("CAP_MKNOD"));
        assert_eq!(e.len(), 13);
        let only = effective(&v(&["chown"]), &v(&["ALL"]), false).unwrap();
        assert_eq!(only.into_iter().collect::<Vec<_>>(), ["CAP_CHOWN"]);
        let most = effective(&v(&["all"]), &v(&["SYS_ADMIN"]), false).unwrap();
        assert!(!most.contains("CAP_SYS_ADMIN") && most.contains("CAP_SYS_MODULE"));
        assert_eq!(effective(&[], &[], true).unwrap().len(), supported().len());
        assert_eq!(
            effective(&v(&["FOO"]), &[], false).unwrap_err().to_string(),
            "invalid CapAdd: unknown capability: \"CAP_FOO\""
        );
        assert_eq!(
            validate(&[], &v(&["cap_bar"])).unwrap_err().to_string(),
            "invalid CapDrop: unknown capability: \"CAP_BAR\""
        );
    }
}
