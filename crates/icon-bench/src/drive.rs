//! Sending checkouts: one [`Shot`] shared by every sending task, the two ways of pacing (open
//! loop at a rate, bounded concurrency) and the once-a-second progress line on stderr.

use std::collections::BTreeMap;
use std::io::{IsTerminal, Write};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime};

use http::StatusCode;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::api::Api;
use crate::args::{SlowShare, Stop};
use crate::stages::{self, TraceShare, Traced};
use crate::stats::{Outcome, Submission};

/// Live counts for the progress line.
#[derive(Default)]
pub struct Counters {
    pub sent: AtomicU64,
    pub answered: AtomicU64,
    pub accepted: AtomicU64,
    pub errors: AtomicU64,
}

/// What every checkout task of one phase shares.
pub struct Shot {
    api: Api,
    token: String,
    callback_url: String,
    /// Given to the checkouts a [`SlowShare`] picks.
    slow_callback_url: String,
    /// Send and answer instants are measured from here.
    pub epoch: Instant,
    pub counters: Counters,
    /// The first answer body seen for each error status.
    samples: Mutex<BTreeMap<String, String>>,
    /// `--stages`: which healthy checkouts go sampled, and how many were picked from so far.
    trace_share: Option<TraceShare>,
    trace_index: AtomicU64,
    traced: Mutex<Vec<Traced>>,
}

impl Shot {
    pub fn new(
        api: Api,
        token: String,
        callback_url: String,
        slow_callback_url: String,
        epoch: Instant,
    ) -> Self {
        Shot {
            api,
            token,
            callback_url,
            slow_callback_url,
            epoch,
            counters: Counters::default(),
            samples: Mutex::new(BTreeMap::new()),
            trace_share: None,
            trace_index: AtomicU64::new(0),
            traced: Mutex::new(Vec::new()),
        }
    }

    /// `--stages`: `share` of the healthy checkouts go with a sampled `traceparent`, the rest
    /// (and every slow one) with an unsampled one.
    pub fn traced(mut self, share: TraceShare) -> Self {
        self.trace_share = Some(share);
        self
    }

