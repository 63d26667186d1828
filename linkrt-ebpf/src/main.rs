//! linkrt's eBPF datapath. Entry points only: each turns a module's `Result<Verdict,
//! DropReason>` into an action, or into a drop with its counter and a `linkrt monitor` event
//! (aya-template's `try_` pattern, cilium's `drop.h`).
//!
//! - `lrt_from_container` / `lrt_to_container`: a container veth's host side, ingress/egress.
//! - `lrt_uplink_in` / `lrt_uplink_out`: every other interface of the host.
//! - `lrt_connect4` / `lrt_sendmsg4` / `lrt_recvmsg4`: host processes (cgroup socket hooks).
//! - `lrt_bind4` / `lrt_bind6`: host binds of published ports refused (cgroup socket hooks).
#![cfg_attr(target_arch = "bpf", no_std)]
#![cfg_attr(target_arch = "bpf", no_main)]

#[cfg(target_arch = "bpf")]
mod bind;
#[cfg(target_arch = "bpf")]
mod conntrack;
#[cfg(target_arch = "bpf")]
mod ct_hit;
#[cfg(target_arch = "bpf")]
mod frag;
#[cfg(target_arch = "bpf")]
mod fwd;
#[cfg(target_arch = "bpf")]
mod icmp;
#[cfg(target_arch = "bpf")]
mod l2;
#[cfg(target_arch = "bpf")]
mod lxc;
#[cfg(target_arch = "bpf")]
mod maps;
#[cfg(target_arch = "bpf")]
mod masq;
#[cfg(target_arch = "bpf")]
mod nat;
#[cfg(target_arch = "bpf")]
mod netdev;
#[cfg(target_arch = "bpf")]
mod parse;
#[cfg(target_arch = "bpf")]
mod policy;
#[cfg(target_arch = "bpf")]
mod sock;

#[cfg(target_arch = "bpf")]
mod entry {
    use aya_ebpf::{
        bindings::TC_ACT_SHOT,
        macros::{cgroup_sock_addr, classifier},
        programs::{SockAddrContext, TcContext},
    };
    use linkrt_common::{DropReason, EVENT_DROP, Event};

    use crate::{
        fwd::Verdict,
        maps::{count_drop, debug_on, emit},
        parse::{IP_DADDR, Meta},
    };

    /// A drop: its reason's counter and an event for `linkrt monitor`.
    #[inline(always)]
    fn drop_with(ctx: &TcContext, r: DropReason, m: &Meta) -> i32 {
        count_drop(r);
        if debug_on() {
            // The reason's code, not its name: a string of one of 16 lengths would be 16
            // paths through the copy for the verifier at every drop (`linkrt monitor --debug`
            // prints the name).
            aya_log_ebpf::debug!(
                ctx,
                "drop {} proto {} {:i}:{} -> {:i}:{} ethertype {:x}",
                r as u32,
                m.proto,
                u32::from_be(m.saddr),
                u16::from_be(m.sport),
                u32::from_be(m.daddr),
                u16::from_be(m.dport),
                m.ethertype
            );
        }
        emit(&Event {
            kind: EVENT_DROP,
            reason: r as u8,
            proto: m.proto,
            _pad: 0,
            saddr: m.saddr,
            daddr: m.daddr,
            sport: m.sport,
            dport: m.dport,
            // SAFETY: reading a field of the program's own context.
            nat_addr: unsafe { (*ctx.skb.skb).ifindex },
            nat_port: 0,
            ethertype: m.ethertype,
        });
        TC_ACT_SHOT
    }

    /// Carries out a TC program's result. The programs' bodies are inlined into their entry
    /// points (`#[inline(always)]`): a separate function returning its large `Result` through
    /// a pointer would hand the verifier a stack pointer to return, which it refuses.
    #[inline(always)]
    fn finish(mut ctx: TcContext, r: Result<Verdict, DropReason>, m: &Meta) -> i32 {
        let v = match r {
            Ok(v) => v,
            Err(reason) => return drop_with(&ctx, reason, m),
        };
        // Redirected into a container: its MAC follows from the (translated) destination.
        let mut daddr = 0;
        if v.is_peer() {
            match ctx.load::<u32>(IP_DADDR) {
                Ok(a) => daddr = a,
                Err(_) => return drop_with(&ctx, DropReason::Malformed, m),
            }
        }
        match v.act(&mut ctx, daddr) {
            Ok(action) => action,
            Err(reason) => drop_with(&ctx, reason, m),
        }
    }

    macro_rules! tc_entry {
        ($name:ident, $body:path) => {
            #[classifier]
            pub fn $name(mut ctx: TcContext) -> i32 {
                let mut m = Meta::default();
                let r = $body(&mut ctx, &mut m);
                finish(ctx, r, &m)
            }
        };
    }

    tc_entry!(lrt_from_container, crate::lxc::from_container);
    tc_entry!(lrt_to_container, crate::lxc::to_container);
    tc_entry!(lrt_uplink_in, crate::netdev::uplink_in);
    tc_entry!(lrt_uplink_out, crate::netdev::uplink_out);

    #[cgroup_sock_addr(connect4)]
    pub fn lrt_connect4(ctx: SockAddrContext) -> i32 {
        crate::sock::dnat(&ctx)
    }

    #[cgroup_sock_addr(sendmsg4)]
    pub fn lrt_sendmsg4(ctx: SockAddrContext) -> i32 {
        crate::sock::dnat(&ctx)
    }

    #[cgroup_sock_addr(recvmsg4)]
    pub fn lrt_recvmsg4(ctx: SockAddrContext) -> i32 {
        crate::sock::recvmsg(&ctx)
    }

    #[cgroup_sock_addr(bind4)]
    pub fn lrt_bind4(ctx: SockAddrContext) -> i32 {
        crate::bind::bind4(&ctx, true)
    }

    #[cgroup_sock_addr(bind6)]
    pub fn lrt_bind6(ctx: SockAddrContext) -> i32 {
        crate::bind::bind6(&ctx, true)
    }

    /// The same without `bpf_set_retval` (before 5.18): the refused bind says EPERM.
    #[cgroup_sock_addr(bind4)]
    pub fn lrt_bind4_eperm(ctx: SockAddrContext) -> i32 {
        crate::bind::bind4(&ctx, false)
    }

    #[cgroup_sock_addr(bind6)]
    pub fn lrt_bind6_eperm(ctx: SockAddrContext) -> i32 {
        crate::bind::bind6(&ctx, false)
    }

    #[panic_handler]
    fn panic(_info: &core::panic::PanicInfo) -> ! {
        loop {}
    }

    #[unsafe(link_section = "license")]
    #[unsafe(no_mangle)]
    static LICENSE: [u8; 13] = *b"Dual MIT/GPL\0";
}

#[cfg(not(target_arch = "bpf"))]
fn main() {}
