//! Host-local access: cgroup socket hooks (connect4/sendmsg4/recvmsg4). A host process that
//! connects to a published port (127.0.0.1:P, or any host address) is sent to the container
//! at connect()/sendmsg() time: no per-packet NAT, no route_localnet. This is the only way to
//! a `-p 127.0.0.1:...` port: packets to 127.0.0.0/8 arriving on any interface are dropped.
//! The hooks act only in the host namespace linkrt manages (`CONFIG_NETNS_COOKIE`).
use aya_ebpf::{
    helpers::{bpf_get_netns_cookie, bpf_get_socket_cookie},
    programs::SockAddrContext,
};
use linkrt_common::{
    Counter,
    config::CONFIG_NETNS_COOKIE,
    nat::{PortKey, SockRev},
};

use crate::{
    maps::{LOCAL_ADDRS, PORTMAP, SOCK_REV, config, count, get},
    parse::{IPPROTO_TCP, IPPROTO_UDP},
};

/// What the hooks return: let the call go on.
pub const PROCEED: i32 = 1;

#[inline(always)]
pub fn in_host_netns(ctx: &SockAddrContext) -> bool {
    let want = config(CONFIG_NETNS_COOKIE);
    // SAFETY: helper on a valid program context.
    want != 0 && unsafe { bpf_get_netns_cookie(ctx.sock_addr.cast()) } == want
}

/// Rewrites the destination of a connect()/sendmsg() to a published port.
#[inline(always)]
pub fn dnat(ctx: &SockAddrContext) -> i32 {
    if !in_host_netns(ctx) {
        return PROCEED;
    }
    // SAFETY: the kernel hands us a valid bpf_sock_addr for the program's lifetime.
    let sa = unsafe { &mut *ctx.sock_addr };
    let proto = match sa.protocol {
        6 => IPPROTO_TCP,
        17 => IPPROTO_UDP,
        _ => return PROCEED,
    };
    // Map keys must live on the stack, not in the context.
    let ip = sa.user_ip4;
    let mut k = PortKey {
        ip,
        port: sa.user_port as u16,
        proto,
        _pad: 0,
    };
    let mut b = get(&PORTMAP, &k);
    if b.is_none() && (get(&LOCAL_ADDRS, &ip).is_some() || ip.to_ne_bytes()[0] == 127) {
        k.ip = 0;
        b = get(&PORTMAP, &k);
    }
    if let Some(b) = b {
        let rev = SockRev {
            orig_ip: sa.user_ip4,
            orig_port: sa.user_port as u16,
            backend_port: b.port,
            backend_ip: b.ip,
        };
        // SAFETY: helper on a valid program context.
        let cookie = unsafe { bpf_get_socket_cookie(ctx.sock_addr.cast()) };
        if SOCK_REV.insert(&cookie, &rev, 0).is_err() {
            // Without the reverse entry an unconnected UDP reply shows the container's
            // address; the connection itself still works.
        }
        sa.user_ip4 = b.ip;
        sa.user_port = b.port as u32;
        count(Counter::SockLb);
    }
    PROCEED
}

/// Unconnected UDP: the reply's source becomes the published address again.
#[inline(always)]
pub fn recvmsg(ctx: &SockAddrContext) -> i32 {
    if !in_host_netns(ctx) {
        return PROCEED;
    }
    // SAFETY: helper on a valid program context.
    let cookie = unsafe { bpf_get_socket_cookie(ctx.sock_addr.cast()) };
    // SAFETY: copied out at once.
    if let Some(r) = unsafe { SOCK_REV.get(&cookie) }.copied() {
        // SAFETY: the kernel hands us a valid bpf_sock_addr for the program's lifetime.
        let sa = unsafe { &mut *ctx.sock_addr };
        if sa.user_ip4 == r.backend_ip && sa.user_port as u16 == r.backend_port {
            sa.user_ip4 = r.orig_ip;
            sa.user_port = r.orig_port as u32;
        }
    }
    PROCEED
}
