//! Legacy links end to end: env vars, /etc/hosts, restart refresh, inspect, errors.
use linkrt_tests::Host;

#[test]
fn db_webapp_env_and_hosts_as_docker() {
    let h = Host::new();
    let db = h.ok(&["run", "-d", "--name", "db", "training/postgres"]);
    let env = h.ok(&[
        "run",
        "--rm",
        "--name",
        "web2",
        "--link",
        "db:db",
        "-e",
        "MINE=1",
        "training/webapp",
        "env",
    ]);
    let lines: Vec<&str> = env.lines().collect();
    assert_eq!(
        lines[0],
        "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
    );
    assert!(lines[1].starts_with("HOSTNAME="));
    assert_eq!(
        &lines[2..],
        [
            "DB_PORT=tcp://172.17.0.2:5432",
            "DB_PORT_5432_TCP=tcp://172.17.0.2:5432",
            "DB_PORT_5432_TCP_ADDR=172.17.0.2",
            "DB_PORT_5432_TCP_PORT=5432",
            "DB_PORT_5432_TCP_PROTO=tcp",
            "DB_NAME=/web2/db",
            "DB_ENV_PGUSER=docker",
            "DB_ENV_PGPASS=secret",
            "MINE=1",
            "HOME=/root",
        ]
    );
    // Two aliases of one source, a name that differs from the alias, then our own line last.
    let web = h.ok(&[
        "run",
        "-d",
        "--name",
        "web",
        "--link",
        "db:db",
        "--link",
        "db:webdb",
        "training/webapp",
    ]);
    let hosts = h.ok(&["exec", "web", "cat", "/etc/hosts"]);
    let l: Vec<&str> = hosts.lines().collect();
    assert_eq!(l[0], "127.0.0.1\tlocalhost");
    assert_eq!(l[6], format!("172.17.0.2\tdb {}", &db[..12]));
    assert_eq!(l[7], format!("172.17.0.2\twebdb {} db", &db[..12]));
    assert_eq!(l[8], format!("172.17.0.3\t{}", &web[..12]));
    assert_eq!(l.len(), 9);
    // The source's own /etc/hosts has no link lines.
    assert_eq!(h.ok(&["exec", "db", "cat", "/etc/hosts"]).lines().count(), 7);
    assert_eq!(
        h.inspect("web", "{{ .HostConfig.Links }}"),
        "[/db:/web/db /db:/web/webdb]"
    );
    assert_eq!(
        h.inspect("web", "{{json .HostConfig.Links}}"),
        "[\"/db:/web/db\",\"/db:/web/webdb\"]"
    );
    assert_eq!(h.inspect("db", "{{ .HostConfig.Links }}"), "[]");
    // Reachable by alias, name and short ID through /etc/hosts.
    for target in ["db", "webdb", &db[..12]] {
        let o = h.linkrt(&["exec", "web", "ping", "-c", "1", "-W", "2", target]);
        assert_eq!(o.code, 0, "ping {target}: {o:?}");
    }
}

#[test]
fn source_restart_with_new_ip_rewrites_recipient_hosts_in_place() {
    let h = Host::new();
    h.ok(&["run", "-d", "--name", "datastore", "redis"]);
    h.ok(&[
        "run",
        "-d",
        "--name",
        "app",
        "--link",
        "datastore:redis",
        "alpine",
        "sleep",
        "600",
    ]);
    let inode = h.ok(&["exec", "app", "stat", "-c", "%i", "/etc/hosts"]);
    assert!(
        h.ok(&["exec", "app", "cat", "/etc/hosts"])
            .contains("172.17.0.2\tredis ")
    );
    h.ok(&["stop", "datastore"]);
    // Another container takes the old address while the source is down.
    h.ok(&["run", "-d", "--name", "squatter", "alpine", "sleep", "600"]);
    assert_eq!(h.inspect("squatter", "{{.NetworkSettings.IPAddress}}"), "172.17.0.2");
    h.ok(&["start", "datastore"]);
    assert_eq!(h.inspect("datastore", "{{.NetworkSettings.IPAddress}}"), "172.17.0.4");
    let hosts = h.ok(&["exec", "app", "cat", "/etc/hosts"]);
    assert!(
        hosts.contains("172.17.0.4\tredis ") && !hosts.contains("172.17.0.2\tredis"),
        "{hosts}"
    );
    assert_eq!(
        h.ok(&["exec", "app", "stat", "-c", "%i", "/etc/hosts"]),
        inode,
        "rewritten in place"
    );
    // PID 1 keeps the old link variables; exec recomputes them (Docker does the same).
    let pid1 = h.ok(&["exec", "app", "cat", "/proc/1/environ"]).replace('\0', "\n");
    assert!(pid1.contains("REDIS_PORT=tcp://172.17.0.2:6379"), "{pid1}");
    assert!(
        h.ok(&["exec", "app", "env"])
            .contains("REDIS_PORT=tcp://172.17.0.4:6379")
    );
    let o = h.linkrt(&["exec", "app", "ping", "-c", "1", "-W", "2", "redis"]);
    assert_eq!(o.code, 0, "{o:?}");
}

