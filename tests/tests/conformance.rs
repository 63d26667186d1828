//! Docker conformance, round two (issue 15): each test states one of Docker's rules and checks
//! it with vectors of our own, asserting Docker's exact text, exit codes, stdout and stderr.
use linkrt_tests::{Host, Out, tcp_connect_script};

fn is_id(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// `(code, stdout trimmed, stderr trimmed)`.
fn triple(o: &Out) -> (i32, &str, &str) {
    (o.code, o.stdout.trim_end(), o.stderr.trim_end())
}

fn first_ephemeral() -> u16 {
    std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .unwrap()
        .split_whitespace()
        .next()
        .unwrap()
        .parse()
        .unwrap()
}

/// Rule: `run -d` prints the ID as soon as the container exists; a start that fails after
/// that leaves it Created, its name taken, its error and exit code recorded (128 when the
/// process never ran, 127 for a missing executable), and nothing of its network behind.
#[test]
fn start_failures_print_the_id_first_and_leave_a_created_container() {
    let h = Host::new();
    let first = h.ok(&["run", "-d", "--name", "first", "-p", "8088:5000", "training/webapp"]);
    let o = h.linkrt(&["run", "-d", "--name", "second", "-p", "8088:5000", "training/webapp"]);
    let (code, out, err) = triple(&o);
    assert_eq!(code, 125, "{o:?}");
    assert!(is_id(out), "the ID first, on stdout: {o:?}");
    let prefix = "linkrt: failed to set up container networking: driver failed programming external connectivity on endpoint second (";
    let rest = err.strip_prefix(prefix).unwrap_or_else(|| panic!("{o:?}"));
    let (ep, tail) = rest.split_once(')').unwrap();
    assert!(is_id(ep), "a 64-hex endpoint ID: {ep}");
    assert_eq!(tail, ": Bind for 0.0.0.0:8088 failed: port is already allocated");
    assert_eq!(
        h.inspect(
            "second",
            "{{.Id}} {{.State.Status}} {{.State.ExitCode}} {{.State.Running}}"
        ),
        format!("{out} created 128 false")
    );
    let e = h.inspect("second", "{{.State.Error}}");
    assert_eq!(e, err.strip_prefix("linkrt: ").unwrap());
    // The name stays taken, as in Docker.
    let o = h.linkrt(&["run", "-d", "--name", "second", "training/webapp"]);
    assert_eq!(
        triple(&o),
        (
            125,
            "",
            format!(
                "linkrt: Conflict. The container name \"/second\" is already in use by container \"{out}\". You have to remove (or rename) that container to be able to reuse that name."
            )
            .as_str()
        )
    );
    assert_eq!(h.links().matches("veth").count(), 1, "only first's veth");
    assert_eq!(h.leases().lines().count(), 1, "only first's address");
    // `start` of it fails the same way, and says which container.
    let o = h.linkrt(&["start", "second"]);
    assert_eq!(o.code, 1, "{o:?}");
    let lines: Vec<&str> = o.stderr.lines().collect();
    assert!(
        lines[0].starts_with("Error response from daemon: failed to set up container networking: driver failed programming external connectivity on endpoint second ("),
        "{o:?}"
    );
    assert!(lines[0].ends_with("): Bind for 0.0.0.0:8088 failed: port is already allocated"));
    assert_eq!(lines[1], "Error: failed to start containers: second");
    // Once the port is free, the same container starts.
    h.ok(&["rm", "-f", &first]);
    assert_eq!(h.ok(&["start", "second"]), "second");
    assert_eq!(
        h.inspect("second", "{{.State.Status}} {{.State.ExitCode}} [{{.State.Error}}]"),
        "running 0 []"
    );

    // A missing executable: ID first, exit 127, Created with 127.
    let o = h.linkrt(&["run", "-d", "--name", "noexec", "alpine", "/no/such/binary"]);
    assert_eq!(o.code, 127, "{o:?}");
    assert!(is_id(o.stdout.trim_end()), "{o:?}");
    assert!(
        o.stderr.starts_with("linkrt: failed to create task for container: "),
        "{o:?}"
    );
    assert_eq!(
        h.inspect("noexec", "{{.State.Status}} {{.State.ExitCode}}"),
        "created 127"
    );
    assert_eq!(
        format!("linkrt: {}", h.inspect("noexec", "{{.State.Error}}")),
        o.stderr.trim_end()
    );
    // In the foreground no ID is printed.
    let o = h.linkrt(&["run", "--name", "noexec2", "alpine", "/no/such/binary"]);
    assert_eq!((o.code, o.stdout.as_str()), (127, ""), "{o:?}");
    assert_eq!(h.inspect("noexec2", "{{.State.Status}}"), "created");
    // --rm: the failed container is removed, as Docker does.
    let o = h.linkrt(&["run", "-d", "--rm", "--name", "gone", "alpine", "/no/such/binary"]);
    assert_eq!(o.code, 127, "{o:?}");
    assert_eq!(h.linkrt(&["inspect", "gone"]).code, 1);
}

/// Rule: explicit host ports are allocated before ephemeral ones, so `-P` never takes a port
/// that an explicit `-p` of the same container names.
#[test]
fn publish_all_allocates_explicit_host_ports_first() {
    let h = Host::new();
    let lo = first_ephemeral();
    // webapp exposes 5000; 4000 sorts before it and is ephemeral too.
    h.ok(&[
        "run",
        "-d",
        "--name",
        "web",
        "--expose",
        "4000",
        "-P",
        "-p",
        &format!("{lo}:8080"),
        "training/webapp",
    ]);
    assert_eq!(
        h.ok(&["port", "web"]),
        format!(
            "4000/tcp -> 0.0.0.0:{}\n5000/tcp -> 0.0.0.0:{}\n8080/tcp -> 0.0.0.0:{lo}",
            lo + 1,
            lo + 2
        )
    );
}

/// Rule (libnetwork): a host name with a dot is written `IP\tFQDN FIRST-LABEL` as the
/// container's own /etc/hosts line; `hostname` is the full name.
#[test]
fn a_fully_qualified_hostname_gets_its_short_name_in_hosts() {
    let h = Host::new();
    h.ok(&[
        "run",
        "-d",
        "--name",
        "fq",
        "--hostname",
        "foobar.example.com",
        "alpine",
        "sleep",
        "600",
    ]);
    let hosts = h.ok(&["exec", "fq", "cat", "/etc/hosts"]);
    let ip = h.inspect("fq", "{{.NetworkSettings.IPAddress}}");
    assert_eq!(
        hosts.lines().last().unwrap(),
        format!("{ip}\tfoobar.example.com foobar")
    );
    assert_eq!(h.ok(&["exec", "fq", "hostname"]), "foobar.example.com");
    assert_eq!(h.inspect("fq", "{{.Config.Hostname}}"), "foobar.example.com");
    h.ok(&[
        "run",
        "-d",
        "--name",
        "plain",
        "--hostname",
        "plain",
        "alpine",
        "sleep",
        "600",
    ]);
    let ip = h.inspect("plain", "{{.NetworkSettings.IPAddress}}");
    assert_eq!(
        h.ok(&["exec", "plain", "cat", "/etc/hosts"]).lines().last().unwrap(),
        format!("{ip}\tplain")
    );
}

/// Rule: `create --link` needs the source to exist, not to run; `start` refuses a stopped
/// source in Docker's words (exit 1, then "failed to start containers"), and `run` leaves the
/// recipient Created with its name taken.
#[test]
fn a_link_to_a_stopped_source_is_refused_at_start_not_create() {
    let h = Host::new();
    h.ok(&["create", "--name", "src", "training/postgres"]);
    let id = h.ok(&[
        "create",
        "--name",
        "rcp",
        "--link",
        "src:alias",
        "alpine",
        "sleep",
        "600",
    ]);
    assert!(is_id(&id));
    let o = h.linkrt(&["start", "rcp"]);
    assert_eq!(
        triple(&o),
        (
            1,
            "",
            "Error response from daemon: Cannot link to a non running container: /src AS /rcp/alias\nError: failed to start containers: rcp"
        )
    );
    assert_eq!(
        h.inspect("rcp", "{{.State.Status}} {{.State.ExitCode}} {{.State.Error}}"),
        "created 128 Cannot link to a non running container: /src AS /rcp/alias"
    );
    assert_eq!(h.inspect("rcp", "{{.HostConfig.Links}}"), "[/src:/rcp/alias]");
    let o = h.linkrt(&["run", "--name", "rcp2", "--link", "src:alias", "alpine", "true"]);
    assert_eq!(
        triple(&o),
        (
            125,
            "",
            "linkrt: Cannot link to a non running container: /src AS /rcp2/alias"
        )
    );
    assert_eq!(h.inspect("rcp2", "{{.State.Status}}"), "created");
    let o = h.linkrt(&["run", "-d", "--name", "rcp3", "--link", "src", "alpine", "true"]);
    assert_eq!(o.code, 125, "{o:?}");
    assert!(is_id(o.stdout.trim_end()), "{o:?}");
    assert_eq!(
        o.stderr.trim_end(),
        "linkrt: Cannot link to a non running container: /src AS /rcp3/src"
    );
    assert_eq!(h.links().matches("veth").count(), 0, "no start left a veth");
    // Once the source runs, the same recipient starts and gets its variables.
    assert_eq!(h.ok(&["start", "src", "rcp"]), "src\nrcp");
    assert!(
        h.ok(&["exec", "rcp", "env"])
            .lines()
            .any(|l| l == "ALIAS_NAME=/rcp/alias")
    );
}

/// Rule: exec computes the link variables too, and refuses a recipient whose source stopped;
/// a removed source leaves a dangling `HostConfig.Links` entry, and `restart` fails in
/// Docker's words (the recipient had run: `exited`, not `created`).
#[test]
fn exec_and_restart_with_a_stopped_or_removed_source() {
    let h = Host::new();
    h.ok(&["run", "-d", "--name", "src", "training/postgres"]);
    h.ok(&[
        "run",
        "-d",
        "--name",
        "rcp",
        "--link",
        "src:alias",
        "alpine",
        "sleep",
        "600",
    ]);
    assert_eq!(h.ok(&["exec", "rcp", "echo", "ok"]), "ok");
    h.ok(&["stop", "-t", "1", "src"]);
    let o = h.linkrt(&["exec", "rcp", "echo", "ok"]);
    assert_eq!(
        triple(&o),
        (
            1,
            "",
            "Error: Cannot link to a non running container: /src AS /rcp/alias"
        )
    );
    h.ok(&["rm", "src"]);
    assert_eq!(h.inspect("rcp", "{{.HostConfig.Links}}"), "[/src:/rcp/alias]");
    let o = h.linkrt(&["restart", "-t", "1", "rcp"]);
    assert_eq!(
        triple(&o),
        (
            1,
            "",
            "Error response from daemon: Cannot restart container rcp: Cannot link to a non running container: /src AS /rcp/alias"
        )
    );
    assert_eq!(
        h.inspect("rcp", "{{.State.Status}} {{.State.ExitCode}} {{.State.Error}}"),
        "exited 128 Cannot link to a non running container: /src AS /rcp/alias"
    );
    // A new container with the old name is another container: the link stays dangling.
    h.ok(&["run", "-d", "--name", "src", "training/postgres"]);
    assert_eq!(h.linkrt(&["start", "rcp"]).code, 1);
}

/// Rule: `rm --link /RECIPIENT/ALIAS` (`-l`) removes the link: inspect, /etc/hosts and the
/// datapath's link policy forget it; the name as given is printed. A container's own name
/// cannot be removed this way, an unknown link name is no such container.
#[test]
fn rm_link_removes_a_link() {
    let h = Host::new();
    h.ok(&["run", "-d", "--name", "src", "training/postgres"]);
    h.ok(&[
        "run",
        "-d",
        "--name",
        "rcp",
        "--link",
        "src:db",
        "--link",
        "src:other",
        "alpine",
        "sleep",
        "600",
    ]);
    let o = h.py("rcp", &tcp_connect_script("db", 5432));
    assert_eq!(o.code, 0, "the link works first: {o:?}");
    assert_eq!(h.ok(&["rm", "--link", "/rcp/db"]), "/rcp/db");
    assert_eq!(h.inspect("rcp", "{{.HostConfig.Links}}"), "[/src:/rcp/other]");
    let hosts = h.ok(&["exec", "rcp", "cat", "/etc/hosts"]);
    assert!(!hosts.lines().any(|l| l.contains("\tdb ")), "{hosts}");
    assert!(hosts.lines().any(|l| l.contains("\tother ")), "{hosts}");
    assert_eq!(h.ok(&["rm", "-l", "rcp/other"]), "rcp/other");
    assert_eq!(h.inspect("rcp", "{{.HostConfig.Links}}"), "[]");
    // Without a link, ICC off: the recipient can no longer reach the source.
    let ip = h.inspect("src", "{{.NetworkSettings.IPAddress}}");
    let o = h.py("rcp", &tcp_connect_script(&ip, 5432));
    assert_ne!(o.code, 0, "the policy forgot the link: {o:?}");
    let o = h.linkrt(&["rm", "-l", "src"]);
    assert_eq!(
        triple(&o),
        (
            1,
            "",
            "Error response from daemon: Conflict, cannot remove the default link name of the container"
        )
    );
    let o = h.linkrt(&["rm", "--link", "/rcp/nope"]);
    assert_eq!(
        triple(&o),
        (1, "", "Error response from daemon: No such container: /rcp/nope")
    );
    assert_eq!(
        h.inspect("src", "{{.State.Status}}"),
        "running",
        "rm --link removes no container"
    );
}

/// Rule: link specs as Docker's CLI (`opts.ValidateLink`) and daemon (`registerLinks`,
/// `path.Join` of the link name) handle them.
#[test]
fn link_spec_edge_cases() {
    let h = Host::new();
    let src = h.ok(&["run", "-d", "--name", "src", "training/postgres"]);
    h.ok(&["run", "-d", "--name", "other", "training/webapp"]);
    // `db:` names the recipient itself: accepted, no link.
    h.ok(&["create", "--name", "c1", "--link", "src:", "alpine", "true"]);
    assert_eq!(h.inspect("c1", "{{.HostConfig.Links}}"), "[]");
    let o = h.linkrt(&["run", "--link", "", "alpine", "true"]);
    assert_eq!(
        triple(&o),
        (
            125,
            "",
            "linkrt: invalid argument \"\" for \"--link\" flag: empty string specified for links"
        )
    );
    let o = h.linkrt(&["run", "--link", ":x", "alpine", "true"]);
    assert_eq!(
        triple(&o),
        (
            125,
            "",
            "linkrt: could not get container for : invalid name or ID supplied: \"\""
        )
    );
    assert_eq!(
        h.ok(&["ps", "-aq"]).lines().count(),
        3,
        "the refused specs made nothing"
    );
    // An alias with a slash: the link is /rcp/a/b, the prefix and hosts name `b`.
    h.ok(&[
        "run", "-d", "--name", "rcp", "--link", "src:a/b", "alpine", "sleep", "600",
    ]);
    assert_eq!(h.inspect("rcp", "{{.HostConfig.Links}}"), "[/src:/rcp/a/b]");
    let env = h.ok(&["exec", "rcp", "env"]);
    assert!(env.lines().any(|l| l == "B_NAME=/rcp/a/b"), "{env}");
    assert!(env.lines().any(|l| l == "B_PORT_5432_TCP_PORT=5432"), "{env}");
    let ip = h.inspect("src", "{{.NetworkSettings.IPAddress}}");
    let hosts = h.ok(&["exec", "rcp", "cat", "/etc/hosts"]);
    assert!(
        hosts.lines().any(|l| l == format!("{ip}\tb {} src", &src[..12])),
        "{hosts}"
    );
    // Two sources under one alias: the first wins.
    let env = h.ok(&[
        "run", "--rm", "--name", "two", "--link", "src:db", "--link", "other:db", "alpine", "env",
    ]);
    assert!(
        env.lines().any(|l| l == "DB_PORT=tcp://".to_string() + &ip + ":5432"),
        "{env}"
    );
    assert!(!env.lines().any(|l| l.contains("5000")), "{env}");
}

/// `ps --format TEMPLATE` rows, newest first.
fn ps_rows(h: &Host, args: &[&str]) -> Vec<String> {
    let mut a = vec!["ps"];
    a.extend_from_slice(args);
    h.ok(&a).lines().map(String::from).collect()
}

/// Rule: NAMES lists a container's own name and one per link to it (`recipient/alias`),
/// sorted, with --no-trunc; truncated, only its own.
#[test]
fn ps_names_list_every_link_name_with_no_trunc() {
    let h = Host::new();
    h.ok(&["run", "-d", "--name", "db", "training/postgres"]);
    h.ok(&[
        "run", "-d", "--name", "web", "--link", "db:db", "--link", "db:webdb", "alpine", "sleep", "600",
    ]);
    assert_eq!(
        ps_rows(&h, &["--no-trunc", "--format", "{{.Names}}"]),
        ["web", "db,web/db,web/webdb"]
    );
    assert_eq!(ps_rows(&h, &["--format", "{{.Names}}"]), ["web", "db"]);
    let table = h.ok(&["ps", "--no-trunc"]);
    assert!(
        table.lines().nth(2).unwrap().ends_with("   db,web/db,web/webdb"),
        "{table}"
    );
}

/// Rule: PORTS as the CLI's `DisplayablePorts` makes it; none for a created or exited
/// container; COMMAND with the daemon's quoting of spaced arguments, then `strconv.Quote`;
/// a non-table template printed as is, tabs kept; a `table` one aligned.
#[test]
fn ps_ports_command_and_format_text() {
    let h = Host::new();
    h.ok(&[
        "run", "-d", "--name", "pp", "-p", "8080:80", "-p", "81:81", "-p", "82:82", "--expose", "90", "--expose",
        "53/udp", "--expose", "9988", "alpine", "sleep", "600",
    ]);
    assert_eq!(
        ps_rows(&h, &["--format", "{{.Ports}}"]),
        ["90/tcp, 53/udp, 0.0.0.0:81-82->81-82/tcp, 9988/tcp, 0.0.0.0:8080->80/tcp"]
    );
    h.ok(&["create", "--name", "cr", "-p", "7000:80", "--expose", "99", "alpine"]);
    assert_eq!(
        h.linkrt(&["run", "--name", "ex", "-p", "7001:80", "alpine", "sh", "-c", "exit 3"])
            .code,
        3
    );
    assert_eq!(
        ps_rows(&h, &["-a", "--format", "{{.Names}}|{{.Ports}}|{{.Command}}"]),
        [
            "ex||\"sh -c 'exit 3'\"",
            "cr||\"/bin/sh\"",
            "pp|90/tcp, 53/udp, 0.0.0.0:81-82->81-82/tcp, 9988/tcp, 0.0.0.0:8080->80/tcp|\"sleep 600\"",
        ]
    );
    // Not a table: the template's output as is, its tab kept.
    let rows = ps_rows(&h, &["-a", "--format", "{{.Names}}\\t{{.Image}}"]);
    assert_eq!(rows, ["ex\talpine", "cr\talpine", "pp\talpine"]);
    let rows = ps_rows(&h, &["-a", "--format", "table {{.Names}}\\t{{.Command}}"]);
    assert_eq!(
        rows,
        [
            // The docker CLI's tabwriter: cells at least 10 wide, 3 spaces apart.
            "NAMES     COMMAND",
            "ex        \"sh -c 'exit 3'\"",
            "cr        \"/bin/sh\"",
            "pp        \"sleep 600\""
        ]
    );
    // A long command is cut at 20 characters, before the quoting.
    h.ok(&[
        "create",
        "--name",
        "long",
        "alpine",
        "sh",
        "-c",
        "echo a long command line",
    ]);
    assert_eq!(
        ps_rows(&h, &["-a", "-l", "--format", "{{.Command}}"]),
        ["\"sh -c 'echo a long …\""]
    );
    assert_eq!(
        ps_rows(&h, &["-a", "-l", "--no-trunc", "--format", "{{.Command}}"]),
        ["\"sh -c 'echo a long command line'\""]
    );
}

/// Rule (Docker 28's `port`): PRIVATE_PORT must parse as a u16, the protocol defaults to
/// tcp, and the errors name the port as given.
#[test]
fn port_arguments_as_docker_28() {
    let h = Host::new();
    h.ok(&[
        "run", "-d", "--name", "cc", "-p", "8080:80", "-p", "8081:81", "alpine", "sleep", "600",
    ]);
    assert_eq!(h.ok(&["port", "cc", "80"]), "0.0.0.0:8080");
    assert_eq!(h.ok(&["port", "cc", "81/tcp"]), "0.0.0.0:8081");
    for (arg, num, why) in [
        ("abc", "abc", "invalid syntax"),
        ("80-81", "80-81", "invalid syntax"),
        ("70000", "70000", "value out of range"),
        ("/udp", "", "invalid syntax"),
    ] {
        let o = h.linkrt(&["port", "cc", arg]);
        assert_eq!(
            triple(&o),
            (
                1,
                "",
                format!("Error: invalid port ({num}): strconv.ParseUint: parsing \"{num}\": {why}").as_str()
            ),
            "{arg}"
        );
    }
    let o = h.linkrt(&["port", "cc", "80/udp"]);
    assert_eq!(triple(&o), (1, "", "Error: No public port '80/udp' published for cc"));
    let o = h.linkrt(&["port", "cc", "82"]);
    assert_eq!(triple(&o), (1, "", "Error: No public port '82' published for cc"));
}

/// Rule: `kill` sends SIGKILL (or `-s SIG`, by name or number) to PID 1, prints the name,
/// and refuses a container that is not running in the API's words; `wait` prints the exit
/// code once the container is not running (at once for a created or exited one).
#[test]
fn kill_and_wait() {
    let h = Host::new();
    let id = h.ok(&["run", "-d", "--name", "kk", "alpine", "sleep", "600"]);
    let waiter = h.spawn(&["wait", "kk"]);
    assert_eq!(h.ok(&["kill", "kk"]), "kk");
    let out = waiter.wait_with_output().unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), "137\n");
    assert_eq!(h.inspect("kk", "{{.State.Status}} {{.State.ExitCode}}"), "exited 137");
    let o = h.linkrt(&["kill", "kk"]);
    assert_eq!(
        triple(&o),
        (
            1,
            "",
            format!("Error response from daemon: cannot kill container: kk: container {id} is not running").as_str()
        )
    );
    // A trap in the container sees the signal: by name, with or without SIG, and by number.
    h.ok(&[
        "run",
        "-d",
        "--name",
        "tt",
        "alpine",
        "sh",
        "-c",
        "trap 'exit 42' USR1; trap 'exit 43' HUP; while true; do sleep 0.1; done",
    ]);
    assert_eq!(h.ok(&["kill", "-s", "usr1", "tt"]), "tt");
    assert_eq!(h.ok(&["wait", "tt"]), "42");
    h.ok(&["start", "tt"]);
    assert_eq!(h.ok(&["kill", "--signal", "1", "tt"]), "tt");
    assert_eq!(h.ok(&["wait", "tt"]), "43");
    h.ok(&["start", "tt"]);
    let o = h.linkrt(&["kill", "-s", "NOPE", "tt"]);
    assert_eq!(
        triple(&o),
        (
            1,
            "",
            "Error response from daemon: cannot kill container: tt: Invalid signal: NOPE"
        )
    );
    assert_eq!(h.inspect("tt", "{{.State.Status}}"), "running");
    let o = h.linkrt(&["kill", "nosuch", "tt"]);
    assert_eq!(
        triple(&o),
        (
            1,
            "tt",
            "Error response from daemon: cannot kill container: nosuch: No such container: nosuch"
        )
    );
    h.ok(&["create", "--name", "cr", "alpine"]);
    h.linkrt(&["run", "--name", "three", "alpine", "sh", "-c", "exit 3"]);
    assert_eq!(h.ok(&["wait", "cr", "three"]), "0\n3");
    let o = h.linkrt(&["wait", "nosuch"]);
    assert_eq!(
        triple(&o),
        (1, "", "Error response from daemon: No such container: nosuch")
    );
}

