//! The README's benchmark block, generated from `results.json`: the tables, the targets of
//! issue 14 as met/missed with their margins, and the cost of issue 11's hardening (this tree
//! against the datapath before it, in the same run), computed here and never typed.
use std::{collections::BTreeMap, fmt::Write as _, fs, path::Path};

use anyhow::{Context, Result, bail};

use crate::model::{Report, Stat, median, median_ratio, ratios};

pub const BEGIN: &str = "<!-- bench:begin -->";
pub const END: &str = "<!-- bench:end -->";

/// Main-table columns: (key in the JSON, label).
pub const COLUMNS: [(&str, &str); 8] = [
    ("bare", "bare"),
    ("linkrt", "linkrt"),
    ("linkrt_before", "linkrt before issue 11"),
    ("linkrt_nonat", "linkrt, no NAT"),
    ("iptables", "iptables"),
    ("nftables", "nftables"),
    ("docker_proxy", "docker-proxy"),
    ("socat", "socat"),
];

/// Host and hairpin rows: each bare client first, then the others on the same client.
const LOCAL_ORDER: [&str; 8] = [
    "host_bare",
    "host_linkrt",
    "host_linkrt_nonat",
    "host_docker_proxy",
    "hairpin_bare",
    "hairpin_linkrt",
    "hairpin_linkrt_nonat",
    "hairpin_docker_proxy",
];

const SCALE_COLUMNS: [&str; 5] = ["bare", "linkrt", "iptables", "nftables", "docker_proxy"];

const ROWS: [(&str, &str); 8] = [
    ("bulk_gbps", "TCP bulk, Gbit/s"),
    ("rr_tps", "TCP RR, transactions/s"),
    ("rr_p50_us", "TCP RR p50 latency, µs"),
    ("rr_p99_us", "TCP RR p99 latency, µs"),
    ("rr_cpu_us", "TCP RR CPU µs/transaction"),
    ("crr_cps", "TCP CRR, connections/s"),
    ("crr_cpu_us", "TCP CRR CPU µs/connection"),
    ("udp_pps", "UDP echo, packets/s"),
];

/// The four throughput metrics: (key, short label).
pub const METRICS: [(&str, &str); 4] = [
    ("crr_cps", "CRR conn/s"),
    ("rr_tps", "RR tx/s"),
    ("bulk_gbps", "bulk Gbit/s"),
    ("udp_pps", "UDP pkt/s"),
];

pub fn label(path: &str) -> &str {
    COLUMNS
        .iter()
        .find(|(k, _)| *k == path)
        .map(|(_, l)| *l)
        .unwrap_or(path)
}

pub fn fmt(v: f64) -> String {
    let a = v.abs();
    if a >= 100.0 {
        format!("{v:.0}")
    } else if a >= 10.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    }
}

fn thousands(n: usize) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / 1048576.0)
}

fn kib_as_mib(kib: u64) -> String {
    format!("{:.1} MiB", kib as f64 / 1024.0)
}

/// "median [min–max]" and, with `ratio`, " 0.97×".
pub fn cell(st: &Stat, ratio: bool) -> String {
    let mut s = format!("{} [{}–{}]", fmt(st.median), fmt(st.min), fmt(st.max));
    if ratio && let Some(r) = st.ratio_to_bare {
        let _ = write!(s, " **{r:.2}×**");
    }
    s
}

/// One target of the issue, evaluated.
#[derive(Clone, Debug, PartialEq)]
pub struct TargetRow {
    pub target: String,
    pub measured: String,
    /// None: not measurable in this run.
    pub met: Option<bool>,
    pub margin: String,
}

/// linkrt against one peer at one N and metric.
#[derive(Clone, Debug, PartialEq)]
pub struct PeerCell {
    /// linkrt / peer (median of per-repetition ratios).
    pub ratio: f64,
    /// The peer was not run at this N; compared with its largest measured N instead.
    pub fallback_n: Option<usize>,
}

pub struct Targets {
    pub rows: Vec<TargetRow>,
    /// (peer, metric) → N → cell.
    pub peers: BTreeMap<(String, String), BTreeMap<usize, Option<PeerCell>>>,
}

fn result(met: Option<bool>) -> &'static str {
    match met {
        Some(true) => "**met**",
        Some(false) => "**missed**",
        None => "not judged",
    }
}

fn signed_pct(x: f64) -> String {
    format!("{:+.1}%", x * 100.0)
}

/// A "≥ target×" row for a main-table ratio of linkrt to bare.
fn at_least(r: &Report, metric: &str, label: &str, target: f64) -> TargetRow {
    let v = r
        .paths
        .get(metric)
        .and_then(|m| m.get("linkrt"))
        .and_then(|s| s.ratio_to_bare);
    let (measured, met, margin) = match v {
        Some(v) => {
            let met = v >= target;
            let d = v - target;
            let margin = if met {
                format!("{:.2}× above ({})", d, signed_pct(v / target - 1.0))
            } else {
                format!("{:.2}× short ({})", -d, signed_pct(v / target - 1.0))
            };
            (format!("{v:.2}×"), Some(met), margin)
        }
        None => ("–".into(), None, String::new()),
    };
    TargetRow {
        target: format!("{label} ≥ {target:.2}× bare"),
        measured,
        met,
        margin,
    }
}

/// linkrt's ratio to bare at scale N (per-repetition ratios, so machine drift between the
/// N runs cancels out).
fn scale_ratio(r: &Report, metric: &str, n: usize, path: &str) -> Option<f64> {
    r.scale.get(metric)?.get(&n)?.get(path)?.ratio_to_bare
}

