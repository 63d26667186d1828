use linkrt::{Config, filter, format, lifecycle, state::Status};

use super::{CmdResult, Failure};
use crate::cli::PsArgs;

pub fn ps(cfg: &Config, a: PsArgs) -> CmdResult {
    let filters = filter::Filters::parse(&a.filter).map_err(Failure::cli)?;
    let everyone = lifecycle::read_snapshot(cfg)?.containers;
    let mut all: Vec<_> = everyone.iter().filter(|c| filters.keep(c)).cloned().collect();
    all.reverse(); // newest first
    let mut shown: Vec<_> = if a.latest || a.last.is_some() {
        all.into_iter()
            .take(if a.latest { 1 } else { a.last.unwrap_or(1) })
            .collect()
    } else if a.all || filters.implies_all() {
        all
    } else {
        // Docker lists restarting containers as running ones.
        all.into_iter()
            .filter(|c| c.state.status == Status::Running || c.state.restarting)
            .collect()
    };
    if !a.names.is_empty() {
        shown.retain(|c| {
            a.names
                .iter()
                .any(|n| n.trim_start_matches('/') == c.name || c.id.starts_with(n.as_str()))
        });
    }
    let truncate = !a.no_trunc;
    if a.quiet {
        for c in &shown {
            println!("{}", if truncate { c.short_id() } else { &c.id });
        }
        return Ok(0);
    }
    match a.format.as_deref() {
        None | Some("table") => print!("{}", format::ps_table(&shown, &everyone, truncate)),
        Some(f) => {
            let (table, body) = match f.strip_prefix("table ") {
                Some(b) => (true, b),
                None => (false, f),
            };
            // The CLI's preFormat: spaces trimmed, `\t` and `\n` made real.
            let body = body.trim_matches(' ').replace("\\t", "\t").replace("\\n", "\n");
            let mut rows: Vec<Vec<String>> = Vec::new();
            if table {
                let header = body
                    .split("{{")
                    .map(|part| match part.split_once("}}") {
                        Some((field, rest)) => header_name(field.trim().trim_start_matches('.')) + rest,
                        None => part.to_string(),
                    })
                    .collect::<String>();
                rows.push(header.split('\t').map(String::from).collect());
            }
            for c in &shown {
                let fields: serde_json::Map<String, serde_json::Value> = format::ps_fields(c, &everyone, truncate)
                    .into_iter()
                    .map(|(k, v)| (k.to_string(), v.into()))
                    .collect();
                let line = format::render_template(&body, &serde_json::Value::Object(fields)).map_err(Failure::cli)?;
                if table {
                    rows.push(line.split('\t').map(String::from).collect());
                } else {
                    // Docker prints a non-table template's output as is, tabs kept.
                    println!("{line}");
                }
            }
            if table {
                print!("{}", format::table(&rows));
            }
        }
    }
    Ok(0)
}

fn header_name(field: &str) -> String {
    match field {
        "ID" => "CONTAINER ID",
        "Image" => "IMAGE",
        "Command" => "COMMAND",
        "CreatedAt" => "CREATED AT",
        "RunningFor" => "CREATED",
        "Ports" => "PORTS",
        "Status" => "STATUS",
        "State" => "STATE",
        "Names" => "NAMES",
        "Labels" => "LABELS",
        "RestartCount" => "RESTARTS",
        other => other,
    }
    .to_string()
}
