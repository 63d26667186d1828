//! The plugin's configuration: where linkrt's datapath and the attachment records live, and
//! the `portMappings` capability, validated before anything is touched.
use std::{
    collections::BTreeSet,
    net::{IpAddr, Ipv4Addr},
    path::PathBuf,
};

use linkrt::{Config, ports::Proto, state::cni::CniPort};
use rscni_plugin::{
    error::Error,
    types::{NetConf, PortMapping, Protocol},
};
use serde_json::Value;

/// Plugin options (keys of the plugin's object in the conflist).
#[derive(Clone, Debug)]
pub struct Options {
    /// linkrt's instance: `bpffs` (default `/sys/fs/bpf/linkrt`), `linkrtRoot` (default
    /// `/var/lib/linkrt`), `cgroup` for the socket hooks (default the cgroup2 root).
    pub cfg: Config,
    /// `stateDir`: the attachment records (default `<linkrtRoot>/cni`).
    pub state_dir: PathBuf,
}

fn str_opt(conf: &NetConf, key: &str) -> Result<Option<String>, Error> {
    match conf.custom.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if !s.is_empty() => Ok(Some(s.clone())),
        Some(v) => Err(Error::InvalidNetworkConfig(format!(
            "{key} must be a non-empty string, not {v}"
        ))),
    }
}

fn abs_path(key: &str, s: String) -> Result<PathBuf, Error> {
    let p = PathBuf::from(&s);
    if !p.is_absolute() || s.contains("/../") || s.ends_with("/..") {
        return Err(Error::InvalidNetworkConfig(format!(
            "{key} must be an absolute path, not {s:?}"
        )));
    }
    Ok(p)
}

impl Options {
    pub fn from_conf(conf: &NetConf) -> Result<Options, Error> {
        let d = Config::default();
        let root = match str_opt(conf, "linkrtRoot")? {
            Some(s) => abs_path("linkrtRoot", s)?,
            None => d.root.clone(),
        };
        let bpffs = match str_opt(conf, "bpffs")? {
            Some(s) => abs_path("bpffs", s)?,
            None => d.bpffs.clone(),
        };
        let cgroup = str_opt(conf, "cgroup")?.map(|s| abs_path("cgroup", s)).transpose()?;
        let cfg = Config {
            run_root: root.join("run"),
            root,
            bpffs,
            cgroup,
            cgroup_parent: d.cgroup_parent,
        };
        let state_dir = match str_opt(conf, "stateDir")? {
            Some(s) => abs_path("stateDir", s)?,
            None => linkrt::state::cni::default_dir(&cfg),
        };
        match conf.custom.get("linkPolicy") {
            None | Some(Value::Bool(false)) | Some(Value::Null) => {}
            Some(v) => {
                return Err(Error::UnsupportedNetworkConfiguration(format!(
                    "linkPolicy {v}: linkrt-cni does not enforce linkrt's link policy between pods (see the README)"
                )));
            }
        }
        Ok(Options { cfg, state_dir })
    }
}

fn proto(p: Option<Protocol>) -> Proto {
    match p {
        None | Some(Protocol::Tcp) => Proto::Tcp,
        Some(Protocol::Udp) => Proto::Udp,
        Some(Protocol::Sctp) => Proto::Sctp,
    }
}

fn port(what: &str, m: &PortMapping, v: u32) -> Result<u16, Error> {
    match u16::try_from(v) {
        Ok(p) if p != 0 => Ok(p),
        _ => Err(Error::InvalidNetworkConfig(format!(
            "invalid port mapping {}: {what} {v} is not in 1-65535",
            describe(m)
        ))),
    }
}

fn describe(m: &PortMapping) -> String {
    format!(
        "{{hostPort: {}, containerPort: {}, protocol: {}}}",
        m.host_port,
        m.container_port,
        m.protocol.map(|p| proto(Some(p)).as_str()).unwrap_or("tcp")
    )
}

