//! Container isolation with Docker's defaults, proven by attacks from inside a container.
//!
//! Every escape probe (`tests/src/bin/escape-probe.rs`) runs twice: in a container where it
//! must work (`--privileged`, or a bind mount that deliberately opens the path), which proves
//! the probe itself can succeed, then in a default container, where it must be refused.
use std::{os::unix::fs::MetadataExt, path::PathBuf};

use linkrt_tests::{Host, eventually, rand_suffix};

fn probe_bin() -> PathBuf {
    let p = linkrt_tests::linkrt_bin().parent().unwrap().join("escape-probe");
    assert!(p.exists(), "{} missing: run `cargo xtask test`", p.display());
    p
}

/// Runs the probe in a new container with `flags`; (worked, output).
fn probe(h: &Host, flags: &[&str], args: &[&str]) -> (bool, String) {
    let vol = format!("{}:/probe:ro", probe_bin().display());
    let mut cmd: Vec<&str> = vec!["run", "--rm", "-v", &vol];
    cmd.extend_from_slice(flags);
    cmd.push("alpine");
    // Not PID 1 itself (ptrace of PID 1 must be a real attach), and its code is kept.
    let line = format!(
        "/probe {}; exit $?",
        args.iter().map(|a| format!("'{a}'")).collect::<Vec<_>>().join(" ")
    );
    cmd.extend_from_slice(&["sh", "-c", &line]);
    let o = h.linkrt(&cmd);
    let out = format!("{}{}", o.stdout, o.stderr).trim().to_string();
    assert!(
        o.code == 0 || o.code == 1,
        "probe {args:?} with {flags:?} did not run: {o:?}"
    );
    (o.code == 0 && o.stdout.starts_with("OK"), out)
}

/// The probe works with `control` and is refused in a default container.
fn must_be_refused(h: &Host, control: &[&str], args: &[&str]) {
    let (worked, out) = probe(h, control, args);
    assert!(
        worked,
        "the probe {args:?} must succeed with {control:?} (else it proves nothing): {out}"
    );
    let (worked, out) = probe(h, &[], args);
    assert!(!worked, "ESCAPE: {args:?} worked in a default container: {out}");
    assert!(out.starts_with("DENIED"), "{args:?}: {out}");
}

/// The major and minor of a block device that the host's root can open (the root disk itself
/// when allowed; on some VMs only loop devices are).
fn host_block_dev() -> (String, String) {
    use std::os::unix::fs::FileTypeExt;
    let root = std::fs::metadata("/").unwrap().dev();
    let mut devs: Vec<u64> = vec![root];
    for e in std::fs::read_dir("/dev").unwrap().flatten() {
        if e.file_type().map(|t| t.is_block_device()).unwrap_or(false) {
            devs.push(std::fs::metadata(e.path()).unwrap().rdev());
        }
    }
    for d in devs {
        let node = std::fs::read_dir("/dev").unwrap().flatten().find(|e| {
            e.file_type().map(|t| t.is_block_device()).unwrap_or(false)
                && std::fs::metadata(e.path()).map(|m| m.rdev() == d).unwrap_or(false)
        });
        if let Some(n) = node
            && std::fs::File::open(n.path()).is_ok()
        {
            return (
                nix::sys::stat::major(d).to_string(),
                nix::sys::stat::minor(d).to_string(),
            );
        }
    }
    panic!("no block device on this host that root can open: the block-device probe cannot prove anything");
}

#[test]
fn kernel_interfaces_are_closed_to_a_default_container() {
    let h = Host::new();
    // A running container, so that linkrt's own eBPF programs and links exist to be found.
    h.ok(&["run", "-d", "--name", "bystander", "alpine", "sleep", "600"]);
    let p = ["--privileged"];
    must_be_refused(&h, &p, &["open-by-handle"]);
    must_be_refused(&h, &p, &["bpf-prog-next-id"]);
    must_be_refused(&h, &p, &["bpf-link-fd"]);
    for (src, fs) in [
        ("proc", "proc"),
        ("sysfs", "sysfs"),
        ("cgroup2", "cgroup2"),
        ("bpf", "bpf"),
    ] {
        must_be_refused(&h, &p, &["mount", src, fs]);
    }
    must_be_refused(&h, &p, &["remount-sys-rw"]);
    let (maj, min) = host_block_dev();
    must_be_refused(&h, &p, &["open-block", &maj, &min]);
    must_be_refused(&h, &p, &["open-write", "/proc/sys/kernel/core_pattern"]);
    if std::path::Path::new("/proc/sysrq-trigger").exists() {
        must_be_refused(&h, &p, &["open-write", "/proc/sysrq-trigger"]);
    } else {
        // This kernel has no magic SysRq (CONFIG_MAGIC_SYSRQ unset): nothing to open anywhere.
        assert!(!probe(&h, &[], &["open-write", "/proc/sysrq-trigger"]).0);
        eprintln!(
            "note: no /proc/sysrq-trigger on this kernel; the read-only /proc/sysrq-trigger rule is checked in the spec unit test"
        );
    }
    must_be_refused(&h, &p, &["keyctl"]);
    must_be_refused(&h, &p, &["unshare-user"]);
    must_be_refused(&h, &p, &["ptrace-pid1"]);
}

