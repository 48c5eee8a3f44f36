//! The outputs: a table on stdout, the summary as JSON, and one self-contained HTML file
//! (inline SVG, no external assets).

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use crate::args::{Config, Load, Stop};
use crate::run::{Measured, Summary};
use crate::stats::Percentiles;

#[derive(Debug, thiserror::Error)]
#[error("writing {path}: {source}")]
pub struct WriteError {
    path: PathBuf,
    source: std::io::Error,
}

pub fn write_files(s: &Summary, cfg: &Config) -> Result<(), WriteError> {
    let write = |path: &Path, text: String| {
        std::fs::write(path, text).map_err(|source| WriteError {
            path: path.to_path_buf(),
            source,
        })
    };
    if let Some(p) = &cfg.json {
        let text = serde_json::to_string_pretty(s).unwrap_or_default();
        write(p, text)?;
        eprintln!("wrote {}", p.display());
    }
    if let Some(p) = &cfg.html {
        write(p, html(s))?;
        eprintln!("wrote {}", p.display());
    }
    Ok(())
}

fn describe(s: &Summary) -> String {
    let load = match s.load {
        Load::Rate(r) => format!("rate {r}/s"),
        Load::Concurrency(n) => format!("concurrency {n}"),
    };
    let stop = match s.stop {
        Stop::Duration(d) => format!("duration {}s", d.as_secs_f64()),
        Stop::Count(n) => format!("count {n}"),
    };
    let slow = s
        .slow_share
        .map_or(String::new(), |f| format!(", slow share {f}"));
    let backlog = s.backlog.as_ref().map_or(String::new(), |b| {
        format!(", backlog {} (phases: {stop} each)", b.requested)
    });
    format!(
        "scenario {}, {load}, {stop}, {} retailer(s) per cart{slow}{backlog}",
        s.scenario, s.retailers_per_cart
    )
}

/// Up to ten ids, then how many more.
fn id_list(ids: &[String]) -> String {
    if ids.is_empty() {
        return "0".to_string();
    }
    let shown: Vec<&str> = ids.iter().take(10).map(String::as_str).collect();
    let more = ids.len().saturating_sub(shown.len());
    let tail = if more > 0 {
        format!(" and {more} more")
    } else {
        String::new()
    };
    format!("{}: {}{tail}", ids.len(), shown.join(", "))
}

pub fn latency_row(out: &mut String, name: &str, p: &Option<Percentiles>) {
    match p {
        Some(p) => {
            let _ = writeln!(
                out,
                "  {name:<18} {:>7} {:>9.1} {:>9.1} {:>9.1} {:>9.1} {:>9.1}",
                p.count, p.p50_ms, p.p90_ms, p.p99_ms, p.p999_ms, p.max_ms
            );
        }
        None => {
            let _ = writeln!(out, "  {name:<18}       0         -");
        }
    }
}

pub fn table(s: &Summary) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "\nICON bench: {}", describe(s));
    let _ = writeln!(
        out,
        "gateway {}, callbacks to {}",
        s.gateway, s.callback_url
    );
    let _ = writeln!(out, "setup (before the clock)   {:.1} s", s.setup_s);
    match &s.backlog {
        Some(b) => crate::backlog::table::write(&mut out, &s.measured, b),
        None => phase_rows(&mut out, &s.measured),
    }
    if !s.notes.is_empty() {
        let _ = writeln!(out);
        for n in &s.notes {
            let _ = writeln!(out, "note: {n}");
        }
    }
    out
}

