//! Every map of the datapath, and the metric/event helpers built on them.
//!
//! The `name`s must equal `linkrt_common::maps` (the macro needs literals; an unprivileged unit
//! test in `linkrt` checks the object against those constants).
use aya_ebpf::{
    macros::map,
    maps::{Array, HashMap, LruHashMap, PerCpuArray, RingBuf},
};
use linkrt_common::{
    Counter, DropReason, EVENTS_BYTES, Event, STATS_LEN,
    config::CONFIG_LEN,
    ct::{CT_MAX, CtEntry, CtKey, FRAG_MAX, FragKey},
    nat::{BIND_IPS_LEN, Backend, LOCAL_ADDRS_MAX, PORTMAP_MAX, PortKey, SOCK_REV_MAX, SockRev},
    policy::{ENDPOINTS_MAX, Endpoint, POLICY_MAX, PolicyKey},
};

#[map(name = "LRT_STATS_V2")]
pub static STATS: PerCpuArray<u64> = PerCpuArray::pinned(STATS_LEN, 0);

#[map(name = "LRT_EVENTS_V2")]
pub static EVENTS: RingBuf = RingBuf::pinned(EVENTS_BYTES, 0);

/// Plain hash maps are not preallocated (`BPF_F_NO_PREALLOC`): their memory follows their
/// entries, so 131,072 possible mappings cost nothing until published (issue 14).
const NO_PREALLOC: u32 = 1;

#[map(name = "LRT_PORTMAP_V2")]
pub static PORTMAP: HashMap<PortKey, Backend> = HashMap::pinned(PORTMAP_MAX, NO_PREALLOC);

#[map(name = "LRT_CT_V2")]
pub static CT: LruHashMap<CtKey, CtEntry> = LruHashMap::pinned(CT_MAX, 0);

#[map(name = "LRT_FRAG_V1")]
pub static FRAG: LruHashMap<FragKey, CtEntry> = LruHashMap::pinned(FRAG_MAX, 0);

/// The address each uplink masquerades to (ifindex → IPv4), written by userspace.
#[map(name = "LRT_MASQ_ADDRS_V1")]
pub static MASQ_ADDRS: HashMap<u32, u32> = HashMap::pinned(LOCAL_ADDRS_MAX, 0);

#[map(name = "LRT_LOCAL_ADDRS_V1")]
pub static LOCAL_ADDRS: HashMap<u32, u32> = HashMap::pinned(LOCAL_ADDRS_MAX, 0);

#[map(name = "LRT_CONFIG_V1")]
pub static CONFIG: Array<u64> = Array::pinned(CONFIG_LEN, 0);

#[map(name = "LRT_SOCK_REV_V1")]
pub static SOCK_REV: LruHashMap<u64, SockRev> = LruHashMap::pinned(SOCK_REV_MAX, 0);

#[map(name = "LRT_POLICY_V2")]
pub static POLICY: HashMap<PolicyKey, u32> = HashMap::pinned(POLICY_MAX, NO_PREALLOC);

#[map(name = "LRT_ENDPOINTS_V2")]
pub static ENDPOINTS: HashMap<u32, Endpoint> = HashMap::pinned(ENDPOINTS_MAX, NO_PREALLOC);

#[map(name = "LRT_CONTAINER_IPS_V2")]
pub static CONTAINER_IPS: HashMap<u32, u32> = HashMap::pinned(ENDPOINTS_MAX, NO_PREALLOC);

#[map(name = "LRT_BIND_IPS_V1")]
pub static BIND_IPS: Array<u32> = Array::pinned(BIND_IPS_LEN, 0);

#[inline(always)]
fn bump(slot: u32) {
    if let Some(v) = STATS.get_ptr_mut(slot) {
        // SAFETY: a per-CPU slot; only this CPU writes it while the program runs.
        unsafe { *v += 1 };
    }
}

#[inline(always)]
pub fn count(c: Counter) {
    bump(c.slot());
}

#[inline(always)]
pub fn count_drop(r: DropReason) {
    bump(r.slot());
}

/// Whether `linkrt monitor --debug` asked for aya-log debug logs (`CONFIG_LOG`): one array
/// lookup when off, nothing written.
#[inline(always)]
pub fn debug_on() -> bool {
    config(linkrt_common::config::CONFIG_LOG) != 0
}

/// A `CONFIG` slot (0 when unset).
#[inline(always)]
pub fn config(slot: u32) -> u64 {
    CONFIG.get(slot).copied().unwrap_or(0)
}

/// Reports an event to `linkrt monitor`. A full ring (nobody draining it) loses the event,
/// never the packet's verdict.
#[inline(always)]
pub fn emit(ev: &Event) {
    if EVENTS.output::<Event>(ev, 0).is_err() {
        // Nothing to do: the counters still count the packet.
    }
}

/// A copied-out value of a hash map (never a reference into the map).
#[inline(always)]
pub fn get<K, V: Copy>(m: &HashMap<K, V>, k: &K) -> Option<V> {
    // SAFETY: the value is copied out at once.
    unsafe { m.get(k) }.copied()
}
