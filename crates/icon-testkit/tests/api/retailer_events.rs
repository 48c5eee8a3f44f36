//! Asynchronous retailers (issue 17 §2), from outside: a retailer answers ICON's order with
//! `202 accepted` and reports what became of it by signed events to
//! `POST /retailers/{retailer_id}/events`.
//!
//! The retailer is the simulator: `async-silent-` SKUs answer 202 and never report (lookups
//! answer `accepted`), so the test itself plays the retailer's side
//! ([`icon_testkit::retailer_events`]), signing each event with the `standardwebhooks` crate
//! (written independently of ICON's verifying) and the secret
//! `GET /retailers/{id}/webhook-secret` answers. The idempotency key an event names is the one
//! the simulator logged ICON sending. One test lets the simulator report on its own
//! (`async-ship-`, `ICON_SIM_ICON_URL` pointed at the test gateway), one lets its event overtake
//! the 202, and one loses its events so that only ICON's lookups can learn the outcome.
//!
//! Every answer is checked where a client sees it: the event endpoint's answer, the checkout
//! resource, the simulator's request and lookup logs, the callback receiver.
//!
//! Two tests pin bugs found writing them (forged events spent a retailer's allowance; a pass
//! finishing the checkout ignored an event recorded while it ran). The second needs a retailer
//! that holds a lookup mid-flight, which the simulator cannot do: [`HoldingRetailer`], a barrier
//! rather than a sleep.

use http::Method;
use icon_testkit::retailer_events::{
    at, new_webhook_id, post_event, secret_of, signed, unix_now, RetailerReporter,
};
use icon_testkit::{eventually, Api, ApiReply, Options, Receiver, Sim, TestApp};
use serde_json::{json, Value};
use std::time::Duration;

/// The retailer every test checks out at, registered at the simulator.
const ACME: &str = "acme";

/// A test gateway, worker and notifier, plus a simulator serving `acme` and `globex`.
async fn shop(extra: Vec<(&'static str, String)>) -> (TestApp, Sim) {
    let app = TestApp::spawn_with(Options {
        extra,
        ..Options::default()
    })
    .await;
    let sim = Sim::start().await;
    for retailer in [ACME, "globex"] {
        app.register_retailer(retailer, &sim.order_url(retailer))
            .await;
    }
    (app, sim)
}

/// A well-formed `whsec_` secret nobody registered.
fn random_secret() -> String {
    use base64::Engine;
    let mut key = uuid::Uuid::new_v4().as_bytes().to_vec();
    key.extend(uuid::Uuid::new_v4().as_bytes());
    format!(
        "whsec_{}",
        base64::engine::general_purpose::STANDARD.encode(key)
    )
}

/// An event of `kind` about the order ICON sent with `key`, happening now.
fn event(kind: &str, key: &str) -> Value {
    json!({"type": kind, "idempotency_key": key, "order_id": "acme-77", "occurred_at": at(0)})
}

/// `POST /retailers/{retailer}/events` with a chunked body (no `Content-Length`), written by
/// hand: the test client always declares the length. Returns the answer's status.
async fn post_chunked(
    app: &TestApp,
    retailer: &str,
    headers: &[(String, String)],
    body: &[u8],
) -> u16 {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let host = app.public_url.trim_start_matches("http://");
    let mut stream = tokio::net::TcpStream::connect(host).await.expect("connect");
    let mut request = format!(
        "POST /retailers/{retailer}/events HTTP/1.1\r\nHost: {host}\r\n\
         Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\
         Connection: close\r\n"
    )
    .into_bytes();
    for (name, value) in headers {
        request.extend(format!("{name}: {value}\r\n").bytes());
    }
    request.extend(b"\r\n");
    for chunk in body.chunks(8 * 1024) {
        request.extend(format!("{:x}\r\n", chunk.len()).bytes());
        request.extend(chunk);
        request.extend(b"\r\n");
    }
    request.extend(b"0\r\n\r\n");
    // The server may answer before it has read it all: a failed write is no failure here.
    let _ = stream.write_all(&request).await;
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer).await;
    let answer = String::from_utf8_lossy(&answer);
    answer
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no HTTP answer: {answer:?}"))
}

/// A 200 with `result` and the order's state after the event.
fn assert_recorded(r: &ApiReply, result: &str, order_status: &str, checkout_id: &str) {
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.json["result"], result, "{r:?}");
    assert_eq!(r.json["order_status"], order_status, "{r:?}");
    assert_eq!(r.json["checkout_id"], checkout_id, "{r:?}");
}

/// A problem document with `status` and `code`.
fn assert_problem(r: &ApiReply, status: u16, code: &str) {
    assert_eq!(r.status, status, "{r:?}");
    assert!(
        r.content_type().starts_with("application/problem+json"),
        "{r:?}"
    );
    assert_eq!(r.json["code"], code, "{r:?}");
    assert_eq!(r.json["status"], status, "{r:?}");
}

/// The field a 422 names first.
fn invalid_field(r: &ApiReply) -> &str {
    r.json["errors"][0]["field"].as_str().unwrap_or_default()
}

fn order_of<'v>(view: &'v Value, retailer: &str) -> &'v Value {
    view["orders"]
        .as_array()
        .expect("orders")
        .iter()
        .find(|o| o["retailer_id"] == retailer)
        .unwrap_or_else(|| panic!("no {retailer} order: {view}"))
}

async fn view(app: &TestApp, user: &str, checkout_id: &str) -> Value {
    let r = app
        .api
        .get(
            &format!("/cart/checkout/{checkout_id}"),
            Some(&app.token(user)),
        )
        .await;
    assert_eq!(r.status, 200, "{r:?}");
    r.json
}

