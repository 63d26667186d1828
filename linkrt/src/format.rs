//! Docker's output formats: `inspect` JSON and Go templates, the `ps` table, durations.
use std::collections::{BTreeMap, HashMap};

use gtmpl::{Context, Template, Value as TValue};
use serde_json::{Value, json};

use crate::{
    error::{Error, Result},
    lifecycle, ports,
    state::{self, Container, Status},
};

/// go-units `HumanDuration`.
pub fn human_duration(secs: f64) -> String {
    let s = secs as i64;
    if s < 1 {
        return "Less than a second".into();
    }
    if s == 1 {
        return "1 second".into();
    }
    if s < 60 {
        return format!("{s} seconds");
    }
    let minutes = (secs / 60.0) as i64;
    if minutes == 1 {
        return "About a minute".into();
    }
    if minutes < 60 {
        return format!("{minutes} minutes");
    }
    let hours = (secs / 3600.0 + 0.5) as i64;
    if hours == 1 {
        return "About an hour".into();
    }
    if hours < 48 {
        return format!("{hours} hours");
    }
    if hours < 24 * 7 * 2 {
        return format!("{} days", hours / 24);
    }
    if hours < 24 * 30 * 2 {
        return format!("{} weeks", hours / 24 / 7);
    }
    if hours < 24 * 365 * 2 {
        return format!("{} months", hours / 24 / 30);
    }
    format!("{} years", hours / 24 / 365)
}

fn now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

fn ago(ts: &Option<String>) -> f64 {
    ts.as_deref()
        .and_then(state::parse_rfc3339)
        .map(|t| (now() - t).max(0.0))
        .unwrap_or(0.0)
}

/// The STATUS column: `Up 2 seconds`, `Exited (0) 3 seconds ago`, `Created`.
pub fn status_text(c: &Container) -> String {
    if c.state.restarting {
        return format!(
            "Restarting ({}) {} ago",
            c.state.exit_code,
            human_duration(ago(&c.state.finished_at))
        );
    }
    match c.state.status {
        Status::Running => format!("Up {}", human_duration(ago(&c.state.started_at))),
        Status::Exited => format!(
            "Exited ({}) {} ago",
            c.state.exit_code,
            human_duration(ago(&c.state.finished_at))
        ),
        Status::Created => "Created".into(),
        Status::Dead => format!("Dead ({})", c.state.error),
    }
}

