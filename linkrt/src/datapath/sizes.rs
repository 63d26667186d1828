//! Map sizes, chosen when a map is first created (its pin is then reused at its size):
//! `LINKRT_<MAP>_ENTRIES` or the default of `linkrt_common`. The defaults keep one instance at
//! about 15 MiB of map memory with nothing published and under 32 MiB with 60,000 mappings:
//! the plain hash maps are not preallocated, and the LRU tables (which must be) are sized for
//! 65,536 tracked flows.
use std::path::Path;

use aya::maps::MapData;
use linkrt_common::{ct, maps, nat, policy};

use crate::error::{Error, Result};

/// The maps whose size may be set: (map, environment variable, default).
pub const SIZED: [(&str, &str, u32); 5] = [
    (maps::CT, "LINKRT_CT_ENTRIES", ct::CT_MAX),
    (maps::FRAG, "LINKRT_FRAG_ENTRIES", ct::FRAG_MAX),
    (maps::PORTMAP, "LINKRT_PORTMAP_ENTRIES", nat::PORTMAP_MAX),
    (maps::SOCK_REV, "LINKRT_SOCK_REV_ENTRIES", nat::SOCK_REV_MAX),
    (maps::POLICY, "LINKRT_POLICY_ENTRIES", policy::POLICY_MAX),
];

/// The size a requested value gives, or why it is refused.
pub fn parse(var: &str, v: &str) -> Result<u32> {
    match v.trim().parse::<u32>() {
        Ok(n) if (64..=16 << 20).contains(&n) => Ok(n),
        _ => Err(Error::user(format!(
            "{var}={v}: the number of entries must be between 64 and 16777216"
        ))),
    }
}

/// The size of each sized map for a load: that of its pin when it exists, else the
/// environment's or the default.
pub fn sizes(maps_dir: &Path, env: impl Fn(&str) -> Option<String>) -> Result<Vec<(&'static str, u32)>> {
    SIZED
        .iter()
        .map(|(name, var, default)| {
            if let Ok(info) = MapData::from_pin(maps_dir.join(name)).and_then(|m| m.info()) {
                return Ok((*name, info.max_entries()));
            }
            Ok((*name, env(var).map(|v| parse(var, &v)).transpose()?.unwrap_or(*default)))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_come_from_the_environment_or_the_defaults_and_bad_ones_are_refused() {
        let dir = Path::new("/nonexistent-linkrt-maps");
        let d = sizes(dir, |_| None).unwrap();
        assert_eq!(d[0], (maps::CT, 131_072));
        let s = sizes(dir, |v| (v == "LINKRT_CT_ENTRIES").then(|| "32768".to_string())).unwrap();
        assert_eq!(s[0], (maps::CT, 32_768));
        assert_eq!(s[2], (maps::PORTMAP, nat::PORTMAP_MAX));
        let e = sizes(dir, |v| (v == "LINKRT_PORTMAP_ENTRIES").then(|| "lots".to_string())).unwrap_err();
        assert_eq!(e.exit_code(), 125);
        assert!(e.to_string().contains("LINKRT_PORTMAP_ENTRIES=lots"), "{e}");
        assert!(parse("X", "10").is_err());
    }
}