/// The checkout and its orders are as they were when the order was accepted.
async fn assert_unchanged(app: &TestApp, user: &str, a: &Accepted) {
    let now = view(app, user, &a.checkout_id).await;
    assert_eq!(now["status"], a.view["status"], "{now}");
    assert_eq!(now["orders"], a.view["orders"], "{now}");
}

fn is_final(view: &Value) -> bool {
    !matches!(view["status"].as_str(), Some("queued" | "processing"))
}

/// A checkout the retailer has accepted (202) and not reported on.
struct Accepted {
    cart: i64,
    checkout_id: String,
    /// The `Idempotency-Key` ICON sent `acme`, as the simulator logged it.
    key: String,
    /// The checkout resource once the order was accepted.
    view: Value,
}

/// Checks `items` out for `user` (with `callback`, if any) and waits until `acme`'s order is
/// `accepted` and every other order has its answer.
async fn accepted_checkout(
    app: &TestApp,
    sim: &Sim,
    user: &str,
    items: &[(&str, &str)],
    callback: Option<&str>,
) -> Accepted {
    let cart = app.cart_with(user, items).await;
    let r = app.checkout(user, cart, callback).await;
    assert_eq!(r.status, 202, "{r:?}");
    let checkout_id = r.json["checkout_id"].as_str().unwrap().to_owned();
    let view = app
        .wait_for_checkout(user, &checkout_id, "acme's order accepted", |c| {
            c["orders"].as_array().is_some_and(|orders| {
                orders.iter().all(|o| o["status"] != "pending")
                    && orders
                        .iter()
                        .any(|o| o["retailer_id"] == ACME && o["status"] == "accepted")
            })
        })
        .await;
    let requests: Vec<Value> = sim
        .orders()
        .await
        .into_iter()
        .filter(|r| r["retailer"] == ACME && r["checkout_id"] == checkout_id.as_str())
        .collect();
    assert_eq!(requests.len(), 1, "one order request: {requests:?}");
    assert_eq!(requests[0]["response_status"], 202, "{requests:?}");
    let key = requests[0]["idempotency_key"]
        .as_str()
        .expect("idempotency_key")
        .to_owned();
    Accepted {
        cart,
        checkout_id,
        key,
        view,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cart_whose_order_the_retailer_cancelled_gets_a_new_key_next_time() {
    let (app, sim) = shop(vec![]).await;
    let a = accepted_checkout(&app, &sim, "alice", &[(ACME, "async-silent-dress")], None).await;
    let acme = RetailerReporter::new(&app, ACME).await;
    let mut cancelled = event("order.cancelled", &a.key);
    cancelled["reason"] = "out of stock after all".into();
    let r = acme.send(&cancelled).await;
    assert_recorded(&r, "applied", "cancelled", &a.checkout_id);
    app.wait_for_checkout("alice", &a.checkout_id, "the checkout failed", |c| {
        c["status"] == "failed"
    })
    .await;
    // The cancelled order is done with, as a rejected one is: the next checkout of the cart is a
    // new order at the retailer, with a new key (so its items may change without the old key
    // arriving with another body).
    let r = app.checkout("alice", a.cart, None).await;
    assert_eq!(r.status, 202, "{r:?}");
    let second = r.json["checkout_id"].as_str().unwrap().to_owned();
    let keys = eventually(
        "the second checkout's order request",
        Duration::from_secs(20),
        || async {
            let keys: Vec<String> = sim
                .orders()
                .await
                .into_iter()
                .filter(|o| o["retailer"] == ACME)
                .filter_map(|o| o["idempotency_key"].as_str().map(str::to_owned))
                .collect();
            (keys.len() >= 2).then_some(keys)
        },
    )
    .await;
    assert_eq!(keys.len(), 2, "{keys:?}");
    assert_ne!(keys[0], keys[1], "a new key: {keys:?}");
    assert!(keys[1].starts_with(&second), "{keys:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_accepted_order_confirmed_by_event_completes_the_checkout() {
    let (app, sim) = shop(vec![]).await;
    let receiver = Receiver::start(vec![], None).await;
    let a = accepted_checkout(
        &app,
        &sim,
        "alice",
        &[(ACME, "async-silent-dress")],
        Some(&receiver.url),
    )
    .await;
    // Accepted: the retailer has the order, the checkout waits for its word.
    assert_eq!(a.view["status"], "processing", "{}", a.view);
    let order = order_of(&a.view, ACME);
    assert_eq!(order["status"], "accepted", "{}", a.view);
    assert!(
        order["retailer_order_id"]
            .as_str()
            .is_some_and(|id| id.starts_with("sim-")),
        "the 202's order id: {order}"
    );
    assert!(receiver.seen().is_empty(), "no callback before the outcome");

    let acme = RetailerReporter::new(&app, ACME).await;
    let r = acme.send(&event("order.confirmed", &a.key)).await;
    assert_recorded(&r, "applied", "confirmed", &a.checkout_id);
    assert!(
        r.json["sequence"].is_null(),
        "not announced: the checkout had not finished: {r:?}"
    );

    let seen = receiver.wait_for(1, Duration::from_secs(20)).await;
    assert_eq!(seen[0].body["status"], "completed", "{:?}", seen[0].body);
    assert_eq!(seen[0].body["checkout_id"], a.checkout_id.as_str());
    assert_eq!(seen[0].body["orders"][0]["status"], "confirmed");
    let done = app
        .wait_for_checkout("alice", &a.checkout_id, "callback delivered", |c| {
            c["callback"]["state"] == "delivered"
        })
        .await;
    assert_eq!(done["status"], "completed", "{done}");
    assert_eq!(order_of(&done, ACME)["status"], "confirmed", "{done}");
    // One order request, never re-sent, and no lookup: the event said it all.
    assert_eq!(sim.orders().await.len(), 1);
    assert!(sim.lookups().await.is_empty(), "{:?}", sim.lookups().await);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_accepted_order_rejected_by_event_fails_the_checkout_with_the_reason() {
    let (app, sim) = shop(vec![]).await;
    let receiver = Receiver::start(vec![], None).await;
    let a = accepted_checkout(
        &app,
        &sim,
        "alice",
        &[(ACME, "async-silent-dress")],
        Some(&receiver.url),
    )
    .await;
    let acme = RetailerReporter::new(&app, ACME).await;
    let mut rejected = event("order.rejected", &a.key);
    rejected["reason"] = "out of stock: async-silent-dress".into();
    let r = acme.send(&rejected).await;
    assert_recorded(&r, "applied", "rejected", &a.checkout_id);

    let seen = receiver.wait_for(1, Duration::from_secs(20)).await;
    assert_eq!(seen[0].body["status"], "failed", "{:?}", seen[0].body);
    let done = app
        .wait_for_checkout("alice", &a.checkout_id, "final", is_final)
        .await;
    assert_eq!(done["status"], "failed", "{done}");
    let order = order_of(&done, ACME);
    assert_eq!(order["status"], "rejected", "{done}");
    assert_eq!(
        order["reason"], "out of stock: async-silent-dress",
        "{done}"
    );
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_accepted_order_never_reported_is_looked_up_then_ends_unknown() {
    let (app, sim) = shop(vec![
        ("ICON_RETAILER_CONFIRM_WITHIN", "1s".into()),
        ("ICON_RETAILER_SETTLE_SCHEDULE", "200ms,400ms".into()),
        ("ICON_RETAILER_SETTLE_WITHIN", "3s".into()),
    ])
    .await;
    let receiver = Receiver::start(vec![], None).await;
    let a = accepted_checkout(
        &app,
        &sim,
        "alice",
        &[(ACME, "async-silent-dress")],
        Some(&receiver.url),
    )
    .await;
    let done = app
        .wait_for_checkout("alice", &a.checkout_id, "final", is_final)
        .await;
    let order = order_of(&done, ACME);
    assert_eq!(order["status"], "unknown", "{done}");
    assert!(
        order["reason"]
            .as_str()
            .is_some_and(|r| r.contains("accepted")),
        "{done}"
    );
    assert_eq!(done["status"], "failed", "nothing known placed: {done}");
    let seen = receiver.wait_for(1, Duration::from_secs(20)).await;
    assert_eq!(seen[0].body["status"], "failed", "{:?}", seen[0].body);

    // ICON asked, by the key it sent, more than once: each lookup said "still accepted".
    let lookups: Vec<Value> = sim
        .lookups()
        .await
        .into_iter()
        .filter(|l| l["idempotency_key"] == a.key.as_str())
        .collect();
    assert!(lookups.len() >= 2, "{lookups:?}");
    assert!(
        lookups.iter().all(|l| l["response_status"] == 200),
        "{lookups:?}"
    );
    assert_eq!(sim.orders().await.len(), 1, "looked up, never re-sent");

    // The retailer's word comes at last: the order is confirmed. The checkout stays as it
    // ended (a final state is final; `order_updates` would have announced the change).
    let acme = RetailerReporter::new(&app, ACME).await;
    let r = acme.send(&event("order.confirmed", &a.key)).await;
    assert_recorded(&r, "applied", "confirmed", &a.checkout_id);
    assert!(r.json["sequence"].is_null(), "{r:?}");
    let now = view(&app, "alice", &a.checkout_id).await;
    assert_eq!(order_of(&now, ACME)["status"], "confirmed", "{now}");
    assert_eq!(now["status"], "failed", "{now}");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_accepted_order_whose_events_are_lost_is_confirmed_by_lookup() {
    // `async-` confirms after the simulator's async delay (2 s) and reports it, but the
    // simulator was never told acme's secret, so nothing reaches ICON: only a lookup can tell.
    let (app, sim) = shop(vec![
        ("ICON_RETAILER_CONFIRM_WITHIN", "1s".into()),
        ("ICON_RETAILER_SETTLE_SCHEDULE", "200ms,400ms".into()),
        ("ICON_RETAILER_SETTLE_WITHIN", "30s".into()),
    ])
    .await;
    let receiver = Receiver::start(vec![], None).await;
    let a = accepted_checkout(
        &app,
        &sim,
        "alice",
        &[(ACME, "async-dress")],
        Some(&receiver.url),
    )
    .await;
    let done = app
        .wait_for_checkout("alice", &a.checkout_id, "final", is_final)
        .await;
    assert_eq!(done["status"], "completed", "{done}");
    assert_eq!(order_of(&done, ACME)["status"], "confirmed", "{done}");
    let seen = receiver.wait_for(1, Duration::from_secs(20)).await;
    assert_eq!(seen[0].body["status"], "completed", "{:?}", seen[0].body);

    let lookups: Vec<Value> = sim
        .lookups()
        .await
        .into_iter()
        .filter(|l| l["idempotency_key"] == a.key.as_str())
        .collect();
    assert!(!lookups.is_empty(), "settled by lookup: {lookups:?}");
    let events = sim.events().await;
    assert!(
        events.iter().all(|e| e["delivered"] != true),
        "no event reached ICON: {events:?}"
    );
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cart_with_a_synchronous_and_an_asynchronous_retailer_waits_for_the_event() {
    let (app, sim) = shop(vec![]).await;
    let receiver = Receiver::start(vec![], None).await;
    let a = accepted_checkout(
        &app,
        &sim,
        "alice",
        &[(ACME, "async-silent-dress"), ("globex", "shoe-1")],
        Some(&receiver.url),
    )
    .await;
    assert_eq!(
        order_of(&a.view, "globex")["status"],
        "confirmed",
        "{}",
        a.view
    );
    assert_eq!(a.view["status"], "processing", "{}", a.view);
    // Still waiting a moment later: the synchronous answer alone does not finish it.
    let again = view(&app, "alice", &a.checkout_id).await;
    assert_eq!(again["status"], "processing", "{again}");
    assert!(receiver.seen().is_empty());

    let acme = RetailerReporter::new(&app, ACME).await;
    let r = acme.send(&event("order.confirmed", &a.key)).await;
    assert_recorded(&r, "applied", "confirmed", &a.checkout_id);
    let seen = receiver.wait_for(1, Duration::from_secs(20)).await;
    assert_eq!(seen[0].body["status"], "completed", "{:?}", seen[0].body);
    let done = app
        .wait_for_checkout("alice", &a.checkout_id, "final", is_final)
        .await;
    assert_eq!(done["status"], "completed", "{done}");
    for retailer in [ACME, "globex"] {
        assert_eq!(order_of(&done, retailer)["status"], "confirmed", "{done}");
    }
    assert_eq!(
        sim.orders().await.len(),
        2,
        "one order request per retailer"
    );
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_events_are_refused_with_a_problem_and_change_nothing() {
    let (app, sim) = shop(vec![]).await;
    let a = accepted_checkout(&app, &sim, "alice", &[(ACME, "async-silent-dress")], None).await;
    let acme = RetailerReporter::new(&app, ACME).await;
    // Every refused event uses this webhook-id, and the valid one at the end too: had any
    // refusal been recorded, the last would be answered `duplicate`.
    let id = "evt_refused_then_valid";
    let confirmed = event("order.confirmed", &a.key).to_string();
    let unchanged = || assert_unchanged(&app, "alice", &a);

    // A NUL anywhere, in a field ICON ignores too, is a 422 naming where (not a 500).
    for (body, field) in [
        (
            json!({"type": "order.confirmed", "idempotency_key": a.key, "occurred_at": "2026-12-03T10:00:00Z", "note": "a\u{0}b"}),
            "note",
        ),
        (
            json!({"type": "order.confirmed", "idempotency_key": a.key, "occurred_at": "2026-12-03T10:00:00Z", "extra": {"x": ["ok", "\u{0}"]}}),
            "extra.x[1]",
        ),
    ] {
        let r = acme.send_raw(id, body.to_string()).await;
        assert_problem(&r, 422, "validation_failed");
        assert_eq!(r.json["errors"][0]["field"], field, "{r:?}");
    }
    unchanged().await;
    // No signature at all.
    let r = post_event(&app.api, ACME, &[], confirmed.clone()).await;
    assert_problem(&r, 401, "invalid_signature");
    unchanged().await;
    // Signed with a secret that is not acme's.
    let forged = signed(&random_secret(), id, unix_now(), &confirmed);
    let r = post_event(&app.api, ACME, &forged, confirmed.clone()).await;
    assert_problem(&r, 401, "invalid_signature");
    unchanged().await;
    // Signed over other bytes than those sent.
    let other = event("order.rejected", &a.key).to_string();
    let headers = signed(acme.secret(), id, unix_now(), &other);
    let r = post_event(&app.api, ACME, &headers, confirmed.clone()).await;
    assert_problem(&r, 401, "invalid_signature");
    unchanged().await;
    // A replay from ten minutes ago, and a timestamp ten minutes ahead: well signed, too far.
    for skew in [-600, 600] {
        let headers = signed(acme.secret(), id, unix_now() + skew, &confirmed);
        let r = post_event(&app.api, ACME, &headers, confirmed.clone()).await;
        assert_problem(&r, 401, "invalid_signature");
    }
    unchanged().await;
    // A retailer ICON does not know (signed with acme's secret for good measure).
    let headers = signed(acme.secret(), id, unix_now(), &confirmed);
    let r = post_event(&app.api, "nobody", &headers, confirmed.clone()).await;
    assert_problem(&r, 401, "invalid_signature");
    // Acme's signature does not make it an event of another registered retailer.
    let r = post_event(&app.api, "globex", &headers, confirmed.clone()).await;
    assert_problem(&r, 401, "invalid_signature");
    unchanged().await;

    // Signed, but without the webhook-id the signature covers; and one too long to keep.
    let headers: Vec<(String, String)> = signed(acme.secret(), id, unix_now(), &confirmed)
        .into_iter()
        .filter(|(name, _)| name != "webhook-id")
        .collect();
    let r = post_event(&app.api, ACME, &headers, confirmed.clone()).await;
    assert_problem(&r, 401, "invalid_signature");
    let r = acme.send_raw(&"e".repeat(300), confirmed.clone()).await;
    assert_problem(&r, 400, "webhook_id_too_long");
    unchanged().await;

    // Well signed, but about no order of acme's; and acme's order, but reported by globex.
    let r = acme
        .send_as(id, &event("order.confirmed", "no-such-key:acme"))
        .await;
    assert_problem(&r, 404, "unknown_order");
    let globex = RetailerReporter::new(&app, "globex").await;
    let r = globex.send_as(id, &event("order.confirmed", &a.key)).await;
    assert_problem(&r, 404, "unknown_order");
    unchanged().await;
    // Not JSON.
    let r = acme.send_raw(id, "{\"type\": \"order.confirm".into()).await;
    assert_problem(&r, 400, "malformed_json");
    let r = acme.send_raw(id, "[1, 2]".into()).await;
    assert_problem(&r, 400, "malformed_json");
    unchanged().await;
    // Fields ICON cannot use, each named.
    let r = acme.send_as(id, &event("order.teleported", &a.key)).await;
    assert_problem(&r, 422, "validation_failed");
    assert_eq!(invalid_field(&r), "type", "{r:?}");
    let r = acme.send_as(id, &event("order.refunded", &a.key)).await;
    assert_problem(&r, 422, "validation_failed");
    assert_eq!(invalid_field(&r), "refund", "{r:?}");
    let mut misplaced = event("order.confirmed", &a.key);
    misplaced["refund"] = json!({"amount_minor": 100, "currency": "GBP"});
    let r = acme.send_as(id, &misplaced).await;
    assert_problem(&r, 422, "validation_failed");
    assert_eq!(invalid_field(&r), "refund", "{r:?}");
    let mut bad_time = event("order.confirmed", &a.key);
    bad_time["occurred_at"] = "yesterday".into();
    let r = acme.send_as(id, &bad_time).await;
    assert_problem(&r, 422, "validation_failed");
    unchanged().await;
    // Over 64 KiB, otherwise a fine event.
    let mut huge = event("order.confirmed", &a.key);
    huge["reason"] = "x".repeat(70 * 1024).into();
    let r = acme.send_as(id, &huge).await;
    assert_problem(&r, 413, "payload_too_large");
    // The same without a Content-Length: judged as it is read.
    let huge = huge.to_string();
    let headers = signed(acme.secret(), id, unix_now(), &huge);
    let status = post_chunked(&app, ACME, &headers, huge.as_bytes()).await;
    assert_eq!(status, 413);
    unchanged().await;

    // After all that, the valid event applies, under the very webhook-id the refusals used.
    let r = acme.send_raw(id, confirmed).await;
    assert_recorded(&r, "applied", "confirmed", &a.checkout_id);
    let done = app
        .wait_for_checkout("alice", &a.checkout_id, "final", is_final)
        .await;
    assert_eq!(done["status"], "completed", "{done}");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_the_orders_state_contradicts_are_409_and_change_nothing() {
    let (app, sim) = shop(vec![]).await;
    let acme = RetailerReporter::new(&app, ACME).await;

    // Shipped, for an order the retailer rejected.
    let a = accepted_checkout(&app, &sim, "alice", &[(ACME, "async-silent-dress")], None).await;
    let r = acme.send(&event("order.rejected", &a.key)).await;
    assert_recorded(&r, "applied", "rejected", &a.checkout_id);
    let failed = app
        .wait_for_checkout("alice", &a.checkout_id, "final", is_final)
        .await;
    assert_eq!(failed["status"], "failed", "{failed}");
    let mut shipped = event("order.shipped", &a.key);
    shipped["tracking"] = json!({"carrier": "DHL", "number": "JD0001"});
    let r = acme.send(&shipped).await;
    assert_problem(&r, 409, "invalid_transition");
    assert_eq!(r.json["order_status"], "rejected", "{r:?}");
    let now = view(&app, "alice", &a.checkout_id).await;
    assert_eq!(now["status"], failed["status"], "{now}");
    assert_eq!(now["orders"], failed["orders"], "{now}");
    // A rejection told again is merely stale.
    let r = acme.send(&event("order.rejected", &a.key)).await;
    assert_recorded(&r, "stale", "rejected", &a.checkout_id);

    // Confirmed after the retailer cancelled the order: a contradiction. Confirmed before the
    // cancellation: a late event, stale. A refund still applies.
    let b = accepted_checkout(&app, &sim, "bob", &[(ACME, "async-silent-hat")], None).await;
    let mut cancelled = event("order.cancelled", &b.key);
    cancelled["reason"] = "the shopper changed their mind".into();
    let r = acme.send(&cancelled).await;
    assert_recorded(&r, "applied", "cancelled", &b.checkout_id);
    let ended = app
        .wait_for_checkout("bob", &b.checkout_id, "final", is_final)
        .await;
    assert_eq!(
        ended["status"], "failed",
        "nothing placed stays on: {ended}"
    );
    let mut later = event("order.confirmed", &b.key);
    later["occurred_at"] = at(60).into();
    let r = acme.send(&later).await;
    assert_problem(&r, 409, "invalid_transition");
    assert_eq!(r.json["order_status"], "cancelled", "{r:?}");
    let now = view(&app, "bob", &b.checkout_id).await;
    assert_eq!(now["orders"], ended["orders"], "{now}");
    let mut earlier = event("order.confirmed", &b.key);
    earlier["occurred_at"] = at(-60).into();
    let r = acme.send(&earlier).await;
    assert_recorded(&r, "stale", "cancelled", &b.checkout_id);
    let mut refunded = event("order.refunded", &b.key);
    refunded["refund"] = json!({"amount_minor": 1999, "currency": "GBP"});
    let r = acme.send(&refunded).await;
    assert_recorded(&r, "applied", "refunded", &b.checkout_id);
    let now = view(&app, "bob", &b.checkout_id).await;
    let order = order_of(&now, ACME);
    assert_eq!(order["status"], "refunded", "{now}");
    assert_eq!(
        order["refunds"],
        json!([{"amount_minor": 1999, "currency": "GBP"}])
    );
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_repeated_webhook_id_is_answered_duplicate_and_applied_once() {
    let (app, sim) = shop(vec![]).await;
    let a = accepted_checkout(&app, &sim, "alice", &[(ACME, "async-silent-dress")], None).await;
    let acme = RetailerReporter::new(&app, ACME).await;
    // The same confirmation delivered twice at once: one applies, the other is its duplicate.
    let confirmed = event("order.confirmed", &a.key);
    let (first, second) = tokio::join!(
        acme.send_as("evt_confirm", &confirmed),
        acme.send_as("evt_confirm", &confirmed)
    );
    let mut results = [first.json["result"].clone(), second.json["result"].clone()];
    results.sort_by_key(|r| r.to_string());
    assert_eq!(results, ["applied", "duplicate"], "{first:?} {second:?}");
    for r in [&first, &second] {
        assert_eq!(r.json["order_status"], "confirmed", "{r:?}");
        assert_eq!(r.json["checkout_id"], a.checkout_id.as_str());
    }
    app.wait_for_checkout("alice", &a.checkout_id, "final", is_final)
        .await;

    let refund = |amount: i64| {
        let mut e = event("order.refunded", &a.key);
        e["refund"] = json!({"amount_minor": amount, "currency": "GBP"});
        e
    };
    let r = acme.send_as("evt_refund_1", &refund(500)).await;
    assert_recorded(&r, "applied", "confirmed", &a.checkout_id);
    // A retry of it, and a sender reusing the id for something else: neither does anything.
    let r = acme.send_as("evt_refund_1", &refund(500)).await;
    assert_recorded(&r, "duplicate", "confirmed", &a.checkout_id);
    let r = acme.send_as("evt_refund_1", &refund(700)).await;
    assert_recorded(&r, "duplicate", "confirmed", &a.checkout_id);
    let once = view(&app, "alice", &a.checkout_id).await;
    assert_eq!(
        order_of(&once, ACME)["refunds"],
        json!([{"amount_minor": 500, "currency": "GBP"}]),
        "{once}"
    );
    // The earlier confirmation, delivered again, still does nothing.
    let r = acme.send_as("evt_confirm", &confirmed).await;
    assert_recorded(&r, "duplicate", "confirmed", &a.checkout_id);
    // Another refund, another id: a second refund.
    let r = acme.send_as("evt_refund_2", &refund(700)).await;
    assert_recorded(&r, "applied", "confirmed", &a.checkout_id);
    let twice = view(&app, "alice", &a.checkout_id).await;
    let order = order_of(&twice, ACME);
    // A refund of a placed order leaves it placed (part of it, or a return).
    assert_eq!(order["status"], "confirmed", "{twice}");
    assert_eq!(
        order["refunds"],
        json!([
            {"amount_minor": 500, "currency": "GBP"},
            {"amount_minor": 700, "currency": "GBP"}
        ]),
        "{twice}"
    );
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_out_of_order_never_move_an_order_back() {
    let (app, sim) = shop(vec![]).await;
    let a = accepted_checkout(
        &app,
        &sim,
        "alice",
        &[
            (ACME, "async-silent-dress"),
            ("globex", "async-silent-shoe"),
        ],
        None,
    )
    .await;
    let requests = sim.orders().await;
    let globex_key = requests
        .iter()
        .find(|r| r["retailer"] == "globex")
        .and_then(|r| r["idempotency_key"].as_str())
        .unwrap_or_else(|| panic!("ICON's key for globex: {requests:?}"))
        .to_owned();
    let acme = RetailerReporter::new(&app, ACME).await;
    let globex = RetailerReporter::new(&app, "globex").await;

    // Acme: delivered arrives first (a later state implies the earlier ones), then the
    // shipment that happened an hour before it.
    let r = acme.send(&event("order.delivered", &a.key)).await;
    assert_recorded(&r, "applied", "delivered", &a.checkout_id);
    let mut shipped = event("order.shipped", &a.key);
    shipped["occurred_at"] = at(-3600).into();
    shipped["tracking"] = json!({"carrier": "DHL", "number": "JD0002"});
    let r = acme.send(&shipped).await;
    assert_recorded(&r, "stale", "delivered", &a.checkout_id);
    let mut confirmed = event("order.confirmed", &a.key);
    confirmed["occurred_at"] = at(-7200).into();
    let r = acme.send(&confirmed).await;
    assert_recorded(&r, "stale", "delivered", &a.checkout_id);

    // Globex: shipped with tracking, then its confirmation (older) arrives late.
    let mut shipped = event("order.shipped", &globex_key);
    let tracking =
        json!({"carrier": "UPS", "number": "1Z999", "url": "https://track.example/1Z999"});
    shipped["tracking"] = tracking.clone();
    let r = globex.send(&shipped).await;
    assert_recorded(&r, "applied", "shipped", &a.checkout_id);
    let mut confirmed = event("order.confirmed", &globex_key);
    confirmed["occurred_at"] = at(-60).into();
    let r = globex.send(&confirmed).await;
    assert_recorded(&r, "stale", "shipped", &a.checkout_id);

    let done = app
        .wait_for_checkout("alice", &a.checkout_id, "final", is_final)
        .await;
    assert_eq!(done["status"], "completed", "{done}");
    let acme_order = order_of(&done, ACME);
    assert_eq!(acme_order["status"], "delivered", "{done}");
    assert!(
        acme_order["tracking"].is_null(),
        "a stale event changes nothing: {done}"
    );
    let globex_order = order_of(&done, "globex");
    assert_eq!(globex_order["status"], "shipped", "{done}");
    assert_eq!(globex_order["tracking"], tracking, "{done}");
    // Delivered keeps the tracking it shipped with.
    let r = globex.send(&event("order.delivered", &globex_key)).await;
    assert_recorded(&r, "applied", "delivered", &a.checkout_id);
    let now = view(&app, "alice", &a.checkout_id).await;
    assert_eq!(order_of(&now, "globex")["tracking"], tracking, "{now}");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn during_a_rotation_events_verify_with_either_secret_and_no_other() {
    let (app, sim) = shop(vec![]).await;
    let a = accepted_checkout(&app, &sim, "alice", &[(ACME, "async-silent-dress")], None).await;
    let old = secret_of(&app, ACME).await;
    let r = app
        .api
        .send(
            Method::POST,
            &format!("/retailers/{ACME}/webhook-secret/rotate"),
            Some(&app.admin_token()),
            None,
            None,
        )
        .await;
    assert_eq!(r.status, 200, "{r:?}");
    assert!(r.json["previous_valid_until"].is_string(), "{r:?}");
    let new = r.json["secret"].as_str().unwrap().to_owned();
    assert_ne!(new, old);

    let send = |secret: String, body: Value| {
        let app = &app;
        async move {
            let body = body.to_string();
            let headers = signed(&secret, &new_webhook_id(), unix_now(), &body);
            post_event(&app.api, ACME, &headers, body).await
        }
    };
    // A random secret: refused, and nothing changes.
    let r = send(random_secret(), event("order.confirmed", &a.key)).await;
    assert_problem(&r, 401, "invalid_signature");
    let still = view(&app, "alice", &a.checkout_id).await;
    assert_eq!(order_of(&still, ACME)["status"], "accepted", "{still}");
    // The retailer has not switched yet: the old secret, inside the grace.
    let r = send(old, event("order.confirmed", &a.key)).await;
    assert_recorded(&r, "applied", "confirmed", &a.checkout_id);
    // Now it has.
    let mut shipped = event("order.shipped", &a.key);
    shipped["tracking"] = json!({"carrier": "DHL", "number": "JD0003"});
    let r = send(new, shipped).await;
    assert_recorded(&r, "applied", "shipped", &a.checkout_id);
    let r = send(random_secret(), event("order.delivered", &a.key)).await;
    assert_problem(&r, 401, "invalid_signature");
    let done = app
        .wait_for_checkout("alice", &a.checkout_id, "final", is_final)
        .await;
    assert_eq!(done["status"], "completed", "{done}");
    assert_eq!(order_of(&done, ACME)["status"], "shipped", "{done}");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_simulator_reports_an_order_by_itself_from_202_to_delivered() {
    let app = TestApp::spawn().await;
    let sim = Sim::start_reporting_to(&app.public_url, Duration::from_millis(300)).await;
    app.register_retailer(ACME, &sim.order_url(ACME)).await;
    sim.set_secret(ACME, &secret_of(&app, ACME).await).await;
    let receiver = Receiver::start(vec![], None).await;
    let cart = app.cart_with("alice", &[(ACME, "async-ship-dress")]).await;
    let r = app.checkout("alice", cart, Some(&receiver.url)).await;
    assert_eq!(r.status, 202, "{r:?}");
    let id = r.json["checkout_id"].as_str().unwrap().to_owned();

    let seen = receiver.wait_for(1, Duration::from_secs(20)).await;
    assert_eq!(seen[0].body["status"], "completed", "{:?}", seen[0].body);
    let done = app
        .wait_for_checkout("alice", &id, "delivered", |c| {
            order_of(c, ACME)["status"] == "delivered"
        })
        .await;
    assert_eq!(done["status"], "completed", "{done}");
    let order = order_of(&done, ACME);
    assert_eq!(order["tracking"]["carrier"], "SIM", "{done}");
    assert!(order["tracking"]["number"].is_string(), "{done}");

    // Three events, each taken by ICON at the first try.
    let events = sim.events().await;
    let kinds: Vec<&str> = events.iter().filter_map(|e| e["type"].as_str()).collect();
    assert_eq!(
        kinds,
        ["order.confirmed", "order.shipped", "order.delivered"],
        "{events:?}"
    );
    for e in &events {
        assert_eq!(e["delivered"], true, "{e}");
        assert_eq!(e["tries"].as_array().map(Vec::len), Some(1), "{e}");
        assert_eq!(e["tries"][0]["status"], 200, "{e}");
    }
    assert_eq!(sim.orders().await.len(), 1);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_that_overtakes_the_202_still_settles_the_order() {
    // No async delay: the simulator reports the confirmation as it answers 202, so the event
    // may well arrive while the worker is still waiting for that answer (the order `pending`).
    // Whichever comes first, the order ends confirmed and the checkout completed.
    let app = TestApp::spawn().await;
    let sim = Sim::start_reporting_to(&app.public_url, Duration::ZERO).await;
    app.register_retailer(ACME, &sim.order_url(ACME)).await;
    sim.set_secret(ACME, &secret_of(&app, ACME).await).await;
    let receiver = Receiver::start(vec![], None).await;
    let cart = app.cart_with("alice", &[(ACME, "async-dress")]).await;
    let r = app.checkout("alice", cart, Some(&receiver.url)).await;
    assert_eq!(r.status, 202, "{r:?}");
    let id = r.json["checkout_id"].as_str().unwrap().to_owned();

    let done = app.wait_for_checkout("alice", &id, "final", is_final).await;
    assert_eq!(done["status"], "completed", "{done}");
    assert_eq!(order_of(&done, ACME)["status"], "confirmed", "{done}");
    let seen = receiver.wait_for(1, Duration::from_secs(20)).await;
    assert_eq!(seen[0].body["status"], "completed", "{:?}", seen[0].body);
    let events = sim.events().await;
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(events[0]["delivered"], true, "{events:?}");
    app.stop().await;
}

/// A gateway allowing five requests an hour per address and per subject, a retailer `acme`
/// and its secret (two requests from 127.0.0.1), and a client on `127.0.0.{n}`: each
/// request below comes from an address of its own, so only acme's allowance can run out.
async fn rate_limited_shop() -> (TestApp, Sim, String, impl Fn(u8) -> Api) {
    let app = TestApp::spawn_with(Options {
        extra: vec![("ICON_RATE_LIMIT", "5/h burst 5".into())],
        ..Options::default()
    })
    .await;
    let sim = Sim::start().await;
    app.register_retailer(ACME, &sim.order_url(ACME)).await;
    let secret = secret_of(&app, ACME).await;
    let base = app.public_url.clone();
    let client = move |n: u8| Api::from_address(&base, [127, 0, 0, n].into());
    (app, sim, secret, client)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retailer_over_its_allowance_is_answered_429() {
    let (app, _sim, secret, client) = rate_limited_shop().await;
    let body = event("order.confirmed", "no-such-key:acme").to_string();
    for n in 2..7 {
        let headers = signed(&secret, &new_webhook_id(), unix_now(), &body);
        let r = post_event(&client(n), ACME, &headers, body.clone()).await;
        assert_problem(&r, 404, "unknown_order");
    }
    let headers = signed(&secret, &new_webhook_id(), unix_now(), &body);
    let r = post_event(&client(7), ACME, &headers, body.clone()).await;
    assert_problem(&r, 429, "rate_limited");
    assert!(
        r.header("retry-after")
            .and_then(|v| v.parse::<u64>().ok())
            .is_some_and(|s| s >= 1),
        "{r:?}"
    );
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_events_do_not_spend_the_retailers_allowance() {
    // As a forged token cannot spend a shopper's allowance (`rate_limit` module docs), an
    // unsigned or forged event must not spend the retailer's: else anyone can keep a
    // retailer's genuine events answered 429.
    let (app, _sim, secret, client) = rate_limited_shop().await;
    let body = event("order.confirmed", "no-such-key:acme").to_string();
    for n in 2..7 {
        let forged = signed(&random_secret(), &new_webhook_id(), unix_now(), &body);
        let r = post_event(&client(n), ACME, &forged, body.clone()).await;
        assert_problem(&r, 401, "invalid_signature");
    }
    let headers = signed(&secret, &new_webhook_id(), unix_now(), &body);
    let r = post_event(&client(7), ACME, &headers, body.clone()).await;
    assert_problem(&r, 404, "unknown_order");
    app.stop().await;
}

/// A retailer of the test's own, for what the simulator cannot do: it answers every order
/// `202 accepted` and holds each status lookup until the test releases it (then answers
/// `accepted`), so the test can act while a worker's lookup is in flight.
struct HoldingRetailer {
    order_url: String,
    state: std::sync::Arc<Holding>,
    server: actix_web::dev::ServerHandle,
}

#[derive(Default)]
struct Holding {
    /// The `Idempotency-Key` of every order request, in order.
    keys: std::sync::Mutex<Vec<String>>,
    lookup_arrived: tokio::sync::Notify,
    release: tokio::sync::Notify,
}

impl HoldingRetailer {
    async fn start() -> Self {
        use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};
        async fn order(req: HttpRequest, state: web::Data<Holding>) -> HttpResponse {
            let key = req
                .headers()
                .get("idempotency-key")
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_owned();
            state.keys.lock().unwrap().push(key);
            HttpResponse::Accepted().json(json!({"order_id": "held-1", "status": "accepted"}))
        }
        async fn lookup(state: web::Data<Holding>) -> HttpResponse {
            state.lookup_arrived.notify_one();
            state.release.notified().await;
            HttpResponse::Ok().json(json!({"order_id": "held-1", "status": "accepted"}))
        }
        let state = std::sync::Arc::new(Holding::default());
        let data = web::Data::from(state.clone());
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let order_url = format!("http://{}/orders", listener.local_addr().unwrap());
        let server = HttpServer::new(move || {
            App::new()
                .app_data(data.clone())
                .route("/orders", web::post().to(order))
                .route("/orders", web::get().to(lookup))
        })
        .workers(1)
        .disable_signals()
        .listen(listener)
        .expect("listen")
        .run();
        let handle = server.handle();
        tokio::spawn(server);
        Self {
            order_url,
            state,
            server: handle,
        }
    }

    fn keys(&self) -> Vec<String> {
        self.state.keys.lock().unwrap().clone()
    }
}

impl Drop for HoldingRetailer {
    fn drop(&mut self) {
        // Held lookups would keep the server from stopping.
        self.state.release.notify_waiters();
        let server = self.server.clone();
        tokio::spawn(async move { server.stop(false).await });
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_during_the_last_lookup_is_not_lost_when_the_checkout_finishes() {
    // One lookup after a second, and it is the last (SETTLE_WITHIN=0s): unless something else
    // settles the order while it is in flight, the order ends `unknown`. The retailer's
    // confirmation arrives exactly then, and ICON answers `applied` to a checkout still open.
    let app = TestApp::spawn_with(Options {
        extra: vec![
            ("ICON_RETAILER_CONFIRM_WITHIN", "1s".into()),
            ("ICON_RETAILER_SETTLE_WITHIN", "0s".into()),
        ],
        ..Options::default()
    })
    .await;
    let retailer = HoldingRetailer::start().await;
    app.register_retailer(ACME, &retailer.order_url).await;
    let receiver = Receiver::start(vec![], None).await;
    let cart = app.cart_with("alice", &[(ACME, "hat")]).await;
    let r = app.checkout("alice", cart, Some(&receiver.url)).await;
    assert_eq!(r.status, 202, "{r:?}");
    let id = r.json["checkout_id"].as_str().unwrap().to_owned();
    app.wait_for_checkout("alice", &id, "accepted", |c| {
        order_of(c, ACME)["status"] == "accepted"
    })
    .await;
    let key = retailer.keys().first().cloned().expect("the order's key");

    tokio::time::timeout(
        Duration::from_secs(20),
        retailer.state.lookup_arrived.notified(),
    )
    .await
    .expect("the worker's lookup");
    let acme = RetailerReporter::new(&app, ACME).await;
    let r = acme.send(&event("order.confirmed", &key)).await;
    assert_recorded(&r, "applied", "confirmed", &id);
    assert!(r.json["sequence"].is_null(), "the checkout was open: {r:?}");
    retailer.state.release.notify_one();

    let done = app.wait_for_checkout("alice", &id, "final", is_final).await;
    let seen = receiver.wait_for(1, Duration::from_secs(20)).await;
    assert_eq!(order_of(&done, ACME)["status"], "confirmed", "{done}");
    assert_eq!(
        seen[0].body["orders"][0]["status"], "confirmed",
        "the callback tells the order as it is: {:?}",
        seen[0].body
    );
    assert_eq!(done["status"], "completed", "{done}");
    app.stop().await;
}
