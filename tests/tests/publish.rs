//! Port publishing through the eBPF datapath, end to end: a client namespace talks to the
//! host's published ports; containers talk to them too (hairpin).
use linkrt_tests::{CLIENT_IP, Client, HOST_IP, Host, eventually, udp_echo_script, udp_roundtrip};

fn hello(c: &Client, url: &str) -> String {
    eventually(10, || c.curl(url))
}

#[test]
fn seed_publish_forms_port_and_ps_output() {
    let h = Host::new();
    let cl = Client::new(&h);
    h.ok(&[
        "run",
        "-d",
        "--name",
        "web",
        "-p",
        "8080:5000",
        "training/webapp",
        "python",
        "app.py",
    ]);
    assert_eq!(hello(&cl, &format!("http://{HOST_IP}:8080/")), "Hello world!");
    // The client's address is preserved (docker-proxy would show the host's).
    assert!(
        h.ok(&["logs", "web"])
            .contains(&format!("{CLIENT_IP} - - \"GET / HTTP/1.1\" 200"))
    );
    assert_eq!(h.ok(&["port", "web"]), "5000/tcp -> 0.0.0.0:8080");
    assert_eq!(h.ok(&["port", "web", "5000"]), "0.0.0.0:8080");
    let o = h.linkrt(&["port", "web", "5000/udp"]);
    assert_eq!(
        (o.code, o.stderr.trim()),
        (1, "Error: No public port '5000/udp' published for web")
    );
    assert!(h.ok(&["ps"]).contains("0.0.0.0:8080->5000/tcp"));

    // -P: an ephemeral port from the start of ip_local_port_range.
    h.ok(&[
        "run",
        "-d",
        "-P",
        "--name",
        "nostalgic_morse",
        "training/webapp",
        "python",
        "app.py",
    ]);
    let p = h.ok(&["port", "nostalgic_morse", "5000"]);
    let lo = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range").unwrap();
    assert_eq!(p, format!("0.0.0.0:{}", lo.split_whitespace().next().unwrap()));
    assert_eq!(
        hello(&cl, &format!("http://{HOST_IP}:{}/", p.rsplit(':').next().unwrap())),
        "Hello world!"
    );

    // A host range for one container port: the first free port, then the next.
    h.ok(&["run", "-d", "--name", "r1", "-p", "8000-9000:5000", "training/webapp"]);
    h.ok(&["run", "-d", "--name", "r2", "-p", "8000-9000:5000", "training/webapp"]);
    assert_eq!(h.ok(&["port", "r1", "5000"]), "0.0.0.0:8000");
    assert_eq!(h.ok(&["port", "r2", "5000"]), "0.0.0.0:8001");
    assert_eq!(hello(&cl, &format!("http://{HOST_IP}:8001/")), "Hello world!");

    // ip::port, and equal ranges shown collapsed in ps.
    h.ok(&[
        "run",
        "-d",
        "--name",
        "ipdyn",
        "-p",
        &format!("{HOST_IP}::5000"),
        "training/webapp",
    ]);
    let p = h.ok(&["port", "ipdyn", "5000"]);
    assert!(p.starts_with(&format!("{HOST_IP}:")), "{p}");
    assert_eq!(hello(&cl, &format!("http://{p}/")), "Hello world!");
    h.ok(&[
        "run",
        "-d",
        "--name",
        "rng",
        "-p",
        "7000-7002:7000-7002",
        "alpine",
        "sleep",
        "600",
    ]);
    assert!(
        h.ok(&["ps"]).contains("0.0.0.0:7000-7002->7000-7002/tcp"),
        "{}",
        h.ok(&["ps"])
    );
}