fn flat(r: &Report, metric: &str, label: &str) -> TargetRow {
    let ns: Vec<usize> = r
        .scale
        .get(metric)
        .map(|m| m.keys().copied().collect())
        .unwrap_or_default();
    let top = ns.iter().copied().filter(|n| *n > 1).max();
    let target = format!("{label} with 60,000 mappings within ±3% of N = 1");
    let (Some(top), Some(base)) = (top, scale_ratio(r, metric, 1, "linkrt")) else {
        return TargetRow {
            target,
            measured: "–".into(),
            met: None,
            margin: String::new(),
        };
    };
    let Some(at) = scale_ratio(r, metric, top, "linkrt") else {
        return TargetRow {
            target,
            measured: "–".into(),
            met: None,
            margin: String::new(),
        };
    };
    let dev = at / base - 1.0;
    let met = dev.abs() <= 0.03;
    let spare = 3.0 - dev.abs() * 100.0;
    let note = if top != 60_000 {
        format!(" (largest N here: {})", thousands(top))
    } else {
        String::new()
    };
    TargetRow {
        target,
        measured: format!("{}{note}", signed_pct(dev)),
        met: if top == 60_000 { Some(met) } else { None },
        margin: if met {
            format!("{spare:.1} points to spare")
        } else {
            format!("{:.1} points over", -spare)
        },
    }
}

fn runs_at<'a>(r: &'a Report, metric: &str, n: usize, path: &str) -> Option<&'a Stat> {
    r.scale.get(metric)?.get(&n)?.get(path)
}

fn peer_cell(r: &Report, metric: &str, n: usize, peer: &str) -> Option<PeerCell> {
    let l = runs_at(r, metric, n, "linkrt")?;
    if let Some(p) = runs_at(r, metric, n, peer) {
        return Some(PeerCell {
            ratio: median_ratio(&l.runs, &p.runs)?,
            fallback_n: None,
        });
    }
    // Not run at this N (docker-proxy: a process per port): its largest measured N, through
    // both ratios to bare, since the repetitions are not the same.
    let m = r.scale.get(metric)?;
    let (&pn, by) = m.iter().rev().find(|(k, v)| **k < n && v.contains_key(peer))?;
    Some(PeerCell {
        ratio: l.ratio_to_bare? / by.get(peer)?.ratio_to_bare?,
        fallback_n: Some(pn),
    })
}

/// A "≤ limit" row of the control plane (milliseconds); `None`: not measured in this run.
fn at_most(target: String, v: Option<f64>, limit: f64, shown: impl Fn(f64) -> String) -> TargetRow {
    match v {
        Some(v) => {
            let met = v <= limit;
            TargetRow {
                target,
                measured: shown(v),
                met: Some(met),
                margin: if met {
                    format!("{:.1} ms to spare", limit - v)
                } else {
                    format!("{:.1} ms over", v - limit)
                },
            }
        }
        None => TargetRow {
            target,
            measured: "–".into(),
            met: None,
            margin: String::new(),
        },
    }
}

/// The control-plane targets of the issues (runtime and control-plane issues): start latency
/// against 60 ms and the runtime's floor, `rm -f`, `ps -a` with 200 containers, `run -d` with
/// 60,000 mappings against none, and what publishing 10,000 ports adds to `run` at every N.
fn control_rows(r: &Report) -> Vec<TargetRow> {
    let c = &r.control;
    let ms = |v: f64| format!("{v:.1} ms");
    let series = |name: &str| c.launchers.iter().find(|l| l.name == name);
    let linkrt = series("linkrt").filter(|l| !l.start_ms.runs.is_empty());
    let floor = series("runc (floor)")
        .or_else(|| series("crun (floor)"))
        .filter(|l| !l.start_ms.runs.is_empty());
    let start = linkrt.map(|l| l.start_ms.median);
    let above = start.zip(floor.map(|f| f.start_ms.median)).map(|(s, f)| s - f);
    let floor_name = floor
        .map(|f| f.name.trim_end_matches(" (floor)").to_string())
        .unwrap_or_else(|| "runc".into());
    let top = c.by_n.get(&60_000).filter(|a| !a.run_d_ms.runs.is_empty());
    let none = (!c.run_d_none_ms.runs.is_empty()).then_some(c.run_d_none_ms.median);
    let growth = top.zip(none).map(|(a, n)| (a.run_d_ms.median / n - 1.0) * 100.0);
    let publish = c
        .by_n
        .values()
        .filter(|a| !a.publish_10000_ms.runs.is_empty())
        .map(|a| a.publish_10000_ms.median)
        .fold(None, |m: Option<f64>, v| Some(m.map_or(v, |m| m.max(v))));
    let mut rows = vec![
        at_most("`run -d` p50 ≤ 60 ms".into(), start, 60.0, ms),
        at_most(
            format!("`run -d` p50 ≤ 15 ms above `{floor_name} run -d` of the same bundle"),
            above,
            15.0,
            |v| format!("{v:+.1} ms"),
        ),
        at_most("`rm -f` p50 ≤ 30 ms".into(), linkrt.map(|l| l.rm_ms.median), 30.0, ms),
        at_most(
            format!("`ps -a` with {} containers ≤ 50 ms", c.ps_containers),
            (c.ps_containers >= 200 && !c.ps_a_ms.runs.is_empty()).then_some(c.ps_a_ms.median),
            50.0,
            ms,
        ),
        at_most(
            "publishing 10,000 ports adds ≤ 50 ms to `run -d` (the worst N)".into(),
            publish,
            50.0,
            ms,
        ),
    ];
    let mut grow = at_most(
        "`run -d` with 60,000 mappings within 10% of none".into(),
        growth,
        10.0,
        |v| format!("{v:+.1}%"),
    );
    grow.margin = grow.margin.replace(" ms", " points");
    rows.push(grow);
    rows
}

