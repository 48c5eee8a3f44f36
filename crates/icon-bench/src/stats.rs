//! The accounting: pure functions from what was sent and what was called back to the figures
//! reported. Every instant is a [`Duration`] since the clock started, so tests need no clock.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::Duration;

use serde::Serialize;

/// One `POST /cart/checkout/` and its answer.
#[derive(Debug, Clone)]
pub struct Submission {
    pub sent: Duration,
    pub answered: Duration,
    pub outcome: Outcome,
    /// Its callback URL hangs (`slow-receiver`): it never completes, so it is accounted apart.
    pub slow: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// 202, with the `checkout_id` ICON gave.
    Accepted(String),
    /// Any other HTTP status (a 202 without a `checkout_id` counts here as 202).
    Status(u16),
    /// No HTTP answer at all: connection refused, reset, ...
    Transport,
}

/// One POST that reached the callback receiver.
#[derive(Debug, Clone)]
pub struct CallbackRecord {
    pub received: Duration,
    /// The wall clock at the same moment: what spans are timed by (`--stages`).
    pub received_at: std::time::SystemTime,
    pub checkout_id: Option<String>,
    pub webhook_id: Option<String>,
}

/// Nearest-rank percentiles, in milliseconds.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Percentiles {
    pub count: usize,
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub p999_ms: f64,
    pub max_ms: f64,
}

/// The nearest-rank value for `per_mille` (500 = p50, 999 = p99.9) of ascending `sorted`.
/// Integer arithmetic on purpose: `0.999 * 1000` in floating point ceils to 1000.
fn nearest_rank(sorted: &[Duration], per_mille: usize) -> Duration {
    let n = sorted.len();
    let rank = (per_mille * n).div_ceil(1000).clamp(1, n);
    sorted[rank - 1]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// `None` for no values. Sorts `values`.
pub fn percentiles(values: &mut [Duration]) -> Option<Percentiles> {
    if values.is_empty() {
        return None;
    }
    values.sort_unstable();
    Some(Percentiles {
        count: values.len(),
        p50_ms: ms(nearest_rank(values, 500)),
        p90_ms: ms(nearest_rank(values, 900)),
        p99_ms: ms(nearest_rank(values, 990)),
        p999_ms: ms(nearest_rank(values, 999)),
        max_ms: ms(values[values.len() - 1]),
    })
}

/// At most `points` points `(latency ms, fraction at or below)` of the empirical CDF of ascending
/// `sorted`, always including the maximum: enough for a chart, small enough for the JSON.
pub fn cdf(sorted: &[Duration], points: usize) -> Vec<(f64, f64)> {
    let n = sorted.len();
    let k = points.min(n);
    (1..=k)
        .map(|i| {
            let idx = i * n / k - 1;
            (ms(sorted[idx]), (idx + 1) as f64 / n as f64)
        })
        .collect()
}

/// Did every accepted checkout get called back?
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Completeness {
    pub accepted: usize,
    pub called_back: usize,
    /// Accepted checkouts with no callback, in the order they were sent.
    pub missing: Vec<String>,
    /// Callbacks for a checkout this run did not get a 202 for (or without a `checkout_id`).
    pub unexpected: usize,
}

pub fn completeness(accepted: &[&str], callbacks: &[CallbackRecord]) -> Completeness {
    let seen: HashSet<&str> = callbacks
        .iter()
        .filter_map(|c| c.checkout_id.as_deref())
        .collect();
    let ours: HashSet<&str> = accepted.iter().copied().collect();
    let missing: Vec<String> = accepted
        .iter()
        .filter(|id| !seen.contains(**id))
        .map(|id| id.to_string())
        .collect();
    let unexpected = callbacks
        .iter()
        .filter(|c| c.checkout_id.as_deref().is_none_or(|id| !ours.contains(id)))
        .count();
    Completeness {
        accepted: accepted.len(),
        called_back: accepted.len() - missing.len(),
        missing,
        unexpected,
    }
}

/// Callbacks beyond the first, counted two ways: the same `webhook-id` again (a redelivery of
/// one notification), and the same checkout again (whatever the `webhook-id`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Duplicates {
    pub by_webhook_id: usize,
    pub by_checkout: usize,
    pub without_webhook_id: usize,
}