/// Rule: `rename` changes the name; links follow (the source's new name in the recipient's
/// `HostConfig.Links` and NAMES; a renamed recipient's link names move under its new name).
#[test]
fn rename_and_links_follow() {
    let h = Host::new();
    h.ok(&["run", "-d", "--name", "db", "training/postgres"]);
    h.ok(&[
        "run", "-d", "--name", "web", "--link", "db:db", "alpine", "sleep", "600",
    ]);
    assert_eq!(h.ok(&["rename", "db", "store"]), "");
    assert_eq!(h.inspect("web", "{{.HostConfig.Links}}"), "[/store:/web/db]");
    h.ok(&["rename", "web", "front"]);
    assert_eq!(h.inspect("front", "{{.HostConfig.Links}}"), "[/store:/front/db]");
    assert_eq!(
        ps_rows(&h, &["--no-trunc", "--format", "{{.Names}}"]),
        ["front", "front/db,store"]
    );
    // A restart of the recipient gets the variables under its new name; the link still works.
    h.ok(&["restart", "-t", "1", "front"]);
    let env = h.ok(&["exec", "front", "env"]);
    assert!(env.lines().any(|l| l == "DB_NAME=/front/db"), "{env}");
    assert_eq!(h.py("front", &tcp_connect_script("db", 5432)).code, 0);
    let o = h.linkrt(&["rename", "front", "store"]);
    let store_id = h.inspect("store", "{{.Id}}");
    assert_eq!(
        triple(&o),
        (
            1,
            "",
            format!("Error response from daemon: Error when allocating new name: Conflict. The container name \"/store\" is already in use by container \"{store_id}\". You have to remove (or rename) that container to be able to reuse that name.").as_str()
        )
    );
    let o = h.linkrt(&["rename", "front", "front"]);
    assert_eq!(
        triple(&o),
        (
            1,
            "",
            "Error response from daemon: Renaming a container with the same name as its current name"
        )
    );
    let o = h.linkrt(&["rename", "front", "bad name"]);
    assert_eq!(
        triple(&o),
        (
            1,
            "",
            "Error response from daemon: Error when allocating new name: Invalid container name (bad name), only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed"
        )
    );
    let o = h.linkrt(&["rename", "nosuch", "x1"]);
    assert_eq!(
        triple(&o),
        (1, "", "Error response from daemon: No such container: nosuch")
    );
}