/// Issue 11: the hardening may cost at most this much of the RR and CRR ratios.
pub const HARDENING_LIMIT: f64 = 0.02;

/// The hardening's rows: (metric, label, judged against [`HARDENING_LIMIT`]).
const HARDENING_METRICS: [(&str, &str, bool); 4] = [
    ("rr_tps", "TCP RR, transactions/s", true),
    ("crr_cps", "TCP CRR, connections/s", true),
    ("bulk_gbps", "TCP bulk, Gbit/s", false),
    ("udp_pps", "UDP echo, packets/s", false),
];

/// One metric of this tree (after) against the datapath before issue 11's hardening, from the
/// same repetitions of the same run.
#[derive(Clone, Debug, PartialEq)]
pub struct HardeningRow {
    pub metric: String,
    pub label: String,
    /// linkrt_before / bare: median, min, max of the per-repetition ratios.
    pub before: (f64, f64, f64),
    /// linkrt / bare, likewise.
    pub after: (f64, f64, f64),
    /// linkrt / linkrt_before per repetition (the same as the ratio of the two ratios to bare,
    /// since both divide by the same repetition's bare): median, min, max.
    pub after_over_before: (f64, f64, f64),
    /// 1 − after/before: the share of the throughput the hardening costs (negative: a gain),
    /// for the median and for the worst and best repetitions: (median, lowest, highest).
    pub cost: (f64, f64, f64),
    /// Judged against [`HARDENING_LIMIT`] (RR and CRR); None for the others.
    pub met: Option<bool>,
    pub margin: String,
}

fn ratio_triple(st: &Stat) -> Option<(f64, f64, f64)> {
    Some((st.ratio_to_bare?, st.ratio_min?, st.ratio_max?))
}

/// The hardening's cost per metric; empty when the run had no `linkrt_before` path.
pub fn hardening(r: &Report) -> Vec<HardeningRow> {
    let mut rows = Vec::new();
    for (metric, label, judged) in HARDENING_METRICS {
        let Some(m) = r.paths.get(metric) else { continue };
        let (Some(after), Some(before)) = (m.get("linkrt"), m.get("linkrt_before")) else {
            continue;
        };
        let (Some(a), Some(b)) = (ratio_triple(after), ratio_triple(before)) else {
            continue;
        };
        let mut rel = ratios(&after.runs, &before.runs);
        if rel.is_empty() {
            continue;
        }
        rel.sort_by(f64::total_cmp);
        let rel = (median(&rel), rel[0], rel[rel.len() - 1]);
        let cost = (1.0 - rel.0, 1.0 - rel.2, 1.0 - rel.1);
        let (met, margin) = if judged {
            let spare = (HARDENING_LIMIT - cost.0) * 100.0;
            let met = cost.0 <= HARDENING_LIMIT;
            let mut m = if met {
                format!("{spare:.1} points to spare")
            } else {
                format!("{:.1} points over", -spare)
            };
            if cost.2 > HARDENING_LIMIT && cost.1 <= HARDENING_LIMIT {
                let _ = write!(
                    m,
                    "; the repetitions range from {} to {}, across the limit",
                    signed_pct(cost.1),
                    signed_pct(cost.2)
                );
            }
            (Some(met), m)
        } else {
            (None, String::new())
        };
        rows.push(HardeningRow {
            metric: metric.into(),
            label: label.into(),
            before: b,
            after: a,
            after_over_before: rel,
            cost,
            met,
            margin,
        });
    }
    rows
}

fn hardening_section(s: &mut String, r: &Report) {
    let rows = hardening(r);
    let Some(before) = &r.before else {
        let _ = writeln!(
            s,
            "\nCost of issue 11's hardening: not measured in this run (no `linkrt_before` path: `linkrt-bench run \
             --linkrt-before`)."
        );
        return;
    };
    let _ = writeln!(
        s,
        "\n**Cost of issue 11's hardening** (the limit: at most {:.0}% of the RR and CRR ratios): the published port \
         through linkrt built at `{}` (before the hardening, the `linkrt_before` column: a world of namespaces of \
         its own, set up like linkrt's) and through this tree (after), in the same interleaved repetitions against \
         the same `bare`. Ratios: median [min–max] of the per-repetition ratios; cost = 1 − after/before, where \
         after/before is the median of the per-repetition linkrt/linkrt_before ratios (its range: the best and the \
         worst repetition):\n",
        HARDENING_LIMIT * 100.0,
        before.commit
    );
    let _ = writeln!(
        s,
        "| metric | before × bare | after × bare | after / before | cost [range] | result |\n|---|---|---|---|---|---|"
    );
    let t = |x: (f64, f64, f64)| format!("{:.2}× [{:.2}–{:.2}]", x.0, x.1, x.2);
    for row in &rows {
        let res = match row.met {
            Some(_) => format!(
                "{} (≤ {:.0}%): {}",
                result(row.met),
                HARDENING_LIMIT * 100.0,
                row.margin
            ),
            None => "no limit".into(),
        };
        let _ = writeln!(
            s,
            "| {} | {} | {} | {} | {} [{} to {}] | {res} |",
            row.label,
            t(row.before),
            t(row.after),
            t(row.after_over_before),
            signed_pct(row.cost.0),
            signed_pct(row.cost.1),
            signed_pct(row.cost.2)
        );
    }
    if rows.is_empty() {
        let _ = writeln!(s, "| – | – | – | – | – | no samples of both paths |");
    }
}

