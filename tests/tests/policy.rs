//! Link enforcement in the datapath: only linked peers reach a container's exposed ports.
use linkrt_tests::{Host, eventually};

/// Tries a TCP connection from inside `from` to `ip:port`; true if it connects.
fn connects(h: &Host, from: &str, ip: &str, port: u16) -> bool {
    let script = format!("import socket\ns=socket.socket()\ns.settimeout(1)\ns.connect(('{ip}',{port}))");
    h.linkrt(&["exec", from, "python3", "-c", &script]).code == 0
}

fn ip(h: &Host, name: &str) -> String {
    h.inspect(name, "{{.NetworkSettings.IPAddress}}")
}

/// A container listening on 7000 (exposed) and 7001 (not exposed).
fn server(h: &Host, name: &str) {
    h.ok(&[
        "run",
        "-d",
        "--name",
        name,
        "--expose",
        "7000",
        "alpine",
        "sh",
        "-c",
        "python3 -m http.server 7000 & exec python3 -m http.server 7001",
    ]);
}

#[test]
fn only_linked_peers_reach_exposed_ports() {
    let h = Host::new();
    server(&h, "src");
    let s = ip(&h, "src");
    h.ok(&[
        "run",
        "-d",
        "--name",
        "linked",
        "--link",
        "src",
        "alpine",
        "python3",
        "-m",
        "http.server",
        "7002",
    ]);
    h.ok(&["run", "-d", "--name", "other", "alpine", "sleep", "600"]);
    // The listeners are up (the host is not a container: not filtered).
    eventually(10, || {
        h.sh(&["curl", "-s", "-m", "1", &format!("http://{s}:7001/")])
            .status
            .success()
            .then_some(())
    });
    assert!(
        eventually(10, || connects(&h, "linked", &s, 7000).then_some(true)),
        "linked peer reaches the exposed port"
    );
    assert!(connects(&h, "linked", "src", 7000), "by alias too");
    assert!(
        !connects(&h, "linked", &s, 7001),
        "not a port the source does not expose"
    );
    assert!(!connects(&h, "other", &s, 7000), "not an unlinked container");
    let l = ip(&h, "linked");
    eventually(10, || {
        h.sh(&["curl", "-s", "-m", "1", &format!("http://{l}:7002/")])
            .status
            .success()
            .then_some(())
    });
    assert!(!connects(&h, "src", &l, 7002), "not the reverse direction");
    // Ping: linked peers yes (the seed's `ping redis`), others no.
    assert_eq!(
        h.linkrt(&["exec", "linked", "ping", "-c", "1", "-W", "2", "src"]).code,
        0
    );
    assert_ne!(h.linkrt(&["exec", "other", "ping", "-c", "1", "-W", "1", &s]).code, 0);
    assert!(h.counter("drop_policy") > 0);
}

#[test]
fn spoofed_addresses_are_dropped() {
    let h = Host::new();
    // NET_ADMIN lets the container change its own addresses (Docker's --cap-add): the datapath
    // must still drop what it forges.
    h.ok(&[
        "run",
        "-d",
        "--cap-add",
        "NET_ADMIN",
        "--name",
        "evil",
        "alpine",
        "sleep",
        "600",
    ]);
    assert_eq!(
        h.linkrt(&["exec", "evil", "ping", "-c", "1", "-W", "2", "172.17.0.1"])
            .code,
        0,
        "its own address works"
    );
    h.ok(&["exec", "evil", "ip", "addr", "add", "172.17.0.99/16", "dev", "eth0"]);
    assert_ne!(
        h.linkrt(&[
            "exec",
            "evil",
            "ping",
            "-c",
            "1",
            "-W",
            "1",
            "-I",
            "172.17.0.99",
            "172.17.0.1"
        ])
        .code,
        0,
        "a forged source IP"
    );
    h.ok(&[
        "exec",
        "evil",
        "ip",
        "link",
        "set",
        "eth0",
        "address",
        "02:42:ac:11:00:63",
    ]);
    assert_ne!(
        h.linkrt(&["exec", "evil", "ping", "-c", "1", "-W", "1", "172.17.0.1"])
            .code,
        0,
        "a forged MAC"
    );
    assert!(h.counter("drop_spoof") > 0);
}

#[test]
fn rules_follow_ip_changes_and_icc_can_be_turned_on() {
    let h = Host::new();
    server(&h, "src");
    h.ok(&["run", "-d", "--name", "app", "--link", "src", "alpine", "sleep", "600"]);
    assert!(eventually(10, || connects(&h, "app", "172.17.0.2", 7000).then_some(true)));
    h.ok(&["stop", "-t", "1", "src"]);
    // Whoever gets the old address next is not reachable through the old grant.
    server(&h, "squatter");
    assert_eq!(ip(&h, "squatter"), "172.17.0.2");
    eventually(10, || {
        h.sh(&["curl", "-s", "-m", "1", "http://172.17.0.2:7000/"])
            .status
            .success()
            .then_some(())
    });
    assert!(
        !connects(&h, "app", "172.17.0.2", 7000),
        "a stale rule must not grant the reused IP"
    );
    h.ok(&["start", "src"]);
    let s = ip(&h, "src");
    assert_ne!(s, "172.17.0.2");
    assert!(
        eventually(10, || connects(&h, "app", &s, 7000).then_some(true)),
        "the rule follows the new IP"
    );
    assert!(connects(&h, "app", "src", 7000), "and /etc/hosts too");

    // --icc=true (Docker's default): every container talks to every other.
    h.ok(&["config", "--icc", "true"]);
    assert_eq!(h.ok(&["config"]), "icc: true");
    h.ok(&["run", "-d", "--name", "free", "alpine", "sleep", "600"]);
    assert!(connects(&h, "free", "172.17.0.2", 7001));
    assert!(connects(&h, "app", &s, 7001));
    // Reading commands never change the setting, whatever the environment says.
    assert_eq!(h.linkrt_env(&[("LINKRT_ICC", "false")], &["ps"]).code, 0);
    assert!(connects(&h, "free", "172.17.0.2", 7001), "ps changed nothing");
    h.ok(&["config", "--icc", "false"]);
    assert!(!connects(&h, "free", "172.17.0.2", 7001), "back to the allow-list");
}

#[test]
fn monitor_streams_drops_and_nat_flows() {
    let h = Host::new();
    let cl = linkrt_tests::Client::new(&h);
    server(&h, "src");
    h.ok(&["run", "-d", "--name", "stranger", "alpine", "sleep", "600"]);
    h.ok(&["run", "-d", "--name", "web", "-p", "8080:5000", "training/webapp"]);
    let mut mon = h.spawn(&["monitor", "--timeout", "60"]);
    std::thread::sleep(std::time::Duration::from_millis(300));
    assert!(!connects(&h, "stranger", "172.17.0.2", 7000));
    eventually(10, || cl.curl(&format!("http://{}:8080/", linkrt_tests::HOST_IP)));
    std::thread::sleep(std::time::Duration::from_millis(500));
    // Every event is one line written as it comes: stop the monitor and read them.
    let _ = mon.kill();
    let out = mon.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.lines()
            .any(|l| l.starts_with("drop  (drop_policy) tcp 172.17.0.3:") && l.ends_with("-> 172.17.0.2:7000")),
        "{text}"
    );
    assert!(
        text.lines()
            .any(|l| l.starts_with("nat   tcp 10.200.0.2:") && l.ends_with("-> 10.200.0.1:8080 => 172.17.0.4:5000")),
        "{text}"
    );
}
