//! TC programs attached to the host side of every container veth.
//!
//! `lrt_from_container` runs on the veth's ingress (packets the container sends),
//! `lrt_to_container` on its egress (packets delivered to the container).

use aya_ebpf::{
    bindings::TC_ACT_OK,
    macros::{classifier, map},
    maps::PerCpuArray,
    programs::TcContext,
};
use linkrt_common::{Counter, STATS_LEN};

const ETH_HLEN: usize = 14;
const ETH_P_IP: u16 = 0x0800;
const IPV4_MIN_HLEN: usize = 20;

#[map(name = "LRT_STATS_V1")]
static STATS: PerCpuArray<u64> = PerCpuArray::pinned(STATS_LEN, 0);

#[inline(always)]
fn count(c: Counter) {
    if let Some(slot) = STATS.get_ptr_mut(c as u32) {
        // SAFETY: per-CPU slot, only this CPU writes it while the program runs.
        unsafe { *slot += 1 };
    }
}

/// Classifies the frame and bumps the protocol counters. Never drops on its own.
#[inline(always)]
fn account(ctx: &TcContext) -> i32 {
    let len = ctx.len() as usize;
    if len < ETH_HLEN {
        count(Counter::Malformed);
        return TC_ACT_OK as i32;
    }
    let proto = match ctx.load::<u16>(12) {
        Ok(p) => u16::from_be(p),
        Err(_) => {
            count(Counter::Malformed);
            return TC_ACT_OK as i32;
        }
    };
    if proto != ETH_P_IP {
        count(Counter::NonIpv4);
        return TC_ACT_OK as i32;
    }
    let ihl = match ctx.load::<u8>(ETH_HLEN) {
        Ok(b) => ((b & 0x0f) as usize) * 4,
        Err(_) => 0,
    };
    if ihl < IPV4_MIN_HLEN || len < ETH_HLEN + ihl {
        count(Counter::Malformed);
        return TC_ACT_OK as i32;
    }
    count(Counter::Ipv4);
    TC_ACT_OK as i32
}

#[classifier]
pub fn lrt_from_container(ctx: TcContext) -> i32 {
    count(Counter::FromContainer);
    account(&ctx)
}

#[classifier]
pub fn lrt_to_container(ctx: TcContext) -> i32 {
    count(Counter::ToContainer);
    account(&ctx)
}

#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}

#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 13] = *b"Dual MIT/GPL\0";
