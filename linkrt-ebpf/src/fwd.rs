//! Delivery. Packets for a container go straight into it with `bpf_redirect_peer` (from an
//! uplink's or another veth's ingress), replies for the outside go straight to the uplink
//! after a FIB lookup: neither crosses the host's bridge, routing or netfilter FORWARD, so
//! another firewall's FORWARD policy (Docker, ufw, firewalld) cannot drop them.
use core::mem::{size_of, zeroed};

use aya_ebpf::{
    bindings::{
        BPF_FIB_LKUP_RET_NO_NEIGH, BPF_FIB_LKUP_RET_SUCCESS, TC_ACT_OK, bpf_fib_lookup as FibParams, bpf_redir_neigh,
    },
    helpers::{bpf_fib_lookup, bpf_redirect, bpf_redirect_neigh, bpf_redirect_peer},
    programs::TcContext,
};
use linkrt_common::{Counter, DropReason};

use crate::{maps::count, parse::ETH_ADDRS, policy};

const AF_INET: u8 = 2;
const PACKET_HOST: u32 = 0;

const PASS: u8 = 0;
const PEER: u8 = 1;
const FIB: u8 = 2;
const FIB_NEIGH: u8 = 3;

/// Where a packet goes once it is understood and allowed: on through the kernel's own path,
/// into the container behind a host-side veth, or out of an uplink as a FIB lookup said.
///
/// A plain struct, every field always set: an enum's unused payload would be undefined
/// registers that LLVM copies and the verifier refuses to read.
#[derive(Clone, Copy)]
pub struct Verdict {
    how: u8,
    ifindex: u32,
    /// Destination and source MAC for a FIB delivery.
    mac: [u8; 12],
    /// The next hop, when its MAC is not known yet (`bpf_redirect_neigh` resolves it).
    nh: u32,
}

impl Verdict {
    #[allow(non_upper_case_globals)]
    pub const Pass: Verdict = Verdict {
        how: PASS,
        ifindex: 0,
        mac: [0; 12],
        nh: 0,
    };

    /// Into the container behind this host-side veth.
    #[allow(non_snake_case)]
    #[inline(always)]
    pub const fn Peer(ifindex: u32) -> Verdict {
        Verdict {
            how: PEER,
            ifindex,
            mac: [0; 12],
            nh: 0,
        }
    }

    #[inline(always)]
    pub fn is_peer(&self) -> bool {
        self.how == PEER
    }

    #[inline(always)]
    pub fn is_pass(&self) -> bool {
        self.how == PASS
    }
}

/// The route to `daddr` from `saddr` (after translation): a FIB delivery, or `Pass` to leave
/// the packet to the host's stack.
#[inline(always)]
pub fn fib(ctx: &TcContext, saddr: u32, daddr: u32) -> Verdict {
    // SAFETY: a plain C struct for which all zeroes is valid.
    let mut f: FibParams = unsafe { zeroed() };
    f.family = AF_INET;
    // SAFETY: reading a field of the program's own context.
    f.ifindex = unsafe { (*ctx.skb.skb).ifindex };
    // tot_len 0: no MTU check (GSO packets are segmented by the uplink).
    f.__bindgen_anon_3.ipv4_src = saddr;
    f.__bindgen_anon_4.ipv4_dst = daddr;
    // SAFETY: valid context and parameters of the declared size.
    let rc = unsafe { bpf_fib_lookup(ctx.skb.skb.cast(), &mut f, size_of::<FibParams>() as i32, 0) };
    let mut mac = [0u8; 12];
    mac[..6].copy_from_slice(&f.dmac);
    mac[6..].copy_from_slice(&f.smac);
    let how = match rc as u32 {
        BPF_FIB_LKUP_RET_SUCCESS => FIB,
        BPF_FIB_LKUP_RET_NO_NEIGH => FIB_NEIGH,
        _ => return Verdict::Pass,
    };
    Verdict {
        how,
        ifindex: f.ifindex,
        mac,
        // SAFETY: after a lookup the union holds the next hop's IPv4 address.
        nh: unsafe { f.__bindgen_anon_4.ipv4_dst },
    }
}

impl Verdict {
    /// Carries the verdict out (the packet is already translated; `daddr` is its destination).
    #[inline(always)]
    pub fn act(&self, ctx: &mut TcContext, daddr: u32) -> Result<i32, DropReason> {
        match self.how {
            PEER => {
                // linkrt's MACs are Docker's: 02:42 and the IPv4 address.
                let d = daddr.to_ne_bytes();
                let gw = policy::gateway_mac();
                let mac = [
                    0x02, 0x42, d[0], d[1], d[2], d[3], gw[0], gw[1], gw[2], gw[3], gw[4], gw[5],
                ];
                ctx.store(ETH_ADDRS, &mac, 0).map_err(|_| DropReason::Write)?;
                // The frame was addressed to another MAC (the gateway's, an uplink's).
                ctx.change_type(PACKET_HOST).map_err(|_| DropReason::Write)?;
                count(Counter::RedirectPeer);
                // SAFETY: plain helper call.
                Ok(unsafe { bpf_redirect_peer(self.ifindex, 0) } as i32)
            }
            FIB => {
                count(Counter::RedirectFib);
                ctx.store(ETH_ADDRS, &self.mac, 0).map_err(|_| DropReason::Write)?;
                // SAFETY: plain helper call.
                Ok(unsafe { bpf_redirect(self.ifindex, 0) } as i32)
            }
            FIB_NEIGH => {
                count(Counter::RedirectFib);
                // SAFETY: a plain C struct for which all zeroes is valid.
                let mut n: bpf_redir_neigh = unsafe { zeroed() };
                n.nh_family = AF_INET as u32;
                n.__bindgen_anon_1.ipv4_nh = self.nh;
                // SAFETY: valid parameters of the declared size.
                Ok(unsafe { bpf_redirect_neigh(self.ifindex, &mut n, size_of::<bpf_redir_neigh>() as i32, 0) } as i32)
            }
            _ => Ok(TC_ACT_OK as i32),
        }
    }
}
