//! The order's whole life reaches the partner and the shopper (issue 17 §3), from outside.
//!
//! A plain SKU on the simulator confirms at once, so the checkout completes and its end is
//! event 1. The test then plays the retailer ([`icon_testkit::retailer_events`]): it signs
//! `order.shipped`, `order.delivered`, `order.refunded` with the `standardwebhooks` crate
//! (written independently of ICON's verifying) and the secret
//! `GET /retailers/{id}/webhook-secret` answers, naming the order by the `Idempotency-Key` the
//! simulator logged ICON sending. For a checkout submitted with `order_updates: true` each
//! change becomes the next numbered event, a notification of its own on every channel, in order
//! per receiver; without it the order changes and nothing is sent.
//!
//! Everything is checked where a client sees it: the callback receiver (bodies, `webhook-id`,
//! signatures), the simulator's FCM log, `GET /cart/checkout/{id}/events` and the resource.

use http::{HeaderMap, HeaderValue, Method};
use icon_testkit::retailer_events::{at, RetailerReporter};
use icon_testkit::{eventually, ApiReply, Options, Receiver, Recorded, Scripted, Sim, TestApp};
use serde_json::{json, Value};
use standardwebhooks::Webhook;
use std::time::Duration;

const ACME: &str = "acme";
const ALICE: &str = "alice";
/// How long any one step may take on a loaded machine.
const PATIENCE: Duration = Duration::from_secs(30);

/// The system (with `extra` settings) and a simulator serving `acme`.
async fn shop(extra: Vec<(&'static str, String)>) -> (TestApp, Sim) {
    let sim = Sim::start().await;
    let app = TestApp::spawn_with(Options {
        extra,
        ..Options::default()
    })
    .await;
    app.register_retailer(ACME, &sim.order_url(ACME)).await;
    (app, sim)
}

/// A completed checkout of one plain item at `acme`.
struct Completed {
    checkout_id: String,
    /// The `Idempotency-Key` ICON sent `acme`, as the simulator logged it.
    key: String,
}

/// Checks a plain dress out for alice with `submission`'s fields (`callback_url`,
/// `order_updates`, `push_notification`) and waits for the checkout to complete.
async fn completed_checkout(app: &TestApp, sim: &Sim, submission: Value) -> Completed {
    let cart = app.cart_with(ALICE, &[(ACME, "dress")]).await;
    let mut body = submission;
    body["cart_id"] = cart.into();
    let r = app
        .api
        .post("/cart/checkout/", Some(&app.token(ALICE)), &body)
        .await;
    assert_eq!(r.status, 202, "{r:?}");
    let checkout_id = r.json["checkout_id"].as_str().unwrap().to_owned();
    let view = app
        .wait_for_checkout(ALICE, &checkout_id, "the checkout completed", |c| {
            c["status"] != "queued" && c["status"] != "processing"
        })
        .await;
    assert_eq!(view["status"], "completed", "{view}");
    assert_eq!(order_of(&view)["status"], "confirmed", "{view}");
    let requests: Vec<Value> = sim
        .orders()
        .await
        .into_iter()
        .filter(|r| r["retailer"] == ACME && r["checkout_id"] == checkout_id.as_str())
        .collect();
    assert_eq!(requests.len(), 1, "one order request: {requests:?}");
    let key = requests[0]["idempotency_key"]
        .as_str()
        .expect("idempotency_key")
        .to_owned();
    Completed { checkout_id, key }
}

fn order_of(view: &Value) -> &Value {
    view["orders"]
        .as_array()
        .and_then(|orders| orders.iter().find(|o| o["retailer_id"] == ACME))
        .unwrap_or_else(|| panic!("no {ACME} order: {view}"))
}

async fn view(app: &TestApp, checkout_id: &str) -> Value {
    let r = app
        .api
        .get(
            &format!("/cart/checkout/{checkout_id}"),
            Some(&app.token(ALICE)),
        )
        .await;
    assert_eq!(r.status, 200, "{r:?}");
    r.json
}

async fn events(app: &TestApp, checkout_id: &str) -> Value {
    let r = app
        .api
        .get(
            &format!("/cart/checkout/{checkout_id}/events"),
            Some(&app.token(ALICE)),
        )
        .await;
    assert_eq!(r.status, 200, "{r:?}");
    r.json
}

/// Waits until `/events` lists `n` events whose every delivery is `delivered`.
async fn all_delivered(app: &TestApp, checkout_id: &str, n: usize) -> Value {
    eventually(
        &format!("{n} events, every delivery delivered"),
        PATIENCE,
        || async {
            let list = events(app, checkout_id).await;
            let events = list["events"].as_array()?;
            let done = events.len() == n
                && events.iter().all(|e| {
                    e["deliveries"].as_array().is_some_and(|d| {
                        !d.is_empty() && d.iter().all(|d| d["state"] == "delivered")
                    })
                });
            done.then_some(list)
        },
    )
    .await
}

fn same_instant(a: &Value, b: &str) -> bool {
    let parse = |s: &str| chrono::DateTime::parse_from_rfc3339(s).ok();
    a.as_str()
        .and_then(parse)
        .is_some_and(|a| Some(a) == parse(b))
}

fn shipped(key: &str, occurred_at: &str) -> Value {
    json!({
        "type": "order.shipped", "idempotency_key": key, "order_id": "acme-77",
        "occurred_at": occurred_at,
        "tracking": {"carrier": "DHL", "number": "JD0123", "url": "https://track.example/JD0123"},
    })
}

fn delivered(key: &str, occurred_at: &str) -> Value {
    json!({"type": "order.delivered", "idempotency_key": key, "occurred_at": occurred_at})
}

fn refunded(key: &str, occurred_at: &str) -> Value {
    json!({
        "type": "order.refunded", "idempotency_key": key, "occurred_at": occurred_at,
        "reason": "returned", "refund": {"amount_minor": 1999, "currency": "GBP"},
    })
}

/// A 200 saying what ICON did with the event, and which checkout event it became.
fn assert_recorded(r: &ApiReply, result: &str, order_status: &str, sequence: Option<i32>) {
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.json["result"], result, "{r:?}");
    assert_eq!(r.json["order_status"], order_status, "{r:?}");
    assert_eq!(r.json["sequence"], json!(sequence), "{r:?}");
}

