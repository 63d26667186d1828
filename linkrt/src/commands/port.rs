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
            // Docker 28's CLI: the number must be a u16 (`80-81` is not one), the protocol
            // defaults to tcp; the error names the port as given.
            let (num, proto) = p.split_once('/').unwrap_or((p.as_str(), ""));
            let proto = if proto.is_empty() { "tcp" } else { proto };
            if let Err(why) = go_parse_u16(num) {
                return Err(Failure {
                    code: 1,
                    msg: format!("invalid port ({num}): strconv.ParseUint: parsing \"{num}\": {why}"),
                });
            }
            let key = format!("{num}/{proto}");
            let hits: Vec<_> = maps.iter().filter(|m| m.container.to_string() == key).collect();
            if hits.is_empty() {
                return Err(Failure {
                    code: 1,
                    msg: format!("No public port '{p}' published for {}", a.container),
                });
            }
            for m in hits {
                println!("{}", m.host_addr());
            }
        }
    }
    Ok(0)
}

/// Go's `strconv.ParseUint(s, 10, 16)` error words.
fn go_parse_u16(s: &str) -> Result<u16, &'static str> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return Err("invalid syntax");
    }
    s.parse::<u16>().map_err(|_| "value out of range")
}
