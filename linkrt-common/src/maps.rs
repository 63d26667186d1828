//! Names of the maps and programs, used by both sides (and as bpffs pin file names).

/// Per-CPU counters indexed by [`crate::stats::Counter`] and [`crate::stats::DropReason`].
pub const STATS: &str = "LRT_STATS_V2";

/// Published ports: [`crate::nat::PortKey`] → [`crate::nat::Backend`].
pub const PORTMAP: &str = "LRT_PORTMAP_V2";
/// Tracked flows, both directions: [`crate::ct::CtKey`] → [`crate::ct::CtEntry`] (LRU).
pub const CT: &str = "LRT_CT_V2";
/// Fragmented datagrams whose first fragment was accepted: [`crate::ct::FragKey`] →
/// [`crate::ct::CtEntry`] (LRU).
pub const FRAG: &str = "LRT_FRAG_V1";
/// Addresses of the host, for 0.0.0.0 mappings.
pub const LOCAL_ADDRS: &str = "LRT_LOCAL_ADDRS_V1";

/// The address each uplink masquerades to: ifindex → IPv4 (its primary address).
pub const MASQ_ADDRS: &str = "LRT_MASQ_ADDRS_V1";

/// Settings of the datapath (`config::CONFIG_*` slots).
pub const CONFIG: &str = "LRT_CONFIG_V1";
/// Host sockets redirected by the socket hooks (socket cookie → `nat::SockRev`).
pub const SOCK_REV: &str = "LRT_SOCK_REV_V1";

/// Allowed new flows between containers (`policy::PolicyKey` → 1).
pub const POLICY: &str = "LRT_POLICY_V2";
/// Container veths: host-side ifindex → `policy::Endpoint`.
pub const ENDPOINTS: &str = "LRT_ENDPOINTS_V2";
/// Container addresses (IP → host-side ifindex).
pub const CONTAINER_IPS: &str = "LRT_CONTAINER_IPS_V2";

/// Specific host addresses used by published ports (`nat::BIND_IPS_LEN` slots of `u32`).
pub const BIND_IPS: &str = "LRT_BIND_IPS_V1";

/// Datapath events for `linkrt monitor` (ring buffer of `stats::Event`).
pub const EVENTS: &str = "LRT_EVENTS_V2";

/// Every map of the object (each pinned under `<bpffs>/maps/<NAME>`).
pub const ALL_MAPS: [&str; 13] = [
    STATS,
    PORTMAP,
    CT,
    FRAG,
    LOCAL_ADDRS,
    CONFIG,
    SOCK_REV,
    POLICY,
    ENDPOINTS,
    CONTAINER_IPS,
    EVENTS,
    BIND_IPS,
    MASQ_ADDRS,
];

/// Program names (function names in `linkrt-ebpf`).
pub const PROG_FROM_CONTAINER: &str = "lrt_from_container";
pub const PROG_TO_CONTAINER: &str = "lrt_to_container";
pub const PROG_UPLINK_IN: &str = "lrt_uplink_in";
pub const PROG_UPLINK_OUT: &str = "lrt_uplink_out";
pub const PROG_CONNECT4: &str = "lrt_connect4";
pub const PROG_SENDMSG4: &str = "lrt_sendmsg4";
pub const PROG_RECVMSG4: &str = "lrt_recvmsg4";
pub const PROG_BIND4: &str = "lrt_bind4";
pub const PROG_BIND6: &str = "lrt_bind6";
/// The bind hooks for kernels without `bpf_set_retval` (before 5.18): loaded, and pinned, in
/// place of [`PROG_BIND4`]/[`PROG_BIND6`] there.
pub const PROG_BIND4_EPERM: &str = "lrt_bind4_eperm";
pub const PROG_BIND6_EPERM: &str = "lrt_bind6_eperm";

/// The TC programs.
pub const TC_PROGRAMS: [&str; 4] = [PROG_FROM_CONTAINER, PROG_TO_CONTAINER, PROG_UPLINK_IN, PROG_UPLINK_OUT];
/// The cgroup socket hooks.
pub const SOCK_PROGRAMS: [&str; 5] = [PROG_CONNECT4, PROG_SENDMSG4, PROG_RECVMSG4, PROG_BIND4, PROG_BIND6];
