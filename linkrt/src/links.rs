//! Legacy links: the `<ALIAS>_*` environment variables and `/etc/hosts` lines that Docker ≤ 28
//! gives a recipient, and `--link` parsing.
use crate::{
    error::{Error, Result},
    ports::{PortKey, Proto},
};

/// Parses `--link NAME[:ALIAS]` into (name, alias) as Docker's `opts.ParseLink` does;
/// `--link db` is `--link db:db`, and `/db:/web/db` (a `HostConfig.Links` entry) is `db:db`.
/// The name may come back empty (`:x`) and the alias too (`db:`): the daemon step decides
/// ([`clean_alias`]).
pub fn parse_link(raw: &str) -> Result<(String, String)> {
    let flag = |why: String| Error::user(format!("invalid argument \"{raw}\" for \"--link\" flag: {why}"));
    if raw.is_empty() {
        return Err(flag("empty string specified for links".into()));
    }
    let parts: Vec<&str> = raw.split(':').collect();
    let (name, alias) = match parts.as_slice() {
        [n] => (n.strip_prefix('/').unwrap_or(n), *n),
        [n, a] if n.starts_with('/') => (&n[1..], short_alias(a)),
        [n, a] => (*n, *a),
        _ => return Err(flag(format!("bad format for links: {raw}"))),
    };
    // The alias is written into the recipient's /etc/hosts: no whitespace or control byte.
    if alias.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(flag(format!("bad format for links: {raw}")));
    }
    Ok((name.to_string(), alias.to_string()))
}

/// The link's name under its recipient, as `path.Join(recipient, alias)` makes it: empty path
/// elements and `.` dropped. `None` when nothing is left (`db:`, `db:/`): Docker's name
/// reservation then finds the recipient's own name taken and registers no link.
pub fn clean_alias(alias: &str) -> Option<String> {
    let mut parts: Vec<&str> = Vec::new();
    for p in alias.split('/') {
        match p {
            "" | "." => {}
            // Above the recipient's own name: nothing of it is left under the recipient.
            ".." => {
                parts.pop()?;
            }
            p => parts.push(p),
        }
    }
    (!parts.is_empty()).then(|| parts.join("/"))
}

/// The last path element of an alias (`a/b` → `b`).
pub fn short_alias(alias: &str) -> &str {
    alias.rsplit('/').next().unwrap_or(alias)
}

/// Docker's port order for links: TCP first, then other protocols by name; by number within one.
fn link_order(a: &PortKey, b: &PortKey) -> std::cmp::Ordering {
    use std::cmp::Ordering::*;
    if a.proto == b.proto {
        return a.port.cmp(&b.port);
    }
    match (a.proto, b.proto) {
        (Proto::Tcp, _) => Less,
        (_, Proto::Tcp) => Greater,
        _ => a.proto.as_str().cmp(b.proto.as_str()),
    }
}

/// The environment variables a link `alias` (named `/<recipient>/<alias>`) to a source at `ip`
/// with `exposed` ports and environment `source_env` gives its recipient, in Docker's order.
pub fn env_vars(recipient: &str, alias: &str, ip: &str, source_env: &[String], exposed: &[PortKey]) -> Vec<String> {
    let name = format!("/{recipient}/{alias}");
    let a = short_alias(alias).to_uppercase().replace('-', "_");
    let mut ports = exposed.to_vec();
    ports.sort_by(link_order);
    ports.dedup();
    let mut env = Vec::with_capacity(1 + ports.len() * 4);
    let up = |p: &PortKey| p.proto.as_str().to_uppercase();
    let (mut start, mut end) = (None::<PortKey>, None::<PortKey>);
    for (i, p) in ports.iter().enumerate() {
        if i == 0 {
            env.push(format!("{a}_PORT={}://{ip}:{}", p.proto.as_str(), p.port));
            start = Some(*p);
            end = Some(*p);
        }
        let prefix = format!("{a}_PORT_{}_{}", p.port, up(p));
        env.push(format!("{prefix}={}://{ip}:{}", p.proto.as_str(), p.port));
        env.push(format!("{prefix}_ADDR={ip}"));
        env.push(format!("{prefix}_PORT={}", p.port));
        env.push(format!("{prefix}_PROTO={}", p.proto.as_str()));
        let (s, e) = (start.unwrap(), end.unwrap());
        if e.port.checked_add(1) == Some(p.port) && p.proto == e.proto {
            end = Some(*p);
            if i < ports.len() - 1 {
                continue;
            }
        }
        let e = end.unwrap();
        if e != s {
            let prefix = format!("{a}_PORT_{}_{}", s.port, up(&s));
            env.push(format!("{prefix}_START={}://{ip}:{}", s.proto.as_str(), s.port));
            env.push(format!("{prefix}_PORT_START={}", s.port));
            env.push(format!("{prefix}_END={}://{ip}:{}", e.proto.as_str(), e.port));
            env.push(format!("{prefix}_PORT_END={}", e.port));
        }
        start = Some(*p);
        end = Some(*p);
    }
    env.push(format!("{a}_NAME={name}"));
    for v in source_env {
        if let Some((k, val)) = v.split_once('=')
            && k != "HOME"
            && k != "PATH"
        {
            env.push(format!("{a}_ENV_{k}={val}"));
        }
    }
    env
}

