//! A small builder of Ethernet/IPv4/TCP/UDP frames with correct checksums.
use std::net::Ipv4Addr;

pub const PROTO_TCP: u8 = 6;
pub const PROTO_UDP: u8 = 17;
pub const PROTO_SCTP: u8 = 132;

/// One's complement sum folded to 16 bits.
pub fn csum_fold(mut sum: u32) -> u16 {
    while sum >> 16 != 0 {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

pub fn csum_add(data: &[u8], mut sum: u32) -> u32 {
    for ch in data.chunks(2) {
        let w = if ch.len() == 2 {
            u16::from_be_bytes([ch[0], ch[1]])
        } else {
            u16::from_be_bytes([ch[0], 0])
        };
        sum += w as u32;
    }
    sum
}

pub fn ipv4_header(src: Ipv4Addr, dst: Ipv4Addr, proto: u8, payload_len: usize) -> Vec<u8> {
    let total = 20 + payload_len;
    let mut h = vec![
        0x45,
        0,
        (total >> 8) as u8,
        total as u8,
        0x12,
        0x34,
        0x40,
        0,
        64,
        proto,
        0,
        0,
    ];
    h.extend_from_slice(&src.octets());
    h.extend_from_slice(&dst.octets());
    let c = csum_fold(csum_add(&h, 0));
    h[10..12].copy_from_slice(&c.to_be_bytes());
    h
}

fn pseudo_sum(src: Ipv4Addr, dst: Ipv4Addr, proto: u8, len: usize) -> u32 {
    let mut p = Vec::with_capacity(12);
    p.extend_from_slice(&src.octets());
    p.extend_from_slice(&dst.octets());
    p.extend_from_slice(&[0, proto, (len >> 8) as u8, len as u8]);
    csum_add(&p, 0)
}

/// Builds a TCP segment (flags SYN unless `flags` says otherwise) with a valid checksum.
pub fn tcp(src: Ipv4Addr, sport: u16, dst: Ipv4Addr, dport: u16, flags: u8, payload: &[u8]) -> Vec<u8> {
    let mut t = Vec::with_capacity(20 + payload.len());
    t.extend_from_slice(&sport.to_be_bytes());
    t.extend_from_slice(&dport.to_be_bytes());
    t.extend_from_slice(&1000u32.to_be_bytes());
    t.extend_from_slice(&0u32.to_be_bytes());
    t.extend_from_slice(&[0x50, flags, 0xff, 0xff, 0, 0, 0, 0]);
    t.extend_from_slice(payload);
    let c = csum_fold(csum_add(&t, pseudo_sum(src, dst, PROTO_TCP, t.len())));
    t[16..18].copy_from_slice(&c.to_be_bytes());
    frame(src, dst, PROTO_TCP, &t)
}

/// Builds a UDP datagram with a valid checksum.
pub fn udp(src: Ipv4Addr, sport: u16, dst: Ipv4Addr, dport: u16, payload: &[u8]) -> Vec<u8> {
    let len = 8 + payload.len();
    let mut u = Vec::with_capacity(len);
    u.extend_from_slice(&sport.to_be_bytes());
    u.extend_from_slice(&dport.to_be_bytes());
    u.extend_from_slice(&(len as u16).to_be_bytes());
    u.extend_from_slice(&[0, 0]);
    u.extend_from_slice(payload);
    let mut c = csum_fold(csum_add(&u, pseudo_sum(src, dst, PROTO_UDP, len)));
    if c == 0 {
        c = 0xffff;
    }
    u[6..8].copy_from_slice(&c.to_be_bytes());
    frame(src, dst, PROTO_UDP, &u)
}

/// Wraps an L4 payload into IPv4 and Ethernet (fixed test MACs).
pub fn frame(src: Ipv4Addr, dst: Ipv4Addr, proto: u8, l4: &[u8]) -> Vec<u8> {
    let mut f = vec![0x02, 0, 0, 0, 0, 0x02, 0x02, 0, 0, 0, 0, 0x01, 0x08, 0x00];
    f.extend_from_slice(&ipv4_header(src, dst, proto, l4.len()));
    f.extend_from_slice(l4);
    f
}

/// Checks the IPv4 header checksum and the TCP/UDP checksum of a frame built by this module.
pub fn checksums_ok(f: &[u8]) -> bool {
    let ip = &f[14..34];
    if csum_fold(csum_add(ip, 0)) != 0 {
        return false;
    }
    let src = Ipv4Addr::new(ip[12], ip[13], ip[14], ip[15]);
    let dst = Ipv4Addr::new(ip[16], ip[17], ip[18], ip[19]);
    let l4 = &f[34..];
    csum_fold(csum_add(l4, pseudo_sum(src, dst, ip[9], l4.len()))) == 0
}

/// Builds an SCTP packet (common header + one chunk) with a CRC32c checksum.
pub fn sctp(src: Ipv4Addr, sport: u16, dst: Ipv4Addr, dport: u16) -> Vec<u8> {
    let mut s = Vec::new();
    s.extend_from_slice(&sport.to_be_bytes());
    s.extend_from_slice(&dport.to_be_bytes());
    s.extend_from_slice(&0x11223344u32.to_be_bytes());
    s.extend_from_slice(&[0, 0, 0, 0]);
    // An INIT chunk header with a 4-byte body.
    s.extend_from_slice(&[1, 0, 0, 8, 0xde, 0xad, 0xbe, 0xef]);
    let c = crc32c(&s);
    s[8..12].copy_from_slice(&c.to_le_bytes());
    frame(src, dst, PROTO_SCTP, &s)
}

/// CRC32c (Castagnoli), as SCTP uses it.
pub fn crc32c(data: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in data {
        crc ^= b as u32;
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0x82f6_3b78
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

/// Whether the SCTP checksum of a frame built by [`sctp`] is valid.
pub fn sctp_ok(f: &[u8]) -> bool {
    let mut s = f[34..].to_vec();
    let got = u32::from_le_bytes([s[8], s[9], s[10], s[11]]);
    s[8..12].copy_from_slice(&[0; 4]);
    crc32c(&s) == got && csum_fold(csum_add(&f[14..34], 0)) == 0
}

/// Addresses and ports of a frame: (src, sport, dst, dport).
pub fn endpoints(f: &[u8]) -> (Ipv4Addr, u16, Ipv4Addr, u16) {
    let ip = &f[14..34];
    let l4 = &f[34..];
    (
        Ipv4Addr::new(ip[12], ip[13], ip[14], ip[15]),
        u16::from_be_bytes([l4[0], l4[1]]),
        Ipv4Addr::new(ip[16], ip[17], ip[18], ip[19]),
        u16::from_be_bytes([l4[2], l4[3]]),
    )
}

/// An ICMP "port unreachable" from `src` to `dst` quoting `quoted` (a frame built by this
/// module: its IP header and the first 8 bytes of its L4 header are quoted).
pub fn icmp_port_unreachable(src: Ipv4Addr, dst: Ipv4Addr, quoted: &[u8]) -> Vec<u8> {
    let mut m = vec![3, 3, 0, 0, 0, 0, 0, 0];
    m.extend_from_slice(&quoted[14..14 + 20 + 8]);
    let c = csum_fold(csum_add(&m, 0));
    m[2..4].copy_from_slice(&c.to_be_bytes());
    frame(src, dst, 1, &m)
}

/// Whether the outer IP, ICMP and quoted IP checksums of an ICMP error are valid.
pub fn icmp_error_ok(f: &[u8]) -> bool {
    csum_fold(csum_add(&f[14..34], 0)) == 0
        && csum_fold(csum_add(&f[34..], 0)) == 0
        && csum_fold(csum_add(&f[42..62], 0)) == 0
}

pub const PROTO_ICMP: u8 = 1;
/// The source MAC of every frame built here.
pub const SRC_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x01];

/// The frame with other MAC addresses.
pub fn with_macs(mut f: Vec<u8>, src: [u8; 6], dst: [u8; 6]) -> Vec<u8> {
    f[..6].copy_from_slice(&dst);
    f[6..12].copy_from_slice(&src);
    f
}

/// The frame with an 802.1Q/802.1ad tag (`tpid`, VLAN `vid`) inserted after the MACs; call
/// twice for QinQ.
pub fn tagged(f: &[u8], tpid: u16, vid: u16) -> Vec<u8> {
    let mut t = f[..12].to_vec();
    t.extend_from_slice(&tpid.to_be_bytes());
    t.extend_from_slice(&vid.to_be_bytes());
    t.extend_from_slice(&f[12..]);
    t
}

/// An Ethernet/IPv4 ARP frame (op 1 request, 2 reply) from `sha`/`spa` about `tpa`.
pub fn arp(op: u16, sha: [u8; 6], spa: Ipv4Addr, tpa: Ipv4Addr) -> Vec<u8> {
    let mut f = vec![0xff; 6];
    f.extend_from_slice(&sha);
    f.extend_from_slice(&[0x08, 0x06, 0, 1, 0x08, 0, 6, 4]);
    f.extend_from_slice(&op.to_be_bytes());
    f.extend_from_slice(&sha);
    f.extend_from_slice(&spa.octets());
    f.extend_from_slice(&[0; 6]);
    f.extend_from_slice(&tpa.octets());
    f
}

/// An ICMP echo request (or reply) with identifier `id`.
pub fn icmp_echo(src: Ipv4Addr, dst: Ipv4Addr, id: u16, request: bool) -> Vec<u8> {
    let mut m = vec![if request { 8 } else { 0 }, 0, 0, 0];
    m.extend_from_slice(&id.to_be_bytes());
    m.extend_from_slice(&[0, 1, b'p', b'i', b'n', b'g']);
    let c = csum_fold(csum_add(&m, 0));
    m[2..4].copy_from_slice(&c.to_be_bytes());
    frame(src, dst, PROTO_ICMP, &m)
}

/// The IPv4 fragments of a frame built here: the first carries `first` bytes of the IP
/// payload (a multiple of 8 unless it is all), the rest follow in one or more fragments of
/// `rest` bytes. All carry IP id `id`.
pub fn fragments(f: &[u8], id: u16, first: usize, rest: usize) -> Vec<Vec<u8>> {
    let payload = &f[34..];
    let mut out = Vec::new();
    let mut off = 0;
    while off < payload.len() {
        let n = if off == 0 { first } else { rest }.min(payload.len() - off);
        let more = off + n < payload.len();
        let mut ip = f[14..34].to_vec();
        let total = 20 + n;
        ip[2..4].copy_from_slice(&(total as u16).to_be_bytes());
        ip[4..6].copy_from_slice(&id.to_be_bytes());
        let fl = ((off / 8) as u16) | if more { 0x2000 } else { 0 };
        ip[6..8].copy_from_slice(&fl.to_be_bytes());
        ip[10..12].copy_from_slice(&[0, 0]);
        let c = csum_fold(csum_add(&ip, 0));
        ip[10..12].copy_from_slice(&c.to_be_bytes());
        let mut fr = f[..14].to_vec();
        fr.extend_from_slice(&ip);
        fr.extend_from_slice(&payload[off..off + n]);
        out.push(fr);
        off += n;
    }
    out
}

/// Whether the IPv4 header checksum of a frame is valid.
pub fn ip_csum_ok(f: &[u8]) -> bool {
    csum_fold(csum_add(&f[14..34], 0)) == 0
}

/// Reassembles fragments built by [`fragments`] (in order) into the IP payload.
pub fn reassemble(frags: &[Vec<u8>]) -> Vec<u8> {
    frags.iter().flat_map(|f| f[34..].to_vec()).collect()
}
