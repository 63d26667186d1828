//! BPF_PROG_TEST_RUN tests of the TC programs on crafted packets.
use std::net::Ipv4Addr;

use aya::maps::HashMap;
use aya::{
    Ebpf, EbpfLoader,
    maps::PerCpuArray,
    programs::{SchedClassifier, TestRun, TestRunOptions},
};
use linkrt_common::{
    Counter, maps,
    nat::{Backend, CtKey, CtVal, PortKey},
};
use linkrt_tests::{BpfFs, pkt, require_root};

const TC_ACT_OK: u32 = 0;

struct Loaded {
    ebpf: Ebpf,
    _fs: BpfFs,
}

fn load() -> Loaded {
    require_root();
    let fs = BpfFs::new();
    let mut ebpf = EbpfLoader::new()
        .default_map_pin_directory(&fs.dir)
        .load(linkrt::bpf::object().expect("eBPF object built"))
        .expect("load eBPF object");
    for name in [
        maps::PROG_FROM_CONTAINER,
        maps::PROG_TO_CONTAINER,
        maps::PROG_UPLINK_IN,
        maps::PROG_UPLINK_OUT,
    ] {
        let p: &mut SchedClassifier = ebpf.program_mut(name).unwrap().try_into().unwrap();
        p.load().unwrap_or_else(|e| panic!("verifier rejected {name}: {e:?}"));
    }
    Loaded { ebpf, _fs: fs }
}

fn run(l: &mut Loaded, prog: &str, pkt: &[u8]) -> (u32, Vec<u8>) {
    let p: &mut SchedClassifier = l.ebpf.program_mut(prog).unwrap().try_into().unwrap();
    let mut out = vec![0u8; pkt.len() + 256];
    let r = p
        .test_run(TestRunOptions {
            data_in: Some(pkt),
            data_out: Some(&mut out),
            ..Default::default()
        })
        .expect("BPF_PROG_TEST_RUN");
    out.truncate(r.data_size_out as usize);
    (r.return_value, out)
}

fn counter(l: &Loaded, c: Counter) -> u64 {
    let m: PerCpuArray<_, u64> = PerCpuArray::try_from(l.ebpf.map(maps::STATS).unwrap()).unwrap();
    m.get(&(c as u32), 0).unwrap().iter().sum()
}

#[test]
fn tcp_packet_passes_unchanged_and_is_counted() {
    let mut l = load();
    let p = pkt::tcp(
        Ipv4Addr::new(172, 17, 0, 2),
        40000,
        Ipv4Addr::new(172, 17, 0, 3),
        6379,
        0x02,
        b"",
    );
    assert!(pkt::checksums_ok(&p));
    let (rc, out) = run(&mut l, maps::PROG_FROM_CONTAINER, &p);
    assert_eq!(rc, TC_ACT_OK);
    assert_eq!(out, p, "the packet must not be modified");
    assert_eq!(counter(&l, Counter::FromContainer), 1);
    assert_eq!(counter(&l, Counter::Ipv4), 1);
    assert_eq!(counter(&l, Counter::ToContainer), 0);

    let (rc, _) = run(&mut l, maps::PROG_TO_CONTAINER, &p);
    assert_eq!(rc, TC_ACT_OK);
    assert_eq!(counter(&l, Counter::ToContainer), 1);
    assert_eq!(counter(&l, Counter::Ipv4), 2);
}

#[test]
fn truncated_ipv4_and_non_ip_frames_are_classified() {
    let mut l = load();
    let full = pkt::udp(
        Ipv4Addr::new(172, 17, 0, 2),
        5000,
        Ipv4Addr::new(172, 17, 0, 3),
        53,
        b"x",
    );
    // An IPv4 header whose IHL (15 words = 60 bytes) runs past the end of the frame.
    let mut bad = full[..34].to_vec();
    bad[14] = 0x4f;
    let (rc, _) = run(&mut l, maps::PROG_FROM_CONTAINER, &bad);
    assert_eq!(rc, TC_ACT_OK);
    assert_eq!(counter(&l, Counter::Malformed), 1);
    assert_eq!(counter(&l, Counter::Ipv4), 0);

    let mut arp = full.clone();
    arp[12..14].copy_from_slice(&0x0806u16.to_be_bytes());
    let (rc, _) = run(&mut l, maps::PROG_FROM_CONTAINER, &arp);
    assert_eq!(rc, TC_ACT_OK);
    assert_eq!(counter(&l, Counter::NonIpv4), 1);
}

