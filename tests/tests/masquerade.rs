//! Outbound masquerade (issue 17): containers reach machines that have no route back to the
//! bridge's subnet, because their connections leave with the host's uplink address (Docker's
//! `--ip-masq`). The "remote" is a [`Client`] namespace on the uplink side with no route to
//! 172.17.0.0/16: without masquerade it cannot answer, which the probes show first.
use std::collections::BTreeSet;

use linkrt_tests::{Bg, CLIENT_IP, Client, HOST_IP, Host, eventually};

/// A TCP server (python3, threaded) on `port` that sends each client the address it sees,
/// `ip:port`, and closes.
fn tcp_whoami(port: u16) -> String {
    format!(
        "import socket,threading\ns=socket.socket()\ns.setsockopt(socket.SOL_SOCKET,socket.SO_REUSEADDR,1)\ns.bind(('',{port}))\ns.listen(1024)\ndef h(c,a):\n c.sendall(('%s:%d'%a).encode())\n c.close()\nwhile True:\n c,a=s.accept()\n threading.Thread(target=h,args=(c,a)).start()"
    )
}

/// A UDP server (python3) on `port` that answers each datagram with the address it came from.
fn udp_whoami(port: u16) -> String {
    format!(
        "import socket\ns=socket.socket(socket.AF_INET,socket.SOCK_DGRAM)\ns.bind(('',{port}))\nwhile True:\n d,a=s.recvfrom(2048)\n s.sendto(('%s:%d'%a).encode(),a)"
    )
}

/// In a container: one TCP connection to `ip:port` (2 s), printing what the server sent.
fn tcp_ask(ip: &str, port: u16) -> String {
    format!("import socket\ns=socket.create_connection(('{ip}',{port}),timeout=2)\nprint(s.recv(100).decode())")
}

/// In a container: one UDP datagram to `ip:port`, printing the reply (2 s).
fn udp_ask(ip: &str, port: u16) -> String {
    format!(
        "import socket\ns=socket.socket(socket.AF_INET,socket.SOCK_DGRAM)\ns.settimeout(2)\ns.sendto(b'hi',('{ip}',{port}))\nprint(s.recvfrom(100)[0].decode())"
    )
}

/// Parses `ip:port` as the remote printed it.
fn seen(out: &str) -> (String, u16) {
    let (ip, port) = out
        .trim()
        .rsplit_once(':')
        .unwrap_or_else(|| panic!("not ip:port: {out:?}"));
    (ip.to_string(), port.parse().unwrap_or_else(|_| panic!("{out:?}")))
}

fn ask(h: &Host, name: &str, script: &str) -> Option<(String, u16)> {
    let o = h.py(name, script);
    (o.code == 0).then(|| seen(&o.stdout))
}

#[test]
fn containers_reach_other_machines_with_the_hosts_address() {
    let h = Host::new();
    let remote = Client::new(&h);
    let _tcp = Bg::spawn_in(&remote.ns, &["python3", "-c", &tcp_whoami(9000)]);
    let _udp = Bg::spawn_in(&remote.ns, &["python3", "-c", &udp_whoami(9001)]);
    h.ok(&["run", "-d", "--name", "c1", "alpine", "sleep", "1000"]);
    let ip = h.ip_of("c1");
    assert!(h.ok(&["config"]).contains("ip-masq: true"));
    assert!(h.ok(&["status"]).contains("masquerade: on"));
    let before = h.counter("masq");

    // TCP, UDP and ping reach the remote, which sees the host's address.
    let (src, port) = eventually(10, || ask(&h, "c1", &tcp_ask(CLIENT_IP, 9000)));
    assert_eq!(src, HOST_IP, "the remote sees the uplink's address, not {ip}");
    assert!((61000..=65535).contains(&port), "a port of the default range: {port}");
    let (src, port) = ask(&h, "c1", &udp_ask(CLIENT_IP, 9001)).expect("UDP round trip");
    assert_eq!(src, HOST_IP);
    assert!((61000..=65535).contains(&port), "{port}");
    let o = h.linkrt(&["exec", "c1", "ping", "-c", "1", "-W", "2", CLIENT_IP]);
    assert_eq!(o.code, 0, "ping: {o:?}");
    assert!(h.counter("masq") >= before + 3, "three flows masqueraded");

    // The remote has no route to the bridge: without masquerade, nothing comes back.
    h.ok(&["config", "--ip-masq", "false"]);
    assert!(h.ok(&["status"]).contains("masquerade: off"));
    assert_eq!(ask(&h, "c1", &tcp_ask(CLIENT_IP, 9000)), None, "TCP without masquerade");
    assert_eq!(ask(&h, "c1", &udp_ask(CLIENT_IP, 9001)), None, "UDP without masquerade");
    let o = h.linkrt(&["exec", "c1", "ping", "-c", "1", "-W", "1", CLIENT_IP]);
    assert_ne!(o.code, 0, "ping without masquerade");

    // On again: a new connection works at once.
    h.ok(&["config", "--ip-masq", "true"]);
    let (src, _) = ask(&h, "c1", &tcp_ask(CLIENT_IP, 9000)).expect("TCP with masquerade on again");
    assert_eq!(src, HOST_IP);
}

