//! State that never lies (issue 12): corrupted records, full disks, stuck locks, hostile input.
//! Each test runs in a private instance and checks Docker's words and that nothing leaked.
use std::time::{Duration, Instant};

use linkrt_tests::{Host, eventually};

fn record_path(h: &Host, id: &str) -> std::path::PathBuf {
    h.t.cfg.root.join("containers").join(id).join("record")
}

/// Any `*.tmp<pid>` file left anywhere under the state directory.
fn temp_files(h: &Host) -> Vec<String> {
    let mut v = Vec::new();
    let mut stack = vec![h.t.cfg.root.clone()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if p
                .extension()
                .and_then(|x| x.to_str())
                .is_some_and(|x| x.starts_with("tmp"))
            {
                v.push(p.display().to_string());
            }
        }
    }
    v
}

#[test]
fn a_record_that_cannot_be_read_never_releases_what_its_container_holds() {
    let h = Host::new();
    let victim = h.ok(&["run", "-d", "--name", "victim", "-p", "8080:5000", "training/webapp"]);
    let ip = h.inspect("victim", "{{.NetworkSettings.IPAddress}}");
    let pid = h.inspect("victim", "{{.State.Pid}}");
    // Torn: half of the record is gone.
    let rec = record_path(&h, &victim);
    let data = std::fs::read(&rec).unwrap();
    std::fs::write(&rec, &data[..data.len() / 2]).unwrap();

    let ps = h.ok(&["ps", "-a", "--no-trunc"]);
    let line = ps
        .lines()
        .find(|l| l.starts_with(&victim))
        .unwrap_or_else(|| panic!("the container vanished:\n{ps}"));
    assert!(line.contains("Dead (unreadable record: "), "{line}");
    assert!(line.contains("victim"), "its name stays: {line}");
    assert_eq!(h.inspect("victim", "{{.State.Status}} {{.State.Dead}}"), "dead true");
    // Its process still runs, and nothing it holds is handed to the next container.
    assert!(std::path::Path::new(&format!("/proc/{pid}")).exists());
    let next = h.ok(&["run", "-d", "--name", "next", "alpine", "sleep", "600"]);
    assert_ne!(
        h.inspect(&next, "{{.NetworkSettings.IPAddress}}"),
        ip,
        "its address stays reserved"
    );
    assert_ne!(
        h.inspect(&next, "{{.NetworkSettings.MacAddress}}"),
        format!(
            "02:42:ac:11:00:{:02x}",
            ip.rsplit('.').next().unwrap().parse::<u8>().unwrap()
        )
    );
    let o = h.linkrt(&["run", "-d", "-p", "8080:5000", "training/webapp"]);
    assert_eq!(o.code, 125, "its port stays reserved: {o:?}");
    assert!(
        o.stderr
            .contains("Bind for 0.0.0.0:8080 failed: port is already allocated"),
        "{o:?}"
    );
    let o = h.linkrt(&["run", "-d", "--name", "victim", "alpine", "true"]);
    assert!(
        o.stderr
            .contains("Conflict. The container name \"/victim\" is already in use"),
        "its name too: {o:?}"
    );
    // The start command refuses it in plain words; rm -f tears it down from what is known.
    let o = h.linkrt(&["start", "victim"]);
    assert_ne!(o.code, 0);
    assert!(o.stderr.contains("is dead"), "{o:?}");
    assert!(
        !h.linkrt(&["rm", "victim"]).stderr.is_empty(),
        "plain rm refuses: it still runs"
    );
    h.ok(&["rm", "-f", "victim"]);
    eventually(10, || {
        (!std::path::Path::new(&format!("/proc/{pid}")).exists()).then_some(())
    });
    assert!(!linkrt_tests::netns_exists(&victim));
    assert!(!h.links().contains(&format!("veth{}", &victim[..7])));
    assert!(!h.leases().contains(&victim));
    // Now the address and the port are free again.
    h.ok(&["run", "-d", "--name", "again", "-p", "8080:5000", "training/webapp"]);
}

