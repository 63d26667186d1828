//! BPF_PROG_TEST_RUN tests of the TC programs on crafted packets.
use std::net::Ipv4Addr;

use aya::{
    Ebpf, EbpfLoader,
    maps::PerCpuArray,
    programs::{SchedClassifier, TestRun, TestRunOptions},
};
use linkrt_common::{Counter, maps};
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
    for name in [maps::PROG_FROM_CONTAINER, maps::PROG_TO_CONTAINER] {
        let p: &mut SchedClassifier = ebpf.program_mut(name).unwrap().try_into().unwrap();
        p.load().unwrap_or_else(|e| panic!("verifier rejected {name}: {e:?}"));
    }
    Loaded { ebpf, _fs: fs }
}

fn run(l: &mut Loaded, prog: &str, pkt: &[u8]) -> (u32, Vec<u8>) {
    let p: &mut SchedClassifier = l.ebpf.program_mut(prog).unwrap().try_into().unwrap();
    let mut out = vec![0u8; pkt.len() + 256];
    let r = p
        .test_run(TestRunOptions { data_in: Some(pkt), data_out: Some(&mut out), ..Default::default() })
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
    let p = pkt::tcp(Ipv4Addr::new(172, 17, 0, 2), 40000, Ipv4Addr::new(172, 17, 0, 3), 6379, 0x02, b"");
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
    let full = pkt::udp(Ipv4Addr::new(172, 17, 0, 2), 5000, Ipv4Addr::new(172, 17, 0, 3), 53, b"x");
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
