//! Names of the maps and programs, used by both sides (and as bpffs pin file names).

/// Per-CPU counters indexed by [`crate::stats::Counter`].
pub const STATS: &str = "LRT_STATS_V1";

/// Program names (function names in `linkrt-ebpf`).
pub const PROG_FROM_CONTAINER: &str = "lrt_from_container";
pub const PROG_TO_CONTAINER: &str = "lrt_to_container";