#[test]
fn host_files_and_other_containers_stay_invisible() {
    let h = Host::new();
    let secret = format!("SECRET={}", rand_suffix(16));
    let other = h.ok(&["run", "-d", "--name", "other", "-e", &secret, "alpine", "sleep", "600"]);
    // The host's /etc/shadow (its first line), the host's /root (one of its entries).
    let shadow = std::fs::read_to_string("/etc/shadow").unwrap();
    let root_line = shadow.lines().next().unwrap().to_string();
    must_be_refused(
        &h,
        &["-v", "/etc/shadow:/etc/shadow:ro"],
        &["read-contains", "/etc/shadow", &root_line],
    );
    let entry = std::fs::read_dir("/root")
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .next()
        .expect("the host's /root has an entry");
    must_be_refused(&h, &["-v", "/root:/root:ro"], &["lists", "/root", &entry]);
    // Another container's record (with its -e SECRET) in linkrt's state, and its environment.
    let state = h.t.cfg.root.display().to_string();
    let record = format!("{state}/containers/{other}/record");
    assert!(std::fs::read_to_string(&record).unwrap().contains(&secret));
    must_be_refused(
        &h,
        &["-v", &format!("{state}:{state}:ro")],
        &["read-contains", &record, &secret],
    );
    must_be_refused(&h, &["-e", &secret], &["env-visible", &secret]);
    // /dev is the container's own: a file made there never appears on the host.
    let name = format!("linkrt-probe-{}", rand_suffix(8));
    let host_dev = PathBuf::from("/dev").join(&name);
    let dev_file = format!("/dev/{name}");
    let (worked, out) = probe(&h, &["-v", "/dev:/dev"], &["create", &dev_file]);
    let appeared = host_dev.exists();
    let _ = std::fs::remove_file(&host_dev);
    assert!(
        worked && appeared,
        "with the host's /dev bound in, the file appears on the host: {out}"
    );
    let (worked, out) = probe(&h, &[], &["create", &dev_file]);
    assert!(worked, "a container may create files in its own /dev: {out}");
    assert!(!host_dev.exists(), "ESCAPE: {dev_file} appeared on the host");
    // The root filesystem holds nothing of the host's private places or of linkrt's state.
    let ls = h.ok(&[
        "run",
        "--rm",
        "alpine",
        "sh",
        "-c",
        "ls -A /root /home /var/lib /tmp /run; ls /etc",
    ]);
    for absent in ["linkrt", ".cargo", ".bashrc", "shadow-", "ssh", "sudoers"] {
        assert!(
            !ls.lines().any(|l| l.trim() == absent),
            "{absent} visible in a container:\n{ls}"
        );
    }
    assert!(
        !h.ok(&["run", "--rm", "alpine", "cat", "/etc/shadow"])
            .contains(&root_line)
    );
}

#[test]
fn the_link_policy_holds_after_the_probes() {
    let h = Host::new();
    h.ok(&[
        "run",
        "-d",
        "--name",
        "src",
        "--expose",
        "7000",
        "alpine",
        "python3",
        "-m",
        "http.server",
        "7000",
    ]);
    let ip = h.inspect("src", "{{.NetworkSettings.IPAddress}}");
    h.ok(&[
        "run", "-d", "--name", "friend", "--link", "src", "alpine", "sleep", "600",
    ]);
    h.ok(&["run", "-d", "--name", "stranger", "alpine", "sleep", "600"]);
    // The probes that could switch the policy off, from the stranger's side.
    for args in [["bpf-prog-next-id"], ["bpf-link-fd"]] {
        let (worked, out) = probe(&h, &[], &args);
        assert!(!worked, "{args:?}: {out}");
    }
    let connects = |from: &str| {
        let s = format!("import socket\ns=socket.socket()\ns.settimeout(1)\ns.connect(('{ip}',7000))");
        h.linkrt(&["exec", from, "python3", "-c", &s]).code == 0
    };
    assert!(
        eventually(10, || connects("friend").then_some(true)),
        "the linked peer connects"
    );
    assert!(!connects("stranger"), "the unlinked peer is still blocked");
}

