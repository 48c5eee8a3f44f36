//! The stages of a checkout, from this tool's `POST` to the callback reaching its receiver,
//! cut at instants read from the checkout's trace; pure (spans and marks in, figures out).
//!
//! The instants (wall clock, this tool's and the spans', one machine):
//!
//! | mark | what |
//! |------|------|
//! | sent | this tool hands the `POST /cart/checkout/` to its client |
//! | G0, G1 | the gateway's `request` span starts, ends (its trace middleware; outside it: metrics, header checks) |
//! | H1 | the handler's span `POST /cart/checkout/` ends: the checkout stored (its commit) and its outbox row handed to the relay |
//! | W0 | the worker's `message` span on `checkout.requested` starts (delivery taken) |
//! | K0, K1 | `store.claim_pass` starts, ends |
//! | R0, R1 | the first retailer call (`place`/`lookup` span) starts, the last ends |
//! | P0, P1 | `store.complete_pass` starts, ends (the pass recorded, `checkout.finished` in the outbox) |
//! | N0 | the notifier's `message` span on `checkout.finished` starts |
//! | B0, B1 | the notifier's `callback` span (one attempt, signing included) starts, ends |
//! | received | the callback's head reaches this tool's receiver |
//!
//! The stages on the way ([`PATH`]) and what is left ([`Stage::Unattributed`]) add up, per
//! checkout, to its end-to-end time (sent to received):
//! `to_gateway` sent→G0, `gateway` G0→H1 (the rate limit, the token, the body, storing the
//! checkout: with group commit, the wait for and the run of the batched statement),
//! `requested_queue` H1→W0 (the gateway's relay publishing after commit, RabbitMQ, the delivery:
//! no span marks the publish),
//! `worker_claim` K0→K1, `retailer` R0→R1, `worker_commit` P0→P1, `finished_queue` P1→N0 (the
//! worker's publish, RabbitMQ, the delivery), `notifier_claim` N0→B0 (the message read, the wait
//! for and the run of the batched claim), `callback` B0→received. Unattributed: the worker's time
//! between its spans (W0→K0, K1→R0, R1→P0: parsing, pool waits, the retailers' secrets, the
//! per-retailer gate).
//!
//! Beside the way ([`BESIDE`]): `gateway_answer` H1→G1 (the 202's part after the handler) and
//! `record` B1→notifier message end (the batched attempt record and the ack, after the callback
//! was answered). The batched statements ([`BATCHED`]: the gateway's
//! `store.create_checkouts`, the worker's `store.claim_passes`, the notifier's
//! `store.claim_first_attempts` and
//! `store.record_attempts`) run for several checkouts at once in a trace of their own: they are
//! reported per batch ([`Batch`]), never split over checkouts.
//!
//! A checkout is broken down only if its trace has every mark once: one gateway request, one
//! delivery to the worker and one to the notifier, one callback attempt, and its callback
//! arrived. Others are counted by the first thing missing (a retried pass, a redelivery, a
//! span lost in export).

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::Serialize;

use super::otlp::Span;
use super::Traced;
use crate::stats::{self, CallbackRecord, Percentiles};

mod stage;

pub use stage::{Stage, BESIDE, PATH};

/// One checkout's marks, in Unix nanoseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Marks {
    pub sent: u64,
    pub request: (u64, u64),
    /// The handler's span, `POST /cart/checkout/`.
    pub handler: (u64, u64),
    pub worker: (u64, u64),
    pub claim: (u64, u64),
    pub retailer: (u64, u64),
    pub complete: (u64, u64),
    pub notifier: (u64, u64),
    pub callback: (u64, u64),
    pub received: u64,
}

impl Marks {
    pub fn end_to_end(&self) -> u64 {
        self.received.saturating_sub(self.sent)
    }

    /// The stage's time for this checkout (0 where a clock would run backwards).
    pub fn stage(&self, stage: Stage) -> u64 {
        let (from, to) = match stage {
            Stage::ToGateway => (self.sent, self.request.0),
            Stage::Gateway => (self.request.0, self.handler.1),
            Stage::RequestedQueue => (self.handler.1, self.worker.0),
            Stage::WorkerClaim => self.claim,
            Stage::Retailer => self.retailer,
            Stage::WorkerCommit => self.complete,
            Stage::FinishedQueue => (self.complete.1, self.notifier.0),
            Stage::NotifierClaim => (self.notifier.0, self.callback.0),
            Stage::Callback => (self.callback.0, self.received),
            Stage::Unattributed => {
                let named: u64 = PATH.iter().map(|s| self.stage(*s)).sum();
                return self.end_to_end().saturating_sub(named);
            }
            Stage::GatewayAnswer => (self.handler.1, self.request.1),
            Stage::Record => (self.callback.1, self.notifier.1),
        };
        to.saturating_sub(from)
    }
}

