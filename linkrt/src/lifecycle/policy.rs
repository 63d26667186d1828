//! The link policy: Docker's `--icc` setting, and the allow-list the datapath enforces,
//! computed from the containers (a pure function) and written to the datapath's maps.
use serde::{Deserialize, Serialize};

use crate::{
    bpf,
    config::Config,
    error::{Error, Result},
    state::{self, Container, Lock, Status},
};

/// Instance settings (`linkrt config`), kept in the state directory.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Settings {
    /// Inter-container communication unrestricted (Docker's `--icc`). Secure by default: off.
    pub icc: bool,
    /// Containers' connections to other machines leave with the uplink's address (Docker's
    /// `--ip-masq`, on by default).
    #[serde(default = "on")]
    pub ip_masq: bool,
    /// The host ports masqueraded connections use (first, last).
    #[serde(default = "default_masq_ports")]
    pub masq_ports: (u16, u16),
}

fn on() -> bool {
    true
}

/// Above Linux's default ephemeral range (`ip_local_port_range` 32768-60999), so that the
/// host's own connections never pick these ports; reserved when a host's range overlaps.
pub const DEFAULT_MASQ_PORTS: (u16, u16) = (61000, 65535);

fn default_masq_ports() -> (u16, u16) {
    DEFAULT_MASQ_PORTS
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            icc: false,
            ip_masq: true,
            masq_ports: DEFAULT_MASQ_PORTS,
        }
    }
}

/// A masquerade port range as `linkrt config --masq-ports` takes it: `FIRST-LAST`, from 1024
/// up. A small range runs out sooner (`drop_nat_no_port`).
pub fn parse_masq_ports(s: &str) -> std::result::Result<(u16, u16), String> {
    let bad = || format!("invalid masquerade port range {s:?}: want FIRST-LAST, e.g. 61000-65535");
    let (a, b) = s.split_once('-').ok_or_else(bad)?;
    let (a, b): (u16, u16) = (a.parse().map_err(|_| bad())?, b.parse().map_err(|_| bad())?);
    if a < 1024 || b < a {
        return Err(format!(
            "invalid masquerade port range {s:?}: want 1024 <= FIRST <= LAST <= 65535"
        ));
    }
    Ok((a, b))
}

impl Settings {
    /// The ports connections out are masqueraded to under the gateway mode `mode`, or `None`
    /// when they are not (`--ip-masq false`, or Docker's `routed` mode, which never masquerades).
    pub fn masquerade(&self, mode: crate::datapath::GatewayMode) -> Option<(u16, u16)> {
        (self.ip_masq && mode.masquerades()).then_some(self.masq_ports)
    }
}

fn settings_path(cfg: &Config) -> std::path::PathBuf {
    cfg.root.join("settings")
}

const SETTINGS_KIND: &str = "settings-v1";

impl Settings {
    /// The settings; never written by reading.
    pub fn load(cfg: &Config) -> Result<Settings> {
        let p = settings_path(cfg);
        match std::fs::read(&p) {
            Ok(d) => state::record::decode(SETTINGS_KIND, &d).map_err(|why| Error::Corrupt { path: p, why }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Settings::default()),
            Err(e) => Err(Error::io("reading", p, e)),
        }
    }

    pub fn save(&self, cfg: &Config, _lock: &Lock) -> Result<()> {
        state::create_private_dir(&cfg.root)?;
        state::write_atomic(&settings_path(cfg), &state::record::encode(SETTINGS_KIND, self))
    }
}

/// `LINKRT_ICC=true|false`: the old way to change the setting, applied (and kept) only by
/// commands that change state, never by reading ones.
pub fn apply_env(cfg: &Config, lock: &Lock) -> Result<()> {
    let Ok(v) = std::env::var("LINKRT_ICC") else {
        return Ok(());
    };
    let on = parse_bool(&v).ok_or_else(|| Error::user(format!("invalid LINKRT_ICC {v:?}: want true or false")))?;
    let mut s = Settings::load(cfg)?;
    if s.icc != on {
        s.icc = on;
        s.save(cfg, lock)?;
    }
    Ok(())
}

pub fn parse_bool(v: &str) -> Option<bool> {
    match v {
        "1" | "true" | "TRUE" | "True" => Some(true),
        "0" | "false" | "FALSE" | "False" => Some(false),
        _ => None,
    }
}