/// The `hostIP` of a mapping: absent or empty is every host address.
fn host_ip(m: &PortMapping) -> Result<Ipv4Addr, Error> {
    let s = match m.custom.get("hostIP") {
        None | Some(Value::Null) => return Ok(Ipv4Addr::UNSPECIFIED),
        Some(Value::String(s)) if s.is_empty() => return Ok(Ipv4Addr::UNSPECIFIED),
        Some(Value::String(s)) => s,
        Some(v) => {
            return Err(Error::InvalidNetworkConfig(format!(
                "invalid port mapping {}: hostIP {v} is not a string",
                describe(m)
            )));
        }
    };
    match s.parse::<IpAddr>() {
        Ok(IpAddr::V4(ip)) => Ok(ip),
        Ok(IpAddr::V6(_)) => Err(Error::InvalidNetworkConfig(format!(
            "invalid port mapping {}: hostIP {s}: IPv6 host addresses are not supported by linkrt's datapath",
            describe(m)
        ))),
        Err(_) => Err(Error::InvalidNetworkConfig(format!(
            "invalid port mapping {}: hostIP {s:?} is not an IP address",
            describe(m)
        ))),
    }
}

/// The `portMappings` of the runtime config, validated: ports in 1-65535, IPv4 host
/// addresses, each host endpoint once.
pub fn port_mappings(conf: &NetConf) -> Result<Vec<CniPort>, Error> {
    let Some(rc) = &conf.runtime_config else {
        return Ok(Vec::new());
    };
    let mut seen = BTreeSet::new();
    let mut v = Vec::new();
    for m in &rc.port_mappings {
        let p = CniPort {
            host_ip: host_ip(m)?,
            host_port: port("hostPort", m, m.host_port)?,
            proto: proto(m.protocol),
            container_port: port("containerPort", m, m.container_port)?,
        };
        if !seen.insert((p.host_ip, p.host_port, p.proto)) {
            return Err(Error::InvalidNetworkConfig(format!(
                "invalid port mapping {}: host port {}:{}/{} is mapped twice",
                describe(m),
                p.host_ip,
                p.host_port,
                p.proto.as_str()
            )));
        }
        v.push(p);
    }
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn conf(json: &str) -> Result<NetConf, serde_json::Error> {
        serde_json::from_str(json)
    }

    #[test]
    fn mappings_are_validated() {
        let c = conf(
            r#"{"cniVersion":"1.0.0","name":"n","type":"linkrt-cni","runtimeConfig":{"portMappings":[
                {"hostPort":8080,"containerPort":80,"protocol":"tcp"},
                {"hostPort":5353,"containerPort":53,"protocol":"UDP","hostIP":"127.0.0.1"}]}}"#,
        )
        .unwrap();
        let v = port_mappings(&c).unwrap();
        assert_eq!(v.len(), 2);
        assert_eq!((v[1].host_ip, v[1].proto), (Ipv4Addr::LOCALHOST, Proto::Udp));
        for bad in [
            r#"{"hostPort":0,"containerPort":80}"#,
            r#"{"hostPort":65536,"containerPort":80}"#,
            r#"{"hostPort":80,"containerPort":0}"#,
            r#"{"hostPort":80,"containerPort":80,"hostIP":"::1"}"#,
            r#"{"hostPort":80,"containerPort":80,"hostIP":"nope"}"#,
        ] {
            let c = conf(&format!(
                r#"{{"cniVersion":"1.0.0","name":"n","type":"t","runtimeConfig":{{"portMappings":[{bad}]}}}}"#
            ))
            .unwrap();
            assert!(
                matches!(port_mappings(&c), Err(Error::InvalidNetworkConfig(_))),
                "{bad}"
            );
        }
        let dup = conf(
            r#"{"cniVersion":"1.0.0","name":"n","type":"t","runtimeConfig":{"portMappings":[
            {"hostPort":80,"containerPort":80},{"hostPort":80,"containerPort":81,"protocol":"tcp"}]}}"#,
        )
        .unwrap();
        assert!(port_mappings(&dup).is_err());
        // An unknown protocol is refused when the document is decoded.
        assert!(
            conf(r#"{"name":"n","type":"t","runtimeConfig":{"portMappings":[{"hostPort":1,"containerPort":1,"protocol":"icmp"}]}}"#)
                .is_err()
        );
    }

    #[test]
    fn options_default_to_linkrts_instance() {
        let o = Options::from_conf(&conf(r#"{"name":"n","type":"t"}"#).unwrap()).unwrap();
        assert_eq!(o.cfg.bpffs, PathBuf::from("/sys/fs/bpf/linkrt"));
        assert_eq!(o.state_dir, PathBuf::from("/var/lib/linkrt/cni"));
        assert!(Options::from_conf(&conf(r#"{"name":"n","type":"t","bpffs":"rel"}"#).unwrap()).is_err());
        assert!(Options::from_conf(&conf(r#"{"name":"n","type":"t","linkPolicy":true}"#).unwrap()).is_err());
    }
}