/// Why a traced checkout could not be broken down: the first thing its trace lacks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Missing {
    NoSpans,
    GatewayRequest,
    Handler,
    WorkerMessage,
    SeveralWorkerDeliveries,
    Claim,
    RetailerCall,
    Complete,
    NotifierMessage,
    SeveralNotifierDeliveries,
    CallbackSpan,
    SeveralCallbackAttempts,
    CallbackReceived,
}

impl Missing {
    pub fn describe(self) -> &'static str {
        match self {
            Missing::NoSpans => "no span of its trace received",
            Missing::GatewayRequest => "no (or several) gateway `request` span",
            Missing::Handler => "no `POST /cart/checkout/` span",
            Missing::WorkerMessage => "no worker `message` span",
            Missing::SeveralWorkerDeliveries => {
                "several worker deliveries (a later pass or a redelivery)"
            }
            Missing::Claim => "no `store.claim_pass` span",
            Missing::RetailerCall => "no retailer call span",
            Missing::Complete => "no `store.complete_pass` span",
            Missing::NotifierMessage => "no notifier `message` span",
            Missing::SeveralNotifierDeliveries => "several notifier deliveries",
            Missing::CallbackSpan => "no `callback` span",
            Missing::SeveralCallbackAttempts => "several callback attempts",
            Missing::CallbackReceived => "no callback received",
        }
    }
}

fn unix_ns(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

fn between(s: &Span) -> (u64, u64) {
    (s.start_ns, s.end_ns)
}

/// The spans of `service` called `name` (and, for a consumer's `message`, on `queue`).
fn named<'a>(trace: &[&'a Span], service: &str, name: &str, queue: Option<&str>) -> Vec<&'a Span> {
    trace
        .iter()
        .copied()
        .filter(|s| s.service == service && s.name == name)
        .filter(|s| queue.is_none() || s.queue.as_deref() == queue)
        .collect()
}

/// The spans called one of `names` whose parent is `parent`.
fn children<'a>(trace: &[&'a Span], parent: &Span, names: &[&str]) -> Vec<&'a Span> {
    trace
        .iter()
        .copied()
        .filter(|s| s.parent_span_id == parent.span_id && names.contains(&s.name.as_str()))
        .collect()
}

/// The one span of `spans`, or what is wrong: none, or several.
fn one(spans: Vec<&Span>, none: Missing, several: Missing) -> Result<&Span, Missing> {
    match spans.as_slice() {
        [] => Err(none),
        [s] => Ok(s),
        _ => Err(several),
    }
}

/// The marks of `traced` from its trace's spans (`trace`) and its first callback's arrival.
pub fn marks(
    traced: &Traced,
    trace: &[&Span],
    received: Option<SystemTime>,
) -> Result<Marks, Missing> {
    use Missing as M;
    if trace.is_empty() {
        return Err(M::NoSpans);
    }
    let gateway = "icon-gateway";
    let request = one(
        named(trace, gateway, "request", None),
        M::GatewayRequest,
        M::GatewayRequest,
    )?;
    let handler = children(trace, request, &["POST /cart/checkout/"]);
    let handler = handler.first().ok_or(M::Handler)?;
    let worker = one(
        named(
            trace,
            "icon-checkout-worker",
            "message",
            Some("checkout.requested"),
        ),
        M::WorkerMessage,
        M::SeveralWorkerDeliveries,
    )?;
    let claim = children(trace, worker, &["store.claim_pass"]);
    let claim = claim.first().ok_or(M::Claim)?;
    let calls = children(trace, worker, &["place", "lookup"]);
    let retailer = (
        calls
            .iter()
            .map(|s| s.start_ns)
            .min()
            .ok_or(M::RetailerCall)?,
        calls
            .iter()
            .map(|s| s.end_ns)
            .max()
            .ok_or(M::RetailerCall)?,
    );
    let complete = children(trace, worker, &["store.complete_pass"]);
    let complete = complete.first().ok_or(M::Complete)?;
    let notifier = one(
        named(trace, "icon-notifier", "message", Some("checkout.finished")),
        M::NotifierMessage,
        M::SeveralNotifierDeliveries,
    )?;
    let callback = one(
        children(trace, notifier, &["callback"]),
        M::CallbackSpan,
        M::SeveralCallbackAttempts,
    )?;
    let received = received.ok_or(M::CallbackReceived)?;
    Ok(Marks {
        sent: unix_ns(traced.sent_at),
        request: between(request),
        handler: between(handler),
        worker: between(worker),
        claim: between(claim),
        retailer,
        complete: between(complete),
        notifier: between(notifier),
        callback: between(callback),
        received: unix_ns(received),
    })
}

/// A stage's figures over the checkouts broken down.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Row {
    pub stage: &'static str,
    pub label: &'static str,
    pub definition: &'static str,
    /// Means add up (the stages' to the end-to-end mean); percentiles do not.
    pub mean_ms: f64,
    #[serde(flatten)]
    pub percentiles: Percentiles,
}

