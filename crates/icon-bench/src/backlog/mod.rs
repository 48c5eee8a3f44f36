//! The `backlog` scenario: do notifications waiting in ICON's retry tiers slow fresh deliveries,
//! and do they grow memory? One invocation measures `steady` twice, before and while
//! `--backlog N` notifications wait, and compares the two.
//!
//! Phases, each announced on stderr and moving with a progress line:
//! 1. set-up: the carts of both measured phases and of the backlog, before any clock starts;
//! 2. baseline: `steady` at `--rate` for `--duration`/`--count`, accounted as usual;
//! 3. fill: N checkouts whose callback URL is the receiver's [`FAIL_PATH`], [`FILL_CONCURRENCY`]
//!    at a time, then a wait until the receiver has seen each one's first attempt (or
//!    [`compare::fill_deadline`]); current RSS per group before and after;
//! 4. loaded: the same steady load again, on fresh carts, with the backlog waiting;
//! 5. the comparison ([`compare`]) and its table ([`table`]).
//!
//! Why the backlog waits where it should: [`FAIL_PATH`] answers `503` with `Retry-After: 3600`.
//! ICON's notifier takes a 429's or 503's `Retry-After` (`channels/callback.rs`) and waits the
//! longer of it and its own schedule's delay, the `Retry-After` capped at `MAX_RETRY_AFTER`,
//! one hour (`schedule.rs`); the next attempt is due an hour after the first, or at the give-up
//! deadline (`ICON_CALLBACK_GIVE_UP_AFTER` after the first attempt, default 72 h) if sooner.
//! The wait is spent in RabbitMQ (module `dispatch`): the retry goes into the largest delay tier
//! not longer than what is left, one TTL queue per distinct delay of
//! `ICON_CALLBACK_RETRY_SCHEDULE` (default 10s,60s,600s: the 600 s tier,
//! `checkout.finished.delay.600000ms`); when the TTL runs out it comes back to the work queue,
//! is found early and deferred again: six 600 s hops to the hour.

pub mod compare;
pub mod table;

use std::sync::Arc;
use std::time::Instant;

use tokio_util::sync::CancellationToken;

use crate::args::{Config, Stop};
use crate::drive::{self, Shot};
use crate::procs;
use crate::receiver::{FailCounts, FAIL_PATH, FAIL_RETRY_AFTER_S};
use crate::run::{self, Bench, RunError, Summary};
use crate::setup;
use crate::stats::Outcome;
use compare::{BacklogReport, Fill, FillRecord, TARGET_RATIO};

/// Backlog checkouts in flight at once: enough to make 100,000 in minutes, bounded so the
/// fill does not turn into a test of the gateway's overload behaviour.
pub const FILL_CONCURRENCY: usize = 64;

pub async fn run(
    cfg: &Config,
    bench: &Bench,
    retailers: &[String],
    setup_started: Instant,
) -> Result<Summary, RunError> {
    let n = cfg.backlog.unwrap_or(100_000);
    let per_phase = cfg.carts_needed();
    let total = 2 * per_phase + n;
    eprintln!(
        "backlog: setting up {total} carts ({per_phase} for each measured phase, {n} for the backlog)"
    );
    let mut carts = setup::make_carts(&bench.api, &bench.token, retailers, total).await?;
    let backlog_carts = carts.split_off((2 * per_phase) as usize);
    let loaded_carts = carts.split_off(per_phase as usize);
    let setup_s = setup_started.elapsed().as_secs_f64();
    eprintln!("setup: {total} carts in {setup_s:.1} s");
    let mut notes = Vec::new();
    let db = run::connect_db(cfg, &mut notes).await;
    let watched = || procs::discover(cfg.pids.as_deref());

    eprintln!(
        "baseline: {} fresh checkouts, callbacks to {}",
        carts.len(),
        bench.receiver_url("/cb")
    );
    let (baseline, said) = run::measure(cfg, bench, db.as_ref(), &carts).await;
    notes.extend(said.into_iter().map(|s| format!("baseline phase: {s}")));
    let rss_before = procs::rss_now(&watched());

    eprintln!(
        "backlog fill: {n} checkouts calling back to {} (answered 503, Retry-After: {FAIL_RETRY_AFTER_S}), {FILL_CONCURRENCY} at a time",
        bench.receiver_url(FAIL_PATH)
    );
    let fill = fill(bench, &backlog_carts, n).await;
    if fill.shortfall > 0 {
        notes.push(format!(
            "backlog: {} of {} accepted backlog checkouts had no callback attempt within {:.0} s; the loaded phase ran with {} waiting",
            fill.shortfall, fill.accepted, fill.deadline_s, fill.first_attempted
        ));
    }
    let rss_after_fill = procs::rss_now(&watched());

    eprintln!(
        "loaded: {} fresh checkouts while {} notifications wait",
        loaded_carts.len(),
        fill.first_attempted
    );
    let first_fail = bench.receiver.inbox.first_fail_at();
    let loaded_start = Instant::now();
    let (loaded, said) = run::measure(cfg, bench, db.as_ref(), &loaded_carts).await;
    let loaded_end = Instant::now();
    notes.extend(said.into_iter().map(|s| format!("loaded phase: {s}")));
    let rss_after_loaded = procs::rss_now(&watched());
    let fail_hits = bench.receiver.inbox.fail_counts();

    let since_first =
        |at: Instant| first_fail.map(|f| at.saturating_duration_since(f).as_secs_f64());
    let ratios = compare::ratios(&baseline.accounting, &loaded.accounting);
    let report = BacklogReport {
        requested: n,
        waiting: fill.first_attempted,
        retry_after_s: FAIL_RETRY_AFTER_S,
        fail_hits: fail_hits.into(),
        baseline,
        within_target: compare::within_target(&ratios),
        ratios,
        target_ratio: TARGET_RATIO,
        rss: compare::rss_rows(&rss_before, &rss_after_fill, &rss_after_loaded),
        loaded_start_after_first_attempt_s: since_first(loaded_start),
        loaded_end_after_first_attempt_s: since_first(loaded_end),
        fill,
    };
    notes.extend(backlog_notes(&report, fail_hits));
    Ok(run::finish(
        cfg,
        bench,
        setup_s,
        loaded,
        Some(report),
        notes,
    ))
}

