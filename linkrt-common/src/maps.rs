//! Names of the maps and programs, used by both sides (and as bpffs pin file names).

/// Per-CPU counters indexed by [`crate::stats::Counter`].
pub const STATS: &str = "LRT_STATS_V1";

/// Published ports: [`crate::nat::PortKey`] → [`crate::nat::Backend`].
pub const PORTMAP: &str = "LRT_PORTMAP_V1";
/// Reply flows to un-NAT: [`crate::nat::CtKey`] → [`crate::nat::CtVal`] (LRU).
pub const CT: &str = "LRT_CT_V1";
/// Addresses of the host, for 0.0.0.0 mappings.
pub const LOCAL_ADDRS: &str = "LRT_LOCAL_ADDRS_V1";

/// Program names (function names in `linkrt-ebpf`).
pub const PROG_FROM_CONTAINER: &str = "lrt_from_container";
pub const PROG_TO_CONTAINER: &str = "lrt_to_container";
pub const PROG_UPLINK_IN: &str = "lrt_uplink_in";
pub const PROG_UPLINK_OUT: &str = "lrt_uplink_out";