    /// The accepted checkouts sent sampled, with their marks.
    pub fn traced_checkouts(&self) -> Vec<Traced> {
        self.traced
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    pub fn samples(&self) -> BTreeMap<String, String> {
        self.samples
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    async fn fire(&self, cart_id: i64, slow: bool) -> Submission {
        let url = if slow {
            &self.slow_callback_url
        } else {
            &self.callback_url
        };
        // Picked before the clock is read, so the pick's cost is not in the 202's time.
        let trace = self.trace_share.map(|share| {
            let i = self.trace_index.fetch_add(1, Ordering::Relaxed);
            let sampled = !slow && share.picks(i);
            (sampled, stages::new_traceparent(sampled))
        });
        let traceparent = trace.as_ref().map(|(_, (_, header))| header.as_str());
        let sent_at = SystemTime::now();
        let sent = self.epoch.elapsed();
        self.counters.sent.fetch_add(1, Ordering::Relaxed);
        let reply = self
            .api
            .checkout(&self.token, cart_id, url, traceparent)
            .await;
        let answered = self.epoch.elapsed();
        let answered_at = SystemTime::now();
        self.counters.answered.fetch_add(1, Ordering::Relaxed);
        let (outcome, sample) = match reply {
            Ok(r) if r.status == StatusCode::ACCEPTED => {
                match r
                    .json()
                    .and_then(|v| Some(v.get("checkout_id")?.as_str()?.to_string()))
                {
                    Some(id) => (Outcome::Accepted(id), None),
                    None => (Outcome::Status(202), Some(("202".to_string(), r.excerpt()))),
                }
            }
            Ok(r) => (
                Outcome::Status(r.status.as_u16()),
                Some((r.status.as_u16().to_string(), r.excerpt())),
            ),
            Err(e) => (
                Outcome::Transport,
                Some(("transport".to_string(), e.to_string())),
            ),
        };
        if let Outcome::Accepted(id) = &outcome {
            self.counters.accepted.fetch_add(1, Ordering::Relaxed);
            if let Some((true, (trace_id, _))) = trace {
                self.traced
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .push(Traced {
                        checkout_id: id.clone(),
                        trace_id,
                        sent_at,
                        answered_at,
                    });
            }
        } else {
            self.counters.errors.fetch_add(1, Ordering::Relaxed);
        }
        if let Some((key, body)) = sample {
            self.samples
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .entry(key)
                .or_insert(body);
        }
        Submission {
            sent,
            answered,
            outcome,
            slow,
        }
    }
}

/// Open loop: checkout `i` leaves at `i / rate` seconds, in its own task, whatever became of
/// the earlier ones; those `slow` picks get the callback URL that hangs. Returns the submissions
/// and the worst lag behind schedule.
pub async fn drive_rate(
    shot: &Arc<Shot>,
    carts: &[i64],
    rate: f64,
    slow: Option<SlowShare>,
) -> (Vec<Submission>, Duration) {
    let mut handles = Vec::with_capacity(carts.len());
    let mut max_lag = Duration::ZERO;
    for (i, &cart) in carts.iter().enumerate() {
        let due = shot.epoch + Duration::from_secs_f64(i as f64 / rate);
        tokio::time::sleep_until(due.into()).await;
        max_lag = max_lag.max(Instant::now().saturating_duration_since(due));
        let shot = shot.clone();
        let is_slow = slow.is_some_and(|s| s.picks(i as u64));
        handles.push(tokio::spawn(async move { shot.fire(cart, is_slow).await }));
    }
    let mut subs = Vec::with_capacity(handles.len());
    for h in handles {
        if let Ok(s) = h.await {
            subs.push(s);
        }
    }
    (subs, max_lag)
}

/// Closed loop: `n` tasks, each sending the next checkout as soon as its last one is answered.
/// Returns the submissions and whether the carts ran out before `--duration` did.
pub async fn drive_concurrency(
    shot: &Arc<Shot>,
    carts: &[i64],
    n: usize,
    stop: Stop,
) -> (Vec<Submission>, bool) {
    let carts: Arc<[i64]> = carts.into();
    let next = Arc::new(AtomicUsize::new(0));
    let deadline = match stop {
        Stop::Duration(d) => Some(shot.epoch + d),
        Stop::Count(_) => None,
    };
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..n {
        let (shot, carts, next) = (shot.clone(), carts.clone(), next.clone());
        tasks.spawn(async move {
            let mut subs = Vec::new();
            loop {
                if deadline.is_some_and(|d| Instant::now() >= d) {
                    break;
                }
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(&cart) = carts.get(i) else { break };
                subs.push(shot.fire(cart, false).await);
            }
            subs
        });
    }
    let mut subs = Vec::new();
    while let Some(joined) = tasks.join_next().await {
        if let Ok(s) = joined {
            subs.extend(s);
        }
    }
    subs.sort_by_key(|s| s.sent);
    let ran_out =
        deadline.is_some_and(|d| Instant::now() < d) && next.load(Ordering::Relaxed) >= carts.len();
    (subs, ran_out)
}

/// The usual line of a measured phase: what was sent and what came back.
pub fn phase_line(shot: &Shot, called_back: usize) -> String {
    let c = &shot.counters;
    let sent = c.sent.load(Ordering::Relaxed);
    format!(
        "[{:>4}s] sent {sent}  accepted {}  called back {called_back}  in flight {}  errors {}",
        shot.epoch.elapsed().as_secs(),
        c.accepted.load(Ordering::Relaxed),
        sent - c.answered.load(Ordering::Relaxed),
        c.errors.load(Ordering::Relaxed),
    )
}

/// Writes `line()` to stderr once a second until `stop`: one line rewritten on a terminal, a
/// line each otherwise (a log keeps every one). Long phases print through this, so a set-up of
/// minutes is seen to move.
pub fn ticker<F>(stop: CancellationToken, line: F) -> JoinHandle<()>
where
    F: Fn() -> String + Send + 'static,
{
    tokio::spawn(async move {
        let tty = std::io::stderr().is_terminal();
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        tick.tick().await;
        let mut printed = false;
        loop {
            tokio::select! {
                _ = stop.cancelled() => break,
                _ = tick.tick() => {}
            }
            let line = line();
            let mut err = std::io::stderr().lock();
            let _ = if tty {
                write!(err, "\r{line}\x1b[K")
            } else {
                writeln!(err, "{line}")
            };
            let _ = err.flush();
            printed = true;
        }
        if tty && printed {
            eprintln!();
        }
    })
}
