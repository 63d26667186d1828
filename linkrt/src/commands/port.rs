use linkrt::{Config, ports, state::Status};

use super::{CmdResult, Failure};
use crate::cli::PortArgs;

pub fn port(cfg: &Config, a: PortArgs) -> CmdResult {
    let snap = linkrt::lifecycle::read_snapshot(cfg).map_err(Failure::cli)?;
    let c = snap.find(&a.container).map_err(Failure::cli)?;
    let maps = if c.state.status == Status::Running {
        c.state.ports.clone()
    } else {
        Vec::new()
    };
    match a.port {
        None => {
            for l in ports::port_lines(&maps) {
                println!("{l}");
            }
        }
        Some(p) => {
            let key = ports::parse_expose(&p).ok().and_then(|v| v.into_iter().next());
            let shown = match &key {
                Some(k) => k.to_string(),
                None => p.clone(),
            };
            let hits: Vec<_> = maps.iter().filter(|m| Some(m.container) == key).collect();
            if hits.is_empty() {
                return Err(Failure {
                    code: 1,
                    msg: format!("No public port '{shown}' published for {}", a.container),
                });
            }
            for m in hits {
                println!("{}", m.host_addr());
            }
        }
    }
    Ok(0)
}