/// Rule: `--add-host NAME:IP` (or `NAME=IP`, `[v6]`, `host-gateway`) lines come after the
/// defaults and before the links and the container's own line; bad ones are refused by the
/// CLI in its words.
#[test]
fn add_host_lines_where_docker_puts_them() {
    let h = Host::new();
    let db = h.ok(&["run", "-d", "--name", "db", "training/postgres"]);
    h.ok(&[
        "run",
        "-d",
        "--name",
        "cc",
        "--add-host",
        "extra:10.1.2.3",
        "--add-host",
        "six=[::1]",
        "--add-host",
        "gw:host-gateway",
        "--link",
        "db",
        "alpine",
        "sleep",
        "600",
    ]);
    let hosts = h.ok(&["exec", "cc", "cat", "/etc/hosts"]);
    let l: Vec<&str> = hosts.lines().collect();
    assert_eq!(l[6], "10.1.2.3\textra");
    assert_eq!(l[7], "::1\tsix");
    assert_eq!(l[8], "172.17.0.1\tgw");
    assert_eq!(l[9], format!("{}\tdb {}", h.ip_of("db"), &db[..12]));
    assert_eq!(
        l[10],
        format!("{}\t{}", h.ip_of("cc"), &h.inspect("cc", "{{.Id}}")[..12])
    );
    assert_eq!(
        h.inspect("cc", "{{.HostConfig.ExtraHosts}}"),
        "[extra:10.1.2.3 six:::1 gw:host-gateway]"
    );
    for (arg, why) in [
        ("nocolon", "bad format for add-host: \"nocolon\""),
        (":1.2.3.4", "bad format for add-host: \":1.2.3.4\""),
        ("x:1.2.3", "invalid IP address in add-host: \"1.2.3\""),
    ] {
        let o = h.linkrt(&["run", "--add-host", arg, "alpine", "true"]);
        assert_eq!(
            triple(&o),
            (
                125,
                "",
                format!("linkrt: invalid argument \"{arg}\" for \"--add-host\" flag: {why}").as_str()
            )
        );
    }
    assert_eq!(h.ok(&["ps", "-aq"]).lines().count(), 2);
}