const HOST: Ipv4Addr = Ipv4Addr::new(10, 200, 0, 1);
const CLIENT: Ipv4Addr = Ipv4Addr::new(10, 200, 0, 2);
const CTR: Ipv4Addr = Ipv4Addr::new(172, 17, 0, 3);

fn be(ip: Ipv4Addr) -> u32 {
    u32::from_ne_bytes(ip.octets())
}

/// Publishes HOST(any):8080/proto -> CTR:5000 and marks HOST as local.
fn publish(l: &mut Loaded, host_ip: u32, host_port: u16, proto: u8, ctr_port: u16) {
    let mut pm: HashMap<_, PortKey, Backend> = HashMap::try_from(l.ebpf.map_mut(maps::PORTMAP).unwrap()).unwrap();
    pm.insert(
        PortKey {
            ip: host_ip,
            port: host_port.to_be(),
            proto,
            _pad: 0,
        },
        Backend {
            ip: be(CTR),
            port: ctr_port.to_be(),
            _pad: 0,
        },
        0,
    )
    .unwrap();
    let mut la: HashMap<_, u32, u32> = HashMap::try_from(l.ebpf.map_mut(maps::LOCAL_ADDRS).unwrap()).unwrap();
    la.insert(be(HOST), 1, 0).unwrap();
}

fn ct_len(l: &Loaded) -> usize {
    let ct: HashMap<_, CtKey, CtVal> = HashMap::try_from(l.ebpf.map(maps::CT).unwrap()).unwrap();
    ct.keys().count()
}

#[test]
fn tcp_dnat_and_reply_unnat_keep_checksums_valid() {
    let mut l = load();
    publish(&mut l, 0, 8080, pkt::PROTO_TCP, 5000);
    let syn = pkt::tcp(CLIENT, 40000, HOST, 8080, 0x02, b"");
    let (rc, out) = run(&mut l, maps::PROG_UPLINK_IN, &syn);
    assert_eq!(rc, TC_ACT_OK);
    assert_eq!(
        pkt::endpoints(&out),
        (CLIENT, 40000, CTR, 5000),
        "DNAT to the container, client address kept"
    );
    assert!(pkt::checksums_ok(&out), "IP and TCP checksums after DNAT");
    assert_eq!(counter(&l, Counter::Dnat), 1);
    assert_eq!(ct_len(&l), 1);

    let synack = pkt::tcp(CTR, 5000, CLIENT, 40000, 0x12, b"");
    let (rc, out) = run(&mut l, maps::PROG_UPLINK_OUT, &synack);
    assert_eq!(rc, TC_ACT_OK);
    assert_eq!(
        pkt::endpoints(&out),
        (HOST, 8080, CLIENT, 40000),
        "reply un-NATed to the published address"
    );
    assert!(pkt::checksums_ok(&out));
    assert_eq!(counter(&l, Counter::ReverseNat), 1);

    // With a payload of odd length, too.
    let data = pkt::tcp(CLIENT, 40000, HOST, 8080, 0x18, b"hello");
    let (_, out) = run(&mut l, maps::PROG_UPLINK_IN, &data);
    assert!(pkt::checksums_ok(&out) && pkt::endpoints(&out).2 == CTR);
}

#[test]
fn udp_dnat_hairpin_and_zero_checksum() {
    let mut l = load();
    publish(&mut l, 0, 5353, pkt::PROTO_UDP, 53);
    let other = Ipv4Addr::new(172, 17, 0, 2);
    // Hairpin: a container talks to the host's published port.
    let q = pkt::udp(other, 33000, HOST, 5353, b"query");
    let (_, out) = run(&mut l, maps::PROG_FROM_CONTAINER, &q);
    assert_eq!(pkt::endpoints(&out), (other, 33000, CTR, 53));
    assert!(pkt::checksums_ok(&out));
    let r = pkt::udp(CTR, 53, other, 33000, b"answer");
    let (_, out) = run(&mut l, maps::PROG_TO_CONTAINER, &r);
    assert_eq!(pkt::endpoints(&out), (HOST, 5353, other, 33000));
    assert!(pkt::checksums_ok(&out));
    // UDP without a checksum (0) stays without one.
    let mut nocsum = pkt::udp(CLIENT, 1, HOST, 5353, b"x");
    nocsum[40..42].copy_from_slice(&[0, 0]);
    let (_, out) = run(&mut l, maps::PROG_UPLINK_IN, &nocsum);
    assert_eq!(&out[40..42], &[0, 0]);
    assert_eq!(pkt::endpoints(&out).2, CTR);
}

