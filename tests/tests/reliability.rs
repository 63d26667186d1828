//! Faults, restarts, concurrency and permissions: nothing is lost or leaked.
use std::collections::HashSet;

use linkrt_tests::{Client, HOST_IP, Host, eventually};

/// Everything a container may own outside its record: veths in the host namespace, IP
/// leases, named netns, published-port map entries.
fn leftovers(h: &Host) -> Vec<String> {
    let mut v = Vec::new();
    let links = h.links();
    v.extend(
        links
            .lines()
            .filter(|l| l.contains("veth"))
            .map(|l| format!("veth: {l}")),
    );
    let ipam = h.leases();
    if ipam.contains("172.17.") {
        v.push(format!("leases: {ipam}"));
    }
    let st = h.ok(&["status"]);
    if let Some(l) = st
        .lines()
        .find(|l| l.contains(linkrt_common::maps::PORTMAP) && !l.contains(" 0 entries") && !l.contains("not created"))
    {
        v.push(format!("portmap: {l}"));
    }
    v
}

#[test]
fn kill_9_at_every_step_leaves_state_the_next_command_repairs() {
    let h = Host::new();
    let cl = Client::new(&h);
    for fp in ["create", "start-network", "start-spawned"] {
        let o = h.linkrt_env(
            &[("LINKRT_FAILPOINT", fp)],
            &["run", "-d", "--name", "victim", "-p", "8080:5000", "training/webapp"],
        );
        assert_eq!(o.code, 137, "{fp}: killed: {o:?}");
        // The next command repairs: nothing running, nothing leaked, the name reusable.
        let ps = h.ok(&["ps", "-a"]);
        assert!(!ps.contains("Up "), "{fp}: {ps}");
        let mut left = leftovers(&h);
        for _ in 0..50 {
            if left.is_empty() {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(200));
            h.ok(&["ps", "-a"]);
            left = leftovers(&h);
        }
        assert!(left.is_empty(), "{fp}: {left:?}");
        h.ok(&["rm", "-f", "victim"]);
        let id = h.ok(&["run", "-d", "--name", "victim", "-p", "8080:5000", "training/webapp"]);
        assert_eq!(
            eventually(10, || cl.curl(&format!("http://{HOST_IP}:8080/"))),
            "Hello world!",
            "{fp}"
        );
        h.ok(&["rm", "-f", &id]);
        assert!(leftovers(&h).is_empty(), "{fp}: {:?}", leftovers(&h));
        assert!(!linkrt_tests::netns_exists(&id));
    }
    // A supervisor killed while recording the exit; an rm killed half-way.
    let id = h.ok(&["run", "-d", "--name", "victim", "alpine", "sleep", "600"]);
    let o = h.linkrt_env(&[("LINKRT_FAILPOINT", "rm")], &["rm", "-f", &id]);
    assert_eq!(o.code, 137, "{o:?}");
    h.ok(&["rm", "-f", "victim"]);
    assert_eq!(h.ok(&["ps", "-aq"]), "");
    assert!(leftovers(&h).is_empty(), "{:?}", leftovers(&h));
    assert!(!h.t.cfg.root.join("containers").join(&id).exists());
}

#[test]
fn a_reboot_emptying_bpffs_and_run_is_reconciled() {
    let h = Host::new();
    let cl = Client::new(&h);
    let id = h.ok(&["run", "-d", "--name", "web", "-p", "8080:5000", "training/webapp"]);
    assert_eq!(
        eventually(10, || cl.curl(&format!("http://{HOST_IP}:8080/"))),
        "Hello world!"
    );
    // "Reboot": every process of the container gone, pins and runtime files lost.
    let sup: i32 = h.inspect("web", "{{.State.Pid}}").parse().unwrap();
    let pids = std::fs::read_to_string(linkrt::state::pids_path(&h.t.cfg, &id)).unwrap();
    for p in pids.split_whitespace().chain([sup.to_string().as_str()]) {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(p.parse().unwrap()),
            nix::sys::signal::Signal::SIGKILL,
        );
    }
    std::thread::sleep(std::time::Duration::from_millis(300));
    std::fs::remove_dir_all(&h.t.cfg.bpffs).unwrap();
    let _ = nix::mount::umount2(&h.t.cfg.run_root.join("overlay"), nix::mount::MntFlags::MNT_DETACH);
    std::fs::remove_dir_all(&h.t.cfg.run_root).unwrap();
    let ps = h.ok(&["ps", "-a"]);
    assert!(ps.contains("Exited (137)"), "{ps}");
    assert!(leftovers(&h).is_empty(), "{:?}", leftovers(&h));
    h.ok(&["start", "web"]);
    assert_eq!(
        eventually(10, || cl.curl(&format!("http://{HOST_IP}:8080/"))),
        "Hello world!"
    );
}