pub fn targets(r: &Report) -> Targets {
    let mut rows = vec![
        at_least(r, "rr_tps", "TCP RR", 1.05),
        at_least(r, "crr_cps", "TCP CRR", 1.00),
        at_least(r, "bulk_gbps", "TCP bulk", 1.00),
        at_least(r, "udp_pps", "UDP echo pkt/s", 1.00),
        flat(r, "rr_tps", "RR"),
        flat(r, "crr_cps", "CRR"),
    ];
    rows.extend(control_rows(r));
    let mut peers = BTreeMap::new();
    let ns: Vec<usize> = r
        .scale
        .get("crr_cps")
        .map(|m| m.keys().copied().collect())
        .unwrap_or_default();
    let (mut ahead, mut total) = (0, 0);
    for peer in ["iptables", "nftables", "docker_proxy"] {
        for (metric, _) in METRICS {
            let mut by_n = BTreeMap::new();
            for &n in &ns {
                let c = peer_cell(r, metric, n, peer);
                if let Some(c) = &c {
                    total += 1;
                    if c.ratio > 1.0 {
                        ahead += 1;
                    }
                }
                by_n.insert(n, c);
            }
            peers.insert((peer.to_string(), metric.to_string()), by_n);
        }
    }
    let all_n = [1, 100, 10_000, 60_000].iter().all(|n| ns.contains(n));
    let which = if all_n {
        String::new()
    } else {
        format!(
            " (only N = {} in this run)",
            ns.iter().map(|n| thousands(*n)).collect::<Vec<_>>().join(", ")
        )
    };
    rows.push(TargetRow {
        target: "ahead of iptables, nftables and docker-proxy at N = 1, 100, 10,000 and 60,000 (CRR, RR, bulk, UDP)"
            .into(),
        measured: format!("ahead in {ahead} of {total}{which}"),
        met: (total > 0 && all_n).then_some(ahead == total),
        margin: if total == 0 || !all_n {
            String::new()
        } else if ahead == total {
            "ahead in every comparison".into()
        } else {
            format!("behind in {} (table below)", total - ahead)
        },
    });
    Targets { rows, peers }
}