#[test]
fn only_published_traffic_is_touched() {
    let mut l = load();
    publish(&mut l, 0, 8080, pkt::PROTO_TCP, 5000);
    // Another port, another protocol, a non-local address: unchanged.
    for p in [
        pkt::tcp(CLIENT, 1, HOST, 8081, 0x02, b""),
        pkt::udp(CLIENT, 1, HOST, 8080, b""),
        pkt::tcp(CLIENT, 1, Ipv4Addr::new(10, 9, 9, 9), 8080, 0x02, b""),
    ] {
        let (rc, out) = run(&mut l, maps::PROG_UPLINK_IN, &p);
        assert_eq!((rc, &out), (TC_ACT_OK, &p));
    }
    // A reply without a tracked flow is not rewritten.
    let stray = pkt::tcp(CTR, 5000, CLIENT, 999, 0x12, b"");
    assert_eq!(run(&mut l, maps::PROG_UPLINK_OUT, &stray).1, stray);
    // A specific host IP mapping only matches that address.
    publish(&mut l, be(Ipv4Addr::new(127, 0, 0, 1)), 9090, pkt::PROTO_TCP, 5000);
    let p = pkt::tcp(CLIENT, 1, HOST, 9090, 0x02, b"");
    assert_eq!(
        run(&mut l, maps::PROG_UPLINK_IN, &p).1,
        p,
        "-p 127.0.0.1:9090 is not reachable on other addresses"
    );
    assert_eq!(counter(&l, Counter::Dnat), 0);
    assert_eq!(ct_len(&l), 0);
}

#[test]
fn fragments_truncated_and_sctp_packets() {
    let mut l = load();
    publish(&mut l, 0, 3868, pkt::PROTO_SCTP, 3868);
    // SCTP: the address changes, the port stays, so the CRC32c (which covers no address) stays valid.
    let s = pkt::sctp(CLIENT, 5000, HOST, 3868);
    assert!(pkt::sctp_ok(&s));
    let (_, out) = run(&mut l, maps::PROG_UPLINK_IN, &s);
    assert_eq!(pkt::endpoints(&out), (CLIENT, 5000, CTR, 3868));
    assert!(pkt::sctp_ok(&out), "CRC32c and IP checksum valid after DNAT");

    publish(&mut l, 0, 8080, pkt::PROTO_TCP, 5000);
    // A non-first fragment has no L4 header: passed unchanged, counted.
    let mut frag = pkt::tcp(CLIENT, 1, HOST, 8080, 0x02, b"");
    frag[20] = 0x00;
    frag[21] = 0x10; // fragment offset 16 * 8 bytes
    let (rc, out) = run(&mut l, maps::PROG_UPLINK_IN, &frag);
    assert_eq!((rc, out), (TC_ACT_OK, frag));
    assert_eq!(counter(&l, Counter::Fragment), 1);
    // A TCP header cut short: passed unchanged (the kernel drops it), counted as malformed.
    let full = pkt::tcp(CLIENT, 1, HOST, 8080, 0x02, b"");
    let short = &full[..34 + 10];
    let (rc, out) = run(&mut l, maps::PROG_UPLINK_IN, short);
    assert_eq!((rc, out.as_slice()), (TC_ACT_OK, short));
    assert_eq!(counter(&l, Counter::Malformed), 1);
    assert_eq!(counter(&l, Counter::Dnat), 1, "only the SCTP packet was translated");
}

const TC_ACT_SHOT: u32 = 2;

