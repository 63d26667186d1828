//! Issue 11, bypass 6: the datapath lives in bpffs pins. Unmount the instance's bpffs (or lose
//! a pin) while containers run: the links die, isolation and published ports vanish, and
//! `linkrt status` says `degraded` with what is missing. The next command, whatever it is,
//! puts it all back before its own work.
use linkrt_tests::{Client, HOST_IP, Host, Remount, eventually, tcp_connect_script};

fn connects(h: &Host, from: &str, ip: &str, port: u16) -> bool {
    h.py(from, &tcp_connect_script(ip, port)).code == 0
}

/// The same probe without a linkrt command (every command, `inspect` included, heals the
/// datapath first): the host's python3 in the network namespace of the container's PID 1.
fn connects_unhealed(pid: &str, ip: &str, port: u16) -> bool {
    std::process::Command::new("nsenter")
        .arg(format!("--net=/proc/{pid}/ns/net"))
        .args(["python3", "-c", &tcp_connect_script(ip, port)])
        .output()
        .expect("nsenter")
        .status
        .success()
}

fn status_line(h: &Host) -> String {
    let st = h.ok(&["status"]);
    st.lines()
        .find(|l| l.starts_with("datapath:"))
        .unwrap_or_default()
        .to_string()
}

#[test]
fn any_command_heals_a_datapath_whose_pins_were_lost() {
    let mut remount = Remount(std::path::PathBuf::new());
    let h = Host::new();
    remount.0 = h.t.cfg.bpffs.clone();
    let cl = Client::new(&h);
    h.ok(&[
        "run",
        "-d",
        "--name",
        "src",
        "--expose",
        "7000",
        "alpine",
        "sh",
        "-c",
        "python3 -m http.server 7000 & exec python3 -m http.server 7001",
    ]);
    h.ok(&["run", "-d", "--name", "app", "--link", "src", "alpine", "sleep", "600"]);
    h.ok(&["run", "-d", "--name", "web", "-p", "8080:5000", "training/webapp"]);
    let src = h.ip_of("src");
    let url = format!("http://{HOST_IP}:8080/");
    assert_eq!(eventually(10, || cl.curl(&url)), "Hello world!");
    assert!(
        eventually(10, || connects(&h, "app", &src, 7000).then_some(true)),
        "linked"
    );
    assert!(!connects(&h, "app", &src, 7001), "the policy holds");
    let app_pid = h.inspect("app", "{{.State.Pid}}");
    assert!(
        !connects_unhealed(&app_pid, &src, 7001),
        "(the probe without linkrt, too)"
    );
    assert_eq!(status_line(&h), "datapath:   ok");

    // The bpffs goes: every TCX link with it. (Netlink filters, on kernels without TCX, live
    // on with maps nobody can reach: `netlink_mode.rs` tests their healing.)
    let netlink = h.ok(&["status"]).contains("attach:     netlink");
    nix::mount::umount2(&h.bpffs_mount(), nix::mount::MntFlags::MNT_DETACH).expect("umount bpffs");
    let st = status_line(&h);
    assert!(st.starts_with("datapath:   degraded (missing: bpffs "), "{st}");
    if !netlink {
        assert!(
            eventually(10, || connects_unhealed(&app_pid, &src, 7001).then_some(true)),
            "isolation is gone"
        );
        assert_eq!(cl.curl(&url), None, "and the published port");
    }
    assert!(status_line(&h).contains("degraded"), "status itself changes nothing");

    // Any command: `ps`.
    h.ok(&["ps"]);
    assert_eq!(status_line(&h), "datapath:   ok");
    assert!(!connects(&h, "app", &src, 7001), "the policy holds again");
    assert!(connects(&h, "app", &src, 7000), "links work again");
    assert_eq!(
        eventually(10, || cl.curl(&url)),
        "Hello world!",
        "the published port answers again"
    );

    if netlink {
        return;
    }
    // One lost pin: that veth's link is gone, and comes back the same way.
    let pins = h.t.cfg.links_dir();
    let lost = std::fs::read_dir(&pins)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .find(|n| n.starts_with("veth") && n.ends_with("_in"))
        .expect("a veth link pin");
    std::fs::remove_file(pins.join(&lost)).unwrap();
    let st = status_line(&h);
    assert!(
        st.contains(&format!("link {}/in", lost.trim_end_matches("_in"))),
        "{st}"
    );
    h.ok(&["ps"]);
    assert_eq!(status_line(&h), "datapath:   ok");
    assert!(!connects_unhealed(&app_pid, &src, 7001));
}
