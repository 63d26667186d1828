//! Issue 13: published host ports are reserved without one socket per port. The cgroup
//! `bind4`/`bind6` hooks refuse a host process's bind of a published port with EADDRINUSE
//! ("address already in use", as with Docker, whose proxy holds the ports), so a 10,000-port
//! range is fully reserved whatever the fd limit, and freed when the container goes.
use std::process::Command;

use linkrt_tests::{Host, linkrt_bin, run_with_timeout};

/// Binds each `(ip, first, last)` port range with `proto` ("tcp"/"udp", `ip` may be IPv6) as a
/// host process (in the socket hooks' cgroup); prints one line per bind: `ok` or the errno's
/// name.
fn bind_script(proto: &str, targets: &[(&str, u16, u16)]) -> String {
    let list: Vec<String> = targets.iter().map(|(ip, a, b)| format!("({ip:?}, {a}, {b})")).collect();
    format!(
        "import socket, errno\n\
         for ip, lo, hi in [{}]:\n\
         \x20 for port in range(lo, hi + 1):\n\
         \x20   fam = socket.AF_INET6 if ':' in ip else socket.AF_INET\n\
         \x20   s = socket.socket(fam, socket.SOCK_STREAM if '{proto}' == 'tcp' else socket.SOCK_DGRAM)\n\
         \x20   try:\n\
         \x20       s.bind((ip, port)); print('ok')\n\
         \x20   except OSError as e:\n\
         \x20       print(errno.errorcode.get(e.errno, e.errno))\n\
         \x20   s.close()\n",
        list.join(", ")
    )
}

fn bind_ranges(h: &Host, proto: &str, targets: &[(&str, u16, u16)]) -> Vec<String> {
    let o = h.host_process(&["python3", "-c", &bind_script(proto, targets)]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    String::from_utf8_lossy(&o.stdout).lines().map(str::to_owned).collect()
}

fn binds(h: &Host, proto: &str, targets: &[(&str, u16)]) -> Vec<String> {
    let t: Vec<(&str, u16, u16)> = targets.iter().map(|(ip, p)| (*ip, *p, *p)).collect();
    bind_ranges(h, proto, &t)
}

/// The host's address toward nothing in particular: a second address of the host, to bind.
fn add_host_address(h: &Host) -> &'static str {
    let ip = "10.222.0.1";
    let o = h.sh(&["ip", "addr", "add", &format!("{ip}/32"), "dev", "lo"]);
    assert!(o.status.success(), "{o:?}");
    ip
}

#[test]
fn host_processes_cannot_bind_published_ports_until_the_container_is_gone() {
    let h = Host::new();
    let other = add_host_address(&h);
    let tcp = [
        ("0.0.0.0", 8080),
        ("127.0.0.1", 8080),
        (other, 8080),
        ("::", 8080),
        ("0.0.0.0", 8082),
        ("127.0.0.1", 8082),
        (other, 8082),
    ];
    let udp = [("0.0.0.0", 8081), (other, 8081), ("::", 8081)];
    // The probe works: before any container, every bind succeeds.
    assert!(binds(&h, "tcp", &tcp).iter().all(|r| r == "ok"));
    assert!(binds(&h, "udp", &udp).iter().all(|r| r == "ok"));

    h.ok(&[
        "run",
        "-d",
        "--name",
        "web",
        "-p",
        "8080:80",
        "-p",
        "8081:81/udp",
        "-p",
        "127.0.0.1:8082:82",
        "alpine",
        "sleep",
        "600",
    ]);
    assert_eq!(
        binds(&h, "tcp", &tcp),
        [
            // 0.0.0.0:8080 holds 8080 on every address, IPv6's wildcard included.
            "EADDRINUSE",
            "EADDRINUSE",
            "EADDRINUSE",
            "EADDRINUSE",
            // 127.0.0.1:8082 holds it there, and for 0.0.0.0, not on another address.
            "EADDRINUSE",
            "EADDRINUSE",
            "ok",
        ]
    );
    assert_eq!(binds(&h, "udp", &udp), ["EADDRINUSE", "EADDRINUSE", "EADDRINUSE"]);
    // TCP and UDP are separate: UDP 8080 and TCP 8081 are free.
    assert_eq!(binds(&h, "udp", &[("0.0.0.0", 8080)]), ["ok"]);
    assert_eq!(binds(&h, "tcp", &[("0.0.0.0", 8081)]), ["ok"]);
    assert!(h.counter("bind_refused") >= 9);
    // The text a host program shows is Docker's.
    let o = h.host_process(&[
        "python3",
        "-c",
        "import socket; socket.socket().bind(('0.0.0.0', 8080))",
    ]);
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("Address already in use"),
        "{o:?}"
    );

    h.ok(&["rm", "-f", "web"]);
    assert!(binds(&h, "tcp", &tcp).iter().all(|r| r == "ok"));
    assert!(binds(&h, "udp", &udp).iter().all(|r| r == "ok"));
}