#[test]
fn a_lost_index_and_record_are_recovered_from_the_live_network() {
    let h = Host::new();
    let a = h.ok(&["run", "-d", "--name", "aa", "alpine", "sleep", "600"]);
    let ip = h.inspect("aa", "{{.NetworkSettings.IPAddress}}");
    // Both copies gone: the record edited, the index deleted.
    let rec = record_path(&h, &a);
    let mut data = std::fs::read(&rec).unwrap();
    let n = data.len();
    data[n - 5] ^= 0x20;
    std::fs::write(&rec, &data).unwrap();
    std::fs::remove_file(h.t.cfg.root.join("index")).unwrap();
    let ps = h.ok(&["ps", "-a", "--no-trunc"]);
    assert!(ps.contains("checksum mismatch"), "{ps}");
    // The next container does not get the address still in use in the netns.
    let b = h.ok(&["run", "-d", "alpine", "sleep", "600"]);
    assert_ne!(h.inspect(&b, "{{.NetworkSettings.IPAddress}}"), ip);
    assert!(h.leases().contains(&format!("{ip} {a}")), "recovered: {}", h.leases());
    h.ok(&["rm", "-f", &a]);
    assert!(!linkrt_tests::netns_exists(&a));
}

#[test]
fn a_full_state_disk_still_lets_you_see_stop_and_remove() {
    let h = Host::with_small_state_disk(8 << 20);
    // PID 1 that ends on SIGTERM with a code of its own (7), to tell a recorded exit apart.
    let keep = h.ok(&[
        "run",
        "-d",
        "--name",
        "keep",
        "alpine",
        "sh",
        "-c",
        "trap 'exit 7' TERM; echo hello; while true; do sleep 0.1; done",
    ]);
    eventually(10, || h.ok(&["logs", "keep"]).contains("hello").then_some(()));
    // A chatty container is capped by its log options and never fills the disk alone.
    h.ok(&[
        "run",
        "-d",
        "--name",
        "chatty",
        "--log-opt",
        "max-size=256k",
        "--log-opt",
        "max-file=2",
        "alpine",
        "sh",
        "-c",
        "yes 0123456789abcdef | head -c 5000000; sleep 600",
    ]);
    std::thread::sleep(Duration::from_secs(2));
    let used: u64 = std::fs::read_dir(h.t.cfg.root.join("containers"))
        .unwrap()
        .flatten()
        .flat_map(|d| std::fs::read_dir(d.path()).unwrap().flatten())
        .filter(|f| f.file_name().to_string_lossy().contains(".log"))
        .map(|f| f.metadata().unwrap().len())
        .sum();
    assert!(
        used <= 2 * 256 * 1024 + 64 * 1024,
        "logs stay under the cap: {used} bytes"
    );
    // Now something else fills the disk to the last byte.
    let junk = h.t.cfg.root.join("junk");
    let _ = std::process::Command::new("dd")
        .args(["if=/dev/zero", &format!("of={}", junk.display()), "bs=64k"])
        .output();
    assert!(
        std::fs::write(h.t.cfg.root.join("probe"), [0u8; 4096]).is_err(),
        "the disk is full"
    );
    let ps = h.ok(&["ps", "-a"]);
    assert!(ps.contains("keep") && ps.contains("chatty"), "{ps}");
    assert!(h.inspect("keep", "{{.State.Running}}") == "true");
    assert!(h.ok(&["logs", "keep"]).contains("hello"));
    // stop: the exit is kept (on the run directory) and shown, even though it cannot be written.
    h.ok(&["stop", "-t", "5", "keep"]);
    let st = h.ok(&["ps", "-a", "--format", "{{.Names}} {{.Status}}"]);
    assert!(
        st.lines().any(|l| l.starts_with("keep Exited (7)")),
        "its own exit, never 137 'supervisor died': {st}"
    );
    // rm -f works on a full disk, and frees what the container used.
    h.ok(&["rm", "-f", "chatty"]);
    assert!(
        std::fs::write(h.t.cfg.root.join("probe"), [0u8; 4096]).is_ok(),
        "rm -f freed space"
    );
    std::fs::remove_file(h.t.cfg.root.join("probe")).unwrap();
    std::fs::remove_file(&junk).unwrap();
    // With space back, the pending exit is recorded: what it was, never 137.
    h.ok(&["ps"]);
    assert_eq!(
        h.inspect("keep", "{{.State.Status}} {{.State.ExitCode}} {{.State.Error}}"),
        "exited 7"
    );
    assert!(temp_files(&h).is_empty(), "{:?}", temp_files(&h));
    h.ok(&["rm", &keep]);
}