/// The generated README block (markers included).
pub fn block(r: &Report, json_path: &str, docs: &str) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "{BEGIN}");
    let _ = writeln!(
        s,
        "<!-- Generated by linkrt-bench from {json_path}; a full `cargo xtask bench` rewrites this block. Do not edit. -->"
    );
    let date = r.date.replacen('T', " ", 1).trim_end_matches('Z').to_string();
    let _ = writeln!(
        s,
        "Measured with `{}` on {date} UTC: kernel {}, {} CPUs ({}), load average {} at the start and {} at the end, \
         {:.0} min in all. {} repetitions × {} s per sample (scale: {} × {} s), every path in the same run, \
         interleaved, the order rotated every repetition. Cells: median [min–max] and, in bold, the median of the \
         per-repetition ratios to `bare`.{}\n",
        r.command,
        r.kernel,
        r.cpus,
        r.cpu_model,
        r.loadavg_start,
        r.loadavg_end,
        r.wall_secs / 60.0,
        r.reps,
        r.secs_per_sample,
        r.scale_reps,
        r.scale_secs,
        if r.quick || r.secs_override.is_some() {
            " **A --quick smoke run or a structure check: these numbers mean nothing.**"
        } else {
            ""
        }
    );
    let _ = writeln!(s, "| metric | {} |", COLUMNS.map(|c| c.1).join(" | "));
    let _ = writeln!(s, "|---|{}", "---|".repeat(COLUMNS.len()));
    for (key, lab) in ROWS {
        let Some(m) = r.paths.get(key) else { continue };
        let cells: Vec<String> = COLUMNS
            .iter()
            .map(|(p, _)| m.get(*p).map(|st| cell(st, *p != "bare")).unwrap_or_else(|| "–".into()))
            .collect();
        let _ = writeln!(s, "| {lab} | {} |", cells.join(" | "));
    }

    let t = targets(r);
    let _ = writeln!(
        s,
        "\n**Targets of issues 14 (datapath), 20 (start latency) and 13 (control plane)**, computed from the JSON \
         (ratios: medians of per-repetition ratios to `bare`; flatness: linkrt's ratio to bare at N against N = 1; \
         the control plane: medians of the series below):\n"
    );
    let _ = writeln!(s, "| target | measured | result |\n|---|---|---|");
    for row in &t.rows {
        let m = if row.margin.is_empty() {
            String::new()
        } else {
            format!(": {}", row.margin)
        };
        let _ = writeln!(s, "| {} | {} | {}{m} |", row.target, row.measured, result(row.met));
    }
    hardening_section(&mut s, r);
    let ns: Vec<usize> = r
        .scale
        .get("crr_cps")
        .map(|m| m.keys().copied().collect())
        .unwrap_or_default();
    if !ns.is_empty() {
        let _ = writeln!(
            s,
            "\nlinkrt against each peer with N published mappings (median of per-repetition linkrt/peer ratios; \
             ✓ ahead, ✗ behind; † the peer was not runnable at that N and its largest measured N stands in, \
             through both ratios to bare):\n"
        );
        let _ = writeln!(
            s,
            "| peer | metric | {} |\n|---|---|{}",
            ns.iter()
                .map(|n| format!("N = {}", thousands(*n)))
                .collect::<Vec<_>>()
                .join(" | "),
            "---|".repeat(ns.len())
        );
        for ((peer, metric), by_n) in &t.peers {
            if by_n.values().all(|c| c.is_none()) {
                continue;
            }
            let ml = METRICS.iter().find(|(k, _)| k == metric).map(|(_, l)| *l).unwrap_or("");
            let cells: Vec<String> = ns
                .iter()
                .map(|n| match by_n.get(n).and_then(|c| c.as_ref()) {
                    Some(c) => format!(
                        "{} {}{}",
                        if c.ratio > 1.0 { "✓" } else { "✗" },
                        signed_pct(c.ratio - 1.0),
                        if c.fallback_n.is_some() { "†" } else { "" }
                    ),
                    None => "–".into(),
                })
                .collect();
            let _ = writeln!(s, "| {} | {ml} | {} |", label(peer), cells.join(" | "));
        }
    }

    if !ns.is_empty() {
        let _ = writeln!(
            s,
            "\nWith N published mappings (the measured one after N−1 others), median [min–max] **× bare**:\n"
        );
        let _ = writeln!(
            s,
            "| metric | N | {} |\n|---|---|{}",
            SCALE_COLUMNS.map(label).join(" | "),
            "---|".repeat(SCALE_COLUMNS.len())
        );
        for (metric, ml) in METRICS {
            let Some(m) = r.scale.get(metric) else { continue };
            for (n, by) in m {
                let cells: Vec<String> = SCALE_COLUMNS
                    .iter()
                    .map(|p| match by.get(*p) {
                        Some(st) => cell(st, *p != "bare"),
                        None => match r.scale_skipped.get(n).and_then(|x| x.get(*p)) {
                            Some(_) => "not run †".into(),
                            None => "–".into(),
                        },
                    })
                    .collect();
                let _ = writeln!(s, "| {ml} | {} | {} |", thousands(*n), cells.join(" | "));
            }
        }
        let skipped: Vec<String> = r
            .scale_skipped
            .iter()
            .flat_map(|(n, m)| {
                m.iter()
                    .map(move |(p, why)| format!("{} at N = {}: {why}", label(p), thousands(*n)))
            })
            .collect();
        if !skipped.is_empty() {
            let _ = writeln!(s, "\n† {}.", skipped.join("; "));
        }
    }

    if !r.local.is_empty() {
        let _ = writeln!(
            s,
            "\nHost processes and hairpin (host: a process in the host namespace, linkrt's through its socket hooks; \
             hairpin: a second container to the host address), median [min–max] **× the bare world's same client**:\n"
        );
        let _ = writeln!(s, "| path | RR tx/s | CRR conn/s |\n|---|---|---|");
        let mut names: Vec<&String> = r.local.values().flat_map(|m| m.keys()).collect();
        names.sort_by_key(|n| {
            (
                LOCAL_ORDER.iter().position(|o| o == n).unwrap_or(usize::MAX),
                n.to_string(),
            )
        });
        names.dedup();
        for p in names {
            let g = |k: &str| {
                r.local
                    .get(k)
                    .and_then(|m| m.get(p))
                    .map(|st| cell(st, !p.ends_with("_bare")))
                    .unwrap_or_else(|| "–".into())
            };
            let _ = writeln!(s, "| {p} | {} | {} |", g("rr_tps"), g("crr_cps"));
        }
    }

    control_section(&mut s, r);
    memory_section(&mut s, r);

    let iso = &r.isolation;
    let _ = writeln!(
        s,
        "\nIsolation of the baselines: {}. Found attached in the bare world: {} (checked {} times, {} interfaces); \
         in the linkrt world: {} programs (the positive control).",
        iso.method,
        if iso.bare_attached.is_empty() {
            "nothing".to_string()
        } else {
            iso.bare_attached
                .iter()
                .map(|a| a.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        },
        iso.bare_checks,
        iso.bare_interfaces,
        iso.linkrt_attached.len()
    );
    let versions: Vec<String> = r.versions.iter().map(|(k, v)| format!("{k} {v}")).collect();
    let _ = writeln!(s, "\nVersions: {}.", versions.join(", "));
    let _ = writeln!(
        s,
        "\n![ratios]({docs}/ratios.png) ![scale]({docs}/scale.png) ![control plane]({docs}/control.png)\n\nAll \
         numbers and runs: [{docs}/results.md]({docs}/results.md), [{docs}/results.json]({docs}/results.json)."
    );
    let _ = writeln!(s, "{END}");
    s
}

/// ", 1 failed start: ERROR" (the first error), or nothing.
fn failed(f: &[String]) -> String {
    match f.first() {
        None => String::new(),
        Some(e) => format!(
            ", {} failed start{} (not timed): {}",
            f.len(),
            if f.len() == 1 { "" } else { "s" },
            e.lines().next().unwrap_or("").replace('|', "/")
        ),
    }
}