fn sequence(r: &Recorded) -> i64 {
    r.body["sequence"]
        .as_i64()
        .unwrap_or_else(|| panic!("a callback without a sequence: {}", r.body))
}

fn is_2xx(r: &Recorded) -> bool {
    (200..300).contains(&r.answered)
}

/// Whether the callback verifies with the owner's secret, as a partner's library checks it.
fn verifies(secret: &str, r: &Recorded) -> bool {
    let mut headers = HeaderMap::new();
    for (name, value) in [
        ("webhook-id", &r.webhook_id),
        ("webhook-timestamp", &r.webhook_timestamp),
        ("webhook-signature", &r.webhook_signature),
    ] {
        let Some(value) = value else { return false };
        headers.insert(name, HeaderValue::from_str(value).expect("a header value"));
    }
    Webhook::new(secret)
        .expect("a whsec_ secret")
        .verify(&r.raw_body, &headers)
        .is_ok()
}

/// The checkout's attempts on every channel and event, oldest first.
async fn attempts(app: &TestApp, checkout_id: &str) -> Vec<Value> {
    let r = app
        .api
        .get(
            &format!("/cart/checkout/{checkout_id}/attempts"),
            Some(&app.token(ALICE)),
        )
        .await;
    assert_eq!(r.status, 200, "{r:?}");
    r.json["attempts"].as_array().expect("attempts").clone()
}

