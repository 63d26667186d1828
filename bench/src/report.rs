//! The benchmark's outputs: a markdown table, JSON, and PNG charts.
use std::{fmt::Write as _, fs, path::Path};

use anyhow::Result;
use plotters::prelude::*;

use crate::run::Report;

const FONT: &str = "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf";
const PATHS: [&str; 5] = ["direct", "linkrt", "iptables", "nftables", "proxy"];

fn fmt(v: f64) -> String {
    if v >= 100.0 {
        format!("{v:.0}")
    } else if v >= 10.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    }
}

pub fn markdown(r: &Report, command: &str) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "Measured with `{command}` (kernel {}, {} repetitions of {} s per sample, interleaved; median, [min–max], and the median of per-repetition ratios to `direct`).\n",
        r.kernel, r.reps, r.secs_per_sample
    );
    let rows = [
        ("bulk_gbps", "TCP bulk, Gbit/s"),
        ("rr_tps", "TCP RR, transactions/s"),
        ("rr_p50_us", "TCP RR p50 latency, µs"),
        ("rr_p99_us", "TCP RR p99 latency, µs"),
        ("rr_cpu_us", "TCP RR CPU µs/transaction"),
        ("crr_cps", "TCP CRR, connections/s"),
        ("crr_cpu_us", "TCP CRR CPU µs/connection"),
        ("udp_pps", "UDP echo, packets/s"),
    ];
    let _ = writeln!(s, "| metric | {} |", PATHS.join(" | "));
    let _ = writeln!(s, "|---|{}", "---|".repeat(PATHS.len()));
    for (key, label) in rows {
        let Some(m) = r.paths.get(key) else { continue };
        let cells: Vec<String> = PATHS
            .iter()
            .map(|p| match m.get(*p) {
                Some(st) => {
                    let ratio = st
                        .ratio_to_direct
                        .filter(|_| *p != "direct")
                        .map(|x| format!(" (**{x:.2}×**)"))
                        .unwrap_or_default();
                    format!("{} [{}–{}]{ratio}", fmt(st.median), fmt(st.min), fmt(st.max))
                }
                None => "–".into(),
            })
            .collect();
        let _ = writeln!(s, "| {label} | {} |", cells.join(" | "));
    }
    let _ = writeln!(
        s,
        "\nScaling with the number of published mappings (the measured one last), median:\n"
    );
    let _ = writeln!(
        s,
        "| mappings | metric | direct | linkrt | iptables | nftables |\n|---|---|---|---|---|---|"
    );
    for (label, table) in [
        ("CRR conn/s", &r.scale_crr),
        ("RR tx/s", &r.scale_rr),
        ("bulk Gbit/s", &r.scale_bulk_gbps),
        ("UDP pkt/s", &r.scale_udp_pps),
    ] {
        for (n, m) in table {
            let c: Vec<String> = ["direct", "linkrt", "iptables", "nftables"]
                .iter()
                .map(|p| m.get(*p).map(|v| fmt(*v)).unwrap_or("–".into()))
                .collect();
            let _ = writeln!(s, "| {n} | {label} | {} |", c.join(" | "));
        }
    }
    let _ = writeln!(
        s,
        "\nHost processes and hairpin (median):\n\n| path | RR tx/s | CRR conn/s |\n|---|---|---|"
    );
    for p in [
        "host_direct",
        "host_linkrt",
        "host_proxy",
        "hairpin_direct",
        "hairpin_linkrt",
    ] {
        let g = |k: &str| {
            r.local
                .get(k)
                .and_then(|m| m.get(p))
                .map(|s| fmt(s.median))
                .unwrap_or("–".into())
        };
        let _ = writeln!(s, "| {p} | {} | {} |", g("rr_tps"), g("crr_cps"));
    }
    let _ = writeln!(s, "\nControl plane (ms):\n\n| operation | ms |\n|---|---|");
    for (k, v) in &r.control_ms {
        let _ = writeln!(s, "| {k} | {} |", fmt(*v));
    }
    for n in &r.notes {
        let _ = writeln!(s, "\n- {n}");
    }
    s
}

fn font() -> bool {
    match fs::read(FONT) {
        Ok(bytes) => {
            plotters::style::register_font("sans-serif", FontStyle::Normal, Box::leak(bytes.into_boxed_slice())).is_ok()
        }
        Err(_) => false,
    }
}