fn control_section(s: &mut String, r: &Report) {
    let c = &r.control;
    let _ = writeln!(
        s,
        "\nContainer start latency, run to running (ms), on an otherwise empty instance:\n"
    );
    let _ = writeln!(
        s,
        "| launcher | start p50 | start p99 | start [min–max] | removal p50 | what |\n|---|---|---|---|---|---|"
    );
    for l in &c.launchers {
        let _ = writeln!(
            s,
            "| {} | {} | {} | [{}–{}] | {} | {} ({} cycles{}) |",
            l.name,
            fmt(l.start_ms.median),
            fmt(l.start_ms.p99),
            fmt(l.start_ms.min),
            fmt(l.start_ms.max),
            fmt(l.rm_ms.median),
            l.what,
            l.start_ms.runs.len(),
            failed(&l.failures)
        );
    }
    for (name, why) in &c.unusable {
        let first = why.lines().next().unwrap_or("");
        let _ = writeln!(s, "| {name} | not usable here | | | | {first} |");
    }
    if c.ps_containers > 0 {
        let _ = writeln!(
            s,
            "\n`linkrt ps -a` with {} containers: {} ms [{}–{}]. Starting them one after another (container i while \
             i−1 run): p50 {} ms, p99 {} ms [{}–{}]{}; `rm -f` of each: p50 {} ms.",
            c.ps_containers,
            fmt(c.ps_a_ms.median),
            fmt(c.ps_a_ms.min),
            fmt(c.ps_a_ms.max),
            fmt(c.fill_start_ms.median),
            fmt(c.fill_start_ms.p99),
            fmt(c.fill_start_ms.min),
            fmt(c.fill_start_ms.max),
            failed(&c.fill_failures),
            fmt(c.fill_rm_ms.median)
        );
    }
    if c.by_n.is_empty() {
        return;
    }
    let _ = writeln!(
        s,
        "\nControl plane against the mappings that already exist (ms; linkrt: median [min–max]; the peers: one \
         timing each, in the bare world on top of their own N mappings):\n"
    );
    let _ = writeln!(
        s,
        "| N | existing mappings | linkrt `run -d -p` (1 port) | `rm -f` | publish 10,000 ports | unpublish 10,000 | \
         `iptables-restore --noflush` 10,000 | Docker's per-rule execs, 10,000 (extrapolated) | nft map, 10,000 |\n\
         |---|---|---|---|---|---|---|---|---|"
    );
    let o = |v: Option<f64>| v.map(fmt).unwrap_or_else(|| "–".into());
    let _ = writeln!(
        s,
        "| – | 0 | {}{} | – | – | – | – | – | – |",
        cell(&c.run_d_none_ms, false),
        failed(&c.run_d_none_failures)
    );
    for (n, x) in &c.by_n {
        let _ = writeln!(
            s,
            "| {} | {} | {}{} | {} | {} | {} | {} | {} ({} ports timed) | {} |",
            thousands(*n),
            thousands(x.existing_mappings),
            cell(&x.run_d_ms, false),
            failed(&x.run_failures),
            cell(&x.rm_f_ms, false),
            cell(&x.publish_10000_ms, false),
            cell(&x.unpublish_10000_ms, false),
            o(x.iptables_restore_10000_ms),
            o(x.iptables_execs_10000_ms),
            x.iptables_execs_ports_timed,
            o(x.nft_map_10000_ms)
        );
    }
}

fn memory_section(s: &mut String, r: &Report) {
    let m = &r.memory;
    if m.maps.is_empty() {
        return;
    }
    let mut maps = m.maps.clone();
    maps.sort_by_key(|m| std::cmp::Reverse(m.bytes_memlock));
    let top: Vec<String> = maps
        .iter()
        .take(4)
        .map(|x| {
            format!(
                "{} {} ({}, {} entries)",
                x.name,
                mib(x.bytes_memlock),
                x.kind,
                thousands(x.max_entries as usize)
            )
        })
        .collect();
    let by_n: Vec<String> = m
        .maps_bytes_by_n
        .iter()
        .map(|(n, b)| format!("N = {}: {}", thousands(*n), mib(*b)))
        .collect();
    let _ = writeln!(
        s,
        "\nMemory: this instance's {} maps lock {} (read through its own pins with `bpftool map show pinned`; largest: \
         {}); by N: {}. Its {} programs: {:.0} KiB.",
        m.maps.len(),
        mib(m.maps_bytes),
        top.join(", "),
        by_n.join(", "),
        m.progs.len(),
        m.progs_bytes as f64 / 1024.0
    );
    let mut procs = Vec::new();
    for p in [&m.supervisor, &m.supervisor_10000, &m.docker_proxy, &m.docker_proxy_all]
        .into_iter()
        .flatten()
    {
        procs.push(format!(
            "{}: RSS {}, PSS {}",
            p.what,
            kib_as_mib(p.rss_kib),
            kib_as_mib(p.pss_kib)
        ));
    }
    if !procs.is_empty() {
        let _ = writeln!(s, "Processes: {}.", procs.join("; "));
    }
}

/// Replaces the block between the markers of `readme` (exactly one of each, in order).
pub fn replace_block(readme: &str, block: &str) -> Result<String> {
    let (b, e) = (readme.matches(BEGIN).count(), readme.matches(END).count());
    if b != 1 || e != 1 {
        bail!("README must contain {BEGIN} and {END} once each (found {b} and {e})");
    }
    let start = readme.find(BEGIN).context("begin marker")?;
    let end = readme.find(END).context("end marker")? + END.len();
    if end < start {
        bail!("{END} comes before {BEGIN}");
    }
    let mut end = end;
    if readme[end..].starts_with('\n') {
        end += 1;
    }
    Ok(format!("{}{}{}", &readme[..start], block, &readme[end..]))
}