/// The allow-list for `containers`: every container with a network gets its anti-spoofing
/// identity (a dead record's too: its process may still be alive), and each link (recipient
/// → source, both running or starting) allows the source's exposed ports and ping.
pub fn policy_state(containers: &[Container], icc: bool, ifindex: &dyn Fn(&str) -> Option<u32>) -> bpf::PolicyState {
    let has_net =
        |c: &Container| c.state.status == Status::Running || c.state.status == Status::Dead || c.state.veth.is_some();
    let live: Vec<&Container> = containers
        .iter()
        .filter(|c| has_net(c) && c.state.ip.is_some())
        .collect();
    let mut st = bpf::PolicyState {
        icc,
        ..Default::default()
    };
    for c in &live {
        let (Some(ip), Some(veth), Some(mac)) = (c.state.ip, c.state.veth.as_deref(), c.state.mac) else {
            continue;
        };
        let Some(idx) = ifindex(veth) else { continue };
        st.endpoints.push((idx, ip, mac.0));
        for l in &c.spec.links {
            let Some(src) = live
                .iter()
                .find(|s| s.id == l.source_id && s.state.status != Status::Dead)
            else {
                continue;
            };
            let Some(sip) = src.state.ip else { continue };
            st.allow.push((ip, sip, 0, 1));
            for p in &src.spec.exposed {
                st.allow.push((ip, sip, p.port, p.proto.number()));
            }
        }
    }
    st
}

/// Brings the datapath's link policy in line with `containers`.
pub fn sync(cfg: &Config, containers: &[Container]) -> Result<()> {
    if !cfg.maps_dir().join(linkrt_common::maps::POLICY).exists() {
        return Ok(());
    }
    let s = Settings::load(cfg)?;
    let mut st = policy_state(containers, s.icc, &|v| nix::net::if_::if_nametoindex(v).ok());
    st.masq = s.masquerade(crate::datapath::gateway_mode(cfg)?);
    bpf::sync_policy(cfg, &st).map_err(|e| name_full_map(cfg, e, &st))
}

/// A map that is full says which one and its limit, instead of the kernel's bare E2BIG.
fn name_full_map(cfg: &Config, e: Error, st: &bpf::PolicyState) -> Error {
    let full = match &e {
        Error::Map {
            source: aya::maps::MapError::SyscallError(s),
            ..
        } => {
            matches!(s.io_error.raw_os_error(), Some(libc::E2BIG) | Some(libc::ENOSPC))
        }
        _ => false,
    };
    if !full {
        return e;
    }
    Error::user(format!(
        "the link policy needs {} entries but the datapath's {} map holds at most {} (links to containers that expose many ports count one entry per port): {e}",
        st.allow.len(),
        linkrt_common::maps::POLICY,
        bpf::map_capacity(cfg, linkrt_common::maps::POLICY).unwrap_or(linkrt_common::policy::POLICY_MAX)
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        ports::{PortKey, Proto},
        state::{Link, MacAddr, Spec, State},
    };

    fn c(id: &str, ip: u8, status: Status, links: &[&str], exposed: &[u16]) -> Container {
        Container {
            id: id.repeat(64 / id.len()),
            name: id.into(),
            created: String::new(),
            spec: Spec {
                links: links
                    .iter()
                    .map(|l| Link {
                        source_id: l.repeat(64 / l.len()),
                        alias: l.to_string(),
                        source_name: l.to_string(),
                    })
                    .collect(),
                exposed: exposed
                    .iter()
                    .map(|p| PortKey {
                        port: *p,
                        proto: Proto::Tcp,
                    })
                    .collect(),
                ..Spec::default()
            },
            state: State {
                status,
                ip: Some(std::net::Ipv4Addr::new(172, 17, 0, ip)),
                mac: Some(MacAddr([2, 0x42, 172, 17, 0, ip])),
                veth: Some(format!("veth{ip}")),
                ..State::default()
            },
            restart_count: 0,
            restart_backoff_ms: 0,
        }
    }

    #[test]
    fn links_allow_exposed_ports_and_ping_only() {
        let all = vec![
            c("a", 2, Status::Running, &[], &[6379]),
            c("b", 3, Status::Running, &["a"], &[]),
            c("d", 4, Status::Dead, &["a"], &[]),
            c("e", 5, Status::Exited, &["a"], &[]),
        ];
        let mut all = all;
        all[3].state.veth = None;
        let st = policy_state(&all, false, &|v| v.strip_prefix("veth").and_then(|n| n.parse().ok()));
        let ip = |n| std::net::Ipv4Addr::new(172, 17, 0, n);
        assert_eq!(
            st.allow,
            vec![
                (ip(3), ip(2), 0, 1),
                (ip(3), ip(2), 6379, 6),
                (ip(4), ip(2), 0, 1),
                (ip(4), ip(2), 6379, 6)
            ]
        );
        // The dead record keeps its anti-spoofing identity; the exited container has none.
        let eps: Vec<u32> = st.endpoints.iter().map(|e| e.0).collect();
        assert_eq!(eps, [2, 3, 4]);
        assert!(!st.icc);
    }
}