/// Rule: `ps --filter` keys as moby's `daemon/list.go` applies them, with `--label`/`-l` on
/// run and create; unknown keys and bad values refused in Docker's words.
#[test]
fn ps_filters_and_labels() {
    let h = Host::new();
    let db = h.ok(&[
        "run",
        "-d",
        "--name",
        "db",
        "-l",
        "tier=data",
        "-l",
        "backup",
        "training/postgres",
    ]);
    h.ok(&[
        "run",
        "-d",
        "--name",
        "web",
        "--label",
        "tier=front",
        "-p",
        "8080:5000",
        "training/webapp",
    ]);
    h.ok(&["create", "--name", "idle", "--expose", "7000", "alpine"]);
    h.linkrt(&["run", "--name", "done", "alpine", "true"]);
    let names = |f: &[&str]| {
        let mut a = vec!["--format", "{{.Names}}"];
        for x in f {
            a.extend(["--filter", x]);
        }
        ps_rows(&h, &a)
    };
    assert_eq!(names(&["name=db"]), ["db"]);
    assert_eq!(names(&["name=^/?w"]), ["web"]);
    assert_eq!(names(&["name=e"]), ["web"], "running only without -a or status");
    assert_eq!(names(&["id=".to_string().as_str()]).len(), 2);
    assert_eq!(names(&[&format!("id={}", &db[..6])]), ["db"]);
    assert_eq!(names(&["status=exited"]), ["done"]);
    assert_eq!(names(&["status=created", "status=exited"]), ["done", "idle"]);
    assert_eq!(names(&["ancestor=training/postgres"]), ["db"]);
    assert_eq!(names(&["ancestor=alpine:latest", "status=created"]), ["idle"]);
    assert_eq!(names(&["expose=5432"]), ["db"]);
    assert_eq!(names(&["expose=5000-5432/tcp"]), ["web", "db"]);
    assert_eq!(names(&["publish=8080"]), ["web"]);
    assert!(names(&["publish=5000"]).is_empty(), "publish is the host port");
    assert_eq!(names(&["label=tier"]), ["web", "db"]);
    assert_eq!(names(&["label=tier=data"]), ["db"]);
    assert_eq!(names(&["label=backup", "label=tier=data"]), ["db"]);
    assert!(names(&["label=backup", "name=web"]).is_empty());
    assert_eq!(
        h.inspect("db", "{{json .Config.Labels}}"),
        "{\"backup\":\"\",\"tier\":\"data\"}"
    );
    assert_eq!(
        ps_rows(&h, &["--filter", "name=db", "--format", "{{.Labels}}"]),
        ["backup=,tier=data"]
    );
    for (f, err) in [
        ("exposed=80", "Error: invalid filter 'exposed'"),
        (
            "status=up",
            "Error: invalid filter 'status=up': invalid value for state (up): must be one of created, running, paused, restarting, removing, exited, dead",
        ),
        (
            "nameonly",
            "Error: invalid argument \"nameonly\" for \"-f, --filter\" flag: bad format of filter (expected name=value)",
        ),
    ] {
        let o = h.linkrt(&["ps", "--filter", f]);
        assert_eq!(triple(&o), (1, "", err), "{f}");
    }
    let o = h.linkrt(&["run", "-l", "=x", "alpine", "true"]);
    assert_eq!(
        triple(&o),
        (
            125,
            "",
            "linkrt: invalid argument \"=x\" for \"-l, --label\" flag: invalid label '=x': empty name"
        )
    );
}