/// Rewrites the README's block from a results.json file. A quick run is refused.
pub fn update_readme(readme: &Path, json: &Path, docs: &str) -> Result<()> {
    let r: Report =
        serde_json::from_str(&fs::read_to_string(json).with_context(|| format!("reading {}", json.display()))?)
            .with_context(|| format!("parsing {}", json.display()))?;
    if r.quick || r.secs_override.is_some() {
        bail!(
            "{} is from a --quick run or a structure check: the README only shows full runs",
            json.display()
        );
    }
    let text = fs::read_to_string(readme).with_context(|| format!("reading {}", readme.display()))?;
    let new = replace_block(&text, &block(&r, &json.to_string_lossy(), docs))?;
    fs::write(readme, new).with_context(|| format!("writing {}", readme.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    const FIXTURE: &str = include_str!("../fixtures/small.json");

    fn fixture() -> Report {
        serde_json::from_str(FIXTURE).expect("fixture parses")
    }

    #[test]
    fn block_from_fixture() {
        let b = block(&fixture(), "bench-results/results.json", "docs/bench");
        assert!(b.starts_with(BEGIN) && b.trim_end().ends_with(END), "{b}");
        assert!(b.contains("Measured with `cargo xtask bench` on 2026-12-01 10:00:00 UTC: kernel 6.18.0-test, 2 CPUs"));
        // The main table: medians, ranges, and the ratio to bare in bold (none for bare itself).
        assert!(
            b.contains("| TCP RR, transactions/s | 10000 [9000–11000] | 10600 [10000–11000] **1.06×** |"),
            "{b}"
        );
        // Targets computed from the runs: RR 1.06 ≥ 1.05 met; CRR 0.95 < 1.00 missed.
        assert!(
            b.contains("| TCP RR ≥ 1.05× bare | 1.06× | **met**: 0.01× above (+1.0%) |"),
            "{b}"
        );
        assert!(
            b.contains("| TCP CRR ≥ 1.00× bare | 0.95× | **missed**: 0.05× short (-5.0%) |"),
            "{b}"
        );
        // Flatness: linkrt's CRR ratio 0.95 at N = 1 and 0.90 at 60,000: −5.3%, missed.
        assert!(
            b.contains("| CRR with 60,000 mappings within ±3% of N = 1 | -5.3% | **missed**: 2.3 points over |"),
            "{b}"
        );
        assert!(
            b.contains("| RR with 60,000 mappings within ±3% of N = 1 | +0.0% | **met**: 3.0 points to spare |"),
            "{b}"
        );
        // docker-proxy was not run at 60,000: its N = 1 stands in, marked.
        assert!(
            b.contains("| docker-proxy | CRR conn/s | ✓ +375.0% | ✓ +350.0%† |"),
            "{b}"
        );
        assert!(b.contains("| iptables | CRR conn/s | ✓ +5.6% | ✓ +800.0% |"), "{b}");
        assert!(b.contains("docker-proxy at N = 60,000: one process per port"), "{b}");
        assert!(b.contains("| linkrt | 120 | 150 | [110–150] | 80.0 |"), "{b}");
        assert!(
            b.contains("| crun (floor) | not usable here | | | | cgroups in hybrid mode not supported |"),
            "{b}"
        );
        assert!(b.contains("maps lock 2.0 MiB"), "{b}");
        assert!(
            !b.contains("| nftables | CRR conn/s |"),
            "a peer without numbers has no row: {b}"
        );
        assert!(!b.contains("NaN") && !b.contains("inf"), "{b}");
    }

    #[test]
    fn targets_from_fixture() {
        let t = targets(&fixture());
        let met: Vec<Option<bool>> = t.rows.iter().map(|r| r.met).collect();
        // RR met, CRR missed, bulk and UDP absent from the fixture, RR flat, CRR not flat; the
        // control plane: start 120 ms missed, no floor, rm -f 80 ms missed, ps -a 52.5 ms with
        // 202 containers missed, publishing 150 ms missed, no N = 60,000 control series; peers.
        assert_eq!(
            met,
            vec![
                Some(true),
                Some(false),
                None,
                None,
                Some(true),
                Some(false),
                Some(false),
                None,
                Some(false),
                Some(false),
                Some(false),
                None,
                None
            ]
        );
        assert_eq!(t.rows[6].measured, "120.0 ms");
        assert_eq!(t.rows[6].margin, "60.0 ms over");
        assert_eq!(t.rows[9].target, "`ps -a` with 202 containers ≤ 50 ms");
        // "at N = 1, 100, 10,000 and 60,000" cannot be judged from a run with only 1 and 60,000.
        assert_eq!(t.rows[12].measured, "ahead in 8 of 8 (only N = 1, 60,000 in this run)");
    }

    /// The fixture with a `linkrt_before` path of these RR and CRR runs (one per repetition).
    fn with_before(rr: &[f64], crr: &[f64]) -> Report {
        let mut r = fixture();
        for (metric, runs) in [("rr_tps", rr), ("crr_cps", crr)] {
            let m = r.paths.get_mut(metric).unwrap();
            let bare = m["bare"].runs.clone();
            m.insert("linkrt_before".into(), Stat::of(runs).with_ratio(&bare));
        }
        r.before = Some(crate::model::BeforeInfo {
            commit: "0c47e0b".into(),
            no_volume_flag: true,
        });
        r
    }

    #[test]
    fn hardening_cost_is_after_over_before_per_repetition() {
        let f = fixture();
        let after_rr = f.paths["rr_tps"]["linkrt"].runs.clone();
        let after_crr = f.paths["crr_cps"]["linkrt"].runs.clone();
        // RR: before 1% faster in every repetition: cost 1%, met. CRR: 5% faster: missed.
        let rr: Vec<f64> = after_rr.iter().map(|v| v * 1.01).collect();
        let crr: Vec<f64> = after_crr.iter().map(|v| v * 1.05).collect();
        let rows = hardening(&with_before(&rr, &crr));
        assert_eq!(rows.len(), 2, "bulk and UDP are not in the fixture: {rows:?}");
        assert_eq!(rows[0].metric, "rr_tps");
        assert!((rows[0].cost.0 - (1.0 - 1.0 / 1.01)).abs() < 1e-9, "{:?}", rows[0]);
        assert_eq!(rows[0].met, Some(true));
        assert_eq!(rows[1].metric, "crr_cps");
        assert_eq!(rows[1].met, Some(false));
        assert!(rows[1].margin.ends_with("points over"), "{}", rows[1].margin);
        // after/before equals the ratio of the two ratios to bare (the same bare divides both).
        let r0 = &rows[0];
        assert!((r0.after_over_before.0 - r0.after.0 / r0.before.0).abs() < 1e-9);
        // A gain is a negative cost, and met.
        let rows = hardening(&with_before(
            &after_rr.iter().map(|v| v * 0.9).collect::<Vec<_>>(),
            &after_crr,
        ));
        assert!(rows[0].cost.0 < 0.0 && rows[0].met == Some(true));
        assert!(rows[1].cost.0.abs() < 1e-12 && rows[1].met == Some(true));
    }

    #[test]
    fn hardening_spread_across_the_limit_is_said() {
        let f = fixture();
        let after = f.paths["rr_tps"]["linkrt"].runs.clone();
        // Per repetition after/before: 1.0, 0.99, 0.95: median cost 1% (met), the worst 5%.
        let before: Vec<f64> = after.iter().zip([1.0, 0.99, 0.95]).map(|(a, q)| a / q).collect();
        let crr = f.paths["crr_cps"]["linkrt"].runs.clone();
        let rows = hardening(&with_before(&before, &crr));
        let rr = &rows[0];
        assert_eq!(rr.met, Some(true));
        assert!(
            (rr.cost.0 - 0.01).abs() < 1e-9 && (rr.cost.2 - 0.05).abs() < 1e-9,
            "{rr:?}"
        );
        assert!(rr.margin.contains("across the limit"), "{}", rr.margin);
        let b = block(&with_before(&before, &crr), "x.json", "docs");
        assert!(
            b.contains("**Cost of issue 11's hardening** (the limit: at most 2% of the RR and CRR ratios)"),
            "{b}"
        );
        assert!(b.contains("linkrt built at `0c47e0b`"), "{b}");
        assert!(
            b.contains("| TCP RR, transactions/s | ")
                && b.contains("| +1.0% [+0.0% to +5.0%] | **met** (≤ 2%): 1.0 points to spare"),
            "{b}"
        );
        // The main table has the before column.
        assert!(b.contains("| metric | bare | linkrt | linkrt before issue 11 |"), "{b}");
    }

    #[test]
    fn no_before_path_no_hardening_claim() {
        let r = fixture();
        assert!(hardening(&r).is_empty());
        let b = block(&r, "x.json", "docs");
        assert!(
            b.contains("Cost of issue 11's hardening: not measured in this run"),
            "{b}"
        );
        assert!(!b.contains("**met** (≤ 2%)"), "{b}");
    }

    #[test]
    fn replace_between_markers() {
        let readme = format!("# x\n\nintro\n\n{BEGIN}\nold\n{END}\n\n## Next\n");
        let new = replace_block(&readme, &format!("{BEGIN}\nnew\n{END}\n")).unwrap();
        assert_eq!(new, format!("# x\n\nintro\n\n{BEGIN}\nnew\n{END}\n\n## Next\n"));
        assert!(replace_block("no markers", "x").is_err());
        assert!(replace_block(&format!("{END}\n{BEGIN}\n"), "x").is_err());
        assert!(replace_block(&format!("{BEGIN}{BEGIN}{END}"), "x").is_err());
    }

    #[test]
    fn quick_runs_never_reach_the_readme() {
        let dir = std::env::temp_dir().join(format!("linkrt-bench-readme-test-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let mut r = fixture();
        r.quick = true;
        let (json, readme) = (dir.join("results.json"), dir.join("README.md"));
        fs::write(&json, serde_json::to_string(&r).unwrap()).unwrap();
        let text = format!("a\n{BEGIN}\nkeep\n{END}\n");
        fs::write(&readme, &text).unwrap();
        assert!(update_readme(&readme, &json, "docs/bench").is_err());
        assert_eq!(fs::read_to_string(&readme).unwrap(), text);
        r.quick = false;
        fs::write(&json, serde_json::to_string(&r).unwrap()).unwrap();
        update_readme(&readme, &json, "docs/bench").unwrap();
        let after = fs::read_to_string(&readme).unwrap();
        assert!(
            after.starts_with("a\n<!-- bench:begin -->") && !after.contains("keep"),
            "{after}"
        );
        fs::remove_dir_all(&dir).unwrap();
    }
}
