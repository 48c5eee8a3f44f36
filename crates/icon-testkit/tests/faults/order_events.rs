//! Issue 17 under crashes: retailers report their orders' lives (shipped, delivered, refunded)
//! by signed events while the notifier, the worker and the gateway are SIGKILLed and started
//! again, and ICON turns each into the checkout's next numbered event with a callback.
//!
//! The test plays the retailers as a real one would ([`icon_testkit::retailer_events`]): every
//! event signed with the retailer's secret (the `standardwebhooks` crate, written independently
//! of ICON's verifying), each retried under its own `webhook-id` until a 2xx (through
//! connection errors and 5xx), some sent twice on purpose (again after the 2xx, or two at once).
//! Everything is judged from outside: the event endpoint's answers,
//! `GET /cart/checkout/{id}/events`, the checkout resource and the callback receiver. The
//! promise:
//! - every event answered 2xx is one event of its checkout (nothing lost), and none is applied
//!   twice (as many refunds on an order as refund `webhook-id`s, no extra event);
//! - each checkout's events are numbered 1..k, without gaps or repeats;
//! - the receiver got every number, under one `webhook-id` per number (a repeat after a crash
//!   is allowed, with the same id), and never number n+1 before a 2xx for n.

use crate::wait_count;
use futures_util::{stream, StreamExt};
use icon_gateway::auth::JwtKeys;
use icon_testkit::fleet::{record, Fleet, Tally, GATEWAY, NOTIFIER, WORKER};
use icon_testkit::retailer_events::{new_webhook_id, rfc3339, RetailerReporter};
use icon_testkit::{eventually, ApiReply, Receiver, Recorded, Sim, TestEnv, JWT_SECRET};
use serde_json::{json, Value};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::Duration;

const CHECKOUTS: usize = 20;
/// Each checkout buys once from each: two orders, whose events interleave on one checkout.
const RETAILERS: [(&str, &str); 2] = [("acme", "a"), ("globex", "b")];
/// A retailer's pace between two events about one order, so the run outlasts the faults.
const PACE: Duration = Duration::from_millis(150);
/// Orders reported on at once.
const CONCURRENCY: usize = 12;
/// How long a retailer keeps retrying one event before the test gives up on it.
const RETRY_FOR: Duration = Duration::from_secs(120);

/// One order ICON placed, as the retailer knows it.
struct Order {
    n: usize,
    checkout_id: String,
    retailer: &'static str,
    /// The `Idempotency-Key` ICON sent, as the simulator logged it.
    key: String,
}

/// How an event is sent besides the retailer's own retries.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Repeat {
    Once,
    /// Sent again under the same `webhook-id` after its 2xx (a retailer that lost the answer).
    AfterAnswer,
    /// Two copies at once (a retailer's retry racing its first try).
    AtOnce,
}

struct Planned {
    webhook_id: String,
    kind: &'static str,
    body: String,
    repeat: Repeat,
}

/// Shipped, delivered, a refund, and for every third order a second refund.
fn plan(order: &Order) -> Vec<Planned> {
    let base = chrono::Utc::now() - chrono::Duration::hours(1);
    let at = |minutes: i64| rfc3339(base + chrono::Duration::minutes(minutes));
    let key = order.key.as_str();
    let mut events = vec![
        (
            "order.shipped",
            json!({"type": "order.shipped", "idempotency_key": key, "occurred_at": at(1),
                   "tracking": {"carrier": "DHL", "number": format!("JD{:04}", order.n)}}),
        ),
        (
            "order.delivered",
            json!({"type": "order.delivered", "idempotency_key": key, "occurred_at": at(2)}),
        ),
        (
            "order.refunded",
            json!({"type": "order.refunded", "idempotency_key": key, "occurred_at": at(3),
                   "refund": {"amount_minor": 500, "currency": "GBP"}}),
        ),
    ];
    if order.n.is_multiple_of(3) {
        events.push((
            "order.refunded",
            json!({"type": "order.refunded", "idempotency_key": key, "occurred_at": at(4),
                   "refund": {"amount_minor": 250, "currency": "GBP"}}),
        ));
    }
    events
        .into_iter()
        .enumerate()
        .map(|(step, (kind, body))| Planned {
            webhook_id: new_webhook_id(),
            kind,
            body: body.to_string(),
            repeat: match (order.n + step) % 7 {
                0 => Repeat::AtOnce,
                3 | 5 => Repeat::AfterAnswer,
                _ => Repeat::Once,
            },
        })
        .collect()
}

