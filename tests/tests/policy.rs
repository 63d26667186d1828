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

/// Forged sources, sent the way an attacker with Docker's default capabilities can: crafted
/// frames on a raw socket (CAP_NET_RAW), no `ip addr`/`ip link` (CAP_NET_ADMIN) needed.
#[test]
fn spoofed_addresses_are_dropped() {
    use linkrt_tests::{Bg, TempDir, container_mac, pkt, raw_send_script};
    let h = Host::new();
    h.ok(&["run", "-d", "--name", "evil", "alpine", "sleep", "600"]);
    let e = ip(&h, "evil");
    let gw = h.bridge_mac();
    // A UDP listener of the host on the gateway address writes what it gets to a file.
    let dir = TempDir::new("lrt-spoof");
    let got = dir.path.join("got");
    let listener = format!(
        "import socket\ns=socket.socket(socket.AF_INET,socket.SOCK_DGRAM)\ns.bind(('172.17.0.1',9999))\nwhile True:\n d,a=s.recvfrom(99)\n open('{}','a').write(d.decode()+' '+a[0]+'\\n')",
        got.display()
    );
    let _l = Bg::spawn_in(&h.ns, &["python3", "-c", &listener]);
    let frame = |src: &str, mac: [u8; 6], msg: &str| {
        let u = pkt::udp(
            src.parse().unwrap(),
            40000,
            "172.17.0.1".parse().unwrap(),
            9999,
            msg.as_bytes(),
        );
        pkt::with_macs(u, mac, gw)
    };
    let send = |f: Vec<u8>| assert_eq!(h.py("evil", &raw_send_script("eth0", &[f])).code, 0);
    let received = |m: &str| std::fs::read_to_string(&got).unwrap_or_default().contains(m);
    // Its own address and MAC: the crafted frame arrives.
    eventually(10, || {
        send(frame(&e, container_mac(&e), "own"));
        received("own").then_some(())
    });
    let before = h.counter("drop_spoof");
    send(frame("172.17.0.99", container_mac(&e), "forged-ip"));
    send(frame(&e, [0x02, 0x42, 0xac, 0x11, 0, 0x63], "forged-mac"));
    send(frame("172.17.0.99", [0x02, 0x42, 0xac, 0x11, 0, 0x63], "forged-both"));
    send(frame(&e, container_mac(&e), "fence"));
    eventually(10, || received("fence").then_some(()));
    let text = std::fs::read_to_string(&got).unwrap();
    assert!(!text.contains("forged"), "{text}");
    assert!(h.counter("drop_spoof") >= before + 3);
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
    assert_eq!(h.ok(&["config"]).lines().next(), Some("icc: true"));
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

/// `monitor --debug` shows the programs' aya-log lines (a drop with its reason and tuple, a
/// new translated flow) while it runs; once it has exited the programs write nothing, so a
/// drop made then is not waiting in the log buffer for the next debug monitor.
#[test]
fn monitor_debug_shows_the_programs_logs_only_while_it_runs() {
    let h = Host::new();
    let cl = linkrt_tests::Client::new(&h);
    server(&h, "src");
    h.ok(&["run", "-d", "--name", "stranger", "alpine", "sleep", "600"]);
    h.ok(&["run", "-d", "--name", "web", "-p", "8080:5000", "training/webapp"]);
    let url = format!("http://{}:8080/", linkrt_tests::HOST_IP);
    eventually(20, || cl.curl(&url));

    // Long enough for both probes also under software emulation (`exec` is slow there).
    let scale = linkrt_tests::time_scale();
    let mon = h.spawn(&["monitor", "--debug", "--timeout", &(8 * scale).to_string()]);
    std::thread::sleep(std::time::Duration::from_millis(700 * scale));
    assert!(!connects(&h, "stranger", "172.17.0.2", 7000));
    assert_eq!(cl.curl(&url).as_deref(), Some("Hello world!"));
    let out = mon.wait_with_output().unwrap();
    assert!(out.status.success(), "{out:?}");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.lines()
            .any(|l| l.starts_with("debug drop_policy proto 6 172.17.0.3:") && l.contains("-> 172.17.0.2:7000")),
        "{text}"
    );
    assert!(
        text.lines()
            .any(|l| l.starts_with("debug dnat proto 6 10.200.0.2:")
                && l.ends_with("-> 10.200.0.1:8080 => 172.17.0.4:5000")),
        "{text}"
    );
    // The ring buffer events are still there beside them.
    assert!(
        text.lines()
            .any(|l| l.starts_with("drop  (drop_policy) tcp 172.17.0.3:")),
        "{text}"
    );

    // Off again: a drop now is counted but not logged.
    let before = h.counter("drop_policy");
    assert!(!connects(&h, "stranger", "172.17.0.2", 7000));
    assert!(h.counter("drop_policy") > before);
    std::thread::sleep(std::time::Duration::from_millis(500));
    let o = h.linkrt(&["monitor", "--debug", "--timeout", "2"]);
    assert_eq!(o.code, 0, "{o:?}");
    assert!(
        !o.stdout.lines().any(|l| l.starts_with("debug ") && l.contains(":7000")),
        "logged while no debug monitor ran: {}",
        o.stdout
    );
}
