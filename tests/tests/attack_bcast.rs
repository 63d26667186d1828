//! Attack (issue 11, bypass 5): broadcast and multicast from a container to other containers'
//! unexposed UDP ports. With ICC on (Docker's default) they arrive; with ICC off they do not.
use linkrt_tests::{Host, udp_logger_script, udp_send_script};

#[test]
fn broadcast_and_multicast_reach_no_container_with_icc_off() {
    let h = Host::new();
    h.ok(&[
        "run",
        "-d",
        "--name",
        "victim",
        "alpine",
        "python3",
        "-c",
        &udp_logger_script(7002),
    ]);
    h.ok(&["run", "-d", "--name", "evil", "alpine", "sleep", "600"]);
    let v = h.ip_of("victim");
    let targets = [
        ("255.255.255.255", "limited"),
        ("172.17.255.255", "subnet"),
        ("224.0.0.1", "mcast"),
    ];
    let send_all = |tag: &str| {
        for (dst, what) in targets {
            let o = h.py("evil", &udp_send_script(dst, 7002, &format!("{tag}-{what}")));
            assert_eq!(o.code, 0, "{o:?}");
        }
    };
    // ICC on: all three reach the unexposed port (the probes work).
    h.ok(&["config", "--icc", "true"]);
    send_all("on");
    for (_, what) in targets {
        assert!(h.logged("victim", &format!("on-{what}"), 10), "{what} with ICC on");
    }
    // ICC off: none does. The fence: the host's own datagram, sent after them, arrives.
    h.ok(&["config", "--icc", "false"]);
    let before = h.counter("drop_bcast");
    send_all("off");
    std::thread::sleep(std::time::Duration::from_millis(300));
    assert!(
        h.sh(&["python3", "-c", &udp_send_script(&v, 7002, "fence")])
            .status
            .success()
    );
    assert!(h.logged("victim", "fence", 10));
    let logs = h.ok(&["logs", "victim"]);
    assert!(!logs.contains("off-"), "{logs}");
    assert!(h.counter("drop_bcast") >= before + 3);
}
