//! The datapath attached to a real veth in test-created namespaces.
use linkrt::bpf::{self, Datapath};
use linkrt_tests::{NetNs, TestConfig, rand_suffix, require_root, sh};

#[test]
fn programs_attached_to_a_veth_see_real_traffic() {
    require_root();
    let t = TestConfig::new();
    let host = NetNs::new("lrt-host");
    let ctr = NetNs::new("lrt-ctr");
    let veth = format!("veth{}", rand_suffix(6));
    host.exec(&[
        "ip", "link", "add", &veth, "type", "veth", "peer", "name", "eth0", "netns", &ctr.name,
    ]);
    host.exec(&["ip", "addr", "add", "10.99.0.1/24", "dev", &veth]);
    host.exec(&["ip", "link", "set", &veth, "up"]);
    ctr.exec(&["ip", "addr", "add", "10.99.0.2/24", "dev", "eth0"]);
    ctr.exec(&["ip", "link", "set", "eth0", "up"]);

    let cfg = t.cfg.clone();
    let v = veth.clone();
    host.run(move || {
        let mut dp = Datapath::load(&cfg).expect("load datapath");
        dp.attach(&v, bpf::Role::Container).expect("attach");
    });
    // The Datapath was dropped: the pinned links must keep the programs attached.
    assert_eq!(bpf::attached_interfaces(&t.cfg), vec![veth.clone()]);
    ctr.exec(&["ping", "-c", "3", "-i", "0.2", "-W", "2", "10.99.0.1"]);

    let stats: std::collections::HashMap<_, _> = bpf::stats(&t.cfg).unwrap().into_iter().collect();
    assert!(stats["from_container"] >= 3, "{stats:?}");
    assert!(stats["to_container"] >= 3, "{stats:?}");
    // What a container receives from the host is counted, not parsed (issue 11).
    assert!(stats["ipv4"] >= 3, "{stats:?}");

    // Re-attaching (a new CLI call) updates the pinned links in place.
    let cfg = t.cfg.clone();
    let v = veth.clone();
    host.run(move || Datapath::load(&cfg).unwrap().attach(&v, bpf::Role::Container).unwrap());
    bpf::detach(&t.cfg, &veth).unwrap();
    assert!(bpf::attached_interfaces(&t.cfg).is_empty());
    let _ = sh(&["true"]);
}
