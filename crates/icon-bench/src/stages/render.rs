//! The stage breakdown as the table's rows and as the HTML report's chart (inline SVG).

use std::fmt::Write as _;

use super::breakdown::Row;
use super::StageReport;

fn row_line(out: &mut String, r: &Row) {
    let p = &r.percentiles;
    let _ = writeln!(
        out,
        "  {:<24} {:>7} {:>9.2} {:>9.2} {:>9.2} {:>9.2}",
        r.label, p.count, r.mean_ms, p.p50_ms, p.p90_ms, p.p99_ms
    );
}

/// The rows under a phase's latencies.
pub fn table(out: &mut String, r: &StageReport) {
    let b = &r.breakdown;
    let _ = writeln!(
        out,
        "\n  stages: {} of {} traced checkouts broken down (share {}); {} spans in {} exports to {}/v1/traces",
        b.complete, b.traced, r.share, r.received.spans, r.received.exports, r.endpoint
    );
    if b.path.is_empty() {
        let _ = writeln!(out, "  (no checkout could be broken down)");
    } else {
        let _ = writeln!(
            out,
            "  stage ms                   count      mean       p50       p90       p99"
        );
        for row in &b.path {
            row_line(out, row);
        }
        if let Some(e2e) = &b.end_to_end {
            row_line(out, e2e);
            let sum: f64 = b.path.iter().map(|r| r.mean_ms).sum();
            let _ = writeln!(
                out,
                "  (the means add up: {sum:.2} ms; percentiles do not; unattributed: the worker between its spans)"
            );
        }
        let _ = writeln!(out, "  beside the way to the callback:");
        for row in &b.beside {
            row_line(out, row);
        }
    }
    if !b.batches.is_empty() {
        let _ = writeln!(
            out,
            "  batched, per batch (no checkout's own): batches  checkouts/batch mean   max       p50       p90       p99"
        );
        for batch in &b.batches {
            let d = &batch.duration;
            let _ = writeln!(
                out,
                "  {:<28} {:>16} {:>21.1} {:>5} {:>9.2} {:>9.2} {:>9.2}",
                batch.span,
                batch.batches,
                batch.items_per_batch_mean,
                batch.items_per_batch_max,
                d.p50_ms,
                d.p90_ms,
                d.p99_ms
            );
        }
    }
    for (why, n) in &b.incomplete {
        let _ = writeln!(out, "  not broken down: {n} with {why}");
    }
}

const COLORS: [&str; 11] = [
    "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
    "#bcbd22", "#17becf", "#cccccc",
];

const W: f64 = 760.0;
const LEFT: f64 = 170.0;
const RIGHT: f64 = 60.0;
/// The percentile chart's column of figures, right of its bars.
const FIGURES: f64 = 170.0;
const BAR: f64 = 14.0;
const GAP: f64 = 8.0;

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// One stacked bar of `values` (ms) at `y`, scaled so `top` ms fills the plot; one value alone
/// is drawn dark grey (a total, not a stage).
fn stacked(svg: &mut String, y: f64, label: &str, values: &[f64], top: f64) {
    let scale = (W - LEFT - RIGHT) / top.max(f64::MIN_POSITIVE);
    let _ = write!(
        svg,
        "<text x=\"{}\" y=\"{}\" font-size=\"12\" text-anchor=\"end\">{}</text>",
        LEFT - 6.0,
        y + BAR - 3.0,
        esc(label)
    );
    let mut x = LEFT;
    for (i, v) in values.iter().enumerate() {
        let w = v * scale;
        let _ = write!(
            svg,
            "<rect x=\"{x:.1}\" y=\"{y:.1}\" width=\"{w:.2}\" height=\"{BAR}\" fill=\"{}\"><title>{v:.2} ms</title></rect>",
            if values.len() == 1 {
                "#444"
            } else {
                COLORS[i % COLORS.len()]
            }
        );
        x += w;
    }
    let total: f64 = values.iter().sum();
    let _ = write!(
        svg,
        "<text x=\"{:.1}\" y=\"{}\" font-size=\"11\">{total:.1} ms</text>",
        x + 4.0,
        y + BAR - 3.0
    );
}

