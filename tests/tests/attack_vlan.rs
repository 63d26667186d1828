//! Attack (issue 11, bypass 1): 802.1Q / QinQ frames from a container, with its own and with
//! forged sources, and ARP poisoning through tags. Probes are raw frames (CAP_NET_RAW only).
use std::net::Ipv4Addr;

use linkrt_tests::{Host, container_mac, pkt, raw_send_script, udp_logger_script};

/// A UDP datagram `msg` from `src` (IP and MAC) to the container `dst_ip`:7001.
fn probe(src_ip: &str, src_mac: [u8; 6], dst_ip: &str, msg: &str) -> Vec<u8> {
    let (s, d): (Ipv4Addr, Ipv4Addr) = (src_ip.parse().unwrap(), dst_ip.parse().unwrap());
    pkt::with_macs(
        pkt::udp(s, 40000, d, 7001, msg.as_bytes()),
        src_mac,
        container_mac(dst_ip),
    )
}

fn qinq(f: &[u8]) -> Vec<u8> {
    pkt::tagged(&pkt::tagged(f, 0x8100, 0), 0x8100, 0)
}

#[test]
fn vlan_tagged_frames_from_containers_are_dropped() {
    let h = Host::new();
    // The victim listens on 7001/udp, exposed so that its linked peer may reach it.
    h.ok(&[
        "run",
        "-d",
        "--name",
        "victim",
        "--expose",
        "7001/udp",
        "alpine",
        "python3",
        "-c",
        &udp_logger_script(7001),
    ]);
    h.ok(&[
        "run", "-d", "--name", "peer", "--link", "victim", "alpine", "sleep", "600",
    ]);
    h.ok(&["run", "-d", "--name", "evil", "alpine", "sleep", "600"]);
    let (v, p, e) = (h.ip_of("victim"), h.ip_of("peer"), h.ip_of("evil"));
    let (pm, em) = (container_mac(&p), container_mac(&e));
    let send = |from: &str, frames: Vec<Vec<u8>>| {
        let o = h.py(from, &raw_send_script("eth0", &frames));
        assert_eq!(o.code, 0, "{o:?}");
    };

    // The probes work: the linked peer's crafted frame arrives, and the victim's kernel takes a
    // QinQ frame with VLAN 0 when it comes from the host (which linkrt does not filter).
    send("peer", vec![probe(&p, pm, &v, "plain-linked")]);
    assert!(
        h.logged("victim", "plain-linked", 10),
        "an untagged crafted frame from the linked peer"
    );
    let gw = h.bridge_mac();
    let host_qinq = qinq(&probe("172.17.0.1", gw, &v, "qinq-from-host"));
    let o = h.sh(&["python3", "-c", &raw_send_script("linkrt0", &[host_qinq])]);
    assert!(o.status.success(), "{o:?}");
    assert!(
        h.logged("victim", "qinq-from-host", 10),
        "the victim's kernel strips both tags"
    );

    let before = h.counter("drop_vlan");
    let mon = h.spawn(&["monitor", "--timeout", "60"]);
    std::thread::sleep(std::time::Duration::from_millis(300));
    // Tags from containers: own source, forged source (the linked peer's), single tag,
    // 802.1ad outer tag; from the linked peer and from the unlinked container.
    send("evil", vec![qinq(&probe(&e, em, &v, "qinq-evil"))]);
    send("evil", vec![qinq(&probe(&p, em, &v, "qinq-forged"))]);
    send("evil", vec![pkt::tagged(&probe(&e, em, &v, "single-evil"), 0x8100, 0)]);
    send(
        "evil",
        vec![pkt::tagged(
            &pkt::tagged(&probe(&e, em, &v, "ad-evil"), 0x8100, 0),
            0x88a8,
            0,
        )],
    );
    send("peer", vec![qinq(&probe(&p, pm, &v, "qinq-peer"))]);
    // A fence: an allowed frame sent after them arrives, so theirs had their chance.
    send("peer", vec![probe(&p, pm, &v, "fence")]);
    assert!(h.logged("victim", "fence", 10));
    let logs = h.ok(&["logs", "victim"]);
    for m in ["qinq-evil", "qinq-forged", "single-evil", "ad-evil", "qinq-peer"] {
        assert!(!logs.contains(m), "{m} got through:\n{logs}");
    }
    assert!(h.counter("drop_vlan") >= before + 5);
    // Each drop is a `linkrt monitor` line with its reason.
    let mut mon = mon;
    mon.kill().expect("kill monitor");
    let out = mon.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.lines()
            .filter(|l| l.starts_with("drop  (drop_vlan) ethertype-0x8100 if "))
            .count()
            >= 4,
        "{text}"
    );
    // Untagged, the unlinked container is stopped by the link policy.
    send("evil", vec![probe(&e, em, &v, "plain-evil")]);
    send("peer", vec![probe(&p, pm, &v, "fence2")]);
    assert!(h.logged("victim", "fence2", 10));
    assert!(!h.ok(&["logs", "victim"]).contains("plain-evil"));
}

/// The victim's ARP table entry for `ip`, from /proc/net/arp (no capability needed).
fn arp_entry(h: &Host, name: &str, ip: &str) -> Option<String> {
    let t = h.ok(&["exec", name, "cat", "/proc/net/arp"]);
    t.lines()
        .find(|l| l.split_whitespace().next() == Some(ip))
        .and_then(|l| l.split_whitespace().nth(3).map(str::to_string))
}

#[test]
fn arp_poisoning_through_tags_and_without_is_dropped() {
    let h = Host::new();
    h.ok(&["run", "-d", "--name", "victim", "alpine", "sleep", "600"]);
    h.ok(&["run", "-d", "--name", "peer", "alpine", "sleep", "600"]);
    h.ok(&["run", "-d", "--name", "evil", "alpine", "sleep", "600"]);
    let (v, p, e) = (h.ip_of("victim"), h.ip_of("peer"), h.ip_of("evil"));
    let em = container_mac(&e);
    let evil_mac = em.iter().map(|b| format!("{b:02x}")).collect::<Vec<_>>().join(":");
    // An ARP request to the victim claiming the peer's address is at evil's MAC: the victim
    // learns the sender's binding from it.
    let poison = |tags: usize| {
        let mut f = pkt::arp(1, em, p.parse().unwrap(), v.parse().unwrap());
        f[..6].copy_from_slice(&container_mac(&v));
        for _ in 0..tags {
            f = pkt::tagged(&f, 0x8100, 0);
        }
        f
    };
    let before = (h.counter("drop_vlan"), h.counter("drop_spoof"));
    for tags in [2, 1, 0] {
        let o = h.py("evil", &raw_send_script("eth0", &[poison(tags)]));
        assert_eq!(o.code, 0, "{o:?}");
    }
    std::thread::sleep(std::time::Duration::from_millis(500));
    assert_ne!(
        arp_entry(&h, "victim", &p).as_deref(),
        Some(evil_mac.as_str()),
        "poisoned from a container"
    );
    assert!(h.counter("drop_vlan") >= before.0 + 2 && h.counter("drop_spoof") > before.1);
    // The probe works: the same QinQ frame from the host poisons the victim's table.
    let o = h.sh(&["python3", "-c", &raw_send_script("linkrt0", &[poison(2)])]);
    assert!(o.status.success(), "{o:?}");
    let got = linkrt_tests::eventually(10, || arp_entry(&h, "victim", &p).filter(|m| *m == evil_mac));
    assert_eq!(got, evil_mac);
}