/// Builds a `--rootfs` from the host's busybox (and its libraries, if it is not the static
/// one), with `etc` (and `src`) pointing outside.
fn hostile_rootfs(base: &std::path::Path, outside: &std::path::Path) -> PathBuf {
    let r = base.join("rootfs");
    for d in ["bin", "proc", "sys", "dev", "tmp"] {
        std::fs::create_dir_all(r.join(d)).unwrap();
    }
    std::fs::copy("/bin/busybox", r.join("bin/busybox")).unwrap();
    let ldd = std::process::Command::new("ldd").arg("/bin/busybox").output().unwrap();
    for lib in String::from_utf8_lossy(&ldd.stdout)
        .split_whitespace()
        .filter(|w| w.starts_with('/'))
    {
        let dst = r.join(lib.trim_start_matches('/'));
        std::fs::create_dir_all(dst.parent().unwrap()).unwrap();
        std::fs::copy(lib, &dst).unwrap();
    }
    std::os::unix::fs::symlink("busybox", r.join("bin/sh")).unwrap();
    std::os::unix::fs::symlink(outside, r.join("etc")).unwrap();
    std::os::unix::fs::symlink(outside.join("app"), r.join("src")).unwrap();
    r
}

#[test]
fn rootfs_symlinks_never_make_linkrt_write_outside() {
    let h = Host::new();
    let base = linkrt_tests::TempDir::new("linkrt-rootfs");
    let outside = linkrt_tests::TempDir::new("linkrt-outside");
    let rootfs = hostile_rootfs(&base.path, &outside.path);
    let r = rootfs.display().to_string();
    // trainingwheels adds /src/app.py: through the `src` symlink, inside the root. Where the
    // files went: the symlink targets, taken inside the root (in the container's upper layer).
    let script = format!(
        "/bin/busybox cat /etc/hostname; /bin/busybox ls /src {}",
        outside.path.display()
    );
    let out = h.ok(&[
        "run",
        "--rm",
        "--rootfs",
        &r,
        "jpetazzo/trainingwheels",
        "/bin/busybox",
        "sh",
        "-c",
        &script,
    ]);
    assert!(
        out.contains("app.py") && out.contains("hosts") && out.contains("resolv.conf"),
        "{out}"
    );
    let leaked: Vec<_> = std::fs::read_dir(&outside.path)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .collect();
    assert!(leaked.is_empty(), "files created outside the root: {leaked:?}");
}

#[test]
fn the_supervisor_logs_what_went_wrong() {
    let h = Host::new();
    let o = h.linkrt(&["run", "--name", "broken", "alpine", "nosuchcmd"]);
    assert_eq!(o.code, 127, "{o:?}");
    let path = h.inspect("broken", "{{.SupervisorLogPath}}");
    let log = std::fs::read_to_string(&path).unwrap();
    assert!(
        log.contains("did not start: exec: \"nosuchcmd\": executable file not found in $PATH"),
        "{log}"
    );
}

#[test]
fn memory_limit_oom_kill_is_reported_as_docker_does() {
    let h = Host::new();
    let o = h.linkrt(&[
        "run",
        "--name",
        "hog",
        "--memory",
        "32m",
        "alpine",
        "python3",
        "-c",
        "b = bytearray(512 << 20)",
    ]);
    assert_eq!(o.code, 137, "{o:?}");
    assert_eq!(h.inspect("hog", "{{.State.OOMKilled}} {{.State.ExitCode}}"), "true 137");
    assert!(h.ok(&["ps", "-a"]).contains("Exited (137)"));
    // Without the limit the same program is fine, and OOMKilled stays false.
    h.ok(&[
        "run",
        "--name",
        "fine",
        "alpine",
        "python3",
        "-c",
        "b = bytearray(64 << 20)",
    ]);
    assert_eq!(h.inspect("fine", "{{.State.OOMKilled}}"), "false");
}