/// One measured phase's figures: counts, latencies, database and processes.
pub fn phase_rows(out: &mut String, m: &Measured) {
    let a = &m.accounting;
    let c = &a.completeness;
    let _ = writeln!(out, "sent                       {}", a.sent);
    let _ = writeln!(
        out,
        "accepted (202)             {}  ({:.1}/s over {:.1} s)",
        a.accepted, a.accepted_per_s, a.send_window_s
    );
    // With slow checkouts, the figures below are the healthy ones' and say so.
    let healthy = if a.slow.is_some() { " healthy" } else { "" };
    if let Some(slow) = &a.slow {
        let _ = writeln!(
            out,
            "healthy                    {} sent, {} accepted",
            a.sent - slow.sent,
            c.accepted
        );
        let _ = writeln!(
            out,
            "slow (callback hangs)      {} sent, {} accepted; callbacks arrived for {} ({} attempts seen); never complete, not counted as missing",
            slow.sent, slow.accepted, slow.attempted, slow.attempts_seen
        );
        let _ = writeln!(
            out,
            "slow, no attempt seen      {}",
            id_list(&slow.not_attempted)
        );
    }
    let _ = writeln!(
        out,
        "{:<27}{}/{}  ({:.1}/s over {:.1} s)",
        format!("called back{healthy}"),
        c.called_back,
        c.accepted,
        a.callbacks_per_s,
        a.callback_window_s
    );
    let _ = writeln!(
        out,
        "{:<27}{}",
        format!("missing callbacks{healthy}"),
        id_list(&c.missing)
    );
    let _ = writeln!(
        out,
        "duplicate callbacks        {} by webhook-id, {} by checkout ({} without webhook-id, {} unexpected)",
        a.duplicates.by_webhook_id, a.duplicates.by_checkout, a.duplicates.without_webhook_id, c.unexpected
    );
    let errors = if a.errors.is_empty() {
        "none".to_string()
    } else {
        a.errors
            .iter()
            .map(|(k, v)| format!("{k}: {v}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let _ = writeln!(out, "errors                     {errors}");
    if let Some(lag) = m.max_schedule_lag_ms {
        let _ = writeln!(out, "max lag behind schedule    {lag:.1} ms");
    }
    let _ = writeln!(
        out,
        "\n  latency ms           count       p50       p90       p99     p99.9       max"
    );
    latency_row(out, &format!("202{healthy}"), &a.latency_202);
    latency_row(out, &format!("end-to-end{healthy}"), &a.latency_end_to_end);
    if let Some(slow) = &a.slow {
        latency_row(out, "202 slow", &slow.latency_202);
    }
    if let Some(stages) = &m.stages {
        crate::stages::render::table(out, stages);
    }
    if let Some(db) = &m.database {
        let d = &db.delta;
        let _ = writeln!(
            out,
            "\n  database {:?} (pg_stat_database, database-wide)   total   per checkout ({} accepted)",
            db.database, db.checkouts
        );
        for (name, total, per) in [
            ("committed transactions", d.xact_commit, db.commits),
            ("rollbacks", d.xact_rollback, db.rollbacks),
            ("rows inserted", d.tup_inserted, db.rows_inserted),
            ("rows updated", d.tup_updated, db.rows_updated),
            ("rows deleted", d.tup_deleted, db.rows_deleted),
        ] {
            let _ = writeln!(out, "  {name:<24} {total:>25} {per:>14.2}");
        }
    }
    let _ = writeln!(
        out,
        "\n  process group  procs    CPU ms  CPU ms/checkout  peak RSS MB   RSS MB   (window {:.1} s)",
        m.measured_window_s
    );
    for g in &m.processes {
        let per = g
            .cpu_ms_per_checkout
            .map_or("-".to_string(), |v| format!("{v:.2}"));
        let _ = writeln!(
            out,
            "  {:<13} {:>6} {:>9.0} {:>16} {:>12.1} {:>8.1}",
            g.group, g.processes, g.cpu_ms, per, g.peak_rss_mb, g.rss_mb
        );
    }
    for (status, body) in &m.error_samples {
        let _ = writeln!(out, "\nfirst {status} answer: {body}");
    }
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// A named, coloured line of `(x, y)` points.
type Series<'a> = (&'a str, &'a str, &'a [(f64, f64)]);
/// A named, coloured line of one per-second count.
type Counted = (
    &'static str,
    &'static str,
    fn(&crate::stats::Second) -> usize,
);

const W: f64 = 760.0;
const H: f64 = 300.0;
const PAD: f64 = 50.0;

/// CDF of both latencies on a log-scaled x axis (ms).
fn cdf_svg(series: &[Series]) -> String {
    let all = series.iter().flat_map(|(_, _, pts)| pts.iter());
    let lo = all
        .clone()
        .map(|p| p.0)
        .fold(f64::INFINITY, f64::min)
        .max(0.01);
    let hi = all.map(|p| p.0).fold(0.0, f64::max).max(lo * 10.0);
    let (l0, l1) = (lo.log10().floor(), hi.log10().ceil());
    let x = |v: f64| PAD + (v.max(lo).log10() - l0) / (l1 - l0) * (W - 2.0 * PAD);
    let y = |f: f64| H - PAD + -f * (H - 2.0 * PAD);
    let mut svg = chart_frame();
    let mut decade = l0;
    while decade <= l1 {
        let v = 10f64.powf(decade);
        let _ = write!(svg, "<line x1=\"{0}\" x2=\"{0}\" y1=\"{PAD}\" y2=\"{1}\" stroke=\"#ddd\"/><text x=\"{0}\" y=\"{2}\" font-size=\"11\" text-anchor=\"middle\">{v} ms</text>", x(v), H - PAD, H - PAD + 15.0);
        decade += 1.0;
    }
    for f in [0.0, 0.5, 0.9, 0.99, 1.0] {
        let _ = write!(svg, "<line x1=\"{PAD}\" x2=\"{}\" y1=\"{1}\" y2=\"{1}\" stroke=\"#eee\"/><text x=\"{2}\" y=\"{1}\" font-size=\"11\" text-anchor=\"end\">{f}</text>", W - PAD, y(f), PAD - 4.0);
    }
    for (i, (name, color, pts)) in series.iter().enumerate() {
        let path: Vec<String> = pts
            .iter()
            .map(|(v, f)| format!("{:.1},{:.1}", x(*v), y(*f)))
            .collect();
        line_with_legend(&mut svg, i, &esc(name), color, &path);
    }
    svg.push_str("</svg>");
    svg
}

/// An empty chart: the SVG element and the plot area's border.
fn chart_frame() -> String {
    let mut svg = format!("<svg viewBox=\"0 0 {W} {H}\" width=\"{W}\" height=\"{H}\">");
    let _ = write!(
        svg,
        "<rect x=\"{PAD}\" y=\"{PAD}\" width=\"{}\" height=\"{}\" fill=\"none\" stroke=\"#999\"/>",
        W - 2.0 * PAD,
        H - 2.0 * PAD
    );
    svg
}

/// One series of a chart: its polyline and, in the top left corner, its `i`-th legend line.
fn line_with_legend(svg: &mut String, i: usize, name: &str, color: &str, points: &[String]) {
    let _ = write!(
        svg,
        "<polyline fill=\"none\" stroke=\"{color}\" stroke-width=\"2\" points=\"{}\"/>",
        points.join(" ")
    );
    let _ = write!(
        svg,
        "<text x=\"{}\" y=\"{}\" font-size=\"12\" fill=\"{color}\">{name}</text>",
        PAD + 10.0,
        PAD + 16.0 + 16.0 * i as f64
    );
}

/// Sent, accepted and callbacks per second over the run.
fn throughput_svg(s: &Summary) -> String {
    let secs = &s.measured.accounting.per_second;
    let n = secs.len().max(1) as f64;
    let top = secs
        .iter()
        .map(|b| b.sent.max(b.accepted).max(b.callbacks))
        .max()
        .unwrap_or(1)
        .max(1) as f64;
    let x = |i: f64| PAD + i / n * (W - 2.0 * PAD);
    let y = |v: f64| H - PAD - v / top * (H - 2.0 * PAD);
    let mut svg = chart_frame();
    let _ = write!(svg, "<text x=\"{}\" y=\"{}\" font-size=\"11\" text-anchor=\"end\">{top}/s</text><text x=\"{}\" y=\"{}\" font-size=\"11\" text-anchor=\"end\">0</text>", PAD - 4.0, PAD + 4.0, PAD - 4.0, H - PAD);
    let _ = write!(
        svg,
        "<text x=\"{}\" y=\"{}\" font-size=\"11\" text-anchor=\"end\">{} s</text>",
        W - PAD,
        H - PAD + 15.0,
        secs.len()
    );
    let lines: [Counted; 3] = [
        ("sent", "#999", |b| b.sent),
        ("accepted (202)", "#1f77b4", |b| b.accepted),
        ("callbacks", "#d62728", |b| b.callbacks),
    ];
    for (i, (name, color, get)) in lines.iter().enumerate() {
        let pts: Vec<String> = secs
            .iter()
            .enumerate()
            .map(|(j, b)| format!("{:.1},{:.1}", x(j as f64 + 0.5), y(get(b) as f64)))
            .collect();
        line_with_legend(&mut svg, i, name, color, &pts);
    }
    svg.push_str("</svg>");
    svg
}

pub fn html(s: &Summary) -> String {
    let a = &s.measured.accounting;
    // The charts are of the measured phase: for `backlog`, the one with the backlog waiting.
    let phase = if s.backlog.is_some() {
        " (loaded phase: the backlog waiting)"
    } else {
        ""
    };
    let cdf = cdf_svg(&[
        (
            if a.slow.is_some() {
                "202 latency (healthy checkouts)"
            } else {
                "202 latency"
            },
            "#1f77b4",
            &a.cdf_202,
        ),
        (
            if a.slow.is_some() {
                "end-to-end, healthy checkouts (POST sent to callback received)"
            } else {
                "end-to-end (POST sent to callback received)"
            },
            "#d62728",
            &a.cdf_end_to_end,
        ),
    ]);
    format!(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>icon-bench {}</title>\
<style>body{{font-family:sans-serif;margin:2em}}pre{{background:#f6f6f6;padding:1em}}</style></head><body>\
<h1>icon-bench: {}</h1><h2>Latency distribution (CDF, log scale){phase}</h2>{cdf}{}\
<h2>Throughput per second{phase}</h2>{}<h2>Summary</h2><pre>{}</pre></body></html>\n",
        esc(s.scenario),
        esc(&describe(s)),
        s.measured
            .stages
            .as_ref()
            .map_or(String::new(), crate::stages::render::html),
        throughput_svg(s),
        esc(&table(s)),
    )
}