#[test]
fn a_stuck_writer_blocks_no_reader_and_is_named() {
    let h = Host::new();
    h.ok(&["run", "-d", "--name", "up", "alpine", "sleep", "600"]);
    // A `run` that stops while it holds the lock (in create).
    let mut stuck = h.spawn_env(
        &[("LINKRT_FAILPOINT", "create=pause"), ("LINKRT_FAILPOINT_SECS", "60")],
        &["run", "-d", "--name", "stuck", "alpine", "true"],
    );
    let holder = stuck.id();
    // Wait until it holds the lock.
    eventually(20, || {
        std::fs::read_to_string(h.t.cfg.run_root.join("lock.owner"))
            .ok()
            .filter(|s| s.contains("--name stuck"))
    });
    let t = Instant::now();
    let ps = h.ok(&["ps"]);
    assert!(t.elapsed() < Duration::from_secs(3), "ps waited {:?}", t.elapsed());
    assert!(ps.contains("up"), "{ps}");
    h.ok(&["inspect", "up"]);
    h.ok(&["logs", "up"]);
    let t = Instant::now();
    let o = h.linkrt_env(&[("LINKRT_LOCK_TIMEOUT", "1")], &["run", "-d", "alpine", "true"]);
    assert_eq!(o.code, 125);
    assert!(t.elapsed() < Duration::from_secs(5));
    assert!(
        o.stderr.contains(&format!("another linkrt command (pid {holder}: "))
            && o.stderr.contains("holds the state lock"),
        "{o:?}"
    );
    assert!(
        o.stderr.contains("run -d --name stuck alpine true"),
        "the holder's command line: {o:?}"
    );
    // Killed while holding it: the next writer gets the lock at once. The create had written
    // its record, so the container is there, Created, as after an interrupted `docker run`.
    stuck.kill().unwrap();
    stuck.wait().unwrap();
    h.ok(&["run", "-d", "--name", "after", "alpine", "true"]);
    assert_eq!(h.inspect("stuck", "{{.State.Status}}"), "created");
    h.ok(&["rm", "stuck"]);
}

