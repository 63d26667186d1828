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

    // Re-attaching (a new CLI call) updates the pinned links in place (their IDs stay). The
    // verified programs are reused from their pins while the object is the same: the same
    // program IDs, nothing verified again.
    let link_ids = |cfg: &linkrt::Config, v: &str| -> Vec<(u32, u32)> {
        use aya::programs::links::{FdLink, PinnedLink};
        ["in", "out"]
            .iter()
            .map(|hook| {
                let l = PinnedLink::from_pin(cfg.links_dir().join(format!("{v}_{hook}"))).expect("pinned link");
                let info = FdLink::from(l).info().expect("link info");
                (info.id(), info.program_id())
            })
            .collect()
    };
    let reattach = |cfg: &linkrt::Config| -> bool {
        let cfg = cfg.clone();
        let v = veth.clone();
        host.run(move || {
            let mut dp = Datapath::load(&cfg).unwrap();
            dp.attach(&v, bpf::Role::Container).unwrap();
            dp.verified_now()
        })
    };
    let first = link_ids(&t.cfg, &veth);
    assert!(!reattach(&t.cfg), "the pinned programs were reused");
    assert_eq!(
        link_ids(&t.cfg, &veth),
        first,
        "the same links, running the same programs"
    );
    // Without the program pins (what another object, an upgrade, amounts to) the programs are
    // loaded anew and swapped into the same links.
    std::fs::remove_dir_all(t.cfg.programs_dir()).expect("unpin the programs");
    assert!(reattach(&t.cfg), "the programs were loaded and verified again");
    let after = link_ids(&t.cfg, &veth);
    for ((l0, p0), (l1, p1)) in first.iter().zip(&after) {
        assert_eq!(l0, l1, "the same link: {first:?} -> {after:?}");
        assert_ne!(p0, p1, "a new program in it: {first:?} -> {after:?}");
    }
    let sets: Vec<_> = std::fs::read_dir(t.cfg.programs_dir()).unwrap().flatten().collect();
    assert_eq!(sets.len(), 1, "one pinned program set: {sets:?}");
    ctr.exec(&["ping", "-c", "1", "-W", "2", "10.99.0.1"]);
    bpf::detach(&t.cfg, &veth).unwrap();
    assert!(bpf::attached_interfaces(&t.cfg).is_empty());
    let _ = sh(&["true"]);
}

/// Issue 13: a 10,000-port range is one BPF_MAP_UPDATE_BATCH, and its removal one
/// BPF_MAP_DELETE_BATCH (plus one more per key that is not there).
#[test]
fn a_published_range_is_written_and_removed_in_one_batch() {
    use linkrt::ports::{Mapping, PortKey, Proto};
    use linkrt_common::maps;
    require_root();
    let t = TestConfig::new();
    let host = NetNs::new("lrt-host");
    let cfg = t.cfg.clone();
    let range = |lo: u16, hi: u16| -> Vec<Mapping> {
        (lo..=hi)
            .map(|p| Mapping {
                container: PortKey {
                    port: p,
                    proto: Proto::Tcp,
                },
                host_ip: std::net::Ipv4Addr::UNSPECIFIED.into(),
                host_port: p,
            })
            .collect()
    };
    let (published, len, removed, len_after) = host.run(move || {
        Datapath::load(&cfg).expect("load datapath");
        let m = range(20000, 29999);
        let published = bpf::publish(&cfg, &m, "172.17.0.5").expect("publish");
        let len = bpf::map_len(&cfg, maps::PORTMAP).unwrap();
        // Two keys gone already (removed by hand): the batch goes on past them.
        bpf::unpublish(&cfg, &range(25000, 25000), None).unwrap();
        bpf::unpublish(&cfg, &range(29999, 29999), None).unwrap();
        let removed = bpf::unpublish(&cfg, &m, None);
        (published, len, removed, bpf::map_len(&cfg, maps::PORTMAP).unwrap())
    });
    assert_eq!(published, bpf::Batched::Done { calls: 1 });
    assert_eq!(len, 10_000);
    assert_eq!(removed.expect("unpublish"), bpf::Batched::Done { calls: 2 });
    assert_eq!(len_after, 0);
}