#[test]
fn conflicts_and_host_processes_are_refused_and_leave_nothing() {
    let h = Host::new();
    h.ok(&["run", "-d", "--name", "first", "-p", "8088:5000", "training/webapp"]);
    let o = h.linkrt(&["run", "-d", "--name", "second", "-p", "8088:5000", "training/webapp"]);
    assert_eq!(o.code, 125, "{o:?}");
    assert!(
        o.stderr.starts_with(
            "linkrt: failed to set up container networking: driver failed programming external connectivity on endpoint second ("
        ) && o.stderr.trim_end().ends_with("): Bind for 0.0.0.0:8088 failed: port is already allocated"),
        "{o:?}"
    );
    assert_eq!(
        h.inspect("second", "{{.State.Status}}"),
        "created",
        "like Docker, the container exists but did not start"
    );
    assert_eq!(h.links().matches("veth").count(), 1, "no veth left by the failed start");
    // The running container's port is held: a host process cannot bind it.
    let o = h.host_process(&[
        "python3",
        "-c",
        "import socket; socket.socket().bind(('0.0.0.0', 8088))",
    ]);
    assert!(!o.status.success(), "the published port must be reserved");
    // A port a host process holds is not stolen.
    let holder = std::process::Command::new("ip")
        .args([
            "netns",
            "exec",
            &h.ns.name,
            "python3",
            "-c",
            "import socket,time; s=socket.socket(); s.bind(('0.0.0.0',7777)); s.listen(); time.sleep(60)",
        ])
        .spawn()
        .unwrap();
    let _kill = KillOnDrop(holder);
    eventually(10, || {
        (!h.sh(&[
            "python3",
            "-c",
            "import socket; socket.socket().bind(('0.0.0.0', 7777))",
        ])
        .status
        .success())
        .then_some(())
    });
    let o = h.linkrt(&["run", "-d", "-p", "7777:5000", "training/webapp"]);
    assert_eq!(o.code, 125);
    assert!(
        o.stderr
            .contains("failed to bind host port 0.0.0.0:7777/tcp: address already in use"),
        "{o:?}"
    );
    let o = h.linkrt(&["run", "-d", "-p", "3868:3869/sctp", "alpine", "true"]);
    assert!(o.stderr.contains("SCTP port translation is not supported"), "{o:?}");
}

struct KillOnDrop(std::process::Child);
impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn udp_hairpin_localhost_binding_and_removal_on_stop() {
    let h = Host::new();
    let cl = Client::new(&h);
    let script = udp_echo_script(53);
    h.ok(&[
        "run",
        "-d",
        "--name",
        "dns",
        "-p",
        "5353:53/udp",
        "-p",
        "5354:54/udp",
        "alpine",
        "python3",
        "-c",
        &script,
    ]);
    let (data, from) = eventually(10, || udp_roundtrip(&cl.ns, &format!("{HOST_IP}:5353"), "hi"));
    assert_eq!(
        (data.as_str(), from.as_str()),
        ("echo:hi", "10.200.0.1:5353"),
        "the reply comes from the published address"
    );
    // Nothing listens on 54: the container's ICMP port unreachable, translated, reaches the
    // client's connected socket as "connection refused" (instead of a silent timeout).
    let probe = format!(
        "import socket\ns=socket.socket(socket.AF_INET,socket.SOCK_DGRAM)\ns.settimeout(3)\ns.connect(('{HOST_IP}',5354))\ns.send(b'x')\ntry:\n s.recv(9)\nexcept ConnectionRefusedError:\n print('refused')"
    );
    let o = cl.ns.try_exec(&["python3", "-c", &probe]);
    assert_eq!(String::from_utf8_lossy(&o.stdout).trim(), "refused", "{o:?}");

    h.ok(&[
        "run",
        "-d",
        "--name",
        "web",
        "-p",
        "8080:5000",
        "-p",
        "127.0.0.1:9090:5000",
        "training/webapp",
    ]);
    assert_eq!(hello(&cl, &format!("http://{HOST_IP}:8080/")), "Hello world!");
    // -p 127.0.0.1:... is not reachable from another machine.
    assert_eq!(cl.curl(&format!("http://{HOST_IP}:9090/")), None);
    // Hairpin: a container reaches the published port through the host's addresses.
    for url in [format!("http://{HOST_IP}:8080/"), "http://172.17.0.1:8080/".to_string()] {
        let body = eventually(10, || {
            let o = h.linkrt(&["run", "--rm", "alpine", "curl", "-s", "-m", "3", &url]);
            (o.code == 0).then_some(o.stdout)
        });
        assert_eq!(body, "Hello world!", "{url}");
    }
    // Stop: the mapping and its tracked flows go away; nothing answers any more.
    h.ok(&["stop", "web"]);
    assert_eq!(cl.curl(&format!("http://{HOST_IP}:8080/")), None);
    h.ok(&["rm", "-f", "dns"]);
    assert_eq!(udp_roundtrip(&cl.ns, &format!("{HOST_IP}:5353"), "late"), None);
    let st = h.ok(&["status"]);
    assert!(st.contains("dnat") && st.contains("reverse_nat"), "{st}");
}