/// A batched statement of the notifier, per batch.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Batch {
    pub span: &'static str,
    pub batches: usize,
    /// Checkouts (the span's `count`) over all batches.
    pub items: i64,
    pub items_per_batch_mean: f64,
    pub items_per_batch_max: i64,
    pub duration: Percentiles,
}

/// The statements made for several checkouts at once (group commit): the gateway's, the
/// worker's claims, then the notifier's. `store.create_checkout` is the gateway's statement before its group commit (one
/// per checkout, in the checkout's trace): reported the same way, so builds compare.
pub const BATCHED: [&str; 5] = [
    "store.create_checkout",
    "store.create_checkouts",
    "store.claim_passes",
    "store.claim_first_attempts",
    "store.record_attempts",
];

/// Everything the report shows of the stages.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Breakdown {
    /// Measured checkouts sent sampled and accepted.
    pub traced: usize,
    /// Of those, broken down.
    pub complete: usize,
    /// The others, by what their trace lacked first.
    pub incomplete: BTreeMap<&'static str, usize>,
    /// Sent to received, of the checkouts broken down.
    pub end_to_end: Option<Row>,
    /// [`PATH`] in order, then [`Stage::Unattributed`].
    pub path: Vec<Row>,
    pub beside: Vec<Row>,
    pub batches: Vec<Batch>,
}

/// The first callback's arrival per checkout.
fn first_arrivals(callbacks: &[CallbackRecord]) -> HashMap<&str, SystemTime> {
    let mut first: HashMap<&str, SystemTime> = HashMap::new();
    for c in callbacks {
        if let Some(id) = &c.checkout_id {
            first
                .entry(id.as_str())
                .and_modify(|t| *t = (*t).min(c.received_at))
                .or_insert(c.received_at);
        }
    }
    first
}

fn row(stage: Stage, label: &'static str, definition: &'static str, ns: &[u64]) -> Option<Row> {
    let mut values: Vec<Duration> = ns.iter().map(|n| Duration::from_nanos(*n)).collect();
    let percentiles = stats::percentiles(&mut values)?;
    let mean_ms = ns.iter().sum::<u64>() as f64 / ns.len() as f64 / 1e6;
    Some(Row {
        stage: stage.key(),
        label,
        definition,
        mean_ms,
        percentiles,
    })
}

fn stage_row(stage: Stage, all: &[Marks]) -> Option<Row> {
    let ns: Vec<u64> = all.iter().map(|m| m.stage(stage)).collect();
    row(stage, stage.label(), stage.definition(), &ns)
}

pub fn breakdown(traced: &[Traced], callbacks: &[CallbackRecord], spans: &[Span]) -> Breakdown {
    let mut by_trace: HashMap<&str, Vec<&Span>> = HashMap::new();
    for s in spans {
        by_trace.entry(s.trace_id.as_str()).or_default().push(s);
    }
    let arrivals = first_arrivals(callbacks);
    let mut all = Vec::new();
    let mut incomplete = BTreeMap::new();
    for t in traced {
        let trace = by_trace
            .get(t.trace_id.as_str())
            .map_or(&[][..], Vec::as_slice);
        let received = arrivals.get(t.checkout_id.as_str()).copied();
        match marks(t, trace, received) {
            Ok(m) => all.push(m),
            Err(missing) => *incomplete.entry(missing.describe()).or_insert(0) += 1,
        }
    }
    let e2e: Vec<u64> = all.iter().map(Marks::end_to_end).collect();
    let path_and_rest = PATH.iter().chain(std::iter::once(&Stage::Unattributed));
    Breakdown {
        traced: traced.len(),
        complete: all.len(),
        incomplete,
        end_to_end: row(
            Stage::Unattributed,
            "end-to-end",
            "POST sent -> callback received by icon-bench",
            &e2e,
        )
        .map(|r| Row {
            stage: "end_to_end",
            ..r
        }),
        path: path_and_rest.filter_map(|s| stage_row(*s, &all)).collect(),
        beside: BESIDE.iter().filter_map(|s| stage_row(*s, &all)).collect(),
        batches: BATCHED
            .iter()
            .filter_map(|name| batch(name, spans))
            .collect(),
    }
}

fn batch(name: &'static str, spans: &[Span]) -> Option<Batch> {
    let of: Vec<&Span> = spans.iter().filter(|s| s.name == name).collect();
    let mut durations: Vec<Duration> = of
        .iter()
        .map(|s| Duration::from_nanos(s.duration_ns()))
        .collect();
    let duration = stats::percentiles(&mut durations)?;
    let counts: Vec<i64> = of.iter().map(|s| s.count.unwrap_or(1)).collect();
    let items: i64 = counts.iter().sum();
    Some(Batch {
        span: name,
        batches: of.len(),
        items,
        items_per_batch_mean: items as f64 / of.len() as f64,
        items_per_batch_max: counts.iter().copied().max().unwrap_or(0),
        duration,
    })
}

#[cfg(test)]
mod tests;