async fn owner_secret(app: &TestApp) -> String {
    let r = app
        .api
        .get("/webhook-secret", Some(&app.token(ALICE)))
        .await;
    assert_eq!(r.status, 200, "{r:?}");
    r.json["secret"].as_str().expect("secret").to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shipped_and_delivered_reach_the_callback_as_events_two_and_three() {
    let (app, sim) = shop(vec![]).await;
    let receiver = Receiver::start(vec![], None).await;
    let c = completed_checkout(
        &app,
        &sim,
        json!({"callback_url": receiver.url, "order_updates": true}),
    )
    .await;
    assert_eq!(c.key, format!("{}:{ACME}", c.checkout_id));
    let first = receiver.wait_for(1, PATIENCE).await;
    let end = &first[0].body;
    assert_eq!(end["type"], "checkout.completed", "{end}");
    assert_eq!(end["sequence"], 1, "{end}");
    assert_eq!(end["status"], "completed", "{end}");
    assert_eq!(end["checkout_id"], c.checkout_id.as_str(), "{end}");
    for field in ["cart_id", "source_url", "occurred_at", "orders"] {
        assert!(!end[field].is_null(), "{field} in {end}");
    }
    assert!(
        end.get("order").is_none(),
        "event 1 is about no order: {end}"
    );
    assert_eq!(view(&app, &c.checkout_id).await["order_updates"], true);

    let acme = RetailerReporter::new(&app, ACME).await;
    let (shipped_at, delivered_at) = (at(-60), at(-30));
    let r = acme.send(&shipped(&c.key, &shipped_at)).await;
    assert_recorded(&r, "applied", "shipped", Some(2));
    assert_eq!(r.json["checkout_id"], c.checkout_id.as_str(), "{r:?}");
    let seen = receiver.wait_for(2, PATIENCE).await;
    let ship = &seen[1].body;
    assert_eq!(ship["type"], "order.shipped", "{ship}");
    assert_eq!(ship["sequence"], 2, "{ship}");
    assert_eq!(
        ship["status"], "completed",
        "the checkout's status stays: {ship}"
    );
    assert_eq!(ship["checkout_id"], c.checkout_id.as_str(), "{ship}");
    assert_eq!(ship["cart_id"], end["cart_id"], "{ship}");
    assert_eq!(ship["source_url"], end["source_url"], "{ship}");
    assert!(
        same_instant(&ship["occurred_at"], &shipped_at),
        "the retailer's time {shipped_at}: {ship}"
    );
    let tracking =
        json!({"carrier": "DHL", "number": "JD0123", "url": "https://track.example/JD0123"});
    assert_eq!(ship["order"]["retailer_id"], ACME, "{ship}");
    assert_eq!(ship["order"]["status"], "shipped", "{ship}");
    assert_eq!(ship["order"]["tracking"], tracking, "{ship}");
    let order = &ship["orders"][0];
    assert_eq!(order["status"], "shipped", "{ship}");
    assert_eq!(order["tracking"], tracking, "{ship}");

    let r = acme.send(&delivered(&c.key, &delivered_at)).await;
    assert_recorded(&r, "applied", "delivered", Some(3));
    let seen = receiver.wait_for(3, PATIENCE).await;
    let done = &seen[2].body;
    assert_eq!(done["type"], "order.delivered", "{done}");
    assert_eq!(done["sequence"], 3, "{done}");
    assert_eq!(done["order"]["status"], "delivered", "{done}");
    assert_eq!(done["orders"][0]["status"], "delivered", "{done}");
    assert_eq!(done["orders"][0]["tracking"], tracking, "kept: {done}");

    // One callback per event, in order, each its own notification, each signed.
    assert_eq!(seen.iter().map(sequence).collect::<Vec<_>>(), [1, 2, 3]);
    let mut ids: Vec<_> = seen.iter().map(|r| r.webhook_id.clone().unwrap()).collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 3, "a webhook-id per event: {ids:?}");
    let secret = owner_secret(&app).await;
    assert!(seen.iter().all(|r| verifies(&secret, r)), "all signed");

    let list = all_delivered(&app, &c.checkout_id, 3).await;
    assert_eq!(list["checkout_id"], c.checkout_id.as_str(), "{list}");
    assert_eq!(list["order_updates"], true, "{list}");
    let listed = list["events"].as_array().unwrap();
    let kinds: Vec<_> = listed
        .iter()
        .map(|e| (e["sequence"].as_i64().unwrap(), e["type"].as_str().unwrap()))
        .collect();
    assert_eq!(
        kinds,
        [
            (1, "checkout.completed"),
            (2, "order.shipped"),
            (3, "order.delivered")
        ]
    );
    assert!(listed[0].get("retailer_id").is_none(), "{list}");
    assert!(
        same_instant(&listed[1]["occurred_at"], &shipped_at),
        "{list}"
    );
    assert_eq!(listed[1]["retailer_id"], ACME, "{list}");
    assert!(
        same_instant(&listed[2]["occurred_at"], &delivered_at),
        "{list}"
    );
    for e in listed {
        let d = e["deliveries"].as_array().unwrap();
        assert_eq!(d.len(), 1, "one channel, the callback: {e}");
        assert_eq!(d[0]["channel"], "callback", "{e}");
        assert_eq!(d[0]["attempts"], 1, "{e}");
        assert_eq!(d[0]["last_response_status"], 200, "{e}");
    }

    let now = view(&app, &c.checkout_id).await;
    assert_eq!(now["status"], "completed", "{now}");
    assert_eq!(order_of(&now)["status"], "delivered", "{now}");
    assert_eq!(order_of(&now)["tracking"], tracking, "{now}");
    // The order id the retailer gave when it confirmed stays (an event cannot rename it).
    assert_eq!(
        order_of(&now)["retailer_order_id"],
        end["orders"][0]["retailer_order_id"],
        "{now}"
    );
    // The resource's callback is the checkout's end, as it always was.
    assert_eq!(now["callback"]["state"], "delivered", "{now}");
    assert_eq!(now["callback"]["attempts"], 1, "{now}");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_failing_receiver_gets_each_event_only_after_the_one_before() {
    let (app, sim) = shop(vec![]).await;
    // Event 1's callback is answered 200; the next request, which must be event 2's first
    // attempt, 500; then 200. Every answer takes 300ms, so an event sent before the one
    // before it was answered overlaps it.
    let delay = Duration::from_millis(300);
    let receiver = Receiver::start_on(
        0,
        vec![Scripted::status(200), Scripted::status(500)],
        None,
        delay,
    )
    .await;
    let c = completed_checkout(
        &app,
        &sim,
        json!({"callback_url": receiver.url, "order_updates": true}),
    )
    .await;
    all_delivered(&app, &c.checkout_id, 1).await;

    let acme = RetailerReporter::new(&app, ACME).await;
    let (r2, r3) = (
        acme.send(&shipped(&c.key, &at(-60))).await,
        acme.send(&delivered(&c.key, &at(-30))).await,
    );
    assert_recorded(&r2, "applied", "shipped", Some(2));
    assert_recorded(&r3, "applied", "delivered", Some(3));
    let list = all_delivered(&app, &c.checkout_id, 3).await;
    let seen = receiver.seen();

    let by_seq = |n: i64| seen.iter().filter(|r| sequence(r) == n).collect::<Vec<_>>();
    let two = by_seq(2);
    assert_eq!(
        two.iter().map(|r| r.answered).collect::<Vec<_>>(),
        [500, 200],
        "event 2 failed once, then was delivered: {seen:?}"
    );
    assert_eq!(two[0].webhook_id, two[1].webhook_id, "a retry keeps its id");
    let delivered_seqs: Vec<_> = seen.iter().filter(|r| is_2xx(r)).map(sequence).collect();
    assert_eq!(
        delivered_seqs,
        [1, 2, 3],
        "delivered in sequence, no gap, no repeat"
    );
    assert_eq!(seen.len(), 4, "nothing else was sent: {seen:?}");
    // Event 3 was not sent before event 2's 200. A request is recorded when it is answered,
    // `delay` after it arrived (a sleep never ends early), so one that arrived after event 2
    // was answered is recorded at least `delay` after it.
    let two_ok = two[1].at;
    for r in by_seq(3) {
        assert!(
            r.at.duration_since(two_ok) >= delay,
            "event 3 arrived {:?} after event 2's 200 was recorded, within the receiver's delay: \
             it was sent before event 2 was answered",
            r.at.duration_since(two_ok)
        );
    }
    assert_eq!(list["events"][1]["deliveries"][0]["attempts"], 2, "{list}");
    assert_eq!(list["events"][2]["deliveries"][0]["attempts"], 1, "{list}");
    // ICON's own record says the same: event 3's attempt began after event 2's successful
    // one had ended.
    let log = attempts(&app, &c.checkout_id).await;
    let summary: Vec<_> = log
        .iter()
        .map(|a| {
            (
                a["sequence"].as_i64().unwrap(),
                a["response_status"].as_i64(),
            )
        })
        .collect();
    assert_eq!(
        summary,
        [
            (1, Some(200)),
            (2, Some(500)),
            (2, Some(200)),
            (3, Some(200))
        ],
        "{log:?}"
    );
    let started = |a: &Value| {
        chrono::DateTime::parse_from_rfc3339(a["started_at"].as_str().unwrap()).unwrap()
    };
    let two_ended =
        started(&log[2]) + chrono::Duration::milliseconds(log[2]["duration_ms"].as_i64().unwrap());
    assert!(started(&log[3]) >= two_ended, "{log:?}");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_order_updates_the_order_changes_and_nothing_more_is_sent() {
    let (app, sim) = shop(vec![]).await;
    let receiver = Receiver::start(vec![], None).await;
    // The default: an integration that does not know about order updates.
    let quiet = completed_checkout(&app, &sim, json!({"callback_url": receiver.url})).await;
    // A checkout that asked, to the same receiver: its event 2 is the marker that the
    // notifier has worked past the quiet checkout's change.
    let marker = completed_checkout(
        &app,
        &sim,
        json!({"callback_url": receiver.url, "order_updates": true}),
    )
    .await;
    receiver.wait_for(2, PATIENCE).await;
    assert_eq!(view(&app, &quiet.checkout_id).await["order_updates"], false);

    let acme = RetailerReporter::new(&app, ACME).await;
    let r = acme.send(&shipped(&quiet.key, &at(-60))).await;
    assert_recorded(&r, "applied", "shipped", None);
    let r = acme.send(&shipped(&marker.key, &at(-60))).await;
    assert_recorded(&r, "applied", "shipped", Some(2));
    all_delivered(&app, &marker.checkout_id, 2).await;
    eventually("the marker's event 2 at the receiver", PATIENCE, || async {
        receiver
            .seen()
            .iter()
            .any(|r| r.body["checkout_id"] == marker.checkout_id.as_str() && sequence(r) == 2)
            .then_some(())
    })
    .await;

    let quiet_seen: Vec<_> = receiver
        .seen()
        .into_iter()
        .filter(|r| r.body["checkout_id"] == quiet.checkout_id.as_str())
        .collect();
    assert_eq!(quiet_seen.len(), 1, "only the end: {quiet_seen:?}");
    assert_eq!(quiet_seen[0].body["type"], "checkout.completed");
    assert_eq!(quiet_seen[0].body["sequence"], 1);
    let list = events(&app, &quiet.checkout_id).await;
    assert_eq!(list["order_updates"], false, "{list}");
    let listed = list["events"].as_array().unwrap();
    assert_eq!(listed.len(), 1, "only event 1: {list}");
    assert_eq!(listed[0]["type"], "checkout.completed", "{list}");
    let now = view(&app, &quiet.checkout_id).await;
    assert_eq!(order_of(&now)["status"], "shipped", "{now}");
    assert_eq!(order_of(&now)["tracking"]["number"], "JD0123", "{now}");
    assert_eq!(now["callback"]["attempts"], 1, "{now}");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shipped_order_reaches_the_phone_as_event_two() {
    let sim = Sim::start().await;
    let app = TestApp::spawn_with(Options {
        extra: vec![
            ("ICON_FCM_ENDPOINT", sim.fcm_endpoint()),
            (
                "ICON_FCM_CREDENTIALS",
                sim.service_account_file().display().to_string(),
            ),
        ],
        ..Options::default()
    })
    .await;
    app.register_retailer(ACME, &sim.order_url(ACME)).await;
    let token = "phone-android-7";
    let r = app
        .api
        .put(
            &format!("/me/devices/{token}"),
            Some(&app.token(ALICE)),
            &json!({"platform": "android"}),
        )
        .await;
    assert_eq!(r.status, 201, "{r:?}");
    let c = completed_checkout(
        &app,
        &sim,
        json!({"push_notification": true, "order_updates": true}),
    )
    .await;
    all_delivered(&app, &c.checkout_id, 1).await;

    let r = RetailerReporter::new(&app, ACME)
        .await
        .send(&shipped(&c.key, &at(-60)))
        .await;
    assert_recorded(&r, "applied", "shipped", Some(2));
    let list = all_delivered(&app, &c.checkout_id, 2).await;
    let pushed = eventually("two pushes to the phone", PATIENCE, || async {
        let sent: Vec<Value> = sim
            .fcm_messages()
            .await
            .into_iter()
            .filter(|m| m["token"] == token)
            .collect();
        (sent.len() >= 2).then_some(sent)
    })
    .await;
    assert_eq!(pushed.len(), 2, "{pushed:?}");
    let first = &pushed[0]["message"]["data"];
    assert_eq!(first["type"], "checkout.completed", "{first}");
    assert_eq!(first["sequence"], "1", "{first}");
    let m = &pushed[1]["message"];
    assert_eq!(pushed[1]["status"], 200, "{pushed:?}");
    assert_eq!(m["data"]["type"], "order.shipped", "{m}");
    assert_eq!(
        m["data"]["sequence"], "2",
        "FCM data values are strings: {m}"
    );
    assert_eq!(m["data"]["checkout_id"], c.checkout_id.as_str(), "{m}");
    assert_eq!(m["data"]["retailer_id"], ACME, "{m}");
    assert_eq!(m["data"]["order_status"], "shipped", "{m}");
    assert_eq!(
        m["notification"]["title"], "Your order is on its way",
        "{m}"
    );
    assert!(
        m["notification"]["body"]
            .as_str()
            .is_some_and(|b| b.contains("JD0123")),
        "the tracking in plain words: {m}"
    );
    let d = &list["events"][1]["deliveries"];
    assert_eq!(d.as_array().map(Vec::len), Some(1), "{list}");
    assert_eq!(d[0]["channel"], "push", "{list}");
    assert_eq!(d[0]["device"], token, "{list}");
    // The resource's push summary is the checkout's end: still one device, sent.
    let now = view(&app, &c.checkout_id).await;
    assert_eq!(now["push"]["devices"], 1, "{now}");
    assert_eq!(now["push"]["state"], "sent", "{now}");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_repeated_event_is_notified_once_and_a_stale_one_not_at_all() {
    let (app, sim) = shop(vec![]).await;
    let receiver = Receiver::start(vec![], None).await;
    let c = completed_checkout(
        &app,
        &sim,
        json!({"callback_url": receiver.url, "order_updates": true}),
    )
    .await;
    all_delivered(&app, &c.checkout_id, 1).await;
    let acme = RetailerReporter::new(&app, ACME).await;

    // The retailer sends an event twice at once (a retry racing its original), then retries
    // it again later: the same webhook-id each time, re-signed.
    let ship = shipped(&c.key, &at(-120));
    let (x, y) = tokio::join!(
        acme.send_as("evt_ship_1", &ship),
        acme.send_as("evt_ship_1", &ship)
    );
    let mut results = [x.json["result"].clone(), y.json["result"].clone()];
    results.sort_by_key(|r| r.to_string());
    assert_eq!(results, ["applied", "duplicate"], "{x:?} {y:?}");
    for r in [&x, &y] {
        assert_eq!(r.json["sequence"], 2, "both name the one event: {r:?}");
    }
    let r = acme.send_as("evt_ship_1", &ship).await;
    assert_recorded(&r, "duplicate", "shipped", Some(2));
    let r = acme.send(&delivered(&c.key, &at(-60))).await;
    assert_recorded(&r, "applied", "delivered", Some(3));
    // A shipment reported after the delivery, under a new id: behind the order's state.
    let r = acme.send(&shipped(&c.key, &at(-90))).await;
    assert_recorded(&r, "stale", "delivered", None);
    let r = acme.send(&shipped(&c.key, &at(-10))).await;
    assert_recorded(&r, "stale", "delivered", None);
    // The marker: a change after them, announced as the next event. A refund of a delivered
    // order (a return) is added to it and leaves it delivered.
    let r = acme.send(&refunded(&c.key, &at(0))).await;
    assert_recorded(&r, "applied", "delivered", Some(4));

    let list = all_delivered(&app, &c.checkout_id, 4).await;
    eventually("the refund at the receiver", PATIENCE, || async {
        receiver
            .seen()
            .iter()
            .any(|r| sequence(r) == 4)
            .then_some(())
    })
    .await;
    let seen = receiver.seen();
    let got: Vec<_> = seen
        .iter()
        .map(|r| (sequence(r), r.body["type"].as_str().unwrap_or_default()))
        .collect();
    assert_eq!(
        got,
        [
            (1, "checkout.completed"),
            (2, "order.shipped"),
            (3, "order.delivered"),
            (4, "order.refunded")
        ],
        "one callback per change, none for the repeat or the stale ones"
    );
    let refund = &seen[3].body;
    assert_eq!(refund["order"]["status"], "delivered", "{refund}");
    assert_eq!(
        refund["order"]["refunds"],
        json!([{"amount_minor": 1999, "currency": "GBP"}]),
        "{refund}"
    );
    assert_eq!(
        refund["orders"][0]["refunds"], refund["order"]["refunds"],
        "{refund}"
    );
    let kinds: Vec<_> = list["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["type"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(
        kinds,
        [
            "checkout.completed",
            "order.shipped",
            "order.delivered",
            "order.refunded"
        ]
    );
    let now = view(&app, &c.checkout_id).await;
    assert_eq!(order_of(&now)["status"], "delivered", "{now}");
    assert_eq!(
        order_of(&now)["refunds"],
        json!([{"amount_minor": 1999, "currency": "GBP"}]),
        "{now}"
    );
    assert_eq!(order_of(&now)["tracking"]["number"], "JD0123", "{now}");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_given_up_does_not_hold_back_the_next_and_can_be_redelivered() {
    let (app, sim) = shop(vec![]).await;
    // Event 1 is delivered; event 2's receiver says 410 Gone (given up at once); then 200.
    let receiver = Receiver::start(vec![Scripted::status(200), Scripted::status(410)], None).await;
    let c = completed_checkout(
        &app,
        &sim,
        json!({"callback_url": receiver.url, "order_updates": true}),
    )
    .await;
    all_delivered(&app, &c.checkout_id, 1).await;
    let acme = RetailerReporter::new(&app, ACME).await;
    let r = acme.send(&shipped(&c.key, &at(-60))).await;
    assert_recorded(&r, "applied", "shipped", Some(2));
    eventually("event 2 given up", PATIENCE, || async {
        let list = events(&app, &c.checkout_id).await;
        (list["events"][1]["deliveries"][0]["state"] == "failed").then_some(())
    })
    .await;
    let now = view(&app, &c.checkout_id).await;
    assert_eq!(now["callback"]["state"], "delivered", "event 1's: {now}");

    // Given up there, event 2 no longer holds event 3 back.
    let r = acme.send(&delivered(&c.key, &at(-30))).await;
    assert_recorded(&r, "applied", "delivered", Some(3));
    eventually("event 3 delivered", PATIENCE, || async {
        let list = events(&app, &c.checkout_id).await;
        (list["events"][2]["deliveries"][0]["state"] == "delivered").then_some(())
    })
    .await;

    // The partner asks for what it missed: event 2 again, under its own webhook-id.
    let r = app
        .api
        .send(
            Method::POST,
            &format!("/cart/checkout/{}/callback/redeliver", c.checkout_id),
            Some(&app.token(ALICE)),
            None,
            None,
        )
        .await;
    assert_eq!(r.status, 202, "{r:?}");
    let list = all_delivered(&app, &c.checkout_id, 3).await;
    let seen = receiver.wait_for(4, PATIENCE).await;
    let got: Vec<_> = seen.iter().map(|r| (sequence(r), r.answered)).collect();
    assert_eq!(got, [(1, 200), (2, 410), (3, 200), (2, 200)], "{list}");
    assert_eq!(seen[1].webhook_id, seen[3].webhook_id, "the same event");
    assert_eq!(seen[3].body["type"], "order.shipped");
    // The order as it is now, delivered, in the late copy of event 2.
    assert_eq!(seen[3].body["orders"][0]["status"], "delivered");
    app.stop().await;
}

/// Event 1's `occurred_at` is one instant: on its first attempt (from the message), on every
/// retry and in `/events` (from the checkout's row). They once differed by the moment between
/// the worker's clock and the transaction's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn event_one_tells_the_same_time_on_every_attempt_and_in_the_list() {
    let (app, sim) = shop(vec![]).await;
    let receiver = Receiver::start(vec![Scripted::status(500)], None).await;
    let c = completed_checkout(
        &app,
        &sim,
        json!({"callback_url": receiver.url, "order_updates": true}),
    )
    .await;
    let list = all_delivered(&app, &c.checkout_id, 1).await;
    let seen = receiver.wait_for(2, PATIENCE).await;
    assert_eq!(seen[0].webhook_id, seen[1].webhook_id, "one event, retried");
    let (first, retry) = (&seen[0].body["occurred_at"], &seen[1].body["occurred_at"]);
    let listed = &list["events"][0]["occurred_at"];
    assert!(
        same_instant(first, retry.as_str().unwrap()),
        "first attempt says {first}, its retry {retry}"
    );
    assert!(
        same_instant(listed, first.as_str().unwrap()),
        "/events says {listed}, the callback {first}"
    );
    app.stop().await;
}