#[test]
fn host_processes_reach_published_ports_through_socket_hooks() {
    let h = Host::new();
    let _cl = Client::new(&h);
    h.ok(&[
        "run",
        "-d",
        "--name",
        "web",
        "-p",
        "8080:5000",
        "-p",
        "127.0.0.1:9090:5000",
        "training/webapp",
    ]);
    for url in [
        "http://127.0.0.1:8080/",
        "http://127.0.0.1:9090/",
        &format!("http://{HOST_IP}:8080/"),
        "http://172.17.0.1:8080/",
    ] {
        let body = eventually(10, || {
            let o = h.host_process(&["curl", "-s", "-m", "3", url]);
            o.status
                .success()
                .then(|| String::from_utf8_lossy(&o.stdout).into_owned())
        });
        assert_eq!(body, "Hello world!", "{url}");
    }
    // Unconnected UDP from the host: the reply appears to come from the published address.
    let script = udp_echo_script(53);
    h.ok(&[
        "run",
        "-d",
        "--name",
        "dns",
        "-p",
        "5353:53/udp",
        "alpine",
        "python3",
        "-c",
        &script,
    ]);
    let probe = "import socket\ns=socket.socket(socket.AF_INET,socket.SOCK_DGRAM)\ns.settimeout(2)\ns.sendto(b'x',('127.0.0.1',5353))\nd,a=s.recvfrom(99)\nprint(d.decode(),a[0],a[1])";
    let out = eventually(10, || {
        let o = h.host_process(&["python3", "-c", probe]);
        o.status
            .success()
            .then(|| String::from_utf8_lossy(&o.stdout).trim().to_string())
    });
    assert_eq!(out, "echo:x 127.0.0.1 5353");
    // A process in the same hooked cgroup but another network namespace is not redirected (the
    // hooks check the netns cookie): it reaches its own namespace's 127.0.0.1:8080.
    let other = linkrt_tests::NetNs::new("lrt-other");
    let mut srv = std::process::Command::new("ip")
        .args(["netns", "exec", &other.name, "python3", "-c",
            "import http.server as h\nclass H(h.BaseHTTPRequestHandler):\n def do_GET(s):\n  s.send_response(200); s.end_headers(); s.wfile.write(b'other-ns')\nh.HTTPServer(('127.0.0.1',8080),H).serve_forever()"])
        .spawn()
        .unwrap();
    let body = eventually(10, || {
        let o = h.process_in_hooked_cgroup(&other, &["curl", "-s", "-m", "2", "http://127.0.0.1:8080/"]);
        o.status
            .success()
            .then(|| String::from_utf8_lossy(&o.stdout).into_owned())
    });
    srv.kill().unwrap();
    srv.wait().unwrap();
    assert_eq!(body, "other-ns", "not redirected to the container");
    assert!(h.counter("sock_lb") > 0);
}

#[test]
fn a_10000_port_range_is_one_map_update_not_10000_processes() {
    let h = Host::new();
    let cl = Client::new(&h);
    let before = h.instance_processes();
    assert!(before.is_empty(), "{before:?}");
    h.ok(&[
        "run",
        "-d",
        "--name",
        "wide",
        "-p",
        "20000-29999:20000-29999",
        "alpine",
        "python3",
        "-m",
        "http.server",
        "25000",
    ]);
    // This instance's processes: the supervisor and the container's process, nothing per port.
    let now = h.instance_processes();
    assert!(!now.is_empty() && now.len() <= 3, "{now:?}");
    assert!(h.ok(&["ps"]).contains("0.0.0.0:20000-29999->20000-29999/tcp"));
    assert_eq!(h.ok(&["port", "wide"]).lines().count(), 10_000);
    // Every port is in inspect, requested and published...
    let n = |tmpl: &str| h.inspect("wide", tmpl).trim().parse::<usize>().unwrap();
    assert_eq!(n("{{len .HostConfig.PortBindings}}"), 10_000);
    assert_eq!(n("{{len .NetworkSettings.Ports}}"), 10_000);
    assert_eq!(
        h.inspect("wide", "{{json (index .NetworkSettings.Ports \"29999/tcp\")}}")
            .trim(),
        r#"[{"HostIp":"0.0.0.0","HostPort":"29999"}]"#
    );
    // ...while the record and the index hold the range as one run each, not 10,000 objects.
    let id = h.inspect("wide", "{{.Id}}");
    let record = h.t.cfg.root.join("containers").join(id.trim()).join("record");
    let index = h.t.cfg.root.join("index");
    for f in [&record, &index] {
        let len = std::fs::metadata(f).unwrap().len();
        assert!(len < 16 * 1024, "{}: {len} bytes", f.display());
    }
    let body = eventually(10, || cl.curl(&format!("http://{HOST_IP}:25000/")));
    assert!(body.contains("Directory listing"), "{body}");
    // Every port of the range is held against host processes.
    let o = h.host_process(&[
        "python3",
        "-c",
        "import socket; socket.socket().bind(('0.0.0.0', 29999))",
    ]);
    assert!(!o.status.success());
    h.ok(&["rm", "-f", "wide"]);
    assert_eq!(cl.curl(&format!("http://{HOST_IP}:25000/")), None);
}