#[test]
fn established_flows_survive_the_cli_and_a_datapath_reload() {
    let h = Host::new();
    let cl = Client::new(&h);
    h.ok(&["run", "-d", "--name", "echo", "-p", "7000:7000", "alpine", "python3", "-c",
        "import socket\ns=socket.socket()\ns.bind(('',7000))\ns.listen()\nc,_=s.accept()\nwhile True:\n d=c.recv(99)\n if not d: break\n c.sendall(d)"]);
    // A client holding one connection, sending a line every 100 ms for 3 s.
    let script = format!(
        "import socket,time\nfor _ in range(50):\n try:\n  s=socket.create_connection(('{HOST_IP}',7000),timeout=1); break\n except OSError: time.sleep(0.1)\nn=0\nfor i in range(30):\n s.sendall(b'x'); n+=len(s.recv(9)); time.sleep(0.1)\nprint(n)"
    );
    let client = std::process::Command::new("ip")
        .args(["netns", "exec", &cl.ns.name, "python3", "-c", &script])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(800));
    let before = uplink_prog_ids(&h);
    assert!(!before.is_empty(), "the uplink has linkrt's programs");
    // New programs are loaded and swapped in on every interface (what an upgrade does: its
    // object has no pinned program set yet, as here once the set is unpinned).
    std::fs::remove_dir_all(h.t.cfg.programs_dir()).expect("unpin the program set");
    h.ok(&[
        "run",
        "-d",
        "--name",
        "other",
        "-p",
        "7001:7000",
        "alpine",
        "sleep",
        "600",
    ]);
    let after = uplink_prog_ids(&h);
    assert_eq!(before.len(), after.len());
    for ((pin, link_a, prog_a), (_, link_b, prog_b)) in before.iter().zip(&after) {
        assert_eq!(link_a, link_b, "{pin}: the same TCX link, updated in place");
        assert_ne!(
            prog_a, prog_b,
            "{pin}: a new program was swapped in (the reload happened)"
        );
    }
    let out = client.wait_with_output().unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "30",
        "every echo came back over the same connection, across the reload"
    );
}

/// (pin, link id, program id) of the TCX links pinned for the host's uplinks.
fn uplink_prog_ids(h: &Host) -> Vec<(String, u64, u64)> {
    let dir = h.t.cfg.bpffs.join("links");
    let mut v: Vec<(String, u64, u64)> = std::fs::read_dir(&dir)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("up") && (n.ends_with("_in") || n.ends_with("_out")))
        .map(|n| {
            let o = linkrt_tests::sh(&[
                "bpftool",
                "-j",
                "link",
                "show",
                "pinned",
                &dir.join(&n).to_string_lossy(),
            ]);
            let j: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
            (n, j["id"].as_u64().unwrap(), j["prog_id"].as_u64().unwrap())
        })
        .collect();
    v.sort();
    v
}

#[test]
fn twenty_parallel_runs_and_removals_do_not_collide() {
    let h = Host::new();
    let h = &h;
    let ids: Vec<String> = std::thread::scope(|s| {
        let hs: Vec<_> = (0..20)
            .map(|i| {
                s.spawn(move || {
                    // Twenty writers queue for the lock on purpose: let them wait their turn.
                    h.linkrt_env(
                        &[("LINKRT_LOCK_TIMEOUT", "300")],
                        &[
                            "run",
                            "-d",
                            "-P",
                            "--expose",
                            "9000",
                            "--name",
                            &format!("p{i}"),
                            "alpine",
                            "sleep",
                            "600",
                        ],
                    )
                })
            })
            .collect();
        hs.into_iter()
            .map(|t| t.join().unwrap().ok().trim().to_string())
            .collect()
    });
    let ips: HashSet<String> = ids
        .iter()
        .map(|id| h.inspect(id, "{{.NetworkSettings.IPAddress}}"))
        .collect();
    let ports: HashSet<String> = ids.iter().map(|id| h.ok(&["port", id, "9000"])).collect();
    let names: HashSet<String> = ids.iter().map(|id| h.inspect(id, "{{.Name}}")).collect();
    assert_eq!((ips.len(), ports.len(), names.len()), (20, 20, 20), "{ips:?} {ports:?}");
    assert_eq!(h.ok(&["ps", "-q"]).lines().count(), 20);
    std::thread::scope(|s| {
        for id in &ids {
            s.spawn(move || h.linkrt_env(&[("LINKRT_LOCK_TIMEOUT", "300")], &["rm", "-f", id]).ok());
        }
    });
    assert_eq!(h.ok(&["ps", "-aq"]), "");
    assert!(leftovers(h).is_empty(), "{:?}", leftovers(h));
}

