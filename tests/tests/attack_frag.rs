//! Attack (issue 11, bypass 4): fragments. A SYN whose first fragment is too short to hold the
//! TCP flags, orphan later fragments; and fragmented UDP to a published port, which must
//! arrive whole and translated.
use linkrt_tests::{
    Client, HOST_IP, Host, container_mac, eventually, pkt, raw_send_script, raw_syn_probe_script, udp_big_echo_script,
};

/// A SYN from `src` to `dst`:`port` split after 8 bytes of TCP header (RFC 1858's tiny fragment).
fn tiny_syn(src: &str, src_mac: [u8; 6], dst: &str, port: u16, id: u16) -> Vec<Vec<u8>> {
    let syn = pkt::tcp(src.parse().unwrap(), 41000 + id, dst.parse().unwrap(), port, 0x02, b"");
    pkt::fragments(&pkt::with_macs(syn, src_mac, container_mac(dst)), id, 8, 16)
}

#[test]
fn tiny_first_fragments_and_orphans_are_dropped() {
    let h = Host::new();
    h.ok(&[
        "run",
        "-d",
        "--name",
        "victim",
        "--expose",
        "7000",
        "alpine",
        "sh",
        "-c",
        "python3 -m http.server 7000 & exec python3 -m http.server 7001",
    ]);
    h.ok(&[
        "run", "-d", "--name", "peer", "--link", "victim", "alpine", "sleep", "600",
    ]);
    h.ok(&["run", "-d", "--name", "evil", "alpine", "sleep", "600"]);
    let (v, p, e) = (h.ip_of("victim"), h.ip_of("peer"), h.ip_of("evil"));
    eventually(10, || {
        h.sh(&["curl", "-s", "-m", "1", &format!("http://{v}:7001/")])
            .status
            .success()
            .then_some(())
    });
    // The probes work: a crafted SYN from the linked peer to the exposed port is answered...
    let whole = pkt::with_macs(
        pkt::tcp(p.parse().unwrap(), 42000, v.parse().unwrap(), 7000, 0x02, b""),
        container_mac(&p),
        container_mac(&v),
    );
    let o = h.py("peer", &raw_syn_probe_script("eth0", &[whole], &v, 7000));
    assert_eq!(o.stdout.trim(), "synack", "{o:?}");
    // ...and the victim's kernel reassembles a tiny-fragment SYN to its unexposed port (sent
    // from the host, which linkrt does not filter).
    let gw = h.bridge_mac();
    let host_frags = tiny_syn("172.17.0.1", gw, &v, 7001, 1);
    let o = h.sh(&["python3", "-c", &raw_syn_probe_script("linkrt0", &host_frags, &v, 7001)]);
    assert_eq!(String::from_utf8_lossy(&o.stdout).trim(), "synack", "{o:?}");

    let before = (h.counter("drop_frag_tiny"), h.counter("drop_frag_orphan"));
    // From a container it is dropped, to an unexposed port and even to an allowed one.
    let o = h.py(
        "evil",
        &raw_syn_probe_script("eth0", &tiny_syn(&e, container_mac(&e), &v, 7001, 2), &v, 7001),
    );
    assert_eq!(o.stdout.trim(), "none", "{o:?}");
    let o = h.py(
        "peer",
        &raw_syn_probe_script("eth0", &tiny_syn(&p, container_mac(&p), &v, 7000, 3), &v, 7000),
    );
    assert_eq!(o.stdout.trim(), "none", "{o:?}");
    // A later fragment alone (its first was never accepted).
    let orphan = tiny_syn(&e, container_mac(&e), &v, 7001, 4).pop().unwrap();
    assert_eq!(h.py("evil", &raw_send_script("eth0", &[orphan])).code, 0);
    let after = (h.counter("drop_frag_tiny"), h.counter("drop_frag_orphan"));
    assert!(after.0 >= before.0 + 2, "{before:?} -> {after:?}");
    assert!(
        after.1 >= before.1 + 3,
        "the tails of both, and the orphan: {before:?} -> {after:?}"
    );
}

/// Sends a `len`-byte UDP datagram from namespace `ns` to `addr` and returns (reply length,
/// reply source) — the datagram and its echo are fragmented on the way (MTU 1500).
fn big_roundtrip(run: impl Fn(&str) -> Option<String>, addr: &str, len: usize) -> Option<(usize, String)> {
    let (ip, port) = addr.rsplit_once(':').unwrap();
    let script = format!(
        "import socket\ns=socket.socket(socket.AF_INET,socket.SOCK_DGRAM)\ns.settimeout(2)\ns.sendto(bytes(i%251 for i in range({len})),('{ip}',{port}))\nd,a=s.recvfrom(65535)\nok=d[5:]==bytes(i%251 for i in range({len}))\nprint(len(d),a[0]+':'+str(a[1]),ok)"
    );
    let out = run(&script)?;
    let mut w = out.split_whitespace();
    let (n, from, ok) = (w.next()?.parse().ok()?, w.next()?.to_string(), w.next()?);
    (ok == "True").then_some((n, from))
}

#[test]
fn fragmented_udp_to_a_published_port_arrives_whole_and_translated() {
    let h = Host::new();
    let cl = Client::new(&h);
    h.ok(&[
        "run",
        "-d",
        "--name",
        "echo",
        "-p",
        "5354:7001/udp",
        "alpine",
        "python3",
        "-c",
        &udp_big_echo_script(7001),
    ]);
    h.ok(&["run", "-d", "--name", "client", "alpine", "sleep", "600"]);
    let addr = format!("{HOST_IP}:5354");
    let from_lan = |s: &str| {
        let o = cl.ns.try_exec(&["python3", "-c", s]);
        o.status
            .success()
            .then(|| String::from_utf8_lossy(&o.stdout).into_owned())
    };
    // A small datagram first (no fragments), then 4000 bytes each way (3 fragments each).
    assert_eq!(
        eventually(10, || big_roundtrip(from_lan, &addr, 100)),
        (105, addr.clone())
    );
    let before = h.counter("fragment");
    assert_eq!(
        big_roundtrip(from_lan, &addr, 4000),
        Some((4005, addr.clone())),
        "from the LAN"
    );
    // From another container (hairpin), and from the echo server itself (self-hairpin).
    for who in ["client", "echo"] {
        let from_ctr = |s: &str| {
            let o = h.py(who, s);
            (o.code == 0).then_some(o.stdout)
        };
        assert_eq!(
            big_roundtrip(from_ctr, &addr, 4000),
            Some((4005, addr.clone())),
            "from {who}"
        );
    }
    assert!(
        h.counter("fragment") >= before + 4,
        "later fragments were translated like their first"
    );
}
