//! The eBPF datapath, from userspace: load and attach ([`Datapath`]), publish ports, keep the
//! link policy in the maps, read counters and events, and keep it all alive ([`heal`]).
//!
//! What the container lifecycle calls:
//! - at start: [`Datapath::load`], [`Datapath::attach`] (veth and uplinks),
//!   [`Datapath::attach_cgroup`], [`set_local_addrs`], [`publish`];
//! - at every change of the running set: [`sync_policy`];
//! - at teardown: [`unpublish`], [`detach`];
//! - at the start of every command (in `reconcile`): [`heal`] with [`Wanted::from_containers`];
//! - `linkrt status`: [`check`], [`stats`], [`map_len`], [`attached_interfaces`],
//!   [`features::attach_mode`];
//! - `linkrt info`: [`features::current`] (cached probes), [`features::attach_mode`],
//!   [`features::Features::require`].
mod batch;
mod debug_log;
mod events;
pub use crate::features;
mod health;
mod host_sockets;
mod loader;
mod maps;
pub mod netlink;
mod programs;
mod settings;
pub mod sizes;

pub use debug_log::DebugLog;
pub use events::{DatapathEvent, EventReader};
pub use features::{AttachMode, Features};
pub use health::{Health, Missing, Wanted, WantedEndpoint, check, heal, uplinks};
pub use host_sockets::HostSockets;
pub use loader::{
    Datapath, Hook, Role, attached_interfaces, detach, ensure_bpffs, netns_cookie, object, tcx_interfaces, verify,
};
pub use maps::{
    Batched, PolicyState, Stat, forget_flows, map_capacity, map_len, publish, publish_one, published, set_local_addrs,
    stats, sync_policy, unpublish, unpublish_one,
};
pub use settings::{GatewayMode, bridge_mac, gateway_mode, saved_gateway_mode};

#[cfg(test)]
mod tests {
    use linkrt_common::maps;

    /// The map and program names of `linkrt-common` are the ones in the object (the eBPF
    /// side repeats them as literals in `#[map(name = ...)]` and function names).
    #[test]
    fn every_map_and_program_name_is_in_the_object() {
        let obj = super::object().expect("the eBPF object is embedded: run `cargo xtask build` first");
        let obj = aya_obj::Object::parse(obj).expect("parse the eBPF object");
        for name in maps::ALL_MAPS {
            assert!(obj.maps.contains_key(name), "map {name} missing from the object");
        }
        let eperm = [maps::PROG_BIND4_EPERM, maps::PROG_BIND6_EPERM];
        for name in maps::TC_PROGRAMS
            .iter()
            .chain(maps::SOCK_PROGRAMS.iter())
            .chain(eperm.iter())
        {
            assert!(
                obj.programs.contains_key(*name),
                "program {name} missing from the object"
            );
        }
        // aya-log's own ring buffer is the one map of the object that is not linkrt's.
        assert!(
            obj.maps.contains_key(super::debug_log::LOG_MAP),
            "aya-log's map missing from the object"
        );
        let user_maps = obj
            .maps
            .keys()
            .filter(|k| !k.starts_with('.') && *k != super::debug_log::LOG_MAP)
            .count();
        assert_eq!(
            user_maps,
            maps::ALL_MAPS.len(),
            "maps not listed in linkrt_common::maps::ALL_MAPS"
        );
    }
}