#[test]
fn an_icmp_error_from_the_remote_reaches_the_containers_socket() {
    let h = Host::new();
    let _remote = Client::new(&h);
    h.ok(&["run", "-d", "--name", "c1", "alpine", "sleep", "1000"]);
    // A connected UDP socket learns of the remote's port unreachable as ECONNREFUSED.
    let probe = format!(
        "import socket,time\ns=socket.socket(socket.AF_INET,socket.SOCK_DGRAM)\ns.settimeout(1)\ns.connect(('{CLIENT_IP}',9999))\nfor i in range(3):\n s.send(b'x')\n try:\n  s.recv(10)\n except ConnectionRefusedError:\n  print('refused')\n  break\n except socket.timeout:\n  print('timeout')"
    );
    let out = h.py("c1", &probe).stdout;
    assert!(out.contains("refused"), "the port unreachable came back: {out:?}");
    // Without masquerade the error goes to an address the remote cannot reach.
    h.ok(&["config", "--ip-masq", "false"]);
    let out = h.py("c1", &probe).stdout;
    assert!(!out.contains("refused") && out.contains("timeout"), "{out:?}");
}

#[test]
fn parallel_connections_from_two_containers_get_distinct_ports() {
    let h = Host::new();
    let remote = Client::new(&h);
    let _tcp = Bg::spawn_in(&remote.ns, &["python3", "-c", &tcp_whoami(9000)]);
    h.ok(&["run", "-d", "--name", "ca", "alpine", "sleep", "1000"]);
    h.ok(&["run", "-d", "--name", "cb", "alpine", "sleep", "1000"]);
    eventually(10, || ask(&h, "ca", &tcp_ask(CLIENT_IP, 9000)));
    // 100 connections each, all open at once, from both containers at the same time; the
    // containers' own source ports may be equal, the host's never are.
    let many = format!(
        "import socket\nss=[socket.create_connection(('{CLIENT_IP}',9000),timeout=5) for i in range(100)]\nfor s in ss:\n print(s.recv(100).decode())"
    );
    let spawn = |name: &str| h.spawn(&["exec", name, "python3", "-c", &many]);
    let (ca, cb) = (spawn("ca"), spawn("cb"));
    let mut ports = BTreeSet::new();
    for c in [ca, cb] {
        let o = c.wait_with_output().expect("exec");
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let out = String::from_utf8_lossy(&o.stdout).into_owned();
        assert_eq!(out.lines().count(), 100, "{out}");
        for l in out.lines() {
            let (src, port) = seen(l);
            assert_eq!(src, HOST_IP);
            ports.insert(port);
        }
    }
    assert_eq!(ports.len(), 200, "every connection had its own host port");
    assert_eq!(h.counter("drop_nat_no_port"), 0);
}