#[test]
fn hostile_input_is_refused_in_dockers_words() {
    let h = Host::new();
    let cases: Vec<(Vec<String>, &str)> = vec![
        (
            vec!["-h".into(), "evil\n6.6.6.6 injected".into()],
            "invalid hostname format: evil\\n6.6.6.6 injected",
        ),
        (vec!["--hostname=-lead".into()], "invalid hostname format: -lead"),
        (vec!["--name".into(), "n".repeat(70_000)], "at most 255 are allowed"),
        (vec!["-p".into(), "0".into()], "Invalid containerPort: 0"),
        (
            vec!["--expose".into(), "0".into()],
            "invalid range format for --expose: 0",
        ),
        (
            vec!["-w".into(), "relative/dir".into()],
            "the working directory 'relative/dir' is invalid, it needs to be an absolute path",
        ),
        (
            vec!["-p".into(), "10.9.9.9:3868:3868/sctp".into()],
            "failed to bind host port 10.9.9.9:3868/sctp: cannot assign requested address",
        ),
        (
            vec!["-p".into(), "10.9.9.9:8080:80".into()],
            "failed to bind host port 10.9.9.9:8080/tcp: cannot assign requested address",
        ),
        (
            vec!["--env-file".into(), "/dev/zero".into()],
            "open /dev/zero: not a regular file",
        ),
    ];
    for (flags, want) in &cases {
        let mut args: Vec<&str> = vec!["run", "-d"];
        args.extend(flags.iter().map(String::as_str));
        args.extend(["alpine", "true"]);
        let t = Instant::now();
        let o = h.linkrt(&args);
        assert!(t.elapsed() < Duration::from_secs(20), "{flags:?} answered at once");
        assert_eq!(o.code, 125, "{want}: {o:?}");
        assert!(o.stderr.contains(want), "want {want:?}: {o:?}");
        assert!(
            !o.stderr.contains('\n') || o.stderr.trim_end().lines().count() == 1,
            "one line: {o:?}"
        );
    }
    // A link alias cannot add a line to a recipient's /etc/hosts either.
    h.ok(&["run", "-d", "--name", "db", "alpine", "sleep", "600"]);
    let o = h.linkrt(&["run", "-d", "--link", "db:x\n6.6.6.6 evil", "alpine", "true"]);
    assert_eq!(o.code, 125, "{o:?}");
    assert!(o.stderr.contains("bad format for links"), "{o:?}");
    // A FIFO as an env file is refused at once instead of blocking.
    let dir = linkrt_tests::TempDir::new("linkrt-fifo");
    let fifo = dir.path.join("env");
    nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
    let o = h.linkrt(&["run", "-d", "--env-file", &fifo.display().to_string(), "alpine", "true"]);
    assert!(o.stderr.contains("not a regular file"), "{o:?}");
    // Nothing half-made: the two whose host port could not be bound were created and stay
    // Created with the error, as Docker leaves them; no other container, veth or lease.
    let created = h.ok(&["ps", "-a", "--format", "{{.Names}} {{.Status}}"]);
    let not_db: Vec<&str> = created.lines().filter(|l| !l.starts_with("db ")).collect();
    assert_eq!(not_db.len(), 2, "{created}");
    assert!(not_db.iter().all(|l| l.ends_with(" Created")), "{created}");
    assert_eq!(h.links().matches("veth").count(), 1, "only db's veth: {}", h.links());
    assert_eq!(h.leases().lines().count(), 1, "only db's address: {}", h.leases());
    // A closed stdout ends the CLI quietly (no panic), as other CLIs.
    let o = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!(
            "nsenter --net={} {} status | head -1; echo \"rc=${{PIPESTATUS:-}}\"",
            h.ns.path().display(),
            linkrt_tests::linkrt_bin().display()
        ))
        .env("LINKRT_ROOT", &h.t.cfg.root)
        .env("LINKRT_RUN_ROOT", &h.t.cfg.run_root)
        .env("LINKRT_BPFFS", &h.t.cfg.bpffs)
        .output()
        .unwrap();
    assert!(!String::from_utf8_lossy(&o.stderr).contains("panicked"), "{o:?}");
    assert!(String::from_utf8_lossy(&o.stdout).starts_with("bpffs:"), "{o:?}");
}

#[test]
fn a_link_too_large_to_exec_says_so_and_leaves_nothing() {
    let h = Host::new();
    h.ok(&[
        "run", "-d", "--name", "wide", "--expose", "1-20000", "alpine", "sleep", "600",
    ]);
    let t = Instant::now();
    let o = h.linkrt(&["run", "-d", "--name", "rcp", "--link", "wide", "alpine", "true"]);
    assert!(
        t.elapsed() < Duration::from_secs(20),
        "refused before the runtime starts: {:?}",
        t.elapsed()
    );
    assert_eq!(o.code, 126, "{o:?}");
    assert!(
        o.stderr.contains("the environment is too large to start the command"),
        "{o:?}"
    );
    assert!(
        o.stderr
            .contains("the link to /wide as wide adds 80006 for its 20000 exposed ports"),
        "{o:?}"
    );
    // As Docker leaves a container whose start failed: Created, the error recorded, no network.
    assert_eq!(h.inspect("rcp", "{{.State.Status}} {{.State.ExitCode}}"), "created 126");
    assert!(h.inspect("rcp", "{{.State.Error}}").contains("E2BIG"));
    assert_eq!(h.links().matches("veth").count(), 1, "only wide's veth");
    assert_eq!(h.leases().lines().count(), 1, "only wide's address");
}

