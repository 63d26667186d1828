//! Attack (issue 11, bypass 2): a machine on the host's LAN routes to the bridge's subnet via
//! the host (`ip route add 172.17.0.0/16 via <host>`) and talks to containers directly.
//! Docker 28's TestDirectRoutingOpenPorts: dropped unless the gateway mode is `routed`.
use linkrt_tests::{
    Bg, CLIENT_IP, Client, HOST_IP, Host, eventually, route_to_bridge, tcp_connect_script, udp_logger_script,
    udp_send_script,
};

fn lan_connects(c: &Client, ip: &str, port: u16) -> bool {
    c.ns.try_exec(&["python3", "-c", &tcp_connect_script(ip, port)])
        .status
        .success()
}

fn lan_pings(c: &Client, ip: &str) -> bool {
    c.ns.try_exec(&["ping", "-c", "1", "-W", "1", ip]).status.success()
}

#[test]
fn routed_access_to_containers_is_dropped_unless_the_gateway_mode_is_routed() {
    let h = Host::new();
    let cl = Client::new(&h);
    route_to_bridge(&cl);
    // Routed mode first, to prove every probe can succeed.
    let routed = [("LINKRT_GATEWAY_MODE", "routed")];
    let o = h.linkrt_env(
        &routed,
        &["run", "-d", "--name", "web", "-p", "8080:5000", "training/webapp"],
    );
    assert_eq!(o.code, 0, "{o:?}");
    h.ok(&[
        "run",
        "-d",
        "--name",
        "srv",
        "alpine",
        "sh",
        "-c",
        &format!(
            "python3 -m http.server 7001 & exec python3 -c \"{}\"",
            udp_logger_script(7002).replace('"', "\\\"")
        ),
    ]);
    let (web, srv) = (h.ip_of("web"), h.ip_of("srv"));
    assert!(h.ok(&["status"]).contains("gateway:    routed"));
    eventually(10, || cl.curl(&format!("http://{HOST_IP}:8080/")));
    assert!(
        eventually(10, || lan_connects(&cl, &srv, 7001).then_some(true)),
        "routed: TCP to an unpublished port"
    );
    assert!(
        lan_connects(&cl, &web, 5000),
        "routed: the published container port directly"
    );
    assert!(lan_pings(&cl, &srv), "routed: ping");
    cl.ns
        .exec(&["python3", "-c", &udp_send_script(&srv, 7002, "routed-udp")]);
    assert!(h.logged("srv", "routed-udp", 10));

    // Docker's default (nat): only published ports, and replies to containers' connections.
    let o = h.linkrt_env(&[("LINKRT_GATEWAY_MODE", "nat")], &["ps"]);
    assert_eq!(o.code, 0, "{o:?}");
    let before = h.counter("drop_direct");
    let mut mon = h.spawn(&["monitor", "--timeout", "60"]);
    std::thread::sleep(std::time::Duration::from_millis(300));
    assert!(!lan_connects(&cl, &srv, 7001), "TCP to an unpublished port");
    assert!(
        !lan_connects(&cl, &web, 5000),
        "the published container port, bypassing the mapping"
    );
    assert!(!lan_pings(&cl, &srv), "ping");
    cl.ns.exec(&["python3", "-c", &udp_send_script(&srv, 7002, "nat-udp")]);
    cl.ns
        .exec(&["python3", "-c", &udp_send_script("172.17.255.255", 7002, "nat-bcast")]);
    assert_eq!(
        cl.curl(&format!("http://{HOST_IP}:8080/")).as_deref(),
        Some("Hello world!"),
        "published"
    );
    std::thread::sleep(std::time::Duration::from_millis(300));
    let logs = h.ok(&["logs", "srv"]);
    assert!(!logs.contains("nat-udp") && !logs.contains("nat-bcast"), "{logs}");
    assert!(h.counter("drop_direct") >= before + 5);
    mon.kill().expect("kill monitor");
    let out = String::from_utf8_lossy(&mon.wait_with_output().unwrap().stdout).into_owned();
    let line = format!("-> {srv}:7001");
    assert!(
        out.lines()
            .any(|l| l.starts_with(&format!("drop  (drop_direct) tcp {CLIENT_IP}:")) && l.ends_with(&line)),
        "{out}"
    );
    // A container's own connection out: its replies come back in (the LAN routes to it).
    let _lan_srv = Bg::spawn_in(&cl.ns, &["python3", "-m", "http.server", "8000", "--bind", CLIENT_IP]);
    let url = format!("http://{CLIENT_IP}:8000/");
    let body = eventually(10, || {
        let o = h.linkrt(&["exec", "srv", "curl", "-s", "-m", "2", &url]);
        (o.code == 0).then_some(o.stdout)
    });
    assert!(body.contains("Directory listing"), "{body}");
}
