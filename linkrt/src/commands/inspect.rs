use linkrt::{Config, format, state::Store};

use super::{CmdResult, Failure};
use crate::cli::InspectArgs;

pub fn inspect(cfg: &Config, a: InspectArgs) -> CmdResult {
    let store = Store::new(cfg);
    let all = linkrt::lifecycle::read_snapshot(cfg).map_err(Failure::cli)?.containers;
    let mut docs = Vec::new();
    let mut missing = Vec::new();
    for what in &a.containers {
        match linkrt::state::find_in(&all, what) {
            Ok(c) => docs.push(format::inspect_json(&store, c, &all)),
            // Docker's `inspect` falls back to images.
            Err(_) => match linkrt::image::lookup(cfg, what) {
                Ok(Some(img)) => docs.push(linkrt::image::inspect_json(&img)),
                _ => missing.push(what.clone()),
            },
        }
    }
    match &a.format {
        Some(t) => {
            for d in &docs {
                println!("{}", format::render_template(t, d).map_err(Failure::cli)?);
            }
        }
        None => println!("{}", format::to_json(&serde_json::Value::Array(docs))),
    }
    if let Some(m) = missing.first() {
        return Err(Failure {
            code: 1,
            msg: format!("No such object: {m}"),
        });
    }
    Ok(0)
}