pub fn charts(r: &Report, dir: &Path) -> Result<Vec<String>> {
    if !font() {
        return Ok(vec![format!(
            "no charts: {FONT} missing (apt-get install fonts-dejavu-core)"
        )]);
    }
    let colors = [
        RGBColor(120, 120, 120),
        RGBColor(31, 119, 180),
        RGBColor(214, 39, 40),
        RGBColor(255, 127, 14),
        RGBColor(148, 103, 189),
    ];
    // 1. Ratio to direct per metric.
    let metrics = [
        ("bulk_gbps", "bulk"),
        ("rr_tps", "RR"),
        ("crr_cps", "CRR"),
        ("udp_pps", "UDP pps"),
    ];
    let path = dir.join("ratios.png");
    {
        let root = BitMapBackend::new(&path, (900, 480)).into_drawing_area();
        root.fill(&WHITE)?;
        let mut c = ChartBuilder::on(&root)
            .caption(
                "Throughput relative to the direct path (higher is better)",
                ("sans-serif", 20),
            )
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(50)
            .build_cartesian_2d(0f64..metrics.len() as f64, 0f64..1.3f64)?;
        c.configure_mesh()
            .disable_x_mesh()
            .x_labels(metrics.len() * 2 + 1)
            .x_label_formatter(&|x| {
                let i = x.floor() as usize;
                if (x - i as f64 - 0.5).abs() < 0.01 && i < metrics.len() {
                    metrics[i].1.to_string()
                } else {
                    String::new()
                }
            })
            .y_desc("ratio to direct")
            .draw()?;
        for (pi, p) in PATHS.iter().enumerate() {
            let color = colors[pi];
            let bars: Vec<_> = metrics
                .iter()
                .enumerate()
                .filter_map(|(mi, (k, _))| {
                    let v = r.paths.get(*k)?.get(*p)?.ratio_to_direct.unwrap_or(1.0);
                    let x0 = mi as f64 + 0.1 + pi as f64 * 0.16;
                    Some(Rectangle::new([(x0, 0.0), (x0 + 0.14, v)], color.filled()))
                })
                .collect();
            c.draw_series(bars)?
                .label(*p)
                .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 10, y + 5)], color.filled()));
        }
        c.configure_series_labels()
            .background_style(WHITE.mix(0.9))
            .border_style(BLACK)
            .position(SeriesLabelPosition::UpperRight)
            .draw()?;
        root.present()?;
    }
    // 2. CRR against the number of mappings.
    let path2 = dir.join("scale.png");
    {
        let root = BitMapBackend::new(&path2, (900, 480)).into_drawing_area();
        root.fill(&WHITE)?;
        let maxv = r
            .scale_crr
            .values()
            .flat_map(|m| m.values())
            .cloned()
            .fold(1.0, f64::max)
            * 1.15;
        let ns: Vec<usize> = r.scale_crr.keys().cloned().collect();
        let mut c = ChartBuilder::on(&root)
            .caption("TCP connections/s against published mappings", ("sans-serif", 20))
            .margin(12)
            .margin_right(40)
            .x_label_area_size(40)
            .y_label_area_size(60)
            .build_cartesian_2d(0f64..(ns.len().max(2) - 1) as f64, 0f64..maxv)?;
        c.configure_mesh()
            .x_labels(ns.len())
            .x_label_formatter(&|x| ns.get(x.round() as usize).map(|n| n.to_string()).unwrap_or_default())
            .x_desc("published mappings (the measured one last)")
            .y_desc("conn/s")
            .draw()?;
        for (pi, p) in PATHS.iter().enumerate().take(4) {
            let color = colors[pi];
            let pts: Vec<(f64, f64)> = ns
                .iter()
                .enumerate()
                .filter_map(|(i, n)| Some((i as f64, *r.scale_crr.get(n)?.get(*p)?)))
                .collect();
            c.draw_series(LineSeries::new(pts.clone(), color.stroke_width(3)))?
                .label(*p)
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 16, y)], color.stroke_width(3)));
            c.draw_series(pts.into_iter().map(|pt| Circle::new(pt, 4, color.filled())))?;
        }
        c.configure_series_labels()
            .background_style(WHITE.mix(0.9))
            .border_style(BLACK)
            .position(SeriesLabelPosition::LowerLeft)
            .draw()?;
        root.present()?;
    }
    Ok(vec![path.display().to_string(), path2.display().to_string()])
}