/// The HTML section: the means stacked (they add up to the end-to-end mean), the p50s stacked
/// beside the end-to-end p50 (they need not add up), each stage's p50, p90 and p99 as bars,
/// and the table.
pub fn html(r: &StageReport) -> String {
    let b = &r.breakdown;
    let Some(e2e) = &b.end_to_end else {
        return format!(
            "<h2>Where a checkout's time goes</h2><p>No checkout could be broken down ({} traced; {} spans received).</p>",
            b.traced, r.received.spans
        );
    };
    let means: Vec<f64> = b.path.iter().map(|row| row.mean_ms).collect();
    let p50s: Vec<f64> = b.path.iter().map(|row| row.percentiles.p50_ms).collect();
    let top = e2e
        .mean_ms
        .max(p50s.iter().sum())
        .max(e2e.percentiles.p50_ms);
    let legend_rows = b.path.len().div_ceil(4);
    let h = 3.0 * (BAR + GAP) + 18.0 * legend_rows as f64 + 20.0;
    let mut svg = format!("<svg viewBox=\"0 0 {W} {h}\" width=\"{W}\" height=\"{h}\">");
    stacked(&mut svg, 10.0, "mean, stacked", &means, top);
    stacked(&mut svg, 10.0 + BAR + GAP, "p50s, stacked", &p50s, top);
    stacked(
        &mut svg,
        10.0 + 2.0 * (BAR + GAP),
        "end-to-end p50",
        &[e2e.percentiles.p50_ms],
        top,
    );
    for (i, row) in b.path.iter().enumerate() {
        let x = 10.0 + 185.0 * (i % 4) as f64;
        let y = 10.0 + 3.0 * (BAR + GAP) + 18.0 * (i / 4) as f64;
        let _ = write!(
            svg,
            "<rect x=\"{x}\" y=\"{y}\" width=\"10\" height=\"10\" fill=\"{}\"/><text x=\"{}\" y=\"{}\" font-size=\"11\">{}</text>",
            COLORS[i % COLORS.len()],
            x + 14.0,
            y + 9.0,
            esc(row.label)
        );
    }
    svg.push_str("</svg>");
    format!(
        "<h2>Where a checkout's time goes (stage breakdown)</h2>\
<p>{} of {} traced checkouts broken down, from the spans ICON exported (share {}). The means add up to the end-to-end mean; percentiles do not add up.</p>{svg}{}",
        b.complete,
        b.traced,
        r.share,
        percentile_bars(b.path.iter().chain(&b.beside).collect())
    )
}

