//! `CONFIG` slots (an array of `u64`), written by userspace, read by every program.
//!
//! Slots are only ever added: a slot keeps its meaning for the life of `LRT_CONFIG_V1`.

/// The network namespace cookie of the host namespace linkrt manages (socket hooks act there only).
pub const CONFIG_NETNS_COOKIE: u32 = 0;
/// 1 = inter-container communication unrestricted (Docker's default `--icc=true`).
pub const CONFIG_ICC: u32 = 1;
/// 1 = routed traffic from uplinks may reach containers directly (Docker's
/// `gateway_mode_ipv4=routed`); 0 (default) = only published ports and replies (`drop_direct`).
pub const CONFIG_ROUTED: u32 = 2;
/// The bridge subnet: low 32 bits the network address, high 32 bits the mask (both as in packets).
pub const CONFIG_SUBNET: u32 = 3;
/// The gateway (bridge) address in the low 32 bits (as in packets), its MAC in bytes 0..6 of
/// the next slot.
pub const CONFIG_GATEWAY: u32 = 4;
pub const CONFIG_GATEWAY_MAC: u32 = 5;
/// 1 = the programs log each drop and each new translated flow through aya-log at debug level
/// (`linkrt monitor --debug` turns it on while it runs); 0 (default) = nothing is written.
pub const CONFIG_LOG: u32 = 6;
/// Outbound masquerade (Docker's `--ip-masq`): bit 32 on; bits 0..16 the first port of the
/// range and bits 16..32 its length (host order). 0 = off. See [`masq_config`].
pub const CONFIG_MASQ: u32 = 7;
/// Number of slots.
pub const CONFIG_LEN: u32 = 8;

/// The `CONFIG_MASQ` value for masquerading to the ports `first..=last` (`None`: off).
pub const fn masq_config(range: Option<(u16, u16)>) -> u64 {
    match range {
        Some((first, last)) if first <= last => {
            let len = (last - first) as u64 + 1;
            // 65,536 ports would not fit 16 bits; the range starts at 1 at least.
            let len = if len > 0xffff { 0xffff } else { len };
            1 << 32 | len << 16 | first as u64
        }
        _ => 0,
    }
}
