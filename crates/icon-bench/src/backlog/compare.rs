//! The `backlog` scenario's accounting: pure functions from the two phases, the fill and three
//! RSS readings to the figures reported, so tests need neither ICON nor a clock.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use serde::Serialize;

use crate::procs::{self, GroupRss};
use crate::receiver::FailCounts;
use crate::run::Measured;
use crate::stats::{self, Accounting, Outcome, Percentiles, Submission};

/// The target: a backlog slows fresh deliveries by at most 20 %.
pub const TARGET_RATIO: f64 = 1.2;

/// How long the fill waits for the backlog's first attempts: a minute, or 50 per second of
/// ICON's throughput for a large backlog. Past it the shortfall is reported, not fatal.
pub fn fill_deadline(backlog: u64) -> Duration {
    Duration::from_secs(60).max(Duration::from_secs(backlog.div_ceil(50)))
}

/// The backlog's checkouts, sent to the failing callback path.
#[derive(Debug, Clone, Serialize)]
pub struct Fill {
    /// `--backlog`.
    pub requested: u64,
    pub sent: usize,
    pub accepted: usize,
    /// Checkouts refused, by HTTP status or `transport`.
    pub errors: BTreeMap<String, usize>,
    pub error_samples: BTreeMap<String, String>,
    pub latency_202: Option<Percentiles>,
    /// From the fill's first checkout to its last answer.
    pub submit_s: f64,
    /// From the last answer until every accepted one had its first attempt, or the deadline.
    pub wait_s: f64,
    pub deadline_s: f64,
    /// Accepted backlog checkouts whose callback was attempted (answered 503) by the deadline:
    /// the backlog actually waiting in ICON's retry tiers.
    pub first_attempted: usize,
    /// Accepted, but no attempt seen by the deadline.
    pub shortfall: usize,
}

/// What the fill's sending and waiting came to.
pub struct FillRecord {
    pub requested: u64,
    pub subs: Vec<Submission>,
    pub error_samples: BTreeMap<String, String>,
    /// Accepted ones still without a first attempt when the wait ended.
    pub not_attempted: usize,
    pub submit: Duration,
    pub wait: Duration,
    pub deadline: Duration,
}

pub fn fill(r: FillRecord) -> Fill {
    let accepted = r
        .subs
        .iter()
        .filter(|s| matches!(s.outcome, Outcome::Accepted(_)))
        .count();
    let mut acks: Vec<Duration> = r
        .subs
        .iter()
        .filter(|s| matches!(s.outcome, Outcome::Accepted(_)))
        .map(|s| s.answered.saturating_sub(s.sent))
        .collect();
    let not_attempted = r.not_attempted.min(accepted);
    Fill {
        requested: r.requested,
        sent: r.subs.len(),
        accepted,
        errors: stats::errors(&r.subs),
        error_samples: r.error_samples,
        latency_202: stats::percentiles(&mut acks),
        submit_s: r.submit.as_secs_f64(),
        wait_s: r.wait.as_secs_f64(),
        deadline_s: r.deadline.as_secs_f64(),
        first_attempted: accepted - not_attempted,
        shortfall: not_attempted,
    }
}

/// Loaded over baseline of the percentiles that matter to a fresh checkout; `None` where
/// either phase has no figure or the baseline's is zero.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Ratios {
    pub end_to_end_p50: Option<f64>,
    pub end_to_end_p99: Option<f64>,
    pub latency_202_p50: Option<f64>,
}

pub fn ratios(baseline: &Accounting, loaded: &Accounting) -> Ratios {
    let ratio = |b: &Option<Percentiles>, l: &Option<Percentiles>, f: fn(&Percentiles) -> f64| {
        let (b, l) = (f(b.as_ref()?), f(l.as_ref()?));
        (b > 0.0).then(|| l / b)
    };
    let (bl, ld) = (baseline, loaded);
    Ratios {
        end_to_end_p50: ratio(&bl.latency_end_to_end, &ld.latency_end_to_end, |p| p.p50_ms),
        end_to_end_p99: ratio(&bl.latency_end_to_end, &ld.latency_end_to_end, |p| p.p99_ms),
        latency_202_p50: ratio(&bl.latency_202, &ld.latency_202, |p| p.p50_ms),
    }
}