/// One `/etc/hosts` entry of a link: `IP\talias shortid [name]`.
pub struct HostsLink<'a> {
    pub ip: &'a str,
    pub alias: &'a str,
    pub short_id: &'a str,
    pub name: &'a str,
}

/// The recipient's `/etc/hosts`, as Docker writes it on the default bridge: the defaults, the
/// `--add-host` entries (`(ip, name)`), the links, then the container's own line.
pub fn hosts_file(extra: &[(String, String)], links: &[HostsLink<'_>], own_ip: Option<&str>, hostname: &str) -> String {
    let mut s = String::from(
        "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\nfe00::\tip6-localnet\nff00::\tip6-mcastprefix\nff02::1\tip6-allnodes\nff02::2\tip6-allrouters\n",
    );
    for (ip, name) in extra {
        s.push_str(&format!("{ip}\t{name}\n"));
    }
    for l in links {
        s.push_str(&format!("{}\t{} {}", l.ip, l.alias, l.short_id));
        if l.name != l.alias {
            s.push(' ');
            s.push_str(l.name);
        }
        s.push('\n');
    }
    if let Some(ip) = own_ip {
        // libnetwork's rule: a fully qualified host name is followed by its first label.
        match hostname.split_once('.') {
            Some((short, _)) => s.push_str(&format!("{ip}\t{hostname} {short}\n")),
            None => s.push_str(&format!("{ip}\t{hostname}\n")),
        }
    }
    s
}

/// Docker's `ReplaceOrAppendEnvValues(defaults, overrides)`: an override `KEY=…` replaces
/// the default of that key in place, else is appended (a repeated key is appended again, as
/// Docker does); a bare `KEY` removes the default (`-e HOSTNAME` with HOSTNAME unset).
pub fn merge_env(base: &mut Vec<String>, overrides: &[String]) {
    let key = |e: &str| e.split_once('=').map_or(e, |(k, _)| k).to_string();
    let index: std::collections::HashMap<String, usize> = base.iter().enumerate().map(|(i, e)| (key(e), i)).collect();
    let mut removed = vec![false; base.len()];
    for o in overrides {
        let k = key(o);
        match (o.contains('='), index.get(&k)) {
            (false, Some(&i)) => removed[i] = true,
            (false, None) => {}
            (true, Some(&i)) => {
                base[i] = o.clone();
                removed[i] = false;
            }
            (true, None) => base.push(o.clone()),
        }
    }
    let mut i = 0;
    base.retain(|_| {
        i += 1;
        !removed.get(i - 1).copied().unwrap_or(false)
    });
}

/// Docker's `Config.Env` of a new container (the daemon's `merge`): the user's entries
/// (`--env-file`, then `-e`, as given), then each image entry whose key the user did not set
/// (a bare `-e KEY` counts as set).
pub fn container_env(user: &[String], image: &[String]) -> Vec<String> {
    let key = |e: &str| e.split_once('=').map_or(e, |(k, _)| k).to_string();
    let keys: std::collections::HashSet<String> = user.iter().map(|e| key(e)).collect();
    let mut env = user.to_vec();
    env.extend(image.iter().filter(|e| !keys.contains(&key(e))).cloned());
    env
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tcp(port: u16) -> PortKey {
        PortKey {
            port,
            proto: Proto::Tcp,
        }
    }

    #[test]
    fn seed_vector_db() {
        let env = env_vars(
            "web2",
            "db",
            "172.17.0.2",
            &["PATH=/usr/bin".into(), "PGUSER=docker".into(), "PGPASS=secret".into()],
            &[tcp(5432)],
        );
        assert_eq!(
            env,
            [
                "DB_PORT=tcp://172.17.0.2:5432",
                "DB_PORT_5432_TCP=tcp://172.17.0.2:5432",
                "DB_PORT_5432_TCP_ADDR=172.17.0.2",
                "DB_PORT_5432_TCP_PORT=5432",
                "DB_PORT_5432_TCP_PROTO=tcp",
                "DB_NAME=/web2/db",
                "DB_ENV_PGUSER=docker",
                "DB_ENV_PGPASS=secret",
            ]
        );
    }

    #[test]
    fn alias_prefix_and_no_ports() {
        let env = env_vars(
            "web",
            "my-db",
            "172.17.0.9",
            &["HOME=/root".into(), "A=b=c".into()],
            &[],
        );
        assert_eq!(env, ["MY_DB_NAME=/web/my-db", "MY_DB_ENV_A=b=c"]);
    }

    #[test]
    fn ranges_and_protocols() {
        let udp = |port| PortKey {
            port,
            proto: Proto::Udp,
        };
        let env = env_vars(
            "r",
            "s",
            "10.0.0.2",
            &[],
            &[udp(53), tcp(8001), tcp(8000), tcp(9000), udp(54)],
        );
        let want = [
            "S_PORT=tcp://10.0.0.2:8000",
            "S_PORT_8000_TCP=tcp://10.0.0.2:8000",
            "S_PORT_8000_TCP_ADDR=10.0.0.2",
            "S_PORT_8000_TCP_PORT=8000",
            "S_PORT_8000_TCP_PROTO=tcp",
            "S_PORT_8001_TCP=tcp://10.0.0.2:8001",
            "S_PORT_8001_TCP_ADDR=10.0.0.2",
            "S_PORT_8001_TCP_PORT=8001",
            "S_PORT_8001_TCP_PROTO=tcp",
            "S_PORT_9000_TCP=tcp://10.0.0.2:9000",
            "S_PORT_9000_TCP_ADDR=10.0.0.2",
            "S_PORT_9000_TCP_PORT=9000",
            "S_PORT_9000_TCP_PROTO=tcp",
            "S_PORT_8000_TCP_START=tcp://10.0.0.2:8000",
            "S_PORT_8000_TCP_PORT_START=8000",
            "S_PORT_8000_TCP_END=tcp://10.0.0.2:8001",
            "S_PORT_8000_TCP_PORT_END=8001",
            "S_PORT_53_UDP=udp://10.0.0.2:53",
            "S_PORT_53_UDP_ADDR=10.0.0.2",
            "S_PORT_53_UDP_PORT=53",
            "S_PORT_53_UDP_PROTO=udp",
            "S_PORT_54_UDP=udp://10.0.0.2:54",
            "S_PORT_54_UDP_ADDR=10.0.0.2",
            "S_PORT_54_UDP_PORT=54",
            "S_PORT_54_UDP_PROTO=udp",
            "S_PORT_53_UDP_START=udp://10.0.0.2:53",
            "S_PORT_53_UDP_PORT_START=53",
            "S_PORT_53_UDP_END=udp://10.0.0.2:54",
            "S_PORT_53_UDP_PORT_END=54",
            "S_NAME=/r/s",
        ];
        assert_eq!(env, want);
        // Only UDP: the first (lowest) UDP port is <A>_PORT.
        assert_eq!(env_vars("r", "s", "ip", &[], &[udp(9), udp(7)])[0], "S_PORT=udp://ip:7");
    }

    #[test]
    fn link_specs() {
        assert!(parse_link("db:al\nias").is_err() && parse_link("db:a b").is_err() && parse_link("db:a\tb").is_err());
        assert_eq!(parse_link("db").unwrap(), ("db".into(), "db".into()));
        assert_eq!(
            parse_link("datastore:redis").unwrap(),
            ("datastore".into(), "redis".into())
        );
        assert_eq!(
            parse_link("db:b:c").unwrap_err().to_string(),
            "invalid argument \"db:b:c\" for \"--link\" flag: bad format for links: db:b:c"
        );
        assert_eq!(
            parse_link("").unwrap_err().to_string(),
            "invalid argument \"\" for \"--link\" flag: empty string specified for links"
        );
        // Accepted by the CLI; the daemon step decides.
        assert_eq!(parse_link(":x").unwrap(), ("".into(), "x".into()));
        assert_eq!(parse_link("x:").unwrap(), ("x".into(), "".into()));
        assert_eq!(parse_link("/:a").unwrap(), ("".into(), "a".into()));
        // A HostConfig.Links entry.
        assert_eq!(parse_link("/db:/web/webdb").unwrap(), ("db".into(), "webdb".into()));
        assert_eq!(clean_alias(""), None);
        assert_eq!(clean_alias("/"), None);
        assert_eq!(clean_alias("a/../.."), None);
        assert_eq!(clean_alias("a//b/"), Some("a/b".into()));
        assert_eq!(clean_alias("./db"), Some("db".into()));
        assert_eq!(short_alias("a/b"), "b");
        assert_eq!(env_vars("rcp", "a/b-c", "ip", &[], &[]), ["B_C_NAME=/rcp/a/b-c"]);
    }

    #[test]
    fn hosts_layout() {
        let h = hosts_file(
            &[],
            &[
                HostsLink {
                    ip: "172.17.0.2",
                    alias: "webdb",
                    short_id: "6e5cdeb2d300",
                    name: "db",
                },
                HostsLink {
                    ip: "172.17.0.2",
                    alias: "db",
                    short_id: "6e5cdeb2d300",
                    name: "db",
                },
            ],
            Some("172.17.0.3"),
            "aed84ee21bde",
        );
        let lines: Vec<&str> = h.lines().collect();
        assert_eq!(lines[0], "127.0.0.1\tlocalhost");
        assert_eq!(lines[6], "172.17.0.2\twebdb 6e5cdeb2d300 db");
        assert_eq!(lines[7], "172.17.0.2\tdb 6e5cdeb2d300");
        assert_eq!(lines[8], "172.17.0.3\taed84ee21bde");
        let fqdn = hosts_file(&[], &[], Some("172.17.0.4"), "foobar.example.com");
        assert_eq!(fqdn.lines().last(), Some("172.17.0.4\tfoobar.example.com foobar"));
    }

    #[test]
    fn env_override_keeps_position() {
        let mut base = vec!["A=1".to_string(), "B=2".to_string()];
        merge_env(&mut base, &["A=9".into(), "C=3".into()]);
        assert_eq!(base, ["A=9", "B=2", "C=3"]);
        // A bare key removes the default; a key repeated among the overrides is appended twice.
        let mut base = vec!["PATH=/bin".to_string(), "HOSTNAME=h".into(), "DB_PORT=x".into()];
        merge_env(
            &mut base,
            &[
                "HOSTNAME".into(),
                "X=1".into(),
                "X=2".into(),
                "NOPE".into(),
                "DB_PORT".into(),
            ],
        );
        assert_eq!(base, ["PATH=/bin", "X=1", "X=2"]);
        // Removed, then set again: the later override wins, in place.
        let mut base = vec!["A=1".to_string()];
        merge_env(&mut base, &["A".into(), "A=2".into()]);
        assert_eq!(base, ["A=2"]);
    }

    #[test]
    fn container_env_in_dockers_order() {
        let image = ["PATH=/usr/bin".to_string(), "PGUSER=docker".into(), "LANG=C".into()];
        assert_eq!(
            container_env(&["FROMFILE=1".into(), "PGUSER=me".into(), "LANG".into()], &image),
            ["FROMFILE=1", "PGUSER=me", "LANG", "PATH=/usr/bin"]
        );
        assert_eq!(container_env(&[], &image), image);
    }
}