/// Rule: the long `--publish` syntax is the short one (`published:target/protocol`), and
/// `host_ip` limits the address.
#[test]
fn long_publish_syntax() {
    let h = Host::new();
    h.ok(&[
        "run",
        "-d",
        "--name",
        "web",
        "--publish",
        "published=8080,target=5000",
        "--publish",
        "target=53,published=5353,protocol=udp",
        "-p",
        "published=9090,target=9000,host_ip=127.0.0.1",
        "training/webapp",
    ]);
    assert_eq!(
        h.ok(&["port", "web"]),
        "53/udp -> 0.0.0.0:5353\n5000/tcp -> 0.0.0.0:8080\n9000/tcp -> 127.0.0.1:9090"
    );
    let o = h.linkrt(&["run", "-p", "published=1,2", "alpine", "true"]);
    assert_eq!(
        triple(&o),
        (
            125,
            "",
            "linkrt: invalid publish opts format (should be name=value but got '2')"
        )
    );
}

/// The supervisor and PID 1 of a running container (`<run_root>/<id>.pids`).
fn pids(h: &Host, name: &str) -> (i32, i32) {
    let id = h.inspect(name, "{{.Id}}");
    let s = std::fs::read_to_string(h.t.cfg.run_root.join(format!("{id}.pids"))).unwrap();
    let mut it = s.split_whitespace().map(|x| x.parse().unwrap());
    (it.next().unwrap(), it.next().unwrap())
}

