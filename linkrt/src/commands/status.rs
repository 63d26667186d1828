use linkrt::{Config, bpf};

use super::{CmdResult, Failure};

pub fn status(cfg: &Config) -> CmdResult {
    println!("bpffs:      {}", cfg.bpffs.display());
    let ifs = bpf::attached_interfaces(cfg);
    println!("attached:   {} interface(s){}{}", ifs.len(), if ifs.is_empty() { "" } else { ": " }, ifs.join(" "));
    match bpf::stats(cfg) {
        Ok(stats) => {
            println!("counters:");
            for (name, v) in stats {
                println!("  {name:<16} {v}");
            }
        }
        Err(e) => return Err(Failure::cli(e)),
    }
    Ok(0)
}