/// The cgroup files of a running container, read from the host.
fn cgroup_file(h: &Host, id: &str, controller: &str, file: &str) -> String {
    let layout = linkrt::oci::cgroup::Layout::detect();
    let rel = linkrt::oci::cgroup::container_path(&h.t.cfg.cgroup_parent, id);
    for d in layout.dirs(&rel) {
        if (d.to_string_lossy().contains(controller) || matches!(layout, linkrt::oci::cgroup::Layout::V2 { .. }))
            && let Ok(s) = std::fs::read_to_string(d.join(file))
        {
            return s.trim().to_string();
        }
    }
    panic!("no {file} for {id}");
}

#[test]
fn resources_users_capabilities_and_mounts() {
    let h = Host::new();
    let id = h.ok(&[
        "run",
        "-d",
        "--cpus",
        "0.5",
        "--pids-limit",
        "20",
        "-m",
        "64m",
        "alpine",
        "sleep",
        "600",
    ]);
    let v2 = matches!(
        linkrt::oci::cgroup::Layout::detect(),
        linkrt::oci::cgroup::Layout::V2 { .. }
    );
    if v2 {
        assert_eq!(cgroup_file(&h, &id, "", "cpu.max"), "50000 100000");
        assert_eq!(cgroup_file(&h, &id, "", "pids.max"), "20");
        assert_eq!(cgroup_file(&h, &id, "", "memory.max"), (64u64 << 20).to_string());
    } else {
        assert_eq!(cgroup_file(&h, &id, "cpu", "cpu.cfs_quota_us"), "50000");
        assert_eq!(cgroup_file(&h, &id, "pids", "pids.max"), "20");
        assert_eq!(
            cgroup_file(&h, &id, "memory", "memory.limit_in_bytes"),
            (64u64 << 20).to_string()
        );
    }
    // The container's cgroup namespace is private: it sees itself at the root.
    assert_ne!(
        h.ok(&["exec", &id, "sh", "-c", "grep -c ':/$' /proc/self/cgroup || true"]),
        "0"
    );
    // Users: by name from the image's passwd, by number, with a group; HOME from passwd.
    assert_eq!(h.ok(&["run", "--rm", "-u", "nobody", "alpine", "id", "-u"]), "65534");
    assert_eq!(
        h.ok(&["run", "--rm", "-u", "1234:55", "alpine", "id"]),
        "uid=1234 gid=55 groups=55"
    );
    assert_eq!(
        h.ok(&["run", "--rm", "-u", "daemon", "alpine", "sh", "-c", "echo $HOME"]),
        "/usr/sbin"
    );
    assert_eq!(h.ok(&["exec", "-u", "nobody", &id, "id", "-u"]), "65534");
    let o = h.linkrt(&["run", "--rm", "-u", "nosuchuser", "alpine", "true"]);
    assert_eq!(o.code, 125, "{o:?}");
    assert!(
        o.stderr
            .contains("unable to find user nosuchuser: no matching entries in passwd file"),
        "{o:?}"
    );
    // Capabilities: Docker's 14, none, one more, all.
    let caps = |flags: &[&str]| {
        let mut a = vec!["run", "--rm"];
        a.extend_from_slice(flags);
        a.extend_from_slice(&["alpine", "sh", "-c", "grep CapEff /proc/self/status"]);
        h.ok(&a)
    };
    assert_eq!(caps(&[]), "CapEff:\t00000000a80425fb");
    assert_eq!(caps(&["--cap-drop", "ALL"]), "CapEff:\t0000000000000000");
    assert_eq!(caps(&["--cap-add", "NET_ADMIN"]), "CapEff:\t00000000a80435fb");
    assert!(
        caps(&["--privileged"]).starts_with("CapEff:\t000001ff"),
        "{}",
        caps(&["--privileged"])
    );
    // NET_ADMIN is what lets a container change its own addresses: not by default.
    assert_ne!(
        h.linkrt(&["run", "--rm", "alpine", "ip", "addr", "add", "10.9.9.9/32", "dev", "lo"])
            .code,
        0
    );
    h.ok(&[
        "run",
        "--rm",
        "--cap-add",
        "NET_ADMIN",
        "alpine",
        "ip",
        "addr",
        "add",
        "10.9.9.9/32",
        "dev",
        "lo",
    ]);
    // Seccomp: Docker's profile by default, none when unconfined; a profile file; no-new-privileges.
    assert_eq!(
        h.ok(&["run", "--rm", "alpine", "sh", "-c", "grep ^Seccomp: /proc/self/status"]),
        "Seccomp:\t2"
    );
    assert_eq!(
        h.ok(&[
            "run",
            "--rm",
            "--security-opt",
            "seccomp=unconfined",
            "alpine",
            "sh",
            "-c",
            "grep ^Seccomp: /proc/self/status"
        ]),
        "Seccomp:\t0"
    );
    let tmp = linkrt_tests::TempDir::new("linkrt-seccomp");
    let profile = tmp.path.join("profile.json");
    std::fs::write(
        &profile,
        r#"{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[{"names":["mkdir","mkdirat"],"action":"SCMP_ACT_ERRNO"}]}"#,
    )
    .unwrap();
    let so = format!("seccomp={}", profile.display());
    let o = h.linkrt(&["run", "--rm", "--security-opt", &so, "alpine", "mkdir", "/tmp/x"]);
    assert_ne!(o.code, 0, "mkdir denied by the profile: {o:?}");
    assert!(o.stderr.contains("Operation not permitted"), "{o:?}");
    assert_eq!(
        h.ok(&[
            "run",
            "--rm",
            "--security-opt",
            "no-new-privileges",
            "alpine",
            "sh",
            "-c",
            "grep ^NoNewPrivs: /proc/self/status"
        ]),
        "NoNewPrivs:\t1"
    );
    // -v and --read-only.
    let data = linkrt_tests::TempDir::new("linkrt-vol");
    let vol = format!("{}:/data", data.path.display());
    h.ok(&["run", "--rm", "-v", &vol, "alpine", "sh", "-c", "echo hi > /data/out"]);
    assert_eq!(std::fs::read_to_string(data.path.join("out")).unwrap(), "hi\n");
    let ro = format!("{}:/data:ro", data.path.display());
    assert_ne!(
        h.linkrt(&["run", "--rm", "-v", &ro, "alpine", "touch", "/data/x"]).code,
        0
    );
    let o = h.linkrt(&["run", "--rm", "--read-only", "alpine", "touch", "/x"]);
    assert!(o.code != 0 && o.stderr.contains("Read-only file system"), "{o:?}");
    // /dev is minimal and private; /sys is read-only; /proc is masked.
    let dev = h.ok(&["run", "--rm", "alpine", "ls", "/dev"]);
    for want in [
        "null", "zero", "full", "random", "urandom", "tty", "ptmx", "pts", "shm", "mqueue",
    ] {
        assert!(dev.lines().any(|l| l == want), "/dev/{want} missing:\n{dev}");
    }
    for host_only in ["vda", "kvm", "kmsg", "mem"] {
        assert!(!dev.lines().any(|l| l == host_only), "/dev/{host_only} visible:\n{dev}");
    }
    assert_ne!(h.linkrt(&["run", "--rm", "alpine", "touch", "/sys/kernel/x"]).code, 0);
    // With -t the container's own pty is its terminal and /dev/console.
    let t = h.ok(&[
        "run",
        "--rm",
        "-t",
        "alpine",
        "sh",
        "-c",
        "tty; test -c /dev/console && echo console",
    ]);
    assert_eq!(t.replace('\r', ""), "/dev/pts/0\nconsole");
    for masked in [
        "/proc/keys",
        "/proc/timer_list",
        "/proc/interrupts",
        "/proc/kcore",
        "/proc/sched_debug",
    ] {
        if std::fs::metadata(masked).is_ok_and(|m| m.is_file()) {
            let n = h.ok(&["run", "--rm", "alpine", "sh", "-c", &format!("wc -c < {masked}")]);
            assert_eq!(n, "0", "{masked} is masked");
        }
    }
}