#[test]
fn link_policy_allows_linked_flows_and_their_replies_only() {
    use linkrt_common::policy::PolicyKey;
    let mut l = load();
    let (r, s, o) = (
        Ipv4Addr::new(172, 17, 0, 2),
        Ipv4Addr::new(172, 17, 0, 3),
        Ipv4Addr::new(172, 17, 0, 4),
    );
    {
        let mut ips: HashMap<_, u32, u32> = HashMap::try_from(l.ebpf.map_mut(maps::CONTAINER_IPS).unwrap()).unwrap();
        for (i, ip) in [r, s, o].iter().enumerate() {
            ips.insert(be(*ip), i as u32 + 10, 0).unwrap();
        }
        let mut pol: HashMap<_, PolicyKey, u32> = HashMap::try_from(l.ebpf.map_mut(maps::POLICY).unwrap()).unwrap();
        pol.insert(
            PolicyKey {
                saddr: be(r),
                daddr: be(s),
                dport: 6379u16.to_be(),
                proto: pkt::PROTO_TCP,
                _pad: 0,
            },
            1,
            0,
        )
        .unwrap();
    }
    let from = maps::PROG_FROM_CONTAINER;
    assert_eq!(
        run(&mut l, from, &pkt::tcp(s, 6379, r, 40000, 0x12, b"")).0,
        TC_ACT_SHOT,
        "no reply before the request"
    );
    assert_eq!(
        run(&mut l, from, &pkt::tcp(r, 40000, s, 6379, 0x02, b"")).0,
        TC_ACT_OK,
        "linked flow"
    );
    assert_eq!(
        run(&mut l, from, &pkt::tcp(s, 6379, r, 40000, 0x12, b"")).0,
        TC_ACT_OK,
        "its reply"
    );
    assert_eq!(
        run(&mut l, from, &pkt::tcp(r, 40001, s, 6380, 0x02, b"")).0,
        TC_ACT_SHOT,
        "another port"
    );
    assert_eq!(
        run(&mut l, from, &pkt::tcp(o, 40000, s, 6379, 0x02, b"")).0,
        TC_ACT_SHOT,
        "an unlinked container"
    );
    assert_eq!(
        run(&mut l, from, &pkt::tcp(s, 5000, r, 80, 0x02, b"")).0,
        TC_ACT_SHOT,
        "the reverse direction"
    );
    assert_eq!(
        run(&mut l, from, &pkt::udp(r, 5000, s, 6379, b"x")).0,
        TC_ACT_SHOT,
        "another protocol"
    );
    // Traffic to the host and the outside is not the link policy's business.
    assert_eq!(
        run(
            &mut l,
            from,
            &pkt::tcp(r, 40000, Ipv4Addr::new(172, 17, 0, 1), 22, 0x02, b"")
        )
        .0,
        TC_ACT_OK
    );
    assert_eq!(counter(&l, Counter::DropPolicy), 5);
    assert_eq!(counter(&l, Counter::PolicyAllow), 2);
}

#[test]
fn icmp_errors_about_nated_flows_are_translated() {
    let mut l = load();
    publish(&mut l, 0, 5353, pkt::PROTO_UDP, 53);
    let q = pkt::udp(CLIENT, 40000, HOST, 5353, b"query");
    let (_, dnated) = run(&mut l, maps::PROG_UPLINK_IN, &q);
    // The container answers "port unreachable", quoting the packet it received.
    let err = pkt::icmp_port_unreachable(CTR, CLIENT, &dnated);
    assert!(pkt::icmp_error_ok(&err));
    let (rc, out) = run(&mut l, maps::PROG_UPLINK_OUT, &err);
    assert_eq!(rc, TC_ACT_OK);
    assert_eq!(&out[26..30], &HOST.octets(), "outer source is the published address");
    let quoted = &out[42..];
    assert_eq!(&quoted[12..16], &CLIENT.octets());
    assert_eq!(&quoted[16..20], &HOST.octets(), "quoted destination restored");
    assert_eq!(&quoted[22..24], &5353u16.to_be_bytes(), "quoted port restored");
    assert!(pkt::icmp_error_ok(&out), "outer IP, ICMP and quoted IP checksums valid");
    // An ICMP error about an unknown flow is left alone.
    let other = pkt::icmp_port_unreachable(CTR, CLIENT, &pkt::udp(CLIENT, 1, CTR, 9, b""));
    assert_eq!(run(&mut l, maps::PROG_UPLINK_OUT, &other).1, other);
}

