//! The container runtime end to end: the real binary in a private host namespace.
use linkrt_tests::{Host, eventually};

#[test]
fn foreground_detached_exit_codes_and_lifecycle() {
    let h = Host::new();
    // Foreground: output attached, exit code is the container's.
    let o = h.linkrt(&["run", "--rm", "alpine", "sh", "-c", "echo out; echo err >&2; exit 3"]);
    assert_eq!((o.code, o.stdout.as_str(), o.stderr.as_str()), (3, "out\n", "err\n"));
    assert_eq!(h.ok(&["ps", "-aq"]), "", "--rm removes the container");

    // Detached: prints the 64-hex ID; hostname is the short ID; named as asked.
    let id = h.ok(&["run", "-d", "--name", "sleeper", "alpine", "sleep", "300"]);
    assert_eq!(id.len(), 64);
    assert!(id.chars().all(|c| c.is_ascii_hexdigit()));
    assert_eq!(h.ok(&["exec", "sleeper", "hostname"]), id[..12]);
    assert_eq!(h.ok(&["exec", "sleeper", "cat", "/etc/hostname"]), id[..12]);
    // PID namespace: the command is PID 1.
    assert_eq!(
        h.ok(&["exec", "sleeper", "cat", "/proc/1/cmdline"])
            .replace('\0', " ")
            .trim(),
        "sleep 300"
    );
    let ps = h.ok(&["ps"]);
    // Docker's columns in Docker's order (their widths follow the content: unit-tested).
    let header: Vec<&str> = ps
        .lines()
        .next()
        .unwrap()
        .split("   ")
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .collect();
    assert_eq!(
        header,
        [
            "CONTAINER ID",
            "IMAGE",
            "COMMAND",
            "CREATED",
            "STATUS",
            "PORTS",
            "NAMES"
        ],
        "{ps}"
    );
    assert!(
        ps.contains(&id[..12]) && ps.contains("\"sleep 300\"") && ps.contains("Up ") && ps.ends_with("sleeper"),
        "{ps}"
    );
    assert!(linkrt_tests::netns_exists(&id));

    // rm without -f refuses a running container (Docker's text).
    let o = h.linkrt(&["rm", "sleeper"]);
    assert_ne!(o.code, 0);
    assert!(o.stderr.contains("cannot remove container \"/sleeper\": container is running: stop the container before removing or force remove"), "{o:?}");

    // stop: sh as PID 1 ignores SIGTERM, so -t 1 ends with SIGKILL (137) like Docker.
    h.ok(&["stop", "-t", "1", "sleeper"]);
    let st = h.inspect("sleeper", "{{.State.Status}} {{.State.ExitCode}} {{.State.Running}}");
    assert_eq!(st, "exited 137 false");
    assert!(h.ok(&["ps", "-a"]).contains("Exited (137)"));
    assert!(!h.links().contains("veth"), "stop removes the veth: {}", h.links());
    assert!(!h.leases().contains(&id), "stop releases the IP");

    h.ok(&["start", "sleeper"]);
    assert_eq!(h.inspect("sleeper", "{{.State.Running}}"), "true");
    h.ok(&["restart", "-t", "1", "sleeper"]);
    // Docker's restart resets the restart manager: RestartCount counts policy restarts only.
    assert_eq!(h.inspect("sleeper", "{{.State.Running}} {{.RestartCount}}"), "true 0");
    h.ok(&["rm", "-f", "sleeper"]);
    assert_eq!(h.ok(&["ps", "-aq"]), "");
    assert!(!h.links().contains("veth"));
    assert!(!linkrt_tests::netns_exists(&id));
}

#[test]
fn bad_input_leaves_nothing_behind() {
    let h = Host::new();
    let o = h.linkrt(&["run", "nosuchimage"]);
    assert_eq!(o.code, 125);
    assert!(
        o.stderr.contains("Unable to find image 'nosuchimage:latest' locally"),
        "{o:?}"
    );
    let o = h.linkrt(&["run", "--name", "bad name!", "alpine", "true"]);
    assert_eq!(o.code, 125);
    assert!(
        o.stderr
            .contains("Invalid container name (bad name!), only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed"),
        "{o:?}"
    );
    let o = h.linkrt(&["run", "--env-file", "/nonexistent.env", "alpine", "true"]);
    assert_eq!(o.code, 125);
    assert!(
        o.stderr.contains("open /nonexistent.env: no such file or directory"),
        "{o:?}"
    );
    let o = h.linkrt(&["run", "-p", "abc", "alpine", "true"]);
    assert_eq!((o.code, o.stderr.trim()), (125, "linkrt: Invalid containerPort: abc"));
    assert_eq!(h.ok(&["ps", "-aq"]), "");

    // A missing command: 127, Docker's message, the container stays "Created" with no network.
    let o = h.linkrt(&["run", "--name", "nocmd", "alpine", "nosuchcmd"]);
    assert_eq!(o.code, 127, "{o:?}");
    assert!(
        o.stderr
            .contains("exec: \"nosuchcmd\": executable file not found in $PATH"),
        "{o:?}"
    );
    assert_eq!(
        h.inspect("nocmd", "{{.State.Status}} {{.State.ExitCode}}"),
        "created 127"
    );
    assert!(!h.links().contains("veth"));
    assert!(!h.leases().contains('.'), "no lease left: {}", h.leases());
    let o = h.linkrt(&["run", "--rm", "alpine", "/nonexistent"]);
    assert_eq!(o.code, 127);
    h.ok(&["rm", "nocmd"]);
    assert_eq!(h.ok(&["ps", "-aq"]), "");
}