/// Rule (Docker's restart manager): `on-failure[:N]` restarts after a non-zero exit, at most
/// N times; each restart waits 100 ms, doubled each time; the container shows `restarting`
/// meanwhile; RestartCount counts these restarts (a start by hand resets it); `always`
/// restarts any exit, a `kill` too, but not a `stop`; `unless-stopped` not after a kill.
#[test]
fn restart_policies_with_dockers_back_off() {
    let h = Host::new();
    h.ok(&[
        "run",
        "-d",
        "--name",
        "of",
        "--restart",
        "on-failure:5",
        "alpine",
        "sh",
        "-c",
        "date +%s%N; exit 3",
    ]);
    assert_eq!(
        h.inspect(
            "of",
            "{{.HostConfig.RestartPolicy.Name}}:{{.HostConfig.RestartPolicy.MaximumRetryCount}}"
        ),
        "on-failure:5"
    );
    // Caught while it waits: `restarting` in inspect, and in ps's words (listed without -a).
    let (mut in_ps, mut in_inspect) = (false, false);
    linkrt_tests::eventually(30, || {
        let row = ps_rows(&h, &["--filter", "name=of", "--format", "{{.Status}}|{{.State}}"]);
        in_ps |= row.len() == 1 && row[0].starts_with("Restarting (3) ") && row[0].ends_with(" ago|restarting");
        in_inspect |=
            h.inspect("of", "{{.State.Status}} {{.State.Restarting}} {{.State.Running}}") == "restarting true true";
        (in_ps && in_inspect).then_some(())
    });
    linkrt_tests::eventually(60, || {
        (h.inspect("of", "{{.State.Status}} {{.RestartCount}} {{.State.ExitCode}}") == "exited 5 3").then_some(())
    });
    std::thread::sleep(std::time::Duration::from_secs(2));
    assert_eq!(
        h.inspect("of", "{{.State.Status}} {{.RestartCount}}"),
        "exited 5",
        "no sixth restart"
    );
    assert_eq!(
        ps_rows(&h, &["-a", "--filter", "name=of", "--format", "{{.RestartCount}}"]),
        ["5"]
    );
    // Six runs; the gaps between them grow as the back-off doubles.
    let t: Vec<u64> = h.ok(&["logs", "of"]).lines().map(|l| l.parse().unwrap()).collect();
    assert_eq!(t.len(), 6, "{t:?}");
    for (k, w) in t.windows(2).enumerate() {
        let gap_ms = (w[1] - w[0]) / 1_000_000;
        assert!(
            gap_ms >= 100 << k,
            "restart {} after {gap_ms} ms, before its {} ms delay: {t:?}",
            k + 1,
            100 << k
        );
    }
    // A start by hand resets RestartCount.
    h.ok(&["start", "of"]);
    assert_eq!(h.inspect("of", "{{.RestartCount}}"), "0");
    h.ok(&["stop", "-t", "1", "of"]);

    // on-failure does not restart a success.
    h.ok(&["run", "-d", "--name", "ok", "--restart", "on-failure", "alpine", "true"]);
    assert_eq!(h.ok(&["wait", "ok"]), "0");
    std::thread::sleep(std::time::Duration::from_millis(800));
    assert_eq!(h.inspect("ok", "{{.State.Status}} {{.RestartCount}}"), "exited 0");

    // always: a kill is restarted, a stop is not.
    h.ok(&[
        "run",
        "-d",
        "--name",
        "al",
        "--restart",
        "always",
        "alpine",
        "sleep",
        "600",
    ]);
    h.ok(&["kill", "al"]);
    linkrt_tests::eventually(30, || {
        (h.inspect("al", "{{.State.Status}} {{.RestartCount}}") == "running 1").then_some(())
    });
    h.ok(&["stop", "-t", "1", "al"]);
    std::thread::sleep(std::time::Duration::from_millis(800));
    assert_eq!(h.inspect("al", "{{.State.Status}} {{.RestartCount}}"), "exited 1");
    // unless-stopped: a kill counts as stopped by hand.
    h.ok(&[
        "run",
        "-d",
        "--name",
        "us",
        "--restart",
        "unless-stopped",
        "alpine",
        "sleep",
        "600",
    ]);
    h.ok(&["kill", "us"]);
    std::thread::sleep(std::time::Duration::from_millis(800));
    assert_eq!(h.inspect("us", "{{.State.Status}} {{.RestartCount}}"), "exited 0");
    // A restart by hand is no policy restart.
    h.ok(&["start", "al"]);
    h.ok(&["restart", "-t", "1", "al"]);
    assert_eq!(h.inspect("al", "{{.State.Status}} {{.RestartCount}}"), "running 0");

    for (policy, err) in [
        (
            "sometimes",
            "invalid restart policy: unknown policy 'sometimes'; use one of 'no', 'always', 'on-failure', or 'unless-stopped'",
        ),
        (
            "always:2",
            "invalid restart policy: maximum retry count can only be used with 'on-failure'",
        ),
        (
            "on-failure:x",
            "invalid restart policy format: maximum retry count must be an integer",
        ),
    ] {
        let o = h.linkrt(&["run", "--restart", policy, "alpine", "true"]);
        assert_eq!(triple(&o), (125, "", format!("linkrt: {err}").as_str()), "{policy}");
    }
    let o = h.linkrt(&["run", "--rm", "--restart", "always", "alpine", "true"]);
    assert_eq!(triple(&o), (125, "", "linkrt: Conflicting options: --restart and --rm"));
}

