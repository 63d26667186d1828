//! `-u/--user USER[:GROUP]`, resolved against the container's own `/etc/passwd` and
//! `/etc/group` (read inside its root), with runc's and Docker's rules: names must exist,
//! numeric IDs need not; supplementary groups come from `/etc/group`; HOME from passwd.
use super::inroot::Root;
use crate::error::{Error, Result};

/// Who the container's process runs as.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExecUser {
    pub uid: u32,
    pub gid: u32,
    pub additional_gids: Vec<u32>,
    pub home: String,
}

struct PasswdEntry {
    name: String,
    uid: u32,
    gid: u32,
    home: String,
}

fn passwd(text: &str) -> Vec<PasswdEntry> {
    text.lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            if f.len() < 7 {
                return None;
            }
            Some(PasswdEntry {
                name: f[0].to_string(),
                uid: f[2].parse().ok()?,
                gid: f[3].parse().ok()?,
                home: f[5].to_string(),
            })
        })
        .collect()
}

/// (name, gid, members) of each `/etc/group` line.
fn groups(text: &str) -> Vec<(String, u32, Vec<String>)> {
    text.lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            if f.len() < 4 {
                return None;
            }
            Some((
                f[0].to_string(),
                f[2].parse().ok()?,
                f[3].split(',').filter(|m| !m.is_empty()).map(str::to_owned).collect(),
            ))
        })
        .collect()
}

/// Resolves `spec` (empty = root) with the given passwd and group file contents.
pub fn resolve_with(spec: &str, passwd_text: &str, group_text: &str) -> Result<ExecUser> {
    let (u, g) = match spec.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (spec, None),
    };
    let users = passwd(passwd_text);
    let u = if u.is_empty() { "0" } else { u };
    let (uid, mut gid, home, name) = match users
        .iter()
        .find(|e| e.name == u || u.parse::<u32>().ok() == Some(e.uid))
    {
        Some(e) => (e.uid, e.gid, e.home.clone(), Some(e.name.clone())),
        None => match u.parse::<u32>() {
            Ok(n) => (n, 0, "/".to_string(), None),
            Err(_) => {
                return Err(Error::user(format!(
                    "unable to find user {u}: no matching entries in passwd file"
                )));
            }
        },
    };
    let all = groups(group_text);
    if let Some(g) = g {
        gid = match all
            .iter()
            .find(|(n, id, _)| n == g || g.parse::<u32>().ok() == Some(*id))
        {
            Some((_, id, _)) => *id,
            None => g
                .parse::<u32>()
                .map_err(|_| Error::user(format!("unable to find group {g}: no matching entries in group file")))?,
        };
    }
    let mut additional: Vec<u32> = match (&name, g) {
        (Some(n), None) => all
            .iter()
            .filter(|(_, _, m)| m.contains(n))
            .map(|(_, id, _)| *id)
            .collect(),
        _ => Vec::new(),
    };
    additional.retain(|x| *x != gid);
    additional.dedup();
    Ok(ExecUser {
        uid,
        gid,
        additional_gids: additional,
        home,
    })
}

/// Resolves `spec` inside the container root `root`.
pub fn resolve(root: &Root, spec: &str) -> Result<ExecUser> {
    let read = |p: &str| -> Result<String> {
        Ok(root
            .read_file(p, 1 << 20)?
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default())
    };
    resolve_with(spec, &read("/etc/passwd")?, &read("/etc/group")?)
}

#[cfg(test)]
mod tests {
    use super::*;

    const P: &str = "root:x:0:0:root:/root:/bin/sh\nredis:x:999:998::/data:/bin/sh\n";
    const G: &str = "root:x:0:\nredis:x:998:\naudio:x:29:redis,bob\n";

    #[test]
    fn runc_rules() {
        assert_eq!(
            resolve_with("", P, G).unwrap(),
            ExecUser {
                uid: 0,
                gid: 0,
                additional_gids: vec![],
                home: "/root".into()
            }
        );
        let r = resolve_with("redis", P, G).unwrap();
        assert_eq!(
            (r.uid, r.gid, r.additional_gids.clone(), r.home.as_str()),
            (999, 998, vec![29], "/data")
        );
        assert_eq!(resolve_with("1234", P, G).unwrap().uid, 1234);
        assert_eq!(resolve_with("1234:55", P, G).unwrap().gid, 55);
        assert_eq!(resolve_with("redis:audio", P, G).unwrap().gid, 29);
        assert_eq!(
            resolve_with("nobody2", P, G).unwrap_err().to_string(),
            "unable to find user nobody2: no matching entries in passwd file"
        );
        assert_eq!(
            resolve_with("redis:nogrp", P, G).unwrap_err().to_string(),
            "unable to find group nogrp: no matching entries in group file"
        );
    }
}