pub fn duplicates(callbacks: &[CallbackRecord]) -> Duplicates {
    let mut webhook_ids = HashSet::new();
    let mut checkouts = HashSet::new();
    let mut d = Duplicates {
        by_webhook_id: 0,
        by_checkout: 0,
        without_webhook_id: 0,
    };
    for c in callbacks {
        match &c.webhook_id {
            Some(w) if !webhook_ids.insert(w.as_str()) => d.by_webhook_id += 1,
            Some(_) => {}
            None => d.without_webhook_id += 1,
        }
        if let Some(id) = &c.checkout_id {
            if !checkouts.insert(id.as_str()) {
                d.by_checkout += 1;
            }
        }
    }
    d
}

/// Submissions that were not accepted, by HTTP status (`"409"`) or `"transport"`.
pub fn errors(subs: &[Submission]) -> BTreeMap<String, usize> {
    let mut out = BTreeMap::new();
    for s in subs {
        let key = match s.outcome {
            Outcome::Accepted(_) => continue,
            Outcome::Status(code) => code.to_string(),
            Outcome::Transport => "transport".to_string(),
        };
        *out.entry(key).or_insert(0) += 1;
    }
    out
}

/// What happened in one second of the run.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Second {
    pub second: u64,
    pub sent: usize,
    /// By the instant the 202 arrived.
    pub accepted: usize,
    /// Every callback received, duplicates included.
    pub callbacks: usize,
}

/// One bucket per second from 0 to the last event, empty seconds included.
pub fn per_second(subs: &[Submission], callbacks: &[CallbackRecord]) -> Vec<Second> {
    let last = subs
        .iter()
        .map(|s| s.answered.max(s.sent))
        .chain(callbacks.iter().map(|c| c.received))
        .max();
    let Some(last) = last else {
        return Vec::new();
    };
    let mut out: Vec<Second> = (0..=last.as_secs())
        .map(|second| Second {
            second,
            ..Second::default()
        })
        .collect();
    for s in subs {
        out[s.sent.as_secs() as usize].sent += 1;
        if matches!(s.outcome, Outcome::Accepted(_)) {
            out[s.answered.as_secs() as usize].accepted += 1;
        }
    }
    for c in callbacks {
        out[c.received.as_secs() as usize].callbacks += 1;
    }
    out
}

/// End-to-end latency per accepted checkout: from its POST being sent to its first callback.
pub fn end_to_end(subs: &[Submission], callbacks: &[CallbackRecord]) -> Vec<Duration> {
    let mut first: HashMap<&str, Duration> = HashMap::new();
    for c in callbacks {
        if let Some(id) = &c.checkout_id {
            first
                .entry(id.as_str())
                .and_modify(|t| *t = (*t).min(c.received))
                .or_insert(c.received);
        }
    }
    subs.iter()
        .filter_map(|s| match &s.outcome {
            Outcome::Accepted(id) => first.get(id.as_str()).map(|t| t.saturating_sub(s.sent)),
            _ => None,
        })
        .collect()
}

/// The checkouts whose callback URL hangs, apart from the healthy ones: they never complete,
/// so what counts is whether ICON tried them at all and how often.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SlowAccount {
    pub sent: usize,
    pub accepted: usize,
    pub latency_202: Option<Percentiles>,
    /// Accepted slow checkouts whose callback reached the receiver at least once.
    pub attempted: usize,
    /// Every callback attempt seen for them, retries included.
    pub attempts_seen: usize,
    /// Accepted slow checkouts with no attempt seen, in send order.
    pub not_attempted: Vec<String>,
}

/// Everything the report needs from one run's records.
///
/// Latencies, completeness, duplicates and the callback rate are over the healthy checkouts
/// (all of them unless the scenario makes some slow); the slow ones are in [`Self::slow`].
#[derive(Debug, Clone, Serialize)]
pub struct Accounting {
    /// Every checkout sent, healthy and slow.
    pub sent: usize,
    /// Every 202, healthy and slow.
    pub accepted: usize,
    /// Accepted per second of sending (clock start to the last 202).
    pub accepted_per_s: f64,
    /// Checkouts called back per second (clock start to the last first callback).
    pub callbacks_per_s: f64,
    pub send_window_s: f64,
    pub callback_window_s: f64,
    pub latency_202: Option<Percentiles>,
    pub latency_end_to_end: Option<Percentiles>,
    pub completeness: Completeness,
    pub duplicates: Duplicates,
    pub errors: BTreeMap<String, usize>,
    pub per_second: Vec<Second>,
    pub cdf_202: Vec<(f64, f64)>,
    pub cdf_end_to_end: Vec<(f64, f64)>,
    /// `None` when no checkout was sent slow.
    pub slow: Option<SlowAccount>,
}

