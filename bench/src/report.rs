//! The benchmark's outputs besides the JSON: results.md (the README block plus every run and
//! detail) and the PNG charts (all paths, bare, docker-proxy and both firewall peers included).
use std::{fmt::Write as _, fs, path::Path};

use anyhow::Result;
use plotters::prelude::*;

use crate::{
    model::Report,
    readme::{self, COLUMNS, METRICS, fmt},
};

const FONT: &str = "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf";

/// results.md: the same block as the README, then the details.
pub fn markdown(r: &Report, json_path: &str, docs: &str) -> String {
    let mut s = String::from("# linkrt benchmark results\n\n");
    s.push_str(&readme::block(r, json_path, docs));
    let _ = writeln!(s, "\n## Every repetition\n");
    let _ = writeln!(
        s,
        "| metric | path | runs (in repetition order) | ratios to bare [min–max] |\n|---|---|---|---|"
    );
    for (metric, m) in &r.paths {
        for (path, st) in m {
            let ratio = match (st.ratio_min, st.ratio_max) {
                (Some(a), Some(b)) => format!("[{a:.2}–{b:.2}]"),
                _ => String::new(),
            };
            let runs: Vec<String> = st.runs.iter().map(|v| fmt(*v)).collect();
            let _ = writeln!(s, "| {metric} | {path} | {} | {ratio} |", runs.join(", "));
        }
    }
    for (metric, by_n) in &r.scale {
        for (n, m) in by_n {
            for (path, st) in m {
                let runs: Vec<String> = st.runs.iter().map(|v| fmt(*v)).collect();
                let _ = writeln!(s, "| {metric} at N = {n} | {path} | {} | |", runs.join(", "));
            }
        }
    }
    let _ = writeln!(
        s,
        "\n## Memory by map\n\n| pin | type | max entries | locked |\n|---|---|---|---|"
    );
    for m in &r.memory.maps {
        let _ = writeln!(
            s,
            "| {} | {} | {} | {:.2} MiB |",
            m.pin,
            m.kind,
            m.max_entries,
            m.bytes_memlock as f64 / 1048576.0
        );
    }
    let _ = writeln!(s, "\n## Isolation\n");
    let _ = writeln!(
        s,
        "Bare-world namespaces: {}.\n",
        r.isolation.bare_namespaces.join(", ")
    );
    let _ = writeln!(s, "linkrt world's attachments (positive control):\n");
    for a in &r.isolation.linkrt_attached {
        let _ = writeln!(s, "- {a}");
    }
    let _ = writeln!(
        s,
        "\nPrograms in effect for the clients' own cgroup (every path alike): {}\n",
        if r.isolation.client_cgroup_programs.is_empty() {
            "none".to_string()
        } else {
            format!("\n```\n{}\n```", r.isolation.client_cgroup_programs)
        }
    );
    let sys: Vec<String> = r
        .isolation
        .sysctls
        .iter()
        .map(|(k, v)| format!("{k} = {}", v.join(" / ")))
        .collect();
    let _ = writeln!(
        s,
        "Host-namespace sysctls (linkrt world / bare world{}): {}.",
        if r.before.is_some() { " / before world" } else { "" },
        sys.join(", ")
    );
    if let Some(b) = &r.before {
        let _ = writeln!(
            s,
            "\nThe before world's attachments (linkrt at {}, the positive control of `linkrt_before`):\n",
            b.commit
        );
        for a in &r.isolation.before_attached {
            let _ = writeln!(s, "- {a}");
        }
    }
    let _ = writeln!(s, "\n## Phases (s)\n");
    for (k, v) in &r.phase_secs {
        let _ = writeln!(s, "- {k}: {v:.0}");
    }
    let _ = writeln!(s, "\n## Notes\n");
    for n in &r.notes {
        let _ = writeln!(s, "- {n}");
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

fn color(path: &str) -> RGBColor {
    match path {
        "bare" => RGBColor(60, 60, 60),
        "linkrt" => RGBColor(31, 119, 180),
        "linkrt_before" => RGBColor(44, 160, 44),
        "linkrt_nonat" => RGBColor(140, 190, 230),
        "iptables" => RGBColor(214, 39, 40),
        "nftables" => RGBColor(255, 127, 14),
        "docker_proxy" => RGBColor(148, 103, 189),
        "socat" => RGBColor(188, 189, 34),
        _ => RGBColor(127, 127, 127),
    }
}

type Area<'a> = DrawingArea<BitMapBackend<'a>, plotters::coord::Shift>;

pub fn charts(r: &Report, dir: &Path) -> Result<Vec<String>> {
    if !font() {
        return Ok(vec![format!(
            "no charts: {FONT} missing (apt-get install fonts-dejavu-core)"
        )]);
    }
    let p1 = dir.join("ratios.png");
    ratios_chart(r, &BitMapBackend::new(&p1, (1100, 520)).into_drawing_area())?;
    let p2 = dir.join("scale.png");
    scale_chart(r, &BitMapBackend::new(&p2, (1200, 860)).into_drawing_area())?;
    let p3 = dir.join("control.png");
    control_chart(r, &BitMapBackend::new(&p3, (1300, 520)).into_drawing_area())?;
    Ok([p1, p2, p3].iter().map(|p| p.display().to_string()).collect())
}

/// Ratio to bare per metric and path, with the range of the per-repetition ratios.
fn ratios_chart(r: &Report, root: &Area) -> Result<()> {
    root.fill(&WHITE)?;
    let top = METRICS
        .iter()
        .filter_map(|(k, _)| r.paths.get(*k))
        .flat_map(|m| m.values())
        .filter_map(|s| s.ratio_max)
        .fold(1.3f64, f64::max)
        * 1.05;
    let n = COLUMNS.len() as f64;
    let mut c = ChartBuilder::on(root)
        .caption(
            "Throughput relative to bare (median of per-repetition ratios; bars: min–max)",
            ("sans-serif", 20),
        )
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(50)
        .build_cartesian_2d(0f64..METRICS.len() as f64, 0f64..top)?;
    c.configure_mesh()
        .disable_x_mesh()
        .x_labels(METRICS.len() * 2 + 1)
        .x_label_formatter(&|x| {
            let i = x.floor() as usize;
            if (x - i as f64 - 0.5).abs() < 0.01 && i < METRICS.len() {
                METRICS[i].1.to_string()
            } else {
                String::new()
            }
        })
        .y_desc("ratio to bare")
        .draw()?;
    c.draw_series(std::iter::once(PathElement::new(
        vec![(0.0, 1.0), (METRICS.len() as f64, 1.0)],
        BLACK.stroke_width(1),
    )))?;
    let w = 0.8 / n;
    for (pi, (p, lab)) in COLUMNS.iter().enumerate() {
        let col = color(p);
        let mut bars = Vec::new();
        let mut whiskers = Vec::new();
        for (mi, (k, _)) in METRICS.iter().enumerate() {
            let Some(st) = r.paths.get(*k).and_then(|m| m.get(*p)) else {
                continue;
            };
            let v = if *p == "bare" {
                1.0
            } else {
                st.ratio_to_bare.unwrap_or(0.0)
            };
            let x0 = mi as f64 + 0.1 + pi as f64 * w;
            bars.push(Rectangle::new([(x0, 0.0), (x0 + w * 0.9, v)], col.filled()));
            if let (Some(a), Some(b)) = (st.ratio_min, st.ratio_max) {
                let xm = x0 + w * 0.45;
                whiskers.push(PathElement::new(vec![(xm, a), (xm, b)], BLACK.stroke_width(1)));
            }
        }
        c.draw_series(bars)?
            .label(*lab)
            .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 10, y + 5)], col.filled()));
        c.draw_series(whiskers)?;
    }
    c.configure_series_labels()
        .background_style(WHITE.mix(0.9))
        .border_style(BLACK)
        .position(SeriesLabelPosition::UpperRight)
        .draw()?;
    root.present()?;
    Ok(())
}

