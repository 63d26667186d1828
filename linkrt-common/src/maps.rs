//! Names of the maps and programs, used by both sides (and as bpffs pin file names).

/// Per-CPU counters indexed by [`crate::stats::Counter`].
pub const STATS: &str = "LRT_STATS_V1";

/// Published ports: [`crate::nat::PortKey`] → [`crate::nat::Backend`].
pub const PORTMAP: &str = "LRT_PORTMAP_V1";
/// Reply flows to un-NAT: [`crate::nat::CtKey`] → [`crate::nat::CtVal`] (LRU).
pub const CT: &str = "LRT_CT_V1";
/// Addresses of the host, for 0.0.0.0 mappings.
pub const LOCAL_ADDRS: &str = "LRT_LOCAL_ADDRS_V1";

/// Settings of the datapath (`nat::CONFIG_*` slots).
pub const CONFIG: &str = "LRT_CONFIG_V1";
/// Host sockets redirected by the socket hooks (socket cookie → `nat::SockRev`).
pub const SOCK_REV: &str = "LRT_SOCK_REV_V1";

/// Allowed new flows between containers (`policy::PolicyKey` → 1).
pub const POLICY: &str = "LRT_POLICY_V1";
/// Replies of allowed flows (`nat::CtKey` of the reply → 1, LRU).
pub const POLICY_CT: &str = "LRT_POLICY_CT_V1";
/// Container veths: host-side ifindex → `policy::Endpoint`.
pub const ENDPOINTS: &str = "LRT_ENDPOINTS_V1";
/// Container addresses (IP → ifindex).
pub const CONTAINER_IPS: &str = "LRT_CONTAINER_IPS_V1";

/// Datapath events for `linkrt monitor` (ring buffer of `stats::Event`).
pub const EVENTS: &str = "LRT_EVENTS_V1";

/// Program names (function names in `linkrt-ebpf`).
pub const PROG_FROM_CONTAINER: &str = "lrt_from_container";
pub const PROG_TO_CONTAINER: &str = "lrt_to_container";
pub const PROG_UPLINK_IN: &str = "lrt_uplink_in";
pub const PROG_UPLINK_OUT: &str = "lrt_uplink_out";
pub const PROG_CONNECT4: &str = "lrt_connect4";
pub const PROG_SENDMSG4: &str = "lrt_sendmsg4";
pub const PROG_RECVMSG4: &str = "lrt_recvmsg4";
