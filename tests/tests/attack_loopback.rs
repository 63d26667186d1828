//! Attack (issue 11, bypass 3): a `-p 127.0.0.1:...` port from the LAN (route_localnet and
//! policy routing on the LAN machine, route_localnet on the host) and from a container (a
//! crafted frame to 127.0.0.1). CVE-2020-8558's class; Docker's
//! TestAccessPortPublishedOnLoopbackAddress. Only host processes may reach it.
use std::net::Ipv4Addr;

use linkrt_tests::{
    Bg, CLIENT_IP, Client, HOST_IP, Host, TempDir, container_mac, eventually, pkt, raw_send_script, udp_logger_script,
    udp_send_script,
};

/// The LAN machine sends packets for 127.0.0.1:5353/udp to the host instead of to itself.
fn policy_route_loopback(c: &Client) {
    let x = |a: &[&str]| c.ns.exec(a);
    x(&[
        "sysctl",
        "-qw",
        "net.ipv4.conf.all.route_localnet=1",
        "net.ipv4.conf.eth0.route_localnet=1",
    ]);
    x(&[
        "ip",
        "route",
        "add",
        "127.0.0.1/32",
        "via",
        HOST_IP,
        "dev",
        "eth0",
        "table",
        "100",
    ]);
    // The local table comes first by default: move it behind our rule.
    x(&[
        "ip",
        "rule",
        "add",
        "pref",
        "10",
        "to",
        "127.0.0.1",
        "ipproto",
        "udp",
        "dport",
        "5353",
        "lookup",
        "100",
    ]);
    x(&["ip", "rule", "add", "pref", "32000", "lookup", "local"]);
    x(&["ip", "rule", "del", "pref", "0"]);
}

#[test]
fn loopback_published_ports_are_reachable_only_from_host_processes() {
    let h = Host::new();
    let cl = Client::new(&h);
    policy_route_loopback(&cl);
    // The worst case on the host: route_localnet on its uplink too.
    h.ns.exec(&[
        "sh",
        "-c",
        "for f in /proc/sys/net/ipv4/conf/*/route_localnet; do echo 1 > $f; done",
    ]);
    // The probe works: before linkrt attaches anything, the LAN reaches a host listener on
    // 127.0.0.1:5353 (it writes what it got to a file and exits).
    let dir = TempDir::new("lrt-lo");
    let got = dir.path.join("got");
    let listener = format!(
        "import socket\ns=socket.socket(socket.AF_INET,socket.SOCK_DGRAM)\ns.bind(('127.0.0.1',5353))\nd,a=s.recvfrom(99)\nopen('{}','w').write(d.decode()+' '+a[0])",
        got.display()
    );
    {
        let _l = Bg::spawn_in(&h.ns, &["python3", "-c", &listener]);
        let text = eventually(10, || {
            cl.ns
                .exec(&["python3", "-c", &udp_send_script("127.0.0.1", 5353, "pre")]);
            std::fs::read_to_string(&got).ok()
        });
        assert_eq!(
            text,
            format!("pre {CLIENT_IP}"),
            "route_localnet + policy routing reach the host's 127.0.0.1"
        );
    }
    h.ok(&[
        "run",
        "-d",
        "--name",
        "udpsrv",
        "-p",
        "127.0.0.1:5353:7001/udp",
        "-p",
        "5354:7001/udp",
        "alpine",
        "python3",
        "-c",
        &udp_logger_script(7001),
    ]);
    h.ok(&["run", "-d", "--name", "evil", "alpine", "sleep", "600"]);
    // Host processes: through the socket hooks.
    let o = h.host_process(&["python3", "-c", &udp_send_script("127.0.0.1", 5353, "hook")]);
    assert!(o.status.success(), "{o:?}");
    assert!(
        h.logged("udpsrv", "hook", 10),
        "a host process reaches the loopback port"
    );
    // The LAN, through the published 0.0.0.0 port: the probe's path works.
    cl.ns
        .exec(&["python3", "-c", &udp_send_script(HOST_IP, 5354, "lan-published")]);
    assert!(h.logged("udpsrv", "lan-published", 10));
    let before = h.counter("drop_loopback");
    cl.ns
        .exec(&["python3", "-c", &udp_send_script("127.0.0.1", 5353, "lan-loopback")]);
    cl.ns
        .exec(&["python3", "-c", &udp_send_script(HOST_IP, 5354, "fence1")]);
    assert!(h.logged("udpsrv", "fence1", 10));
    assert!(!h.ok(&["logs", "udpsrv"]).contains("lan-loopback"));
    assert!(
        h.counter("drop_loopback") > before,
        "it reached the host and was dropped there"
    );

    // A container: a crafted frame to the gateway's MAC. To the published address it works
    // (hairpin); to 127.0.0.1 it is dropped.
    let e = h.ip_of("evil");
    let gw = h.bridge_mac();
    let frame = |dst: Ipv4Addr, port: u16, msg: &str| {
        pkt::with_macs(
            pkt::udp(e.parse().unwrap(), 41000, dst, port, msg.as_bytes()),
            container_mac(&e),
            gw,
        )
    };
    let send = |f: Vec<u8>| assert_eq!(h.py("evil", &raw_send_script("eth0", &[f])).code, 0);
    send(frame(HOST_IP.parse().unwrap(), 5354, "raw-hairpin"));
    assert!(
        h.logged("udpsrv", "raw-hairpin", 10),
        "a crafted frame reaches a published port"
    );
    let before = h.counter("drop_loopback");
    send(frame(Ipv4Addr::LOCALHOST, 5353, "raw-loopback"));
    send(frame(HOST_IP.parse().unwrap(), 5354, "fence2"));
    assert!(h.logged("udpsrv", "fence2", 10));
    assert!(!h.ok(&["logs", "udpsrv"]).contains("raw-loopback"));
    assert!(h.counter("drop_loopback") > before);
}