#[test]
fn names_conflicts_and_ipam_reuse() {
    let h = Host::new();
    let id = h.ok(&["run", "-d", "--name", "db", "alpine", "sleep", "300"]);
    let o = h.linkrt(&["run", "-d", "--name", "db", "alpine", "sleep", "300"]);
    assert_eq!(o.code, 125);
    assert_eq!(
        o.stderr.trim(),
        format!(
            "linkrt: Conflict. The container name \"/db\" is already in use by container \"{id}\". You have to remove (or rename) that container to be able to reuse that name."
        )
    );
    let anon = h.ok(&["run", "-d", "alpine", "sleep", "300"]);
    let name = h.inspect(&anon, "{{.Name}}");
    let (adj, sur) = name.trim_start_matches('/').split_once('_').expect("adjective_surname");
    assert!(!adj.is_empty() && !sur.is_empty(), "{name}");
    assert_eq!(h.inspect("db", "{{.NetworkSettings.IPAddress}}"), "172.17.0.2");
    assert_eq!(h.inspect(&anon, "{{.NetworkSettings.IPAddress}}"), "172.17.0.3");
    h.ok(&["rm", "-f", "db"]);
    let again = h.ok(&["run", "-d", "alpine", "sleep", "300"]);
    assert_eq!(
        h.inspect(&again, "{{.NetworkSettings.IPAddress}}"),
        "172.17.0.2",
        "the freed address is reused"
    );
    // Unlinked containers do not reach each other (secure by default, Docker's --icc=false).
    assert_ne!(
        h.linkrt(&["exec", &again, "ping", "-c", "1", "-W", "1", "172.17.0.3"])
            .code,
        0
    );
}

#[test]
fn pty_env_and_filesystem_isolation() {
    let h = Host::new();
    let o = h.linkrt(&["run", "--rm", "-t", "alpine", "tty"]);
    assert_eq!(o.code, 0, "{o:?}");
    assert!(o.stdout.starts_with("/dev/pts/"), "{o:?}");
    let env_file = h.t.cfg.root.with_file_name("test.env");
    std::fs::write(&env_file, "# comment\n\nFROM_FILE=1\nBOTH=file\n").unwrap();
    let env = h.ok(&[
        "run",
        "--rm",
        "-e",
        "BOTH=flag",
        "--env",
        "X=y",
        "--env-file",
        env_file.to_str().unwrap(),
        "alpine",
        "env",
    ]);
    let lines: Vec<&str> = env.lines().collect();
    assert_eq!(
        lines[0],
        "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
    );
    assert!(lines[1].starts_with("HOSTNAME="));
    assert_eq!(&lines[2..], ["FROM_FILE=1", "BOTH=flag", "X=y", "HOME=/root"]);
    // Writes stay in the container: the host file is untouched.
    let marker = format!("/etc/linkrt-test-{}", linkrt_tests::rand_suffix(6));
    h.ok(&[
        "run",
        "--rm",
        "alpine",
        "sh",
        "-c",
        &format!("echo x > {marker} && cat {marker}"),
    ]);
    assert!(!std::path::Path::new(&marker).exists());
    // Logs of a detached container.
    let id = h.ok(&["run", "-d", "alpine", "sh", "-c", "echo hello; echo oops >&2"]);
    eventually(10, || (h.inspect(&id, "{{.State.Status}}") == "exited").then_some(()));
    let o = h.linkrt(&["logs", &id]);
    assert_eq!((o.stdout.as_str(), o.stderr.as_str()), ("hello\n", "oops\n"));
}

#[test]
fn run_ti_gives_an_interactive_shell_on_a_real_terminal() {
    let h = Host::new();
    h.ok(&["run", "-d", "--name", "datastore", "redis"]);
    // A user at a terminal: `linkrt run -ti --link datastore:redis alpine sh`, driven through a pty.
    let script = format!(
        r#"
import os, pty, time
pid, fd = pty.fork()
if pid == 0:
    os.execvp("nsenter", ["nsenter", "--net={ns}", "{bin}", "run", "-ti", "--rm", "--link", "datastore:redis", "alpine", "sh"])
time.sleep(0.5)
os.write(fd, b"echo hello-$((6*7)); tty; ping -c 1 -W 2 redis >/dev/null && echo ping-ok; exit 3\n")
out = b""
while True:
    try:
        d = os.read(fd, 4096)
    except OSError:
        break
    if not d:
        break
    out += d
_, st = os.waitpid(pid, 0)
print(out.decode(errors="replace"))
print("EXIT", os.waitstatus_to_exitcode(st))
"#,
        ns = h.ns.path().display(),
        bin = linkrt_tests::linkrt_bin().display()
    );
    let mut c = std::process::Command::new("python3");
    c.args(["-c", &script])
        .env("LINKRT_ROOT", &h.t.cfg.root)
        .env("LINKRT_RUN_ROOT", &h.t.cfg.run_root)
        .env("LINKRT_BPFFS", &h.t.cfg.bpffs)
        .env("LINKRT_CGROUP", h.t.cfg.cgroup.as_ref().unwrap());
    let o = linkrt_tests::run_with_timeout(&mut c, std::time::Duration::from_secs(60));
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(out.contains("hello-42"), "{out}");
    assert!(out.contains("/dev/pts/"), "{out}");
    assert!(out.contains("ping-ok"), "{out}");
    assert!(out.trim_end().ends_with("EXIT 3"), "{out}");
    assert_eq!(
        h.ok(&["ps", "-aq"]).lines().count(),
        1,
        "--rm removed the shell's container"
    );
}