/// Whether fresh deliveries stayed within [`TARGET_RATIO`]: end-to-end p50 and p99 both.
/// `None` when either is unknown.
pub fn within_target(r: &Ratios) -> Option<bool> {
    Some(r.end_to_end_p50? <= TARGET_RATIO && r.end_to_end_p99? <= TARGET_RATIO)
}

/// One process group's current RSS at the three readings; `None` where the group had no
/// process at that reading.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RssRow {
    pub group: String,
    pub before_fill_mb: Option<f64>,
    pub after_fill_mb: Option<f64>,
    pub after_loaded_mb: Option<f64>,
    /// After the loaded phase minus before the fill: what the backlog and a phase under it
    /// left resident.
    pub growth_mb: Option<f64>,
}

pub fn rss_rows(
    before: &[GroupRss],
    after_fill: &[GroupRss],
    after_loaded: &[GroupRss],
) -> Vec<RssRow> {
    let find = |list: &[GroupRss], g: &str| list.iter().find(|r| r.group == g).map(|r| r.rss_mb);
    let groups: BTreeSet<&str> = [before, after_fill, after_loaded]
        .iter()
        .flat_map(|l| l.iter().map(|r| r.group.as_str()))
        .collect();
    let mut groups: Vec<&str> = groups.into_iter().collect();
    groups.sort_by_key(|g| procs::order(g));
    groups
        .into_iter()
        .map(|g| {
            let (b, f, l) = (find(before, g), find(after_fill, g), find(after_loaded, g));
            RssRow {
                group: g.to_string(),
                before_fill_mb: b,
                after_fill_mb: f,
                after_loaded_mb: l,
                growth_mb: l.zip(b).map(|(l, b)| l - b),
            }
        })
        .collect()
}