fn accepted_ids(subs: &[Submission]) -> Vec<&str> {
    subs.iter()
        .filter_map(|s| match &s.outcome {
            Outcome::Accepted(id) => Some(id.as_str()),
            _ => None,
        })
        .collect()
}

fn ack_latencies(subs: &[Submission]) -> Vec<Duration> {
    subs.iter()
        .filter(|s| matches!(s.outcome, Outcome::Accepted(_)))
        .map(|s| s.answered.saturating_sub(s.sent))
        .collect()
}

fn slow_account(slow: &[Submission], callbacks: &[CallbackRecord]) -> SlowAccount {
    let ids = accepted_ids(slow);
    let wanted: HashSet<&str> = ids.iter().copied().collect();
    let mut attempts: HashMap<&str, usize> = HashMap::new();
    for c in callbacks {
        if let Some(id) = c.checkout_id.as_deref().filter(|id| wanted.contains(id)) {
            *attempts.entry(id).or_insert(0) += 1;
        }
    }
    SlowAccount {
        sent: slow.len(),
        accepted: ids.len(),
        latency_202: percentiles(&mut ack_latencies(slow)),
        attempted: attempts.len(),
        attempts_seen: attempts.values().sum(),
        not_attempted: ids
            .iter()
            .filter(|id| !attempts.contains_key(**id))
            .map(|id| id.to_string())
            .collect(),
    }
}

pub fn account(all: &[Submission], all_callbacks: &[CallbackRecord]) -> Accounting {
    let (slow, subs): (Vec<Submission>, Vec<Submission>) =
        all.iter().cloned().partition(|s| s.slow);
    let slow_ids: HashSet<&str> = accepted_ids(&slow).into_iter().collect();
    // The slow checkouts' attempts are neither completions, duplicates nor unexpected.
    let callbacks: Vec<CallbackRecord> = all_callbacks
        .iter()
        .filter(|c| {
            c.checkout_id
                .as_deref()
                .is_none_or(|id| !slow_ids.contains(id))
        })
        .cloned()
        .collect();
    let callbacks = callbacks.as_slice();
    let subs = subs.as_slice();
    let accepted_ids = accepted_ids(subs);
    let mut ack = ack_latencies(subs);
    let mut e2e = end_to_end(subs, callbacks);
    let latency_202 = percentiles(&mut ack);
    let latency_end_to_end = percentiles(&mut e2e);
    let completeness = completeness(&accepted_ids, callbacks);
    let send_window = all.iter().map(|s| s.answered).max().unwrap_or_default();

    let ours: HashSet<&str> = accepted_ids.iter().copied().collect();
    let callback_window = callbacks
        .iter()
        .filter(|c| c.checkout_id.as_deref().is_some_and(|id| ours.contains(id)))
        .map(|c| c.received)
        .max()
        .unwrap_or_default();
    let rate = |n: usize, w: Duration| {
        if w.is_zero() {
            0.0
        } else {
            n as f64 / w.as_secs_f64()
        }
    };
    let accepted_all = accepted_ids.len() + slow_ids.len();
    Accounting {
        sent: all.len(),
        accepted: accepted_all,
        accepted_per_s: rate(accepted_all, send_window),
        callbacks_per_s: rate(completeness.called_back, callback_window),
        send_window_s: send_window.as_secs_f64(),
        callback_window_s: callback_window.as_secs_f64(),
        latency_202,
        latency_end_to_end,
        duplicates: duplicates(callbacks),
        errors: errors(all),
        per_second: per_second(all, all_callbacks),
        cdf_202: cdf(&ack, 200),
        cdf_end_to_end: cdf(&e2e, 200),
        completeness,
        slow: (!slow.is_empty()).then(|| slow_account(&slow, all_callbacks)),
    }
}

/// Submissions and callbacks for the accounting's tests (here and in `backlog::compare`).
#[cfg(test)]
pub(crate) mod fixtures {
    use super::*;

