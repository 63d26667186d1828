//! `ps --filter`: Docker's filter keys and their rules (moby `daemon/list.go`): values of one
//! key are alternatives, keys all apply; `name` and `id` are regular expressions; `status`
//! lists every container, not only running ones.
use std::collections::BTreeMap;

use crate::{
    error::{Error, Result},
    ports::{self, PortKey},
    state::{Container, Status},
};

const ACCEPTED: &[&str] = &["ancestor", "expose", "id", "label", "name", "publish", "status"];
const STATES: &[&str] = &[
    "created",
    "running",
    "paused",
    "restarting",
    "removing",
    "exited",
    "dead",
];

/// Parsed `--filter KEY=VALUE` flags.
#[derive(Debug, Default)]
pub struct Filters {
    fields: BTreeMap<String, Vec<String>>,
    expose: Vec<PortKey>,
    publish: Vec<PortKey>,
}

/// moby's `Args.Match`: an exact match, or a regular expression that matches (an invalid one
/// matches nothing); true when the key is not filtered on.
fn matches(values: Option<&Vec<String>>, source: &str) -> bool {
    let Some(vs) = values else { return true };
    vs.iter()
        .any(|v| v == source || regex::Regex::new(v).map(|r| r.is_match(source)).unwrap_or(false))
}

/// moby's `portOp`: `PORT[/PROTO]` or `START-END[/PROTO]`, no `:`.
fn port_values(key: &str, value: &str) -> Result<Vec<PortKey>> {
    if value.contains(':') {
        return Err(Error::user(format!(
            "filter for '{key}' should not contain ':': {value}"
        )));
    }
    ports::parse_expose(value)
        .map_err(|_| Error::user(format!("error while looking up for {key} {value}: invalid port")))
}

impl Filters {
    /// Parses the flags; the errors are Docker's (the CLI's format check, the daemon's keys).
    pub fn parse(raw: &[String]) -> Result<Filters> {
        let mut f = Filters::default();
        for r in raw {
            let Some((k, v)) = r.split_once('=') else {
                return Err(Error::user(format!(
                    "invalid argument \"{r}\" for \"-f, --filter\" flag: bad format of filter (expected name=value)"
                )));
            };
            let k = k.trim().to_ascii_lowercase();
            let v = v.trim().to_string();
            f.fields.entry(k).or_default().push(v);
        }
        if let Some(k) = f.fields.keys().find(|k| !ACCEPTED.contains(&k.as_str())) {
            return Err(Error::user(format!("invalid filter '{k}'")));
        }
        for s in f.fields.get("status").into_iter().flatten() {
            if !STATES.contains(&s.as_str()) {
                return Err(Error::user(format!(
                    "invalid filter 'status={s}': invalid value for state ({s}): must be one of {}",
                    STATES.join(", ")
                )));
            }
        }
        for v in f.fields.get("expose").cloned().into_iter().flatten() {
            f.expose.extend(port_values("expose", &v)?);
        }
        for v in f.fields.get("publish").cloned().into_iter().flatten() {
            f.publish.extend(port_values("publish", &v)?);
        }
        Ok(f)
    }

    /// A status filter lists stopped containers too (Docker sets `All`).
    pub fn implies_all(&self) -> bool {
        self.fields.contains_key("status")
    }

    /// Whether `c` passes every filter.
    pub fn keep(&self, c: &Container) -> bool {
        let get = |k: &str| self.fields.get(k);
        let name_ok = matches(get("name"), &format!("/{}", c.name)) || matches(get("name"), &c.name);
        if !name_ok || !matches(get("id"), &c.id) {
            return false;
        }
        if let Some(ls) = get("label") {
            // MatchKVList: every `KEY` present, every `KEY=VALUE` equal.
            let ok = ls.iter().all(|l| match l.split_once('=') {
                Some((k, v)) => c.spec.labels.get(k).is_some_and(|x| x == v),
                None => c.spec.labels.contains_key(l),
            });
            if !ok {
                return false;
            }
        }
        if let Some(ss) = get("status") {
            let st = if c.state.restarting {
                "restarting"
            } else {
                c.state.status.as_str()
            };
            if !ss.iter().any(|s| s == st) {
                return false;
            }
        }
        if let Some(imgs) = get("ancestor") {
            let norm = |s: &str| s.strip_suffix(":latest").unwrap_or(s).to_string();
            if !imgs.iter().any(|i| norm(i) == norm(&c.spec.image)) {
                return false;
            }
        }
        if !self.expose.is_empty() || !self.publish.is_empty() {
            // Against the daemon's port list: a running container's exposed and published ports.
            if c.state.status != Status::Running {
                return false;
            }
            let exposed = c.spec.exposed.iter().any(|p| self.expose.contains(p));
            let published = c.state.ports.iter().any(|m| {
                self.publish.contains(&PortKey {
                    port: m.host_port,
                    proto: m.container.proto,
                })
            });
            if !exposed && !published {
                return false;
            }
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn docker_filter_errors() {
        let e = |v: &[&str]| {
            Filters::parse(&v.iter().map(|s| s.to_string()).collect::<Vec<_>>())
                .unwrap_err()
                .to_string()
        };
        assert_eq!(e(&["exposed=80"]), "invalid filter 'exposed'");
        assert_eq!(
            e(&["status"]),
            "invalid argument \"status\" for \"-f, --filter\" flag: bad format of filter (expected name=value)"
        );
        assert_eq!(
            e(&["status=up"]),
            "invalid filter 'status=up': invalid value for state (up): must be one of created, running, paused, restarting, removing, exited, dead"
        );
        assert_eq!(e(&["publish=1:2"]), "filter for 'publish' should not contain ':': 1:2");
        assert!(matches(Some(&vec!["^db$".into()]), "db") && !matches(Some(&vec!["^db$".into()]), "db2"));
        assert!(matches(Some(&vec!["d".into()]), "db") && matches(None, "x"));
    }
}