/// What the retailers' side saw.
#[derive(Default)]
struct Posted {
    /// Per `webhook-id` answered 2xx: its checkout, retailer and type, and every 2xx answer.
    answered: HashMap<String, Answered>,
    /// Requests sent, retries included.
    requests: usize,
    /// Attempts that failed with a transport error or a 5xx (and were retried).
    failed_attempts: usize,
    /// Events that needed more than one attempt.
    retried_events: usize,
    /// 2xx answers saying `duplicate`.
    duplicates_answered: usize,
    /// 4xx answers (never retried, as a retailer would not): each is a failure of the test.
    refused: Vec<String>,
}

struct Answered {
    checkout_id: String,
    retailer: &'static str,
    kind: &'static str,
    answers: Vec<Value>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    match m.lock() {
        Ok(g) => g,
        Err(p) => p.into_inner(),
    }
}

/// The retailers' side: each signing with its secret, and every answer they got.
struct Retailers {
    reporters: HashMap<&'static str, RetailerReporter>,
    posted: Mutex<Posted>,
    /// Events answered 2xx at least once, for the faults' timing.
    recorded: AtomicUsize,
}

impl Retailers {
    /// Sends `event` about `order` until a 2xx (re-signed each time, as a retailer's retry
    /// would be), or a 4xx. Returns the 2xx's body.
    async fn post(&self, order: &Order, event: &Planned) -> Option<Value> {
        let reporter = &self.reporters[order.retailer];
        let until = tokio::time::Instant::now() + RETRY_FOR;
        let mut attempt = 0;
        loop {
            attempt += 1;
            let reply = reporter
                .try_send_raw(&event.webhook_id, event.body.clone())
                .await;
            if let Some(done) = self.note(order, event, attempt, reply) {
                return done;
            }
            assert!(
                tokio::time::Instant::now() < until,
                "{} {} {} kept failing for {RETRY_FOR:?}",
                order.retailer,
                event.kind,
                event.webhook_id
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Keeps the answer to one attempt. `Some` when the retailer is done with the event (a 2xx,
    /// with its body, or a 4xx), `None` when it tries again.
    fn note(
        &self,
        order: &Order,
        event: &Planned,
        attempt: u32,
        reply: Result<ApiReply, String>,
    ) -> Option<Option<Value>> {
        let mut posted = lock(&self.posted);
        posted.requests += 1;
        match reply {
            Ok(r) if (200..300).contains(&r.status) => {
                if attempt > 1 {
                    posted.retried_events += 1;
                }
                if r.json["result"] == "duplicate" {
                    posted.duplicates_answered += 1;
                }
                let first = !posted.answered.contains_key(&event.webhook_id);
                posted
                    .answered
                    .entry(event.webhook_id.clone())
                    .or_insert_with(|| Answered {
                        checkout_id: order.checkout_id.clone(),
                        retailer: order.retailer,
                        kind: event.kind,
                        answers: vec![],
                    })
                    .answers
                    .push(r.json.clone());
                if first {
                    self.recorded.fetch_add(1, Ordering::SeqCst);
                }
                Some(Some(r.json))
            }
            Ok(r) if r.status >= 500 || r.status == 429 || r.status == 408 => {
                posted.failed_attempts += 1;
                None
            }
            Ok(r) => {
                posted.refused.push(format!(
                    "{} {} {}: {} {}",
                    order.retailer, event.kind, event.webhook_id, r.status, r.text
                ));
                Some(None)
            }
            Err(_) => {
                posted.failed_attempts += 1;
                None
            }
        }
    }

    /// Every event about `order`, in order, at the retailer's pace.
    async fn report(&self, order: &Order) {
        for event in plan(order) {
            match event.repeat {
                Repeat::Once => {
                    self.post(order, &event).await;
                }
                Repeat::AfterAnswer => {
                    if self.post(order, &event).await.is_some() {
                        self.post(order, &event).await;
                    }
                }
                Repeat::AtOnce => {
                    tokio::join!(self.post(order, &event), self.post(order, &event));
                }
            }
            tokio::time::sleep(PACE).await;
        }
    }
}

/// A checkout's events, as its owner reads them.
async fn events_of(fleet: &Fleet, token: &str, checkout_id: &str) -> Option<Vec<Value>> {
    match fleet
        .api
        .try_send(
            http::Method::GET,
            &format!("/cart/checkout/{checkout_id}/events"),
            Some(token),
            &[],
            None,
        )
        .await
    {
        Ok(r) if r.status == 200 => r.json["events"].as_array().cloned(),
        _ => None,
    }
}

/// The callbacks about `checkout_id`, by the sequence they announce, each with its position in
/// the receiver's log (the order they were answered in).
fn callbacks_of<'a>(
    seen: &'a [Recorded],
    checkout_id: &str,
) -> BTreeMap<i64, Vec<(usize, &'a Recorded)>> {
    let mut by_sequence: BTreeMap<i64, Vec<(usize, &Recorded)>> = BTreeMap::new();
    for (i, r) in seen.iter().enumerate() {
        if r.body["checkout_id"] == checkout_id {
            let sequence = r.body["sequence"].as_i64().unwrap_or(-1);
            by_sequence.entry(sequence).or_default().push((i, r));
        }
    }
    by_sequence
}

fn ok(r: &Recorded) -> bool {
    (200..300).contains(&r.answered)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn order_events_through_notifier_worker_and_gateway_sigkills() {
    let env = TestEnv::create().await;
    let sim = Sim::start().await;
    // Each callback takes 100ms to answer, so some are in flight when the notifier dies.
    let receiver = Receiver::start_on(0, vec![], None, Duration::from_millis(100)).await;
    let fleet = Fleet::start(&env.database_url, &env.amqp_url, &[]).await;
    let keys = JwtKeys::new(JWT_SECRET);
    let admin = keys
        .mint("ops", true, Duration::from_secs(3600))
        .expect("token");
    // The fleet's shopper, who owns every checkout.
    let shopper = keys
        .mint("shopper", false, Duration::from_secs(3600))
        .expect("token");
    let mut reporters = HashMap::new();
    for (retailer, _) in RETAILERS {
        fleet.register(&sim, retailer).await;
        reporters.insert(
            retailer,
            RetailerReporter::with_api(&fleet.api, &admin, retailer).await,
        );
    }

    // The checkouts, all finished before their orders' lives begin.
    let tally = Mutex::new(Tally::default());
    let fields = json!({"callback_url": receiver.url, "order_updates": true});
    let ids: Vec<String> = stream::iter(0..CHECKOUTS)
        .map(|i| {
            let (fleet, tally, fields) = (&fleet, &tally, fields.clone());
            async move { fleet.submit_with(i, &RETAILERS, fields, tally).await }
        })
        .buffer_unordered(8)
        .collect()
        .await;
    for id in &ids {
        let c = eventually(
            "the checkout to finish",
            Duration::from_secs(60),
            || async {
                fleet
                    .checkout(id)
                    .await
                    .filter(|c| !matches!(c["status"].as_str(), Some("queued" | "processing")))
            },
        )
        .await;
        assert_eq!(c["status"], "completed", "{c}");
    }
    let requests = sim.orders().await;
    let orders: Vec<Order> = ids
        .iter()
        .flat_map(|id| RETAILERS.iter().map(move |(r, _)| (id, *r)))
        .enumerate()
        .map(|(n, (id, retailer))| {
            let key = requests
                .iter()
                .find(|o| o["retailer"] == retailer && o["checkout_id"] == id.as_str())
                .and_then(|o| o["idempotency_key"].as_str())
                .unwrap_or_else(|| panic!("no {retailer} order for {id} at the simulator"))
                .to_owned();
            Order {
                n,
                checkout_id: id.clone(),
                retailer,
                key,
            }
        })
        .collect();
    let planned: usize = orders.iter().map(|o| plan(o).len()).sum();

    // The retailers report while each service in turn is killed and started again.
    let retailers = Retailers {
        reporters,
        posted: Mutex::new(Posted::default()),
        recorded: AtomicUsize::new(0),
    };
    let report = stream::iter(&orders)
        .map(|o| retailers.report(o))
        .buffer_unordered(CONCURRENCY)
        .collect::<Vec<()>>();
    let control = async {
        wait_count("a fifth of the events", &retailers.recorded, planned / 5).await;
        fleet.notifier.kill();
        fleet.notifier.restart(NOTIFIER);
        wait_count(
            "two fifths of the events",
            &retailers.recorded,
            planned * 2 / 5,
        )
        .await;
        fleet.worker.kill();
        fleet.worker.restart(WORKER);
        wait_count(
            "three fifths of the events",
            &retailers.recorded,
            planned * 3 / 5,
        )
        .await;
        fleet.gateway.kill();
        fleet.gateway.restart(GATEWAY);
        fleet.wait_ready().await;
    };
    tokio::join!(report, control);
    let posted = retailers.posted.into_inner().unwrap();

    // What each checkout should have: event 1, then one per event its retailers got a 2xx for.
    let mut expected: HashMap<&str, Vec<(&String, &Answered)>> = HashMap::new();
    for (webhook_id, a) in &posted.answered {
        expected
            .entry(a.checkout_id.as_str())
            .or_default()
            .push((webhook_id, a));
    }

    // Drain: every event on the resource and delivered to the receiver (or the deadline).
    let until = tokio::time::Instant::now() + Duration::from_secs(120);
    let mut lists: HashMap<&str, Vec<Value>> = HashMap::new();
    loop {
        lists.clear();
        for id in &ids {
            if let Some(events) = events_of(&fleet, &shopper, id).await {
                lists.insert(id.as_str(), events);
            }
        }
        let seen = receiver.seen();
        let settled = ids.iter().all(|id| {
            let want = 1 + expected.get(id.as_str()).map_or(0, Vec::len);
            let delivered = callbacks_of(&seen, id);
            lists.get(id.as_str()).is_some_and(|events| {
                events.len() >= want
                    && events.iter().all(|e| {
                        e["deliveries"]
                            .as_array()
                            .is_some_and(|d| d.iter().all(|d| d["state"] == "delivered"))
                    })
            }) && (1..=want as i64).all(|s| {
                delivered
                    .get(&s)
                    .is_some_and(|v| v.iter().any(|(_, r)| ok(r)))
            })
        });
        if settled || tokio::time::Instant::now() >= until {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // The events side: nothing lost, nothing applied twice, no gaps.
    let (mut lost, mut applied_twice, mut gaps, mut refunds_wrong, mut stale) = (0, 0, 0, 0, 0);
    let mut problems: Vec<String> = vec![];
    let mut sequences_of: HashMap<&str, usize> = HashMap::new();
    for id in &ids {
        let Some(events) = lists.get(id.as_str()) else {
            problems.push(format!("{id}: /events did not answer"));
            lost += 1;
            continue;
        };
        let numbers: Vec<i64> = events
            .iter()
            .filter_map(|e| e["sequence"].as_i64())
            .collect();
        if numbers != (1..=events.len() as i64).collect::<Vec<_>>() {
            gaps += 1;
            problems.push(format!("{id}: sequences {numbers:?}"));
        }
        let by_number: HashMap<i64, &Value> = events
            .iter()
            .filter_map(|e| Some((e["sequence"].as_i64()?, e)))
            .collect();
        let mine = expected.get(id.as_str()).map(Vec::as_slice).unwrap_or(&[]);
        let mut claimed: HashMap<i64, &str> = HashMap::new();
        for (webhook_id, a) in mine {
            let results: Vec<&str> = a
                .answers
                .iter()
                .filter_map(|j| j["result"].as_str())
                .collect();
            stale += results.iter().filter(|r| **r == "stale").count();
            if results.iter().filter(|r| **r == "applied").count() > 1 {
                applied_twice += 1;
                problems.push(format!("{id}: {webhook_id} applied twice: {results:?}"));
            }
            let numbers: HashSet<Option<i64>> =
                a.answers.iter().map(|j| j["sequence"].as_i64()).collect();
            let number = match numbers.iter().collect::<Vec<_>>().as_slice() {
                [Some(n)] => *n,
                _ => {
                    lost += 1;
                    problems.push(format!(
                        "{id}: {webhook_id} answered with sequences {numbers:?}"
                    ));
                    continue;
                }
            };
            if let Some(other) = claimed.insert(number, webhook_id) {
                lost += 1;
                problems.push(format!(
                    "{id}: {webhook_id} and {other} both answered as sequence {number}"
                ));
            }
            match by_number.get(&number) {
                Some(e) if e["type"] == a.kind && e["retailer_id"] == a.retailer => {}
                found => {
                    lost += 1;
                    problems.push(format!(
                        "{id}: {webhook_id} ({} {}) answered as sequence {number}, /events has {found:?}",
                        a.retailer, a.kind
                    ));
                }
            }
        }
        if events.len() > 1 + mine.len() {
            applied_twice += events.len() - 1 - mine.len();
            problems.push(format!(
                "{id}: {} events for {} answered",
                events.len(),
                mine.len()
            ));
        }
        sequences_of.insert(id.as_str(), events.len().max(1 + mine.len()));
        // As many refunds on each order as refund webhook-ids answered 2xx.
        let view = fleet.checkout(id).await.unwrap_or_default();
        for (retailer, _) in RETAILERS {
            let want = mine
                .iter()
                .filter(|(_, a)| a.retailer == retailer && a.kind == "order.refunded")
                .count();
            let got = view["orders"]
                .as_array()
                .and_then(|os| os.iter().find(|o| o["retailer_id"] == retailer))
                .and_then(|o| o["refunds"].as_array())
                .map_or(0, Vec::len);
            if got != want {
                refunds_wrong += 1;
                applied_twice += got.saturating_sub(want);
                problems.push(format!(
                    "{id}: {retailer} has {got} refunds for {want} answered"
                ));
            }
        }
    }

    // The receiver's side: every number delivered, one webhook-id each, in order.
    let seen = receiver.seen();
    let (mut callbacks_lost, mut split_ids, mut out_of_order, mut mismatched) = (0, 0, 0, 0);
    let mut repeated = 0;
    let mut ids_used: HashMap<&str, (&str, i64)> = HashMap::new();
    for id in &ids {
        let k = sequences_of.get(id.as_str()).copied().unwrap_or(1) as i64;
        let callbacks = callbacks_of(&seen, id);
        let mut previous_ok: Option<usize> = None;
        for sequence in 1..=k {
            let Some(got) = callbacks.get(&sequence) else {
                callbacks_lost += 1;
                problems.push(format!("{id}: no callback for sequence {sequence}"));
                previous_ok = None;
                continue;
            };
            let webhook_ids: HashSet<&str> = got
                .iter()
                .filter_map(|(_, r)| r.webhook_id.as_deref())
                .collect();
            if webhook_ids.len() != 1 {
                split_ids += 1;
                problems.push(format!(
                    "{id}: sequence {sequence} under webhook-ids {webhook_ids:?}"
                ));
            }
            for w in &webhook_ids {
                if let Some(was) = ids_used.insert(*w, (id.as_str(), sequence)) {
                    if was != (id.as_str(), sequence) {
                        split_ids += 1;
                        problems.push(format!(
                            "webhook-id {w} used for {was:?} and sequence {sequence} of {id}"
                        ));
                    }
                }
            }
            let first_ok = got.iter().find(|(_, r)| ok(r)).map(|(i, _)| *i);
            let Some(first_ok) = first_ok else {
                callbacks_lost += 1;
                problems.push(format!("{id}: sequence {sequence} never answered 2xx"));
                previous_ok = None;
                continue;
            };
            repeated += got.iter().filter(|(_, r)| ok(r)).count() - 1;
            // Event n+1 goes to the receiver only once n was delivered.
            let first_try = got[0].0;
            if previous_ok.is_some_and(|p| first_try < p) {
                out_of_order += 1;
                problems.push(format!(
                    "{id}: sequence {sequence} first sent (#{first_try}) before sequence {} was delivered (#{})",
                    sequence - 1,
                    previous_ok.unwrap_or_default()
                ));
            }
            previous_ok = Some(first_ok);
            // What the callback announces is the event of that number.
            let body = &got[0].1.body;
            if let Some(e) = lists
                .get(id.as_str())
                .and_then(|l| l.iter().find(|e| e["sequence"].as_i64() == Some(sequence)))
            {
                let same_order = sequence == 1 || body["order"]["retailer_id"] == e["retailer_id"];
                if body["type"] != e["type"] || !same_order || !body["orders"].is_array() {
                    mismatched += 1;
                    problems.push(format!(
                        "{id}: callback for sequence {sequence} says {} {}, /events {} {}",
                        body["type"], body["order"]["retailer_id"], e["type"], e["retailer_id"]
                    ));
                }
            }
        }
        if let Some(extra) = callbacks.keys().find(|s| **s < 1 || **s > k) {
            mismatched += 1;
            problems.push(format!("{id}: a callback for sequence {extra}, of {k}"));
        }
    }

    let events = posted.answered.len();
    let line = format!(
        "FAULT order events, notifier, worker and gateway SIGKILL: checkouts={} events={events} of {planned} lost={lost} applied_twice={applied_twice} gaps={gaps} refunds_wrong={refunds_wrong} callbacks={} callbacks_lost={callbacks_lost} webhook_ids_not_one_per_sequence={split_ids} out_of_order={out_of_order} mismatched={mismatched} (repeated callbacks with the same webhook-id={repeated}, requests={}, failed attempts retried={}, events retried={}, duplicates answered={}, stale={stale}, refused={})",
        ids.len(),
        seen.len(),
        posted.requests,
        posted.failed_attempts,
        posted.retried_events,
        posted.duplicates_answered,
        posted.refused.len(),
    );
    println!("{line}");
    record(&line);
    let failed = lost
        + applied_twice
        + gaps
        + refunds_wrong
        + callbacks_lost
        + split_ids
        + out_of_order
        + mismatched
        + stale
        + posted.refused.len();
    assert!(
        failed == 0 && events == planned,
        "{line}\n{}\n{}\n{}",
        posted.refused.join("\n"),
        problems.join("\n"),
        fleet.logs()
    );
    assert!(
        posted.duplicates_answered > 0,
        "the repeats were answered duplicate: {line}"
    );
    assert!(
        posted.failed_attempts > 0,
        "the gateway's kill should have made retailers retry: {line}"
    );
}