#[test]
fn bad_isolation_input_fails_in_dockers_words_and_leaves_nothing() {
    let h = Host::new();
    type Case<'a> = (Vec<&'a str>, Vec<(&'a str, &'a str)>, &'a str);
    let cases: Vec<Case> = vec![
        (
            vec!["--runtime", "kata"],
            vec![],
            "unknown or invalid runtime name: kata",
        ),
        (
            vec!["--runtime", "runc"],
            vec![("LINKRT_RUNTIME_RUNC", "/nonexistent/runc")],
            "exec: \"/nonexistent/runc\": executable file not found in $PATH",
        ),
        (
            vec!["--cap-add", "FOO"],
            vec![],
            "invalid CapAdd: unknown capability: \"CAP_FOO\"",
        ),
        (
            vec!["--cap-drop", "bar"],
            vec![],
            "invalid CapDrop: unknown capability: \"CAP_BAR\"",
        ),
        (
            vec!["--memory", "abc"],
            vec![],
            "invalid argument \"abc\" for \"-m, --memory\" flag: invalid size: 'abc'",
        ),
        (vec!["-m", "1k"], vec![], "Minimum memory limit allowed is 6MB"),
        (vec!["--cpus", "x"], vec![], "failed to parse x as a rational number"),
        (vec!["-v", "/tmp:/data:bogus"], vec![], "invalid mode: bogus"),
        (
            vec!["-v", "/a:/b:ro:x"],
            vec![],
            "invalid volume specification: '/a:/b:ro:x'",
        ),
        (
            vec!["-v", "/no/such/dir:/data"],
            vec![],
            "bind source path does not exist: /no/such/dir",
        ),
        (
            vec!["-v", "/tmp:/"],
            vec![],
            "invalid specification: destination can't be '/'",
        ),
        (
            vec!["--security-opt", "foo"],
            vec![],
            "invalid --security-opt 1: \"foo\"",
        ),
        (
            vec!["-w", "relative"],
            vec![],
            "the working directory 'relative' is invalid, it needs to be an absolute path",
        ),
    ];
    for (flags, env, want) in cases {
        let mut args = vec!["run", "-d"];
        args.extend_from_slice(&flags);
        args.extend_from_slice(&["alpine", "true"]);
        let o = h.linkrt_env(&env, &args);
        assert_eq!(o.code, 125, "{flags:?}: {o:?}");
        assert!(o.stderr.contains(want), "{flags:?}: want {want:?}, got {o:?}");
    }
    // Nothing was made: no container, veth, lease, bundle or cgroup.
    assert_eq!(h.ok(&["ps", "-aq"]), "");
    assert!(!h.links().contains("veth"));
    assert!(!h.leases().contains('.'));
    let containers = h.t.cfg.root.join("containers");
    assert_eq!(std::fs::read_dir(&containers).map(|d| d.count()).unwrap_or(0), 0);
    let layout = linkrt::oci::cgroup::Layout::detect();
    for d in layout.dirs(std::path::Path::new(&h.t.cfg.cgroup_parent)) {
        let n = std::fs::read_dir(&d)
            .map(|r| r.flatten().filter(|e| e.path().is_dir()).count())
            .unwrap_or(0);
        assert_eq!(n, 0, "a container cgroup left in {}", d.display());
    }
}

