//! Host support (issue 19): `linkrt info`, `--version`, and the refusal of a host that cannot
//! run containers before anything is changed.
use std::process::Command;

use linkrt_tests::{Host, linkrt_bin, rand_suffix};

fn uname_r() -> String {
    nix::sys::utsname::uname()
        .unwrap()
        .release()
        .to_string_lossy()
        .into_owned()
}

#[test]
fn version_names_the_commit() {
    let out = Command::new(linkrt_bin()).arg("--version").output().unwrap();
    assert!(out.status.success());
    let v = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let commit = Command::new("git")
        .args(["rev-parse", "--short=12", "HEAD"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_else(|| "unknown".into());
    assert_eq!(v, format!("linkrt {} (commit {commit})", env!("CARGO_PKG_VERSION")));
}

#[test]
fn info_reports_the_kernel_and_changes_nothing_but_caches() {
    let h = Host::new();
    let release = uname_r();
    assert_eq!(h.ok(&["info", "--format", "{{.KernelVersion}}"]), release);
    // The cache is written for this kernel, and nothing of the state is created.
    let cache: serde_json::Value =
        serde_json::from_slice(&std::fs::read(h.t.cfg.run_root.join("features.json")).unwrap()).unwrap();
    assert_eq!(cache["kernel"], release.as_str());
    assert!(!h.t.cfg.root.exists(), "info created the state directory");
    assert!(!h.t.cfg.bpffs.exists(), "info created the bpffs directory");

    let features: serde_json::Value = serde_json::from_str(&h.ok(&["info", "--format", "{{json .Features}}"])).unwrap();
    for k in [
        "TCX",
        "clsact",
        "BTF",
        "RingBuffer",
        "LRUHash",
        "CgroupSockAddr",
        "RedirectPeer",
        "RedirectNeigh",
        "BatchMapOps",
    ] {
        assert!(features[k].is_boolean(), "{k} missing in {features}");
    }
    // TCX arrived in 6.6; the probe must agree with the kernel version.
    let (maj, min) = linkrt::features::parse_release(&release).unwrap();
    let tcx = (maj, min) >= (6, 6);
    assert_eq!(features["TCX"], tcx, "{features}");
    assert_eq!(
        h.ok(&["info", "--format", "{{.AttachMode}}"]),
        if tcx { "tcx" } else { "netlink" }
    );
    assert_eq!(
        features["BTF"],
        std::path::Path::new("/sys/kernel/btf/vmlinux").exists()
    );
    assert_eq!(features["RingBuffer"], true);

    let text = h.ok(&["info"]);
    for want in [
        "Kernel Features:",
        "Attach Mode:",
        "Bridge: linkrt0",
        "Subnet: 172.17.0.0/16",
        "ICC: off (links only) (default)",
        "Default Runtime: runc",
        "Cgroups: ",
        &format!("Feature Cache: {}", h.t.cfg.run_root.join("features.json").display()),
    ] {
        assert!(text.contains(want), "{want:?} missing in:\n{text}");
    }
    let bad = h.linkrt(&["info", "--format", "{{.NoSuchField}}"]);
    assert_ne!(bad.code, 0);
    assert!(bad.stderr.contains("NoSuchField"), "{bad:?}");
}

#[test]
fn info_counts_containers_and_published_ports() {
    let h = Host::new();
    let name = format!("web{}", rand_suffix(4));
    h.ok(&[
        "run",
        "-d",
        "--name",
        &name,
        "-p",
        "18080-18082:8080-8082",
        "alpine",
        "sleep",
        "300",
    ]);
    h.ok(&["create", "alpine", "true"]);
    let counts = |h: &Host| {
        h.ok(&[
            "info",
            "--format",
            "{{.Containers}} {{.ContainersRunning}} {{.ContainersStopped}} {{.PublishedPorts}}",
        ])
    };
    // A range of three ports is three mappings (a host range for one port picks one).
    assert_eq!(counts(&h), "2 1 1 3");
    h.ok(&["stop", "-t", "1", &name]);
    assert_eq!(counts(&h), "2 0 2 0");
}

#[test]
fn a_host_without_cgroup2_is_refused_before_any_change() {
    let h = Host::new();
    let links_before = h.links();
    let missing = std::env::temp_dir().join(format!("linkrt-no-cgroup-{}", rand_suffix(6)));
    let out = h.linkrt_env(
        &[("LINKRT_CGROUP", &missing.to_string_lossy())],
        &["run", "-d", "-p", "8080:80", "alpine", "sleep", "60"],
    );
    assert_eq!(out.code, 125, "{out:?}");
    let lines: Vec<&str> = out.stderr.lines().collect();
    assert_eq!(lines.len(), 1, "one error line: {out:?}");
    assert!(
        lines[0].starts_with("linkrt: no cgroup v2 for the socket hooks:")
            && lines[0].contains(&format!("{} does not exist", missing.display())),
        "{out:?}"
    );
    // Nothing was made: no state, no pinned maps, no interface, no container.
    assert!(!h.t.cfg.root.exists(), "state directory created");
    assert!(!h.t.cfg.bpffs.exists(), "bpffs directory created");
    assert_eq!(h.links(), links_before);
    assert_eq!(h.ok(&["ps", "-aq"]), "");

    // A cgroup v1 directory is not a cgroup2 either.
    let v1 = linkrt::oci::cgroup::Layout::detect();
    if let linkrt::oci::cgroup::Layout::V1 { controllers, .. } = v1
        && let Some((_, dir)) = controllers.first()
    {
        let out = h.linkrt_env(
            &[("LINKRT_CGROUP", &dir.to_string_lossy())],
            &["create", "alpine", "true"],
        );
        assert_eq!(out.code, 125, "{out:?}");
        assert!(out.stderr.contains("is not a cgroup2 directory"), "{out:?}");
    }
}