/// Point 5: a link policy larger than its map names the map and the map's real limit, and the
/// failed start takes its policy entries, veth, address and namespace along at once.
#[test]
fn a_full_policy_map_is_named_with_its_limit_and_the_failed_start_leaves_nothing() {
    use linkrt_common::maps;
    let h = Host::new();
    // Sized when first created: this instance's policy map holds 64 entries.
    h.linkrt_env(
        &[("LINKRT_POLICY_ENTRIES", "64")],
        &[
            "run",
            "-d",
            "--name",
            "wide",
            "--expose",
            "1000-1099",
            "alpine",
            "sleep",
            "600",
        ],
    )
    .ok();
    assert_eq!(linkrt::bpf::map_capacity(&h.t.cfg, maps::POLICY), Some(64));
    // A link to 10 of those ports fits: the probe that the policy map takes entries at all.
    h.ok(&[
        "run",
        "-d",
        "--name",
        "few",
        "--expose",
        "2000-2009",
        "alpine",
        "sleep",
        "600",
    ]);
    h.ok(&["run", "-d", "--name", "fits", "--link", "few", "alpine", "sleep", "600"]);
    let fits = linkrt::bpf::map_len(&h.t.cfg, maps::POLICY).unwrap();
    assert!(fits >= 10, "the fitting link's entries are there: {fits}");

    // The runtime creates the container while its network is wired; its process must not run
    // when the wiring fails. It would leave a mark in this volume.
    let marks = linkrt_tests::TempDir::new("linkrt-marks");
    let vol = format!("{}:/m", marks.path.display());
    let marking = ["-v", vol.as_str(), "alpine", "sh", "-c", "touch /m/ran; sleep 600"];
    let o = h.linkrt(&[&["run", "-d", "--name", "rcp", "--link", "wide"][..], &marking].concat());
    assert_eq!(o.code, 125, "{o:?}");
    assert!(
        o.stderr
            .contains(&format!("the datapath's {} map holds at most 64", maps::POLICY)),
        "names the map and its limit: {o:?}"
    );
    assert!(
        o.stderr.contains("the link policy needs "),
        "and what was needed: {o:?}"
    );
    assert_eq!(h.inspect("rcp", "{{.State.Status}}"), "created");
    let id = h.inspect("rcp", "{{.Id}}");
    assert!(!linkrt_tests::netns_exists(&id), "no namespace left");
    assert!(!marks.path.join("ran").exists(), "the process never ran");
    let runtime_state = h.t.cfg.run_root.join("runtime/runc").join(&id);
    assert!(
        !runtime_state.exists(),
        "the runtime holds nothing: {}",
        runtime_state.display()
    );
    let cgroups: Vec<_> = std::fs::read_dir("/sys/fs/cgroup")
        .unwrap()
        .flatten()
        .map(|h_| h_.path().join(&h.t.cfg.cgroup_parent).join(&id))
        .filter(|p| p.exists())
        .collect();
    assert!(cgroups.is_empty(), "no cgroup left: {cgroups:?}");
    assert_eq!(
        linkrt::bpf::map_len(&h.t.cfg, maps::POLICY).unwrap(),
        fits,
        "no policy entry of the failed start is left"
    );
    assert_eq!(
        h.links().matches("veth").count(),
        3,
        "only the running containers' veths"
    );
    assert_eq!(h.leases().lines().count(), 3, "only the running containers' addresses");
    assert!(temp_files(&h).is_empty(), "{:?}", temp_files(&h));
    // The links that fit still work after the failure.
    assert_eq!(h.inspect("fits", "{{.State.Status}}"), "running");
    // The probe: the same command, started whole, leaves its mark.
    h.ok(&[&["run", "-d", "--name", "marker"][..], &marking].concat());
    linkrt_tests::eventually(10, || marks.path.join("ran").exists().then_some(()));
}