/// Each OCI runtime either runs containers on this host (links and all), or is refused with
/// its own explanation. Never skipped.
#[test]
fn each_runtime_runs_containers_or_says_why_not() {
    let h = Host::new();
    for rt in ["runc", "crun"] {
        let o = h.linkrt(&["run", "-d", "--runtime", rt, "--name", &format!("{rt}-db"), "redis"]);
        if o.code == 0 {
            let name = format!("{rt}-web");
            let link = format!("{rt}-db:db");
            h.ok(&[
                "run",
                "-d",
                "--runtime",
                rt,
                "--name",
                &name,
                "--link",
                &link,
                "alpine",
                "sleep",
                "600",
            ]);
            assert_eq!(h.inspect(&name, "{{.HostConfig.Runtime}}"), rt);
            assert_eq!(
                h.linkrt(&["exec", &name, "ping", "-c", "1", "-W", "2", "db"]).code,
                0,
                "{rt}: a link works"
            );
            assert!(h.ok(&["exec", &name, "env"]).contains("DB_PORT=tcp://"));
            h.ok(&["stop", "-t", "1", &name]);
            h.ok(&["rm", "-f", &name, &format!("{rt}-db")]);
        } else {
            // Refused: exit 125 with the runtime's own reason, and nothing made.
            assert_eq!(o.code, 125, "{rt}: {o:?}");
            assert!(
                o.stderr
                    .contains(&format!("OCI runtime {rt} cannot run containers on this host: ")),
                "{rt}: {o:?}"
            );
            assert_eq!(h.ok(&["ps", "-aq"]), "");
        }
    }
    // On this machine kind (cgroup v1 controllers with a cgroup2 mount), crun 1.8 refuses.
    if matches!(
        linkrt::oci::cgroup::Layout::detect(),
        linkrt::oci::cgroup::Layout::V1 { unified: Some(_), .. }
    ) {
        let o = h.linkrt(&["run", "--rm", "--runtime", "crun", "alpine", "true"]);
        assert!(o.stderr.contains("hybrid"), "{o:?}");
    }
}