/// `linkrt ARGS` with its fd limit (and so its supervisor's) set to `n` (the soft limit: a hard
/// limit below Docker's `nofile` default would keep runc from starting the container).
fn linkrt_with_nofile(h: &Host, n: u32, args: &[&str]) -> std::process::Output {
    let cfg = &h.t.cfg;
    let mut c = Command::new("nsenter");
    c.arg(format!("--net={}", h.ns.path().display()))
        .args(["prlimit", &format!("--nofile={n}:")])
        .arg(linkrt_bin())
        .args(args)
        .env("LINKRT_ROOT", &cfg.root)
        .env("LINKRT_RUN_ROOT", &cfg.run_root)
        .env("LINKRT_BPFFS", &cfg.bpffs)
        .env("LINKRT_CGROUP", cfg.cgroup.as_ref().unwrap())
        .env("LINKRT_CGROUP_PARENT", &cfg.cgroup_parent)
        .stdin(std::process::Stdio::null());
    run_with_timeout(&mut c, std::time::Duration::from_secs(120))
}

#[test]
fn a_10000_port_range_is_fully_reserved_with_256_file_descriptors() {
    let h = Host::new();
    let all = [("0.0.0.0", 20000, 29999)];
    assert!(
        bind_ranges(&h, "tcp", &[("0.0.0.0", 20000, 20009)])
            .iter()
            .all(|r| r == "ok"),
        "the probe works"
    );
    let o = linkrt_with_nofile(
        &h,
        256,
        &[
            "run",
            "-d",
            "--name",
            "wide",
            "-p",
            "20000-29999:20000-29999",
            "-p",
            "20000-29999:20000-29999/udp",
            "alpine",
            "sleep",
            "600",
        ],
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    // The supervisor runs with the limit it inherited.
    let id = h.inspect("wide", "{{.Id}}");
    let pids = std::fs::read_to_string(h.t.cfg.run_root.join(format!("{id}.pids"))).unwrap();
    let pid = pids.split_whitespace().next().expect("the supervisor's PID");
    let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).unwrap();
    assert!(
        limits
            .lines()
            .any(|l| l.starts_with("Max open files") && l.contains(" 256 ")),
        "{limits}"
    );
    // And holds no socket per port.
    let fds = std::fs::read_dir(format!("/proc/{pid}/fd")).unwrap().count();
    assert!(fds < 64, "the supervisor holds {fds} descriptors");
    let tcp = bind_ranges(&h, "tcp", &all);
    assert_eq!(tcp.len(), 10_000);
    assert!(tcp.iter().all(|r| r == "EADDRINUSE"), "every TCP port is held");
    let udp = bind_ranges(&h, "udp", &all);
    assert!(udp.iter().all(|r| r == "EADDRINUSE"), "every UDP port is held");

    let o = linkrt_with_nofile(&h, 256, &["rm", "-f", "wide"]);
    assert!(o.status.success(), "{o:?}");
    assert_eq!(h.ok(&["ps", "-aq"]), "");
    assert!(
        h.links().matches("veth").count() == 0,
        "the veth is gone: {}",
        h.links()
    );
    assert!(bind_ranges(&h, "tcp", &all).iter().all(|r| r == "ok"));
    assert!(bind_ranges(&h, "udp", &all).iter().all(|r| r == "ok"));
    let st = h.ok(&["status"]);
    let portmap = st.lines().find(|l| l.contains("LRT_PORTMAP")).unwrap_or_default();
    assert!(portmap.ends_with(" 0 entries"), "{portmap}");
}