#[test]
fn published_ports_and_host_sockets_are_never_taken_and_ports_are_per_remote() {
    let h = Host::new();
    let remote = Client::new(&h);
    let _tcp = Bg::spawn_in(&remote.ns, &["python3", "-c", &tcp_whoami(9000)]);
    let _tcp2 = Bg::spawn_in(&remote.ns, &["python3", "-c", &tcp_whoami(9002)]);
    let _udp = Bg::spawn_in(&remote.ns, &["python3", "-c", &udp_whoami(9001)]);
    // Three ports: 40000 is published (TCP and UDP), the host listens on 40001 (TCP) and has
    // a UDP socket bound there; only 40002 is left for connections out.
    h.ok(&["config", "--masq-ports", "40000-40002"]);
    let _listener = Bg::spawn_in(&h.ns, &["python3", "-m", "http.server", "40001", "--bind", HOST_IP]);
    let _udp_sock = Bg::spawn_in(
        &h.ns,
        &[
            "python3",
            "-c",
            "import socket,time\ns=socket.socket(socket.AF_INET,socket.SOCK_DGRAM)\ns.bind(('',40001))\ntime.sleep(1000)",
        ],
    );
    h.ok(&[
        "run",
        "-d",
        "--name",
        "web",
        "-p",
        "40000:5000",
        "-p",
        "40000:5000/udp",
        "training/webapp",
    ]);
    h.ok(&["run", "-d", "--name", "c1", "alpine", "sleep", "1000"]);
    // The host's own connections keep off the range (its ephemeral range overlaps it), in the
    // host's namespace only.
    let reserved =
        String::from_utf8_lossy(&h.ns.exec(&["cat", "/proc/sys/net/ipv4/ip_local_reserved_ports"]).stdout).into_owned();
    assert!(reserved.contains("40000-40002"), "{reserved:?}");
    eventually(10, || remote.curl(&format!("http://{HOST_IP}:40000/")));
    eventually(10, || remote.curl(&format!("http://{HOST_IP}:40001/")));

    let (src, port) = eventually(10, || ask(&h, "c1", &tcp_ask(CLIENT_IP, 9000)));
    assert_eq!((src.as_str(), port), (HOST_IP, 40002));
    let (_, port) = ask(&h, "c1", &udp_ask(CLIENT_IP, 9001)).expect("UDP");
    assert_eq!(port, 40002, "UDP skips the published port and the bound socket");
    // A port is held per remote endpoint: another remote port may use 40002 at once.
    let (_, port) = ask(&h, "c1", &tcp_ask(CLIENT_IP, 9002)).expect("another remote port");
    assert_eq!(port, 40002);
    // The same remote endpoint again, while the closed flow still holds 40002: no free port,
    // the connection fails and is counted; published and host ports still work.
    let before = h.counter("drop_nat_no_port");
    assert_eq!(ask(&h, "c1", &tcp_ask(CLIENT_IP, 9000)), None, "the range is exhausted");
    assert!(h.counter("drop_nat_no_port") > before);
    assert_eq!(
        remote.curl(&format!("http://{HOST_IP}:40000/")).as_deref(),
        Some("Hello world!")
    );
    assert!(remote.curl(&format!("http://{HOST_IP}:40001/")).is_some());
}

#[test]
fn the_masquerade_range_is_checked() {
    let h = Host::new();
    for bad in ["40000", "40000-3", "100-200", "a-b", "40000-70000"] {
        let o = h.linkrt(&["config", "--masq-ports", bad]);
        assert_eq!(o.code, 125, "{bad}: {o:?}");
        assert!(
            o.stderr.contains("invalid masquerade port range"),
            "{bad}: {}",
            o.stderr
        );
    }
    assert!(h.ok(&["config"]).contains("masq-ports: 61000-65535"), "nothing changed");
    h.ok(&["config", "--masq-ports", "50000-50999"]);
    assert!(h.ok(&["config"]).contains("masq-ports: 50000-50999"));
}
