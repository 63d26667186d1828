//! Host ports reserved without sockets: the cgroup `bind4`/`bind6` hooks refuse a host
//! process's bind of a published port with EADDRINUSE, as the socket Docker's proxy holds
//! would ("address already in use"). A bind conflicts as the kernel's would with a socket
//! bound to the mapping's address: the same address, or either side 0.0.0.0 (for 0.0.0.0,
//! every specific address in `BIND_IPS` is looked up). An IPv6 bind of `::` counts as
//! 0.0.0.0 (dual stack), `::ffff:a.b.c.d` as a.b.c.d, and any other IPv6 address conflicts
//! with a 0.0.0.0 mapping only (Docker also holds `[::]:P` for those).
//!
//! Only in the host namespace linkrt manages; port 0 (any port) is never refused.
use aya_ebpf::{helpers::generated::bpf_set_retval, programs::SockAddrContext};
use linkrt_common::{
    Counter,
    nat::{BIND_IPS_LEN, PortKey},
};

use crate::{
    maps::{BIND_IPS, PORTMAP, count, get},
    parse::{IPPROTO_SCTP, IPPROTO_TCP, IPPROTO_UDP},
    sock::{PROCEED, in_host_netns},
};

const EADDRINUSE: i32 = 98;

/// Whether `ip:port` (`ip` 0 = every address) overlaps a published port of `proto`.
#[inline(always)]
fn published(ip: u32, port: u16, proto: u8) -> bool {
    let mut k = PortKey {
        ip,
        port,
        proto,
        _pad: 0,
    };
    if get(&PORTMAP, &k).is_some() {
        return true;
    }
    if ip != 0 {
        k.ip = 0;
        return get(&PORTMAP, &k).is_some();
    }
    let mut i = 0;
    while i < BIND_IPS_LEN {
        if let Some(a) = BIND_IPS.get(i)
            && *a != 0
        {
            k.ip = *a;
            if get(&PORTMAP, &k).is_some() {
                return true;
            }
        }
        i += 1;
    }
    false
}

/// The hook's answer for a bind of `ip:port` (`ip` 0 = every address; `None` = an IPv6 address
/// that only a 0.0.0.0 mapping conflicts with). `retval`: the kernel has `bpf_set_retval`
/// (5.18+) and the refusal says EADDRINUSE; without it the caller sees EPERM.
#[inline(always)]
fn decide(ctx: &SockAddrContext, ip: Option<u32>, retval: bool) -> i32 {
    if !in_host_netns(ctx) {
        return PROCEED;
    }
    // SAFETY: the kernel hands us a valid bpf_sock_addr for the program's lifetime.
    let sa = unsafe { &*ctx.sock_addr };
    let proto = match sa.protocol {
        6 => IPPROTO_TCP,
        17 => IPPROTO_UDP,
        132 => IPPROTO_SCTP,
        _ => return PROCEED,
    };
    let port = sa.user_port as u16;
    if port == 0 {
        return PROCEED;
    }
    let hit = match ip {
        Some(ip) => published(ip, port, proto),
        None => {
            published(0, port, proto) && {
                // `published(0, ..)` also matched specific addresses: only a 0.0.0.0 mapping counts.
                let k = PortKey {
                    ip: 0,
                    port,
                    proto,
                    _pad: 0,
                };
                get(&PORTMAP, &k).is_some()
            }
        }
    };
    if !hit {
        return PROCEED;
    }
    count(Counter::BindRefused);
    if retval {
        // SAFETY: helper on a valid program context (cgroup sock_addr, 5.18+).
        unsafe { bpf_set_retval(-EADDRINUSE) };
    }
    0
}

#[inline(always)]
fn ip4(ctx: &SockAddrContext) -> u32 {
    // SAFETY: as above.
    unsafe { (*ctx.sock_addr).user_ip4 }
}

/// The IPv4 address an IPv6 bind covers: `::` = every address, `::ffff:a.b.c.d` = a.b.c.d;
/// `None` for any other address.
#[inline(always)]
fn ip6(ctx: &SockAddrContext) -> Option<u32> {
    // SAFETY: as above; each word is read on its own (the verifier wants 4-byte loads).
    let (a, b, c, d) = unsafe {
        let sa = &*ctx.sock_addr;
        (sa.user_ip6[0], sa.user_ip6[1], sa.user_ip6[2], sa.user_ip6[3])
    };
    if a != 0 || b != 0 {
        return None;
    }
    if c == 0 && d == 0 {
        Some(0)
    } else if c == 0xffffu32.to_be() {
        Some(d)
    } else {
        None
    }
}

#[inline(always)]
pub fn bind4(ctx: &SockAddrContext, retval: bool) -> i32 {
    decide(ctx, Some(ip4(ctx)), retval)
}

#[inline(always)]
pub fn bind6(ctx: &SockAddrContext, retval: bool) -> i32 {
    decide(ctx, ip6(ctx), retval)
}