/// Each stage's p50 (dark), p90 (light) and p99 (tick), on one linear axis.
fn percentile_bars(rows: Vec<&Row>) -> String {
    let top = rows
        .iter()
        .map(|r| r.percentiles.p99_ms)
        .fold(0.0, f64::max)
        .max(f64::MIN_POSITIVE);
    let scale = (W - LEFT - FIGURES - 10.0) / top;
    let h = 30.0 + rows.len() as f64 * (BAR + GAP);
    let mut svg = format!("<svg viewBox=\"0 0 {W} {h}\" width=\"{W}\" height=\"{h}\">");
    let _ = write!(
        svg,
        "<text x=\"{LEFT}\" y=\"12\" font-size=\"11\">p50 (dark), p90 (light), p99 (tick); axis 0 to {top:.1} ms</text>"
    );
    for (i, r) in rows.iter().enumerate() {
        let y = 22.0 + i as f64 * (BAR + GAP);
        let p = &r.percentiles;
        let color = COLORS[i % COLORS.len()];
        let (label, text_y, bottom) = (esc(r.label), y + BAR - 3.0, y + BAR);
        let (w50, w90, x99) = (p.p50_ms * scale, p.p90_ms * scale, LEFT + p.p99_ms * scale);
        let _ = write!(
            svg,
            "<text x=\"{}\" y=\"{text_y}\" font-size=\"12\" text-anchor=\"end\">{label}</text>\
<rect x=\"{LEFT}\" y=\"{y}\" width=\"{w90:.2}\" height=\"{BAR}\" fill=\"{color}\" opacity=\"0.35\"/>\
<rect x=\"{LEFT}\" y=\"{y}\" width=\"{w50:.2}\" height=\"{BAR}\" fill=\"{color}\"/>\
<line x1=\"{x99:.1}\" x2=\"{x99:.1}\" y1=\"{y}\" y2=\"{bottom}\" stroke=\"#000\"/>\
<text x=\"{:.1}\" y=\"{text_y}\" font-size=\"11\">{:.2} / {:.2} / {:.2} ms</text>",
            LEFT - 6.0,
            W - FIGURES,
            p.p50_ms,
            p.p90_ms,
            p.p99_ms,
        );
    }
    svg.push_str("</svg>");
    svg
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, UNIX_EPOCH};

    use super::*;
    use crate::stages::{breakdown, otlp, Received, Traced};
    use crate::stats::CallbackRecord;

    /// The fixture's one checkout, sent 0.3 ms before its `request` span and called back 2 ms
    /// into its `callback` span (as in the breakdown's tests).
    fn report() -> StageReport {
        let spans = otlp::parse(include_bytes!("testdata/one_checkout.json")).unwrap();
        let at = |ns: u64| UNIX_EPOCH + Duration::from_nanos(ns);
        let traced = [Traced {
            checkout_id: "c".into(),
            trace_id: "b1dd716da9877b3a5c74e14842efd9f3".into(),
            sent_at: at(1_796_410_704_616_790_346 - 300_000),
            answered_at: at(1_796_410_704_619_196_831),
        }];
        let callbacks = [CallbackRecord {
            received: Duration::ZERO,
            received_at: at(1_796_410_704_625_619_240 + 2_000_000),
            checkout_id: Some("c".into()),
            webhook_id: None,
        }];
        StageReport {
            endpoint: "http://127.0.0.1:4318".into(),
            share: 1.0,
            received: Received {
                exports: 3,
                spans: spans.len(),
                bytes: 9000,
                refused: 0,
            },
            waited_s: 0.5,
            not_in: 0,
            breakdown: breakdown::breakdown(&traced, &callbacks, &spans),
        }
    }

    #[test]
    fn the_table_has_a_row_per_stage_with_its_figures() {
        let mut out = String::new();
        table(&mut out, &report());
        assert!(out.contains("1 of 1 traced checkouts broken down (share 1); 12 spans in 3 exports to http://127.0.0.1:4318/v1/traces"), "{out}");
        let row = |label: &str| {
            out.lines()
                .find(|l| l.trim_start().starts_with(label))
                .unwrap_or_else(|| panic!("no {label} row in {out}"))
                .split_whitespace()
                .rev()
                .take(4)
                .collect::<Vec<_>>()
        };
        // The last four: mean, p50, p90, p99; one checkout, so all the same.
        assert_eq!(row("retailer call"), ["0.39"; 4]);
        assert_eq!(row("gateway (incl. commit)"), ["2.40"; 4]);
        assert_eq!(row("end-to-end"), ["11.13"; 4]);
        assert!(out.contains("(the means add up: 11.13 ms;"), "{out}");
        assert!(out.contains("store.create_checkouts"), "{out}");
    }

    #[test]
    fn the_chart_stacks_every_stage_and_names_it() {
        let html = html(&report());
        for stage in breakdown::PATH
            .iter()
            .chain([&breakdown::Stage::Unattributed])
        {
            assert!(html.contains(&esc(stage.label())), "{stage:?}");
        }
        // Ten stacked segments per stacked bar (nine stages and the rest), two such bars, one
        // end-to-end bar, and the legend's ten swatches.
        assert_eq!(html.matches("<title>").count(), 21);
        assert!(html.contains("<title>0.39 ms</title>"));
        assert!(html.contains("11.1 ms</text>"));
    }
}