/// Go's `strconv.Quote`: double quotes, `\"` and `\\`, Go's escapes for control and
/// non-printable characters.
pub fn go_quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for ch in s.chars() {
        match ch {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\x07' => out.push_str("\\a"),
            '\x08' => out.push_str("\\b"),
            '\x0c' => out.push_str("\\f"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\x0b' => out.push_str("\\v"),
            c if (c as u32) < 0x20 || c == '\x7f' => out.push_str(&format!("\\x{:02x}", c as u32)),
            c if c.is_control() => {
                if (c as u32) < 0x10000 {
                    out.push_str(&format!("\\u{:04x}", c as u32));
                } else {
                    out.push_str(&format!("\\U{:08x}", c as u32));
                }
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// The daemon's `Command` of a container: the path, then the arguments, those with a space
/// in single quotes (`sh -c 'exit 3'`).
pub fn daemon_command(cmd: &[String]) -> String {
    let mut it = cmd.iter();
    let mut s = it.next().cloned().unwrap_or_default();
    for a in it {
        s.push(' ');
        if a.contains(' ') {
            s.push_str(&format!("'{a}'"));
        } else {
            s.push_str(a);
        }
    }
    s
}

/// The COMMAND column: the CLI's `Ellipsis` (20), then `strconv.Quote`:
/// `"redis-server --prot…"`, `"sh -c 'exit 3'"`.
pub fn command_text(c: &Container, truncate: bool) -> String {
    command_line(&c.spec.cmd, truncate)
}

fn command_line(cmd: &[String], truncate: bool) -> String {
    let cmd = daemon_command(cmd);
    let chars: Vec<char> = cmd.chars().collect();
    let shown = if truncate && chars.len() > 20 {
        chars[..19].iter().collect::<String>() + "…"
    } else {
        cmd
    };
    go_quote(&shown)
}

/// Every name of `c` as the daemon lists them, sorted: its own and one per link to it
/// (`db`, `web/db`, `web/webdb`).
pub fn names(c: &Container, all: &[Container]) -> Vec<String> {
    let mut v = vec![format!("/{}", c.name)];
    for r in all {
        for l in r.spec.links.iter().filter(|l| l.source_id == c.id) {
            v.push(format!("/{}/{}", r.name, l.alias));
        }
    }
    v.sort();
    v.dedup();
    v.into_iter().map(|n| n[1..].to_string()).collect()
}

/// The NAMES column: truncated, the first name that is not a link's; with `--no-trunc`,
/// every name.
pub fn names_text(c: &Container, all: &[Container], truncate: bool) -> String {
    let names = names(c, all);
    if truncate {
        names.into_iter().find(|n| !n.contains('/')).unwrap_or_default()
    } else {
        names.join(",")
    }
}

/// Docker's `State.Status` word (`restarting` while a restart policy waits).
pub fn state_word(c: &Container) -> &'static str {
    if c.state.restarting {
        "restarting"
    } else {
        c.state.status.as_str()
    }
}

/// One `ps` row's fields by Docker's `--format` names.
pub fn ps_fields(c: &Container, all: &[Container], truncate: bool) -> BTreeMap<&'static str, String> {
    let mut m = BTreeMap::new();
    m.insert(
        "ID",
        if truncate {
            c.short_id().to_string()
        } else {
            c.id.clone()
        },
    );
    m.insert("Image", c.spec.image.clone());
    m.insert("Command", command_text(c, truncate));
    m.insert("CreatedAt", c.created.clone());
    m.insert(
        "RunningFor",
        format!("{} ago", human_duration(ago(&Some(c.created.clone())))),
    );
    // The daemon lists a container's ports from its network settings: none unless running.
    let ports = if c.state.status == Status::Running {
        ports::ps_ports(&c.spec.exposed, &c.state.ports)
    } else {
        String::new()
    };
    m.insert("Ports", ports);
    m.insert("Status", status_text(c));
    m.insert("State", state_word(c).to_string());
    m.insert("Names", names_text(c, all, truncate));
    m.insert("RestartCount", c.restart_count.to_string());
    // The CLI's `Labels`: `k=v` pairs sorted, comma-separated.
    m.insert(
        "Labels",
        c.spec
            .labels
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(","),
    );
    m
}

/// Lays out rows like Go's tabwriter with the docker CLI's settings
/// (`tabwriter.NewWriter(out, 10, 1, 3, ' ', 0)`: cells at least 10 wide padding included,
/// padding 3, last column unpadded).
pub fn table(rows: &[Vec<String>]) -> String {
    let ncol = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..ncol)
        .map(|i| {
            rows.iter()
                .filter_map(|r| r.get(i))
                .map(|s| s.chars().count() + 3)
                .max()
                .unwrap_or(0)
                .max(10)
        })
        .collect();
    let mut out = String::new();
    for r in rows {
        let mut line = String::new();
        for (i, cell) in r.iter().enumerate() {
            line.push_str(cell);
            if i + 1 < r.len() {
                line.push_str(&" ".repeat(widths[i] - cell.chars().count()));
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// The `ps` table (default columns).
pub fn ps_table(cs: &[Container], all: &[Container], truncate: bool) -> String {
    let mut rows = vec![
        [
            "CONTAINER ID",
            "IMAGE",
            "COMMAND",
            "CREATED",
            "STATUS",
            "PORTS",
            "NAMES",
        ]
        .map(String::from)
        .to_vec(),
    ];
    for c in cs {
        let f = ps_fields(c, all, truncate);
        rows.push(
            ["ID", "Image", "Command", "RunningFor", "Status", "Ports", "Names"]
                .iter()
                .map(|k| f[k].clone())
                .collect(),
        );
    }
    table(&rows)
}

/// `docker inspect`'s document for one container.
pub fn inspect_json(store: &state::Store, c: &Container, all: &[Container]) -> Value {
    let dir = store.dir(&c.id);
    let running = c.state.status == Status::Running;
    let zero = "0001-01-01T00:00:00Z".to_string();
    let exposed: serde_json::Map<String, Value> = c.spec.exposed.iter().map(|p| (p.to_string(), json!({}))).collect();
    let mut bindings: BTreeMap<String, Vec<Value>> = BTreeMap::new();
    for b in &c.spec.port_bindings {
        let hp = if b.host_start == 0 {
            String::new()
        } else if b.host_start == b.host_end {
            b.host_start.to_string()
        } else {
            format!("{}-{}", b.host_start, b.host_end)
        };
        bindings
            .entry(b.container.to_string())
            .or_default()
            .push(json!({"HostIp": b.host_ip, "HostPort": hp}));
    }
    let mut net_ports: serde_json::Map<String, Value> = serde_json::Map::new();
    if running {
        // Each container port's mappings, found once (a 60,000-port range is 60,000 of them).
        let mut by_port: BTreeMap<crate::ports::PortKey, Vec<Value>> = BTreeMap::new();
        for m in &c.state.ports {
            by_port
                .entry(m.container)
                .or_default()
                .push(json!({"HostIp": m.host_ip.to_string(), "HostPort": m.host_port.to_string()}));
        }
        for p in &c.spec.exposed {
            let ms = by_port.get(p).cloned().unwrap_or_default();
            net_ports.insert(
                p.to_string(),
                if ms.is_empty() { Value::Null } else { Value::Array(ms) },
            );
        }
    }
    let ip = c.state.ip.map(|i| i.to_string()).unwrap_or_default();
    let subnet_prefix = crate::network::Subnet::from_env().map(|s| s.prefix).unwrap_or(16);
    let gw = if running {
        crate::network::Subnet::from_env()
            .map(|s| s.gateway().to_string())
            .unwrap_or_default()
    } else {
        String::new()
    };
    let mac = c.state.mac.map(|m| m.to_string()).unwrap_or_default();
    let prefix = if running { subnet_prefix } else { 0 };
    let links = lifecycle::link_strings(c, all);
    json!({
        "Id": c.id,
        "Created": c.created,
        "Path": c.spec.cmd.first().cloned().unwrap_or_default(),
        "Args": c.spec.cmd.get(1..).unwrap_or(&[]),
        "State": {
            "Status": state_word(c),
            // Docker's SetRestarting keeps Running true while the restart waits.
            "Running": running || c.state.restarting,
            "Paused": false,
            "Restarting": c.state.restarting,
            "OOMKilled": c.state.oom_killed,
            "Dead": c.state.status == Status::Dead,
            "Pid": c.state.pid,
            "ExitCode": c.state.exit_code,
            "Error": c.state.error,
            "StartedAt": c.state.started_at.clone().unwrap_or(zero.clone()),
            "FinishedAt": c.state.finished_at.clone().unwrap_or(zero),
        },
        // Docker's `.Image` is the image's ID; `.Config.Image` the reference as given.
        "Image": if c.spec.image_id.is_empty() { &c.spec.image } else { &c.spec.image_id },
        "ResolvConfPath": dir.join("resolv.conf"),
        "HostnamePath": dir.join("hostname"),
        "HostsPath": dir.join("hosts"),
        "LogPath": dir.join("stdout.log"),
        // Not Docker's: where the supervisor records its own failures.
        "SupervisorLogPath": dir.join("supervisor.log"),
        "Name": format!("/{}", c.name),
        "RestartCount": c.restart_count,
        "Driver": "overlay2",
        "HostConfig": {
            "NetworkMode": "bridge",
            "PortBindings": bindings,
            "PublishAllPorts": c.spec.publish_all,
            "AutoRemove": c.spec.auto_remove,
            "RestartPolicy": {"Name": c.spec.restart.name(), "MaximumRetryCount": c.spec.restart.max_retries()},
            "Links": if links.is_empty() { Value::Null } else { json!(links) },
            "Runtime": c.spec.runtime,
            "ExtraHosts": if c.spec.extra_hosts.is_empty() { Value::Null } else { json!(c.spec.extra_hosts) },
            "Privileged": c.spec.privileged,
            "CapAdd": if c.spec.cap_add.is_empty() { Value::Null } else { json!(c.spec.cap_add) },
            "CapDrop": if c.spec.cap_drop.is_empty() { Value::Null } else { json!(c.spec.cap_drop) },
            "SecurityOpt": security_opts(&c.spec.security),
            "ReadonlyRootfs": c.spec.read_only,
            "Binds": if c.spec.volumes.is_empty() {
                Value::Null
            } else {
                json!(c.spec.volumes.iter().map(|v| format!(
                    "{}:{}{}",
                    v.source.display(),
                    v.destination,
                    if v.read_only { ":ro" } else { "" }
                )).collect::<Vec<_>>())
            },
            "Memory": c.spec.memory.unwrap_or(0),
            "NanoCpus": c.spec.nano_cpus.unwrap_or(0),
            "PidsLimit": c.spec.pids_limit,
            "CgroupnsMode": "private",
            "MaskedPaths": if c.spec.privileged { Value::Null } else { json!(crate::oci::spec::masked_paths()) },
            "ReadonlyPaths": if c.spec.privileged { Value::Null } else { json!(crate::oci::spec::READONLY_PATHS) },
        },
        "Config": {
            "Hostname": c.spec.hostname,
            "Domainname": "",
            "User": c.spec.user,
            "AttachStdin": c.spec.interactive,
            "Tty": c.spec.tty,
            "OpenStdin": c.spec.interactive,
            "ExposedPorts": if exposed.is_empty() { Value::Null } else { Value::Object(exposed) },
            "Env": c.spec.env,
            "Cmd": c.spec.cmd.get(c.spec.entrypoint_len..).unwrap_or(&[]),
            "Entrypoint": match c.spec.cmd.get(..c.spec.entrypoint_len) {
                Some(e) if !e.is_empty() => json!(e),
                _ => Value::Null,
            },
            "Image": c.spec.image,
            "WorkingDir": c.spec.workdir,
            "Labels": c.spec.labels,
        },
        "NetworkSettings": {
            "Bridge": "",
            "SandboxKey": if running { format!("/run/netns/{}", crate::network::netns_name(c.short_id())) } else { String::new() },
            "Ports": net_ports,
            "Gateway": gw,
            "IPAddress": ip,
            "IPPrefixLen": prefix,
            "MacAddress": mac,
            "Networks": {
                "bridge": {
                    "Links": Value::Null,
                    "Aliases": Value::Null,
                    "MacAddress": mac,
                    "NetworkID": crate::network::BRIDGE,
                    "Gateway": gw,
                    "IPAddress": ip,
                    "IPPrefixLen": prefix,
                }
            }
        }
    })
}

fn security_opts(s: &crate::oci::options::SecurityOpts) -> Value {
    let mut v = Vec::new();
    if s.seccomp_unconfined {
        v.push("seccomp=unconfined".to_string());
    } else if s.seccomp_profile.is_some() {
        v.push("seccomp=<profile>".to_string());
    }
    if s.no_new_privileges {
        v.push("no-new-privileges".to_string());
    }
    if v.is_empty() { Value::Null } else { json!(v) }
}

/// Docker's JSON layout: 4-space indentation.
pub fn to_json(v: &Value) -> String {
    let mut buf = Vec::new();
    let fmt = serde_json::ser::PrettyFormatter::with_indent(b"    ");
    let mut ser = serde_json::Serializer::with_formatter(&mut buf, fmt);
    serde::Serialize::serialize(v, &mut ser).expect("serializable");
    String::from_utf8(buf).expect("utf8")
}

fn to_tvalue(v: &Value) -> TValue {
    match v {
        Value::Null => TValue::Nil,
        Value::Bool(b) => TValue::Bool(*b),
        Value::Number(n) => {
            if let Some(i) = n.as_i64() {
                TValue::from(i)
            } else {
                TValue::from(n.as_f64().unwrap_or(0.0))
            }
        }
        Value::String(s) => TValue::String(s.clone()),
        Value::Array(a) => TValue::Array(a.iter().map(to_tvalue).collect()),
        Value::Object(o) => TValue::Object(
            o.iter()
                .map(|(k, v)| (k.clone(), to_tvalue(v)))
                .collect::<HashMap<_, _>>(),
        ),
    }
}

fn from_tvalue(v: &TValue) -> Value {
    match v {
        TValue::NoValue | TValue::Nil | TValue::Function(_) => Value::Null,
        TValue::Bool(b) => Value::Bool(*b),
        TValue::String(s) => Value::String(s.clone()),
        TValue::Number(n) => n
            .as_i64()
            .map(Value::from)
            .or_else(|| n.as_f64().map(Value::from))
            .unwrap_or(Value::Null),
        TValue::Array(a) => Value::Array(a.iter().map(from_tvalue).collect()),
        TValue::Object(o) | TValue::Map(o) => {
            let sorted: BTreeMap<_, _> = o.iter().map(|(k, v)| (k.clone(), from_tvalue(v))).collect();
            Value::Object(sorted.into_iter().collect())
        }
    }
}

fn json_func(args: &[TValue]) -> std::result::Result<TValue, gtmpl_value::FuncError> {
    let v = args.first().map(from_tvalue).unwrap_or(Value::Null);
    Ok(TValue::String(serde_json::to_string(&v).unwrap_or_default()))
}

/// Go's `%v` for values the way `text/template` prints them: arrays as `[a b]`, maps as
/// `map[k:v]`, nil as `<no value>`/`[]`.
fn go_print(v: &Value) -> String {
    match v {
        Value::Null => "<no value>".into(),
        Value::String(s) => s.clone(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        Value::Array(a) => format!("[{}]", a.iter().map(go_print).collect::<Vec<_>>().join(" ")),
        Value::Object(o) => {
            let sorted: BTreeMap<_, _> = o.iter().collect();
            format!(
                "map[{}]",
                sorted
                    .iter()
                    .map(|(k, v)| format!("{k}:{}", go_print(v)))
                    .collect::<Vec<_>>()
                    .join(" ")
            )
        }
    }
}

/// Renders a Go template against a JSON document (`inspect -f`, `ps --format`).
///
/// Plain field chains (`{{ .A.B }}`, the common case) are printed with Go's `%v` rules;
/// everything else goes through the gtmpl engine, with Docker's `json` function.
pub fn render_template(tmpl: &str, data: &Value) -> Result<String> {
    let bad = |e: String| Error::user(format!("template parsing error: {e}"));
    let mut out = String::new();
    let mut rest = tmpl;
    let mut complex = false;
    while let Some(i) = rest.find("{{") {
        out.push_str(&rest[..i]);
        let j = rest[i..].find("}}").ok_or_else(|| bad("unclosed action".into()))? + i;
        let inner = rest[i + 2..j]
            .trim()
            .trim_start_matches('-')
            .trim_end_matches('-')
            .trim();
        if inner.starts_with('.')
            && inner[1..]
                .split('.')
                .all(|p| !p.is_empty() && p.chars().all(|c| c.is_alphanumeric() || c == '_'))
            || inner == "."
        {
            let mut v = data;
            for part in inner.split('.').filter(|p| !p.is_empty()) {
                v = match v.get(part) {
                    Some(x) => x,
                    None if v.is_object() => {
                        return Err(Error::user(format!(
                            "template: :1:{}: executing \"\" at <{inner}>: map has no entry for key \"{part}\"",
                            i + 3
                        )));
                    }
                    None => &Value::Null,
                };
            }
            out.push_str(&if v.is_null() && inner.ends_with("Links") {
                "[]".into()
            } else {
                go_print(v)
            });
        } else {
            complex = true;
            break;
        }
        rest = &rest[j + 2..];
    }
    if !complex {
        out.push_str(rest);
        return Ok(out);
    }
    let mut t = Template::default();
    t.add_func("json", json_func);
    t.parse(tmpl).map_err(|e| bad(e.to_string()))?;
    t.render(&Context::from(to_tvalue(data)))
        .map_err(|e| Error::user(format!("template: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(cells: &[&str]) -> Vec<String> {
        cells.iter().map(|c| c.to_string()).collect()
    }

    /// Byte for byte what the docker CLI prints (its tabwriter: minwidth 10, padding 3).
    #[test]
    fn tables_as_the_docker_cli_lays_them_out() {
        let ps = table(&[row(&[
            "CONTAINER ID",
            "IMAGE",
            "COMMAND",
            "CREATED",
            "STATUS",
            "PORTS",
            "NAMES",
        ])]);
        assert_eq!(
            ps,
            "CONTAINER ID   IMAGE     COMMAND   CREATED   STATUS    PORTS     NAMES\n"
        );
        let images = table(&[
            row(&["REPOSITORY", "TAG", "IMAGE ID", "CREATED", "SIZE"]),
            row(&["redis", "7", "7614ae9453d1", "2 weeks ago", "113MB"]),
        ]);
        assert_eq!(
            images,
            "REPOSITORY   TAG       IMAGE ID       CREATED       SIZE\n\
             redis        7         7614ae9453d1   2 weeks ago   113MB\n"
        );
    }

    #[test]
    fn durations() {
        assert_eq!(human_duration(0.2), "Less than a second");
        assert_eq!(human_duration(1.0), "1 second");
        assert_eq!(human_duration(5.0), "5 seconds");
        assert_eq!(human_duration(61.0), "About a minute");
        assert_eq!(human_duration(600.0), "10 minutes");
        assert_eq!(human_duration(3700.0), "About an hour");
        assert_eq!(human_duration(3.0 * 86400.0), "3 days");
    }

    #[test]
    fn templates() {
        let d = json!({"HostConfig": {"Links": ["/db:/web/db", "/db:/web/webdb"]}, "Name": "/web", "State": {"Running": true, "Pid": 42}});
        assert_eq!(
            render_template("{{ .HostConfig.Links }}", &d).unwrap(),
            "[/db:/web/db /db:/web/webdb]"
        );
        assert_eq!(
            render_template("{{.Name}} {{.State.Running}} {{.State.Pid}}", &d).unwrap(),
            "/web true 42"
        );
        assert_eq!(
            render_template("{{json .HostConfig.Links}}", &d).unwrap(),
            "[\"/db:/web/db\",\"/db:/web/webdb\"]"
        );
        assert_eq!(
            render_template("{{ .HostConfig.Links }}", &json!({"HostConfig": {"Links": null}})).unwrap(),
            "[]"
        );
        assert!(
            render_template("{{ .Nope }}", &d)
                .unwrap_err()
                .to_string()
                .contains("map has no entry for key \"Nope\"")
        );
        assert!(render_template("{{ if }}", &d).is_err());
    }

    #[test]
    fn go_quoting_and_the_daemon_command() {
        assert_eq!(go_quote("sh -c 'exit 3'"), "\"sh -c 'exit 3'\"");
        assert_eq!(go_quote("a\"b\\c\td\ne\u{1}"), r#""a\"b\\c\td\ne\x01""#);
        assert_eq!(go_quote("é…"), "\"é…\"");
        assert_eq!(
            command_line(&["sh".into(), "-c".into(), "exit 3".into()], true),
            "\"sh -c 'exit 3'\""
        );
        let cmd = ["echo".into(), "a b".into(), "c\"d".into()];
        assert_eq!(command_line(&cmd, false), r#""echo 'a b' c\"d""#);
        let long: Vec<String> = "redis-server --protected-mode no"
            .split(' ')
            .map(String::from)
            .collect();
        assert_eq!(command_line(&long, true), "\"redis-server --prot…\"");
    }

    #[test]
    fn table_layout() {
        let t = table(&[
            vec!["A".into(), "BB".into(), "C".into()],
            vec!["xyz".into(), "".into(), "last".into()],
        ]);
        // Short columns are 10 wide (the CLI's minwidth), padding included.
        assert_eq!(t, "A         BB        C\nxyz                 last\n");
    }
}