/// Rule (Docker's daemon start, the boot hook `start --restartable`): after a reboot,
/// `always` containers start (even ones stopped by hand), `unless-stopped` ones unless
/// stopped by hand; `on-failure` and `no` do not.
#[test]
fn start_restartable_is_the_boot_hook() {
    let h = Host::new();
    for (name, policy) in [
        ("al", "always"),
        ("us", "unless-stopped"),
        ("us2", "unless-stopped"),
        ("of", "on-failure"),
        ("no", "no"),
    ] {
        h.ok(&[
            "run",
            "-d",
            "--name",
            name,
            "--restart",
            policy,
            "alpine",
            "sleep",
            "600",
        ]);
    }
    h.ok(&["stop", "-t", "1", "al", "us2"]);
    // A reboot: supervisors and processes gone without a word.
    for name in ["us", "of", "no"] {
        let (sup, pid1) = pids(&h, name);
        for p in [sup, pid1] {
            nix::sys::signal::kill(nix::unistd::Pid::from_raw(p), nix::sys::signal::Signal::SIGKILL).unwrap();
        }
    }
    linkrt_tests::eventually(20, || {
        (ps_rows(&h, &["--format", "{{.Names}}"]).is_empty()).then_some(())
    });
    assert_eq!(h.ok(&["start", "--restartable"]), "al\nus");
    let states = ps_rows(&h, &["-a", "--format", "{{.Names}} {{.State}}"]);
    assert_eq!(
        states,
        ["no exited", "of exited", "us2 exited", "us running", "al running"]
    );
    // Nothing more to start: a second run starts nothing.
    assert_eq!(h.ok(&["start", "--restartable"]), "");
    let o = h.linkrt(&["start", "--restartable", "al"]);
    assert_eq!(o.code, 125, "{o:?}");
}

