//! `linkrt info`: the host as linkrt sees it (`docker info`), as text or through a Go template.
use linkrt::{Config, format, info::Info};

use super::{CmdResult, Failure};
use crate::cli::InfoArgs;

pub fn info(cfg: &Config, a: InfoArgs) -> CmdResult {
    let info = linkrt::info::gather(cfg).map_err(Failure::cli)?;
    match &a.format {
        Some(t) => {
            let doc = serde_json::to_value(&info).expect("serializable");
            println!("{}", format::render_template(t, &doc).map_err(Failure::cli)?);
        }
        None => print!("{}", text(&info)),
    }
    Ok(0)
}

fn yes(b: bool) -> &'static str {
    if b { "yes" } else { "no" }
}

/// Docker's layout: sections, one space of indent per level, `Key: value`.
fn text(i: &Info) -> String {
    let mut s = String::new();
    let mut line = |indent: usize, k: &str, v: &str| {
        s.push_str(&" ".repeat(indent));
        s.push_str(k);
        s.push(':');
        if !v.is_empty() {
            s.push(' ');
            s.push_str(v);
        }
        s.push('\n');
    };
    line(0, "Server", "");
    line(1, "Version", &format!("{} (commit {})", i.server_version, i.git_commit));
    line(1, "Containers", &i.containers.to_string());
    line(2, "Running", &i.containers_running.to_string());
    line(2, "Stopped", &i.containers_stopped.to_string());
    line(1, "Published Ports", &i.published_ports.to_string());
    line(
        1,
        "Kernel Version",
        &format!("{} (linkrt needs {} or later)", i.kernel_version, i.min_kernel),
    );
    line(1, "Operating System", &i.operating_system);
    line(1, "OSType", &i.os_type);
    line(1, "Architecture", &i.architecture);
    line(1, "CPUs", &i.ncpu.to_string());
    line(1, "Name", &i.name);
    line(1, "Kernel Features", "");
    for (k, v) in &i.features {
        line(2, k, yes(*v));
    }
    line(
        1,
        "Attach Mode",
        match i.attach_mode.as_str() {
            "tcx" => "tcx (TCX links, pinned)",
            "netlink" => "netlink (cls_bpf on a clsact qdisc)",
            other => other,
        },
    );
    line(1, "Network", "");
    line(2, "Bridge", &i.bridge);
    line(2, "Subnet", &i.subnet);
    line(2, "Gateway", &i.gateway);
    line(
        2,
        "ICC",
        &format!(
            "{} ({})",
            if i.icc.enabled {
                "on (all containers talk)"
            } else {
                "off (links only)"
            },
            i.icc.source
        ),
    );
    line(1, "Runtimes", "");
    for r in &i.runtimes {
        let what = if r.usable {
            "usable".to_string()
        } else {
            format!("cannot run containers here: {}", r.reason)
        };
        line(2, &r.name, &what);
    }
    line(1, "Default Runtime", &i.default_runtime);
    line(1, "Cgroup Version", &i.cgroup_version);
    line(1, "Cgroups", &i.cgroups);
    line(1, "Root Dir", &i.root_dir);
    line(1, "Run Dir", &i.run_dir);
    line(1, "Bpffs Dir", &i.bpffs_dir);
    line(1, "Feature Cache", &i.feature_cache);
    for w in &i.warnings {
        s.push_str(&format!("WARNING: {w}\n"));
    }
    s
}
