//! The `backlog` scenario's part of the table: both phases one after the other, the fill, then
//! the comparison and the RSS readings that answer the two questions.

use std::fmt::Write as _;

use super::compare::{BacklogReport, Fill};
use crate::report::phase_rows;
use crate::run::Measured;
use crate::stats::Percentiles;

pub fn write(out: &mut String, loaded: &Measured, b: &BacklogReport) {
    let _ = writeln!(out, "\n== baseline phase (no backlog)");
    phase_rows(out, &b.baseline);
    let _ = writeln!(out, "\n== backlog fill");
    fill_rows(out, &b.fill);
    let _ = writeln!(
        out,
        "\n== loaded phase ({} notifications waiting in ICON's retry tiers)",
        b.waiting
    );
    phase_rows(out, loaded);
    comparison(out, &b.baseline, loaded, b);
    rss_rows(out, b);
}

fn fill_rows(out: &mut String, f: &Fill) {
    let errors = if f.errors.is_empty() {
        "none".to_string()
    } else {
        f.errors
            .iter()
            .map(|(k, v)| format!("{k}: {v}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let _ = writeln!(
        out,
        "backlog checkouts          {} requested, {} sent, {} accepted in {:.1} s (errors: {errors})",
        f.requested, f.sent, f.accepted, f.submit_s
    );
    let short = if f.shortfall > 0 {
        format!("; {} without an attempt by the deadline", f.shortfall)
    } else {
        String::new()
    };
    let _ = writeln!(
        out,
        "first attempts (503)       {}/{} within {:.1} s after the last 202 (deadline {:.0} s){short}",
        f.first_attempted, f.accepted, f.wait_s, f.deadline_s
    );
    if let Some(p) = &f.latency_202 {
        let _ = writeln!(
            out,
            "backlog 202 ms             p50 {:.1}, p99 {:.1}, max {:.1}",
            p.p50_ms, p.p99_ms, p.max_ms
        );
    }
    for (status, body) in &f.error_samples {
        let _ = writeln!(out, "first backlog {status} answer: {body}");
    }
}

fn comparison(out: &mut String, base: &Measured, loaded: &Measured, b: &BacklogReport) {
    let _ = writeln!(
        out,
        "\n== comparison ({} waiting; /fail hit {} times by {} notifications)",
        b.waiting, b.fail_hits.total, b.fail_hits.distinct
    );
    let _ = writeln!(
        out,
        "  {:<20} {:>10} {:>10} {:>16}",
        "ms", "baseline", "loaded", "loaded/baseline"
    );
    let (ba, la) = (&base.accounting, &loaded.accounting);
    let pick = |p: &Option<Percentiles>, f: fn(&Percentiles) -> f64| p.as_ref().map(f);
    let p50: fn(&Percentiles) -> f64 = |p| p.p50_ms;
    let p99: fn(&Percentiles) -> f64 = |p| p.p99_ms;
    let (b_ack, l_ack) = (&ba.latency_202, &la.latency_202);
    let (b_e2e, l_e2e) = (&ba.latency_end_to_end, &la.latency_end_to_end);
    let rows = [
        (
            "202 p50",
            pick(b_ack, p50),
            pick(l_ack, p50),
            b.ratios.latency_202_p50,
        ),
        (
            "end-to-end p50",
            pick(b_e2e, p50),
            pick(l_e2e, p50),
            b.ratios.end_to_end_p50,
        ),
        (
            "end-to-end p99",
            pick(b_e2e, p99),
            pick(l_e2e, p99),
            b.ratios.end_to_end_p99,
        ),
    ];
    let num = |v: Option<f64>, prec: usize| v.map_or("-".to_string(), |v| format!("{v:.prec$}"));
    for (name, base, loaded, ratio) in rows {
        let _ = writeln!(
            out,
            "  {name:<20} {:>10} {:>10} {:>16}",
            num(base, 1),
            num(loaded, 1),
            num(ratio, 2)
        );
    }
    let (bc, lc) = (&ba.completeness, &la.completeness);
    let _ = writeln!(
        out,
        "  {:<20} {:>10} {:>10}",
        "called back",
        format!("{}/{}", bc.called_back, bc.accepted),
        format!("{}/{}", lc.called_back, lc.accepted)
    );
    let verdict = match b.within_target {
        Some(true) => "yes",
        Some(false) => "NO",
        None => "unknown (a phase has no end-to-end figures)",
    };
    let _ = writeln!(
        out,
        "  within target (end-to-end p50 and p99 at most {:.2}x the baseline's): {verdict}",
        b.target_ratio
    );
}

fn rss_rows(out: &mut String, b: &BacklogReport) {
    let _ = writeln!(
        out,
        "\n  current RSS MB (VmRSS)  before fill  after fill  after loaded   growth"
    );
    let num = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{v:.1}"));
    for r in &b.rss {
        let growth = r.growth_mb.map_or("-".to_string(), |g| format!("{g:+.1}"));
        let _ = writeln!(
            out,
            "  {:<22} {:>11} {:>11} {:>13} {:>8}",
            r.group,
            num(r.before_fill_mb),
            num(r.after_fill_mb),
            num(r.after_loaded_mb),
            growth
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backlog::compare::{self, FailHits, FillRecord, RssRow};
    use crate::stats::{self, CallbackRecord, Outcome, Submission};
    use std::collections::BTreeMap;
    use std::time::Duration;

    fn phase(e2e_ms: u64) -> Measured {
        let subs = vec![Submission {
            sent: Duration::ZERO,
            answered: Duration::from_millis(2),
            outcome: Outcome::Accepted("c".into()),
            slow: false,
        }];
        let cbs = vec![CallbackRecord {
            received: Duration::from_millis(e2e_ms),
            received_at: std::time::UNIX_EPOCH + Duration::from_millis(e2e_ms),
            checkout_id: Some("c".into()),
            webhook_id: Some("w".into()),
        }];
        Measured {
            stages: None,
            started_at: 0,
            measured_window_s: 1.0,
            max_schedule_lag_ms: Some(0.0),
            accounting: stats::account(&subs, &cbs),
            processes: Vec::new(),
            database: None,
            error_samples: BTreeMap::new(),
        }
    }

    fn report(baseline: Measured, loaded: &Measured) -> BacklogReport {
        let ratios = compare::ratios(&baseline.accounting, &loaded.accounting);
        BacklogReport {
            requested: 10,
            waiting: 9,
            retry_after_s: 3600,
            fill: compare::fill(FillRecord {
                requested: 10,
                subs: Vec::new(),
                error_samples: BTreeMap::new(),
                not_attempted: 0,
                submit: Duration::ZERO,
                wait: Duration::ZERO,
                deadline: compare::fill_deadline(10),
            }),
            fail_hits: FailHits {
                distinct: 9,
                total: 9,
            },
            baseline,
            within_target: compare::within_target(&ratios),
            ratios,
            target_ratio: compare::TARGET_RATIO,
            rss: vec![RssRow {
                group: "notifier".into(),
                before_fill_mb: Some(10.0),
                after_fill_mb: Some(12.0),
                after_loaded_mb: Some(11.0),
                growth_mb: Some(1.0),
            }],
            loaded_start_after_first_attempt_s: Some(3.0),
            loaded_end_after_first_attempt_s: Some(63.0),
        }
    }

    #[test]
    fn both_phases_the_comparison_and_rss_are_printed() {
        let loaded = phase(30);
        let b = report(phase(20), &loaded);
        let mut out = String::new();
        write(&mut out, &loaded, &b);
        for want in [
            "== baseline phase (no backlog)",
            "== loaded phase (9 notifications waiting",
            "  end-to-end p50             20.0       30.0             1.50",
            "at most 1.20x the baseline's): NO",
            "  notifier                      10.0        12.0          11.0     +1.0",
        ] {
            assert!(out.contains(want), "{want:?} not in\n{out}");
        }
    }

    #[test]
    fn the_json_section_names_its_figures() {
        let loaded = phase(20);
        let v = serde_json::to_value(report(phase(20), &loaded)).unwrap();
        assert_eq!(v["waiting"], 9);
        assert_eq!(v["within_target"], true);
        assert_eq!(v["ratios"]["end_to_end_p99"], 1.0);
        assert_eq!(v["rss"][0]["growth_mb"], 1.0);
        assert_eq!(v["fill"]["deadline_s"], 60.0);
        // The baseline phase is flattened like the top level's.
        assert_eq!(v["baseline"]["latency_end_to_end"]["count"], 1);
    }
}