#[test]
fn permissions_and_isolation() {
    let h = Host::new();
    let id = h.ok(&[
        "run",
        "-d",
        "--name",
        "db",
        "-e",
        "SECRET=s3cret",
        "-p",
        "127.0.0.1:9090:5432",
        "training/postgres",
    ]);
    // Root-only state and pins.
    use std::os::unix::fs::PermissionsExt;
    for d in [
        h.t.cfg.root.clone(),
        h.t.cfg.root.join("containers").join(&id),
        h.t.cfg.bpffs.clone(),
    ] {
        let mode = std::fs::metadata(&d).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode & 0o077, 0, "{} is {mode:o}", d.display());
    }
    // A non-root user gets a clear error and changes nothing.
    let before = h.ok(&["ps", "-a"]);
    let o = std::process::Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
        .arg(linkrt_tests::linkrt_bin())
        .args(["rm", "-f", "db"])
        .env("LINKRT_ROOT", &h.t.cfg.root)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(125));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("permission denied: linkrt must run as root"),
        "{o:?}"
    );
    assert_eq!(h.ok(&["ps", "-a"]).lines().count(), before.lines().count());
    // Link variables go only to linked containers.
    assert!(!h.ok(&["run", "--rm", "alpine", "env"]).contains("SECRET"));
    assert!(
        h.ok(&["run", "--rm", "--link", "db", "alpine", "env"])
            .contains("DB_ENV_SECRET=s3cret")
    );
    // A -p 127.0.0.1: port is not reachable from containers through the host's addresses.
    h.ok(&["run", "-d", "--name", "peer", "alpine", "sleep", "600"]);
    for target in ["172.17.0.1", "127.0.0.1"] {
        let script = format!("import socket\ns=socket.socket()\ns.settimeout(1)\ns.connect(('{target}',9090))");
        assert_ne!(
            h.linkrt(&["exec", "peer", "python3", "-c", &script]).code,
            0,
            "{target}:9090"
        );
    }
    // The host itself reaches it.
    let o = h.host_process(&[
        "python3",
        "-c",
        "import socket\ns=socket.socket()\ns.settimeout(2)\ns.connect(('127.0.0.1',9090))",
    ]);
    assert!(o.status.success(), "{o:?}");
}

/// Many containers and 60,000 mappings on the bridge: spot checks still succeed and the maps'
/// memory is fixed. `LINKRT_LOAD_CONTAINERS=200` runs the long version (CI runs 30).
#[test]
fn load_many_containers_and_60000_mappings() {
    let n: usize = std::env::var("LINKRT_LOAD_CONTAINERS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(30);
    let h = Host::new();
    let cl = Client::new(&h);
    let before = h.map_memory();
    assert!(before.is_empty(), "a new instance has no maps yet: {before:?}");
    // 59,990 SCTP mappings on one container (no sockets to hold), then n web containers.
    h.ok(&[
        "run",
        "-d",
        "--name",
        "wide",
        "-p",
        "1024-61013:1024-61013/sctp",
        "alpine",
        "sleep",
        "3600",
    ]);
    for i in 0..n {
        h.ok(&[
            "run",
            "-d",
            "--name",
            &format!("w{i}"),
            "-p",
            &format!("{}:5000", 62000 + i),
            "training/webapp",
        ]);
    }
    assert_eq!(h.ok(&["ps", "-q"]).lines().count(), n + 1);
    let st = h.ok(&["status"]);
    let entries = st.lines().find(|l| l.contains(linkrt_common::maps::PORTMAP)).unwrap();
    assert!(entries.contains(&format!(" {} entries", 59_990 + n)), "{entries}");
    for i in [0, n / 2, n - 1] {
        let url = format!("http://{HOST_IP}:{}/", 62000 + i);
        assert_eq!(eventually(20, || cl.curl(&url)), "Hello world!", "{url}");
    }
    // Memory: this instance's maps (its own pins, not every LRT_* map of the machine) stay
    // under 32 MiB with 60,000 mappings; the plain hash maps grow with their entries only.
    let total = h.map_memory();
    assert!(
        total.values().all(|b| *b > 0) && total.len() >= 8,
        "every pinned map reports its memory: {total:?}"
    );
    let sum: u64 = total.values().sum();
    assert!(sum < 32 << 20, "this instance's maps use {sum} bytes: {total:?}");
}