/// The `backlog` section of the summary: the top-level figures are the loaded phase's, these
/// are the rest.
#[derive(Debug, Serialize)]
pub struct BacklogReport {
    /// `--backlog`.
    pub requested: u64,
    /// Accepted and first-attempted: the notifications waiting while the loaded phase ran.
    pub waiting: usize,
    /// What the failing callback path answered with.
    pub retry_after_s: u64,
    pub fill: Fill,
    /// Hits on the failing path by the end of the loaded phase. `total - distinct` are
    /// retries of the backlog seen during the run: none are due within the hour.
    pub fail_hits: FailHits,
    /// The first phase, before the backlog, accounted as the loaded one is at the top level.
    pub baseline: Measured,
    pub ratios: Ratios,
    pub target_ratio: f64,
    pub within_target: Option<bool>,
    /// Current RSS (VmRSS) per process group before the fill, after it and after the loaded
    /// phase.
    pub rss: Vec<RssRow>,
    /// The loaded phase's clock start and end, in seconds after the backlog's first attempt:
    /// tells whether it overlapped the backlog's hops between ICON's delay tier and work queue.
    pub loaded_start_after_first_attempt_s: Option<f64>,
    pub loaded_end_after_first_attempt_s: Option<f64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct FailHits {
    pub distinct: usize,
    pub total: usize,
}

impl From<FailCounts> for FailHits {
    fn from(c: FailCounts) -> Self {
        FailHits {
            distinct: c.distinct,
            total: c.total,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::fixtures::{accepted, ms};

    /// An accounting whose 202 latencies are `acks` and end-to-end ones `e2e` (milliseconds).
    fn phase(acks: &[u64], e2e: &[u64]) -> Accounting {
        let subs: Vec<Submission> = acks
            .iter()
            .enumerate()
            .map(|(i, &a)| accepted(&format!("c{i}"), 0, a))
            .collect();
        let cbs: Vec<stats::CallbackRecord> = e2e
            .iter()
            .enumerate()
            .map(|(i, &e)| stats::CallbackRecord {
                received: ms(e),
                received_at: std::time::UNIX_EPOCH + ms(e),
                checkout_id: Some(format!("c{i}")),
                webhook_id: Some(format!("w{i}")),
            })
            .collect();
        stats::account(&subs, &cbs)
    }

    /// Ratios of millisecond figures that went through `f64` seconds: equal to a few ulps.
    fn about(r: Option<f64>, want: f64) -> bool {
        r.is_some_and(|r| (r - want).abs() < 1e-9)
    }

    #[test]
    fn ratios_are_loaded_over_baseline_and_judged_at_p50_and_p99() {
        let base = phase(&[2, 2, 2, 4], &[10, 20, 20, 40]);
        let same = ratios(&base, &base);
        assert!(about(same.end_to_end_p50, 1.0));
        assert_eq!(within_target(&same), Some(true));

        // p50 20 -> 24 (1.2: at the target), p99 40 -> 60 (1.5: over it).
        let slower = phase(&[3, 3, 3, 3], &[10, 24, 24, 60]);
        let r = ratios(&base, &slower);
        assert!(about(r.end_to_end_p50, 1.2));
        assert!(about(r.end_to_end_p99, 1.5));
        assert!(about(r.latency_202_p50, 1.5));
        assert_eq!(within_target(&r), Some(false));

        let faster = phase(&[1, 1, 1, 1], &[5, 10, 10, 20]);
        assert_eq!(within_target(&ratios(&base, &faster)), Some(true));
    }

    #[test]
    fn no_callbacks_or_a_zero_baseline_give_no_ratio_and_no_verdict() {
        let base = phase(&[2, 2], &[10, 20]);
        let none = phase(&[2, 2], &[]);
        let r = ratios(&base, &none);
        assert_eq!((r.end_to_end_p50, r.end_to_end_p99), (None, None));
        assert!(about(r.latency_202_p50, 1.0));
        assert_eq!(within_target(&r), None);
        let zero = phase(&[0, 0], &[0, 0]);
        assert_eq!(ratios(&zero, &base).latency_202_p50, None);
        assert_eq!(within_target(&ratios(&zero, &base)), None);
    }

    #[test]
    fn the_fill_counts_what_waits_and_reports_a_shortfall() {
        let subs = vec![
            accepted("a", 0, 5),
            accepted("b", 1, 4),
            Submission {
                outcome: Outcome::Status(503),
                ..accepted("x", 2, 3)
            },
            accepted("c", 3, 13),
        ];
        let f = fill(FillRecord {
            requested: 4,
            subs,
            error_samples: BTreeMap::new(),
            not_attempted: 1,
            submit: Duration::from_secs(2),
            wait: Duration::from_secs(3),
            deadline: fill_deadline(4),
        });
        assert_eq!((f.requested, f.sent, f.accepted), (4, 4, 3));
        assert_eq!(f.errors["503"], 1);
        assert_eq!((f.first_attempted, f.shortfall), (2, 1));
        assert_eq!(f.latency_202.unwrap().max_ms, 10.0);
        assert_eq!((f.submit_s, f.wait_s, f.deadline_s), (2.0, 3.0, 60.0));
    }

    #[test]
    fn the_fill_deadline_is_a_minute_or_50_per_second() {
        assert_eq!(fill_deadline(1), Duration::from_secs(60));
        assert_eq!(fill_deadline(3000), Duration::from_secs(60));
        assert_eq!(fill_deadline(100_000), Duration::from_secs(2000));
        assert_eq!(fill_deadline(100_001), Duration::from_secs(2001));
    }

    #[test]
    fn rss_rows_follow_each_group_through_the_readings() {
        let r = |g: &str, mb: f64| GroupRss {
            group: g.into(),
            processes: 1,
            rss_mb: mb,
        };
        let rows = rss_rows(
            &[r("postgres", 100.0), r("gateway", 20.0)],
            &[r("gateway", 22.0), r("postgres", 130.0), r("notifier", 9.0)],
            &[
                r("gateway", 21.5),
                r("postgres", 120.0),
                r("notifier", 10.0),
            ],
        );
        let groups: Vec<&str> = rows.iter().map(|r| r.group.as_str()).collect();
        assert_eq!(groups, vec!["gateway", "notifier", "postgres"]);
        assert_eq!(rows[0].growth_mb, Some(1.5));
        assert_eq!(rows[1].before_fill_mb, None);
        assert_eq!(rows[1].growth_mb, None);
        assert_eq!(rows[2].after_fill_mb, Some(130.0));
        assert_eq!(rows[2].growth_mb, Some(20.0));
    }
}