/// One panel per metric: the median against N for every scale path.
fn scale_chart(r: &Report, root: &Area) -> Result<()> {
    root.fill(&WHITE)?;
    let panels = root.split_evenly((2, 2));
    for ((key, lab), area) in METRICS.iter().zip(panels.iter()) {
        let Some(by_n) = r.scale.get(*key) else { continue };
        let ns: Vec<usize> = by_n.keys().copied().collect();
        let maxv = by_n
            .values()
            .flat_map(|m| m.values())
            .map(|s| s.max)
            .fold(1e-9, f64::max)
            * 1.15;
        let mut c = ChartBuilder::on(area)
            .caption(format!("{lab} against published mappings"), ("sans-serif", 18))
            .margin(10)
            .margin_right(30)
            .x_label_area_size(36)
            .y_label_area_size(60)
            .build_cartesian_2d(-0.2f64..(ns.len().max(2) - 1) as f64 + 0.2, 0f64..maxv)?;
        let ns2 = ns.clone();
        c.configure_mesh()
            .x_labels(ns.len())
            .x_label_formatter(&move |x| {
                let i = x.round();
                if (x - i).abs() < 0.01 {
                    ns2.get(i as usize).map(|n| n.to_string()).unwrap_or_default()
                } else {
                    String::new()
                }
            })
            .x_desc("N (the measured mapping after N-1 others)")
            .y_label_formatter(&|y| fmt(*y))
            .draw()?;
        for p in ["bare", "linkrt", "iptables", "nftables", "docker_proxy"] {
            let col = color(p);
            let pts: Vec<(f64, f64)> = ns
                .iter()
                .enumerate()
                .filter_map(|(i, n)| Some((i as f64, by_n.get(n)?.get(p)?.median)))
                .collect();
            if pts.is_empty() {
                continue;
            }
            let ranges: Vec<PathElement<(f64, f64)>> = ns
                .iter()
                .enumerate()
                .filter_map(|(i, n)| {
                    let s = by_n.get(n)?.get(p)?;
                    Some(PathElement::new(
                        vec![(i as f64, s.min), (i as f64, s.max)],
                        col.stroke_width(2),
                    ))
                })
                .collect();
            c.draw_series(LineSeries::new(pts.clone(), col.stroke_width(3)))?
                .label(readme::label(p))
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 16, y)], col.stroke_width(3)));
            c.draw_series(pts.into_iter().map(|pt| Circle::new(pt, 4, col.filled())))?;
            c.draw_series(ranges)?;
        }
        c.configure_series_labels()
            .background_style(WHITE.mix(0.9))
            .border_style(BLACK)
            .position(SeriesLabelPosition::LowerLeft)
            .draw()?;
    }
    root.present()?;
    Ok(())
}