    pub fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    pub fn accepted(id: &str, sent: u64, answered: u64) -> Submission {
        Submission {
            sent: ms(sent),
            answered: ms(answered),
            outcome: Outcome::Accepted(id.into()),
            slow: false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::fixtures::{accepted, ms};
    use super::*;

    fn slow(id: &str, sent: u64, answered: u64) -> Submission {
        Submission {
            slow: true,
            ..accepted(id, sent, answered)
        }
    }

    fn cb(id: &str, webhook: &str, at: u64) -> CallbackRecord {
        CallbackRecord {
            received: ms(at),
            received_at: std::time::UNIX_EPOCH + ms(at),
            checkout_id: Some(id.into()),
            webhook_id: Some(webhook.into()),
        }
    }

    #[test]
    fn nearest_rank_percentiles_of_1_to_1000_ms() {
        let mut v: Vec<Duration> = (1..=1000).rev().map(ms).collect();
        let p = percentiles(&mut v).unwrap();
        assert_eq!(p.count, 1000);
        assert_eq!(p.p50_ms, 500.0);
        assert_eq!(p.p90_ms, 900.0);
        assert_eq!(p.p99_ms, 990.0);
        assert_eq!(p.p999_ms, 999.0);
        assert_eq!(p.max_ms, 1000.0);
    }

    #[test]
    fn nearest_rank_on_small_samples_rounds_the_rank_up() {
        let mut v = vec![ms(15), ms(20), ms(35), ms(40), ms(50)];
        let p = percentiles(&mut v).unwrap();
        // rank = ceil(p * n): p50 of 5 is the 3rd, p90 the 5th.
        assert_eq!(p.p50_ms, 35.0);
        assert_eq!(p.p90_ms, 50.0);
        assert_eq!(p.p999_ms, 50.0);
        let mut one = vec![ms(7)];
        assert_eq!(percentiles(&mut one).unwrap().p50_ms, 7.0);
        assert_eq!(percentiles(&mut []), None);
    }

    #[test]
    fn cdf_is_capped_and_ends_at_the_maximum() {
        let v: Vec<Duration> = (1..=1000).map(ms).collect();
        let c = cdf(&v, 200);
        assert_eq!(c.len(), 200);
        assert_eq!(c[0], (5.0, 0.005));
        assert_eq!(*c.last().unwrap(), (1000.0, 1.0));
        assert_eq!(cdf(&v[..3], 200).len(), 3);
    }

    #[test]
    fn completeness_lists_the_missing_ids_in_send_order() {
        let cbs = vec![cb("b", "w-b", 10), cb("zz", "w-zz", 11)];
        let c = completeness(&["a", "b", "c"], &cbs);
        assert_eq!(c.accepted, 3);
        assert_eq!(c.called_back, 1);
        assert_eq!(c.missing, vec!["a".to_string(), "c".to_string()]);
        assert_eq!(c.unexpected, 1);
    }

    #[test]
    fn duplicates_are_counted_by_webhook_id_and_by_checkout() {
        let mut no_header = cb("a", "", 40);
        no_header.webhook_id = None;
        let cbs = vec![
            cb("a", "w1", 10),
            cb("a", "w1", 20), // redelivery: same webhook-id
            cb("a", "w2", 30), // same checkout, another webhook-id
            cb("b", "w3", 30),
            no_header,
        ];
        let d = duplicates(&cbs);
        assert_eq!(d.by_webhook_id, 1);
        assert_eq!(d.by_checkout, 3);
        assert_eq!(d.without_webhook_id, 1);
        // A duplicate still counts the checkout as called back once.
        assert_eq!(completeness(&["a", "b"], &cbs).called_back, 2);
    }

    #[test]
    fn errors_are_tallied_by_status_and_transport() {
        let subs = vec![
            accepted("a", 0, 5),
            Submission {
                sent: ms(1),
                answered: ms(2),
                outcome: Outcome::Status(422),
                slow: false,
            },
            Submission {
                sent: ms(1),
                answered: ms(2),
                outcome: Outcome::Status(422),
                slow: false,
            },
            Submission {
                sent: ms(1),
                answered: ms(2),
                outcome: Outcome::Status(503),
                slow: false,
            },
            Submission {
                sent: ms(1),
                answered: ms(2),
                outcome: Outcome::Transport,
                slow: false,
            },
        ];
        let e = errors(&subs);
        assert_eq!(e.len(), 3);
        assert_eq!(e["422"], 2);
        assert_eq!(e["503"], 1);
        assert_eq!(e["transport"], 1);
    }

    #[test]
    fn per_second_buckets_include_empty_seconds() {
        let subs = vec![
            accepted("a", 100, 900),
            accepted("b", 950, 1100),
            Submission {
                sent: ms(3100),
                answered: ms(3200),
                outcome: Outcome::Status(500),
                slow: false,
            },
        ];
        let cbs = vec![
            cb("a", "w1", 1500),
            cb("a", "w1", 1600),
            cb("b", "w2", 2500),
        ];
        let s = per_second(&subs, &cbs);
        let rows: Vec<(u64, usize, usize, usize)> = s
            .iter()
            .map(|b| (b.second, b.sent, b.accepted, b.callbacks))
            .collect();
        assert_eq!(
            rows,
            vec![(0, 2, 1, 0), (1, 0, 1, 2), (2, 0, 0, 1), (3, 1, 0, 0)]
        );
    }

    #[test]
    fn account_measures_end_to_end_from_send_to_first_callback() {
        let subs = vec![
            accepted("a", 0, 10),
            accepted("b", 1000, 1030),
            accepted("c", 1500, 1510),
        ];
        let cbs = vec![cb("a", "w1", 200), cb("a", "w1", 900), cb("b", "w2", 2000)];
        let a = account(&subs, &cbs);
        assert_eq!(a.sent, 3);
        assert_eq!(a.accepted, 3);
        let e2e = a.latency_end_to_end.unwrap();
        assert_eq!(e2e.count, 2);
        assert_eq!(e2e.p50_ms, 200.0);
        assert_eq!(e2e.max_ms, 1000.0);
        assert_eq!(a.latency_202.unwrap().max_ms, 30.0);
        assert_eq!(a.completeness.missing, vec!["c".to_string()]);
        assert_eq!(a.duplicates.by_webhook_id, 1);
        assert_eq!(a.send_window_s, 1.51);
        assert_eq!(a.callbacks_per_s, 1.0); // 2 checkouts called back by t = 2 s
    }

    #[test]
    fn slow_checkouts_are_accounted_apart_and_never_missing() {
        let subs = vec![
            accepted("a", 0, 10),
            accepted("b", 100, 120),
            slow("s1", 200, 900), // a slow 202 must not move the healthy percentiles
            accepted("c", 300, 310),
            slow("s2", 400, 410),
            Submission {
                slow: true,
                outcome: Outcome::Status(503),
                ..accepted("x", 500, 510)
            },
        ];
        let cbs = vec![
            cb("a", "w-a", 50),
            cb("s1", "w-s1", 60), // first attempt, held until ICON gives up
            cb("b", "w-b", 400),
            cb("s1", "w-s1", 5000), // ICON's retry: an attempt, not a duplicate
            cb("zz", "w-zz", 5100),
        ];
        let a = account(&subs, &cbs);
        assert_eq!(a.sent, 6);
        assert_eq!(a.accepted, 5);
        assert_eq!(a.errors["503"], 1);

        // Healthy: a, b, c. c is missing; s1 and s2 are not.
        assert_eq!(a.completeness.accepted, 3);
        assert_eq!(a.completeness.called_back, 2);
        assert_eq!(a.completeness.missing, vec!["c".to_string()]);
        assert_eq!(a.completeness.unexpected, 1); // zz only
        assert_eq!(a.duplicates.by_webhook_id, 0);
        assert_eq!(a.duplicates.by_checkout, 0);
        let ack = a.latency_202.unwrap();
        assert_eq!((ack.count, ack.max_ms), (3, 20.0));
        let e2e = a.latency_end_to_end.unwrap();
        assert_eq!((e2e.count, e2e.p50_ms, e2e.max_ms), (2, 50.0, 300.0));
        assert_eq!(a.callbacks_per_s, 5.0); // 2 healthy called back by t = 0.4 s

        let s = a.slow.unwrap();
        assert_eq!((s.sent, s.accepted), (3, 2));
        assert_eq!((s.attempted, s.attempts_seen), (1, 2));
        assert_eq!(s.not_attempted, vec!["s2".to_string()]);
        assert_eq!(s.latency_202.unwrap().max_ms, 700.0);

        // Every callback still counts per second, the slow ones' attempts included.
        let per_s: usize = a.per_second.iter().map(|b| b.callbacks).sum();
        assert_eq!(per_s, 5);
    }

    #[test]
    fn without_slow_checkouts_there_is_no_slow_account() {
        let a = account(&[accepted("a", 0, 10)], &[cb("a", "w", 20)]);
        assert_eq!(a.slow, None);
        assert!(a.completeness.missing.is_empty());
    }
}