/// Sends the backlog and waits for each accepted one's first attempt on [`FAIL_PATH`].
async fn fill(bench: &Bench, carts: &[i64], requested: u64) -> Fill {
    let fail_url = bench.receiver_url(FAIL_PATH);
    let started = Instant::now();
    let shot = Arc::new(Shot::new(
        bench.api.clone(),
        bench.token.clone(),
        fail_url.clone(),
        fail_url,
        started,
    ));
    let inbox = bench.receiver.inbox.clone();
    let stop = CancellationToken::new();
    let progress = {
        let (shot, inbox, n) = (shot.clone(), inbox.clone(), carts.len());
        drive::ticker(stop.clone(), move || {
            fill_line(&shot, n, inbox.fail_counts())
        })
    };
    let count = Stop::Count(carts.len() as u64);
    let (subs, _) = drive::drive_concurrency(&shot, carts, FILL_CONCURRENCY, count).await;
    let submit = started.elapsed();
    let accepted: Vec<String> = subs
        .iter()
        .filter_map(|s| match &s.outcome {
            Outcome::Accepted(id) => Some(id.clone()),
            _ => None,
        })
        .collect();
    let deadline = compare::fill_deadline(requested);
    let not_attempted = inbox.wait_for_fail(&accepted, deadline).await;
    let wait = started.elapsed().saturating_sub(submit);
    stop.cancel();
    let _ = progress.await;
    compare::fill(FillRecord {
        requested,
        subs,
        error_samples: shot.samples(),
        not_attempted,
        submit,
        wait,
        deadline,
    })
}

/// `[  12s] backlog fill: sent 1200/100000  accepted 1190  errors 0  first attempts 1100 (1100 hits)`.
fn fill_line(shot: &Shot, n: usize, fails: FailCounts) -> String {
    use std::sync::atomic::Ordering::Relaxed;
    let c = &shot.counters;
    format!(
        "[{:>4}s] backlog fill: sent {}/{n}  accepted {}  errors {}  first attempts {} ({} hits)",
        shot.epoch.elapsed().as_secs(),
        c.sent.load(Relaxed),
        c.accepted.load(Relaxed),
        c.errors.load(Relaxed),
        fails.distinct,
        fails.total,
    )
}

/// What a reader must know to trust the comparison and to clean up after it.
fn backlog_notes(r: &BacklogReport, fails: FailCounts) -> Vec<String> {
    let mut notes = vec![format!(
        "the backlog stays after this run: {} notifications wait in ICON's retry tiers. While this tool's receiver answered, ICON waited an hour between attempts (Retry-After: {FAIL_RETRY_AFTER_S}, ICON's cap MAX_RETRY_AFTER is also an hour); from now on its attempts find nothing listening and follow ICON_CALLBACK_RETRY_SCHEDULE (default 10s,60s,600s, the last repeating) until ICON_CALLBACK_GIVE_UP_AFTER (default 72h) after each first attempt, when they are parked. To start clean, run on a fresh database and RabbitMQ vhost (scripts/bench.sh makes both)",
        r.waiting
    )];
    if let (Some(from), Some(to)) = (
        r.loaded_start_after_first_attempt_s,
        r.loaded_end_after_first_attempt_s,
    ) {
        notes.push(format!(
            "the loaded phase ran from {from:.0} s to {to:.0} s after the backlog's first attempt. A waiting retry sits in ICON's largest delay tier that fits its wait (600 s with the default schedule) and passes through the work queue each time that tier's TTL runs out, to be deferred again; a loaded phase that ends before the first such pass measures the backlog at rest, one that spans it measures the hops too"
        ));
    }
    let retried = fails.total.saturating_sub(fails.distinct);
    if retried > 0 {
        notes.push(format!(
            "{retried} attempt(s) on {FAIL_PATH} were retries (same webhook-id again) within the run: a retry due before Retry-After's hour, a redelivery after a crash, or a backlog of an earlier run on the same --callback-bind port"
        ));
    }
    notes
}