#[test]
fn a_reused_client_port_does_not_inherit_a_stale_nat_flow() {
    let mut l = load();
    publish(&mut l, 0, 8080, pkt::PROTO_TCP, 5000);
    run(
        &mut l,
        maps::PROG_UPLINK_IN,
        &pkt::tcp(CLIENT, 40000, HOST, 8080, 0x02, b""),
    );
    assert_eq!(ct_len(&l), 1);
    // The same client port now talks to the container directly (no NAT).
    let direct = pkt::tcp(CLIENT, 40000, CTR, 5000, 0x02, b"");
    assert_eq!(run(&mut l, maps::PROG_UPLINK_IN, &direct).1, direct);
    assert_eq!(ct_len(&l), 0, "the stale entry is forgotten");
    let reply = pkt::tcp(CTR, 5000, CLIENT, 40000, 0x12, b"");
    assert_eq!(
        run(&mut l, maps::PROG_UPLINK_OUT, &reply).1,
        reply,
        "the direct flow's reply is not rewritten"
    );
    // A RST ends a NATed flow's tracking.
    run(
        &mut l,
        maps::PROG_UPLINK_IN,
        &pkt::tcp(CLIENT, 40001, HOST, 8080, 0x02, b""),
    );
    assert_eq!(ct_len(&l), 1);
    let (_, out) = run(
        &mut l,
        maps::PROG_UPLINK_IN,
        &pkt::tcp(CLIENT, 40001, HOST, 8080, 0x04, b""),
    );
    assert_eq!(pkt::endpoints(&out).2, CTR, "the RST itself is still translated");
    assert_eq!(ct_len(&l), 0);
}

#[test]
fn ip_options_vlan_and_ipv6_frames() {
    let mut l = load();
    publish(&mut l, 0, 8080, pkt::PROTO_TCP, 5000);
    // IPv4 with 4 bytes of options (IHL 6): the L4 header is found after them.
    let plain = pkt::tcp(CLIENT, 40000, HOST, 8080, 0x02, b"");
    let mut opt = plain[..14].to_vec();
    let mut ip = plain[14..34].to_vec();
    ip[0] = 0x46;
    let total = u16::from_be_bytes([ip[2], ip[3]]) + 4;
    ip[2..4].copy_from_slice(&total.to_be_bytes());
    ip.extend_from_slice(&[1, 1, 1, 0]); // NOP NOP NOP EOL
    ip[10..12].copy_from_slice(&[0, 0]);
    let c = pkt::csum_fold(pkt::csum_add(&ip, 0));
    ip[10..12].copy_from_slice(&c.to_be_bytes());
    opt.extend_from_slice(&ip);
    opt.extend_from_slice(&plain[34..]);
    let (_, out) = run(&mut l, maps::PROG_UPLINK_IN, &opt);
    assert_eq!(&out[30..34], &CTR.octets(), "destination rewritten");
    assert_eq!(
        &out[38 + 2..38 + 4],
        &5000u16.to_be_bytes(),
        "port found after the options"
    );
    assert_eq!(
        pkt::csum_fold(pkt::csum_add(&out[14..38], 0)),
        0,
        "IP checksum with options"
    );
    // An 802.1Q-tagged frame and an IPv6 frame are not IPv4: passed unchanged.
    let mut vlan = plain[..12].to_vec();
    vlan.extend_from_slice(&[0x81, 0x00, 0x00, 0x05]);
    vlan.extend_from_slice(&plain[12..]);
    assert_eq!(run(&mut l, maps::PROG_UPLINK_IN, &vlan).1, vlan);
    let mut v6 = plain[..12].to_vec();
    v6.extend_from_slice(&[0x86, 0xdd, 0x60, 0, 0, 0, 0, 20, 6, 64]);
    v6.extend_from_slice(&[0u8; 32]);
    v6.extend_from_slice(&plain[34..]);
    assert_eq!(run(&mut l, maps::PROG_UPLINK_IN, &v6).1, v6);
    assert_eq!(counter(&l, Counter::NonIpv4), 2);
    assert_eq!(counter(&l, Counter::Dnat), 1);
}