#[test]
fn link_errors_use_dockers_words() {
    let h = Host::new();
    let o = h.linkrt(&["run", "--link", "nosuch", "alpine", "true"]);
    assert_eq!(
        (o.code, o.stderr.trim()),
        (
            125,
            "linkrt: could not get container for nosuch: No such container: nosuch"
        )
    );
    h.ok(&["run", "--name", "stopped", "alpine", "true"]);
    let o = h.linkrt(&["run", "--name", "wstop", "--link", "stopped:st", "alpine", "true"]);
    assert_eq!(
        (o.code, o.stderr.trim()),
        (
            125,
            "linkrt: Cannot link to a non running container: /stopped AS /wstop/st"
        )
    );
    let o = h.linkrt(&["run", "--link", "db:b:c", "alpine", "true"]);
    assert_eq!(
        (o.code, o.stderr.trim()),
        (
            125,
            "linkrt: invalid argument \"db:b:c\" for \"--link\" flag: bad format for links: db:b:c"
        )
    );
    // As in Docker, the link to a stopped source is refused by the start, not the create:
    // the recipient stays, Created.
    assert_eq!(h.inspect("wstop", "{{.State.Status}}"), "created");
    assert_eq!(
        h.ok(&["ps", "-aq"]).lines().count(),
        2,
        "only 'stopped' and 'wstop' exist"
    );
}

#[test]
fn seed_trainingwheels_counts_hits_in_linked_redis() {
    let h = Host::new();
    h.ok(&["run", "-d", "--name", "datastore", "redis"]);
    let ps = h.ok(&["ps", "-l"]);
    assert!(ps.contains("6379/tcp") && ps.ends_with("datastore"), "{ps}");
    // Without a link the app shows the red error page.
    let lonely = h.ok(&["run", "-dP", "jpetazzo/trainingwheels"]);
    let ip = h.inspect(&lonely, "{{.NetworkSettings.IPAddress}}");
    let page = linkrt_tests::eventually(10, || {
        let o = h.sh(&["curl", "-s", &format!("http://{ip}:5000/")]);
        o.status
            .success()
            .then(|| String::from_utf8_lossy(&o.stdout).into_owned())
    });
    assert!(
        page.contains("background:red") && page.contains("Cannot connect to redis"),
        "{page}"
    );
    let app = h.ok(&[
        "run",
        "-d",
        "-P",
        "--link",
        "datastore:redis",
        "jpetazzo/trainingwheels",
    ]);
    let ip = h.inspect(&app, "{{.NetworkSettings.IPAddress}}");
    let port = h.ok(&["port", &app, "5000"]);
    assert!(port.starts_with("0.0.0.0:"), "{port}");
    let get = || {
        linkrt_tests::eventually(10, || {
            let o = h.sh(&["curl", "-s", &format!("http://{ip}:5000/")]);
            o.status
                .success()
                .then(|| String::from_utf8_lossy(&o.stdout).into_owned())
        })
    };
    assert!(get().contains("viewed 1 time"));
    assert!(get().contains("viewed 2 time"));
    let env = h.ok(&["run", "--rm", "--link", "datastore:redis", "alpine", "env"]);
    assert!(
        env.contains("REDIS_PORT_6379_TCP_ADDR=172.17.0.2") && env.contains("REDIS_ENV_REDIS_VERSION="),
        "{env}"
    );
}