/// Control-plane times against N (log scale), and start latency per launcher.
fn control_chart(r: &Report, root: &Area) -> Result<()> {
    root.fill(&WHITE)?;
    let (left, right) = root.split_horizontally(760);
    let c = &r.control;
    let ns: Vec<usize> = c.by_n.keys().copied().collect();
    type Get = fn(&crate::model::ControlAtN) -> Option<f64>;
    let series: [(&str, RGBColor, Get); 6] = [
        ("linkrt run -d -p (1 port)", color("linkrt"), |x| {
            Some(x.run_d_ms.median)
        }),
        ("linkrt publish 10,000", RGBColor(23, 190, 207), |x| {
            Some(x.publish_10000_ms.median)
        }),
        ("linkrt unpublish 10,000", RGBColor(140, 190, 230), |x| {
            Some(x.unpublish_10000_ms.median)
        }),
        ("iptables-restore 10,000", color("iptables"), |x| {
            x.iptables_restore_10000_ms
        }),
        ("Docker per-rule execs 10,000", RGBColor(140, 20, 20), |x| {
            x.iptables_execs_10000_ms
        }),
        ("nft map 10,000", color("nftables"), |x| x.nft_map_10000_ms),
    ];
    if !ns.is_empty() {
        let vals: Vec<f64> = c
            .by_n
            .values()
            .flat_map(|x| series.iter().filter_map(move |s| (s.2)(x)))
            .collect();
        let hi = vals.iter().copied().fold(1.0, f64::max) * 3.0;
        let mut ch = ChartBuilder::on(&left)
            .caption("Control plane against published mappings (ms, log)", ("sans-serif", 18))
            .margin(10)
            .x_label_area_size(36)
            .y_label_area_size(70)
            .build_cartesian_2d(-0.2f64..(ns.len().max(2) - 1) as f64 + 0.2, (0.5f64..hi).log_scale())?;
        let ns2 = ns.clone();
        ch.configure_mesh()
            .x_labels(ns.len())
            .x_label_formatter(&move |x| {
                let i = x.round();
                if (x - i).abs() < 0.01 {
                    ns2.get(i as usize).map(|n| n.to_string()).unwrap_or_default()
                } else {
                    String::new()
                }
            })
            .x_desc("N (mappings already published: N-1 + the server's 2)")
            .y_desc("ms")
            .y_label_formatter(&|y| fmt(*y))
            .draw()?;
        for (lab, col, get) in series {
            let pts: Vec<(f64, f64)> = ns
                .iter()
                .enumerate()
                .filter_map(|(i, n)| Some((i as f64, get(c.by_n.get(n)?)?.max(0.5))))
                .collect();
            ch.draw_series(LineSeries::new(pts.clone(), col.stroke_width(3)))?
                .label(lab)
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 16, y)], col.stroke_width(3)));
            ch.draw_series(pts.into_iter().map(|pt| Circle::new(pt, 4, col.filled())))?;
        }
        ch.configure_series_labels()
            .background_style(WHITE.mix(0.9))
            .border_style(BLACK)
            .position(SeriesLabelPosition::UpperLeft)
            .draw()?;
    }
    if !c.launchers.is_empty() {
        let hi = c.launchers.iter().map(|l| l.start_ms.p99).fold(1.0, f64::max) * 1.2;
        let names: Vec<String> = c.launchers.iter().map(|l| l.name.clone()).collect();
        let mut ch = ChartBuilder::on(&right)
            .caption("Start latency, run to running (ms)", ("sans-serif", 18))
            .margin(10)
            .x_label_area_size(36)
            .y_label_area_size(50)
            .build_cartesian_2d(0f64..names.len() as f64, 0f64..hi)?;
        let n2 = names.clone();
        ch.configure_mesh()
            .disable_x_mesh()
            .x_labels(names.len() * 2 + 1)
            .x_label_formatter(&move |x| {
                let i = x.floor() as usize;
                if (x - i as f64 - 0.5).abs() < 0.01 {
                    n2.get(i).cloned().unwrap_or_default()
                } else {
                    String::new()
                }
            })
            .draw()?;
        for (k, (lab, col)) in [("p50", color("linkrt")), ("p99", RGBColor(174, 199, 232))]
            .into_iter()
            .enumerate()
        {
            let bars: Vec<_> = c
                .launchers
                .iter()
                .enumerate()
                .map(|(i, l)| {
                    let v = if k == 0 { l.start_ms.median } else { l.start_ms.p99 };
                    let x0 = i as f64 + 0.15 + k as f64 * 0.35;
                    Rectangle::new([(x0, 0.0), (x0 + 0.3, v)], col.filled())
                })
                .collect();
            ch.draw_series(bars)?
                .label(lab)
                .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 10, y + 5)], col.filled()));
        }
        ch.configure_series_labels()
            .background_style(WHITE.mix(0.9))
            .border_style(BLACK)
            .position(SeriesLabelPosition::UpperRight)
            .draw()?;
    }
    root.present()?;
    Ok(())
}