/// Rule (Docker's env merge): Config.Env is the `--env-file` entries, then the `-e` ones
/// (as given, a repeated key twice), then the image's ENV not set by them; the process gets
/// PATH, HOSTNAME and the link variables, replaced in place or appended; a bare `-e NAME`
/// the caller does not have removes NAME (a link variable, HOSTNAME); `-e HOME=` gets
/// HOME=/root; `<ALIAS>_ENV_*` and exec follow that order.
#[test]
fn environment_in_dockers_order() {
    let h = Host::new();
    let dir = linkrt_tests::TempDir::new("lrt-envfile");
    let f = dir.path.join("env");
    std::fs::write(&f, "A=file\nB=file\n").unwrap();
    let f = f.to_str().unwrap();
    let id = h.ok(&[
        "run",
        "-d",
        "--name",
        "db",
        "--env-file",
        f,
        "-e",
        "B=cli",
        "-e",
        "C=cli",
        "-e",
        "PGUSER=me",
        "training/postgres",
    ]);
    assert_eq!(
        h.inspect("db", "{{json .Config.Env}}"),
        "[\"A=file\",\"B=file\",\"B=cli\",\"C=cli\",\"PGUSER=me\",\"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin\",\"PGPASS=secret\"]"
    );
    // The OCI runtime sets each entry in turn (runc's setenv): a repeated key keeps its first
    // place and its last value, as a Docker container sees it.
    let env = h.ok(&["exec", "db", "env"]);
    let l: Vec<&str> = env.lines().collect();
    assert_eq!(
        l,
        [
            "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            &format!("HOSTNAME={}", &id[..12]),
            "A=file",
            "B=cli",
            "C=cli",
            "PGUSER=me",
            "PGPASS=secret",
            "HOME=/root"
        ]
    );
    // The recipient's <ALIAS>_ENV_* in the source's Config.Env order; bare names unset.
    let o = h.linkrt_unset(
        &["HOSTNAME", "DB_PORT", "NOT_SET_ANYWHERE"],
        &[
            "run",
            "--rm",
            "--link",
            "db",
            "-e",
            "HOSTNAME",
            "-e",
            "DB_PORT",
            "-e",
            "NOT_SET_ANYWHERE",
            "-e",
            "HOME=",
            "alpine",
            "env",
        ],
    );
    let env = o.ok();
    let l: Vec<&str> = env.lines().collect();
    assert!(
        !l.iter()
            .any(|x| x.starts_with("HOSTNAME=") || x.starts_with("DB_PORT=") || x.starts_with("NOT_SET")),
        "{env}"
    );
    assert!(l.contains(&"DB_PORT_5432_TCP_PORT=5432"), "{env}");
    let envs: Vec<&&str> = l.iter().filter(|x| x.starts_with("DB_ENV_")).collect();
    assert_eq!(
        envs,
        [
            &"DB_ENV_A=file",
            &"DB_ENV_B=cli",
            &"DB_ENV_C=cli",
            &"DB_ENV_PGUSER=me",
            &"DB_ENV_PGPASS=secret"
        ]
    );
    assert_eq!(l.last(), Some(&"HOME=/root"), "{env}");
    assert!(!l.contains(&"HOME="), "{env}");
    // exec: the same rule for its -e.
    let o = h.linkrt_unset(&["HOSTNAME"], &["exec", "-e", "HOSTNAME", "-e", "X=1", "db", "env"]);
    let env = o.ok();
    assert!(!env.lines().any(|x| x.starts_with("HOSTNAME=")), "{env}");
    assert!(env.lines().any(|x| x == "X=1"), "{env}");
    // A variable the caller has is taken from it.
    let o = h.linkrt_env(
        &[("FROM_CALLER", "yes")],
        &["run", "--rm", "-e", "FROM_CALLER", "alpine", "env"],
    );
    assert!(o.ok().lines().any(|x| x == "FROM_CALLER=yes"));
}
