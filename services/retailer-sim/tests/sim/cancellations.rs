//! Cancellations (issue 18): `POST <order_url>/cancellations` with the cancellation prefixes,
//! lookups and replays after them, protocol errors, signatures, and the log,
//! `GET /cancellations`.
//!
//! - `asynchronous`: cancellations answered 202 and reported by event, and a cancelled
//!   `async-` order's events.

mod asynchronous;

use crate::helpers::{order_body, order_id, put_secret, Reply, TestSim};
use hyper::{Method, StatusCode};
use icon_contracts::retailer::cancel_key;
use icon_webhooks::{SigningSecrets, WebhookSecret};
use serde_json::{json, Value};
use std::time::Duration;

const WHY: &str = "the customer changed their mind";

/// A cancellation's body, as ICON sends it.
fn body(key: &str, order_id: Option<&str>) -> Vec<u8> {
    json!({"idempotency_key": key, "order_id": order_id, "reason": WHY})
        .to_string()
        .into_bytes()
}

/// JSON headers with this `Idempotency-Key` (none if `None`) and `extra` (a signature).
fn headers<'a>(
    idempotency_key: Option<&'a str>,
    extra: &'a [(&str, String)],
) -> Vec<(&'a str, &'a str)> {
    let mut headers = vec![("content-type", "application/json")];
    headers.extend(idempotency_key.map(|k| ("idempotency-key", k)));
    headers.extend(extra.iter().map(|(n, v)| (*n, v.as_str())));
    headers
}

/// Cancels the order placed with `key` at `orders` (`/orders` or `/{retailer}/orders`), as ICON
/// does.
async fn cancel(sim: &TestSim, orders: &str, key: &str, order_id: Option<&str>) -> Reply {
    let header = cancel_key(key);
    let path = format!("{orders}/cancellations");
    sim.call(
        Method::POST,
        &path,
        &headers(Some(&header), &[]),
        body(key, order_id),
    )
    .await
}

/// Standard Webhooks headers over `body`, as ICON signs its requests.
fn signed(secret: &WebhookSecret, body: &[u8]) -> Vec<(&'static str, String)> {
    SigningSecrets {
        current: secret.clone(),
        previous: None,
    }
    .signed_headers(
        format!("msg_{}", uuid::Uuid::new_v4().simple()),
        chrono::Utc::now().timestamp(),
        body,
    )
    .to_vec()
}

/// Places a plain order of `skus` at `orders` with `key`, which must be confirmed at once.
async fn place(sim: &TestSim, orders: &str, key: &str, skus: &[&str]) -> String {
    let placed = sim.order(orders, Some(key), &order_body("c1", skus)).await;
    assert_eq!(placed.status, StatusCode::CREATED, "{placed:?}");
    order_id(&placed)
}

async fn lookup(sim: &TestSim, orders: &str, key: &str) -> Reply {
    sim.get(&format!("{orders}?idempotency_key={key}")).await
}

async fn cancellations(sim: &TestSim, query: &str) -> Vec<Value> {
    sim.log(&format!("/cancellations{query}")).await
}

fn assert_reason(reply: &Reply, status: StatusCode, reason: &str) {
    assert_eq!(reply.status, status, "{reply:?}");
    assert_eq!(reply.body, json!({ "reason": reason }));
}

#[tokio::test]
async fn an_order_is_cancelled_and_a_repeat_is_answered_the_same() {
    let sim = TestSim::start().await;
    let id = place(&sim, "/acme/orders", "c1:acme", &["dress"]).await;

    for _ in 0..2 {
        let reply = cancel(&sim, "/acme/orders", "c1:acme", Some(&id)).await;
        assert_eq!(reply.status, StatusCode::OK, "{reply:?}");
        assert_eq!(reply.body, json!({"status": "cancelled"}));
    }
    let found = lookup(&sim, "/acme/orders", "c1:acme").await;
    assert_eq!(found.status, StatusCode::OK);
    assert_eq!(found.body, json!({"order_id": id, "status": "cancelled"}));

    // Placing it again replays the cancelled order, and places no second one.
    let again = sim
        .order(
            "/acme/orders",
            Some("c1:acme"),
            &order_body("c1", &["dress"]),
        )
        .await;
    assert_eq!(again.status, StatusCode::OK, "{again:?}");
    assert_eq!(again.body, json!({"order_id": id, "status": "cancelled"}));
    let requests = sim.requests("?idempotency_key=c1:acme").await;
    assert!(
        requests.iter().all(|r| r["order_id"] == id.as_str()),
        "{requests:?}"
    );

    let log = cancellations(&sim, "").await;
    assert_eq!(log.len(), 2, "{log:?}");
    for record in &log {
        assert_eq!(record["retailer"], "acme");
        assert_eq!(record["idempotency_key"], "c1:acme");
        assert_eq!(record["idempotency_key_header"], "c1:acme:cancel");
        assert_eq!(record["order_id"], id.as_str());
        assert_eq!(record["reason"], WHY);
        assert_eq!(record["response_status"], 200);
        assert_eq!(record["answered"], true);
        assert_eq!(record["answer_reason"], Value::Null);
        assert_eq!(record["signature_verified"], Value::Null);
        let sent: Value =
            serde_json::from_str(record["raw_body"].as_str().expect("a body")).expect("JSON");
        assert_eq!(sent["idempotency_key"], "c1:acme");
        let at = record["received_at"].as_str().expect("received_at");
        chrono::DateTime::parse_from_rfc3339(at).expect("RFC 3339");
    }
}

#[tokio::test]
async fn the_log_filters_by_order_key_and_retailer() {
    let sim = TestSim::start().await;
    place(&sim, "/orders", "c1:acme", &["dress"]).await;
    place(&sim, "/globex/orders", "c2:globex", &["dress"]).await;
    assert_eq!(
        cancel(&sim, "/orders", "c1:acme", None).await.status,
        StatusCode::OK
    );
    let globex = cancel(&sim, "/globex/orders", "c2:globex", None).await;
    assert_eq!(globex.status, StatusCode::OK);
    let none = cancel(&sim, "/globex/orders", "c1:acme", None).await;
    assert_eq!(none.status, StatusCode::NOT_FOUND);

    let by_key = cancellations(&sim, "?idempotency_key=c1:acme").await;
    let seen: Vec<_> = by_key
        .iter()
        .map(|r| (r["retailer"].clone(), r["response_status"].clone()))
        .collect();
    assert_eq!(
        seen,
        [(Value::Null, json!(200)), (json!("globex"), json!(404))]
    );
    assert_eq!(by_key[0]["order_id"], Value::Null, "ICON sent null");
    assert_eq!(cancellations(&sim, "?retailer=globex").await.len(), 2);
    let both = cancellations(&sim, "?idempotency_key=c2:globex&retailer=globex").await;
    assert_eq!(both.len(), 1);
    // Cancellations are neither order requests nor lookups.
    assert_eq!(sim.requests("").await.len(), 2);
    assert!(sim.lookups("").await.is_empty());
}

#[tokio::test]
async fn nocancel_is_refused_every_time_and_the_order_stays_placed() {
    let sim = TestSim::start().await;
    // It places like a plain SKU: confirmed at once.
    let id = place(&sim, "/orders", "c1:acme", &["nocancel-dress"]).await;
    for _ in 0..2 {
        let reply = cancel(&sim, "/orders", "c1:acme", Some(&id)).await;
        assert_reason(&reply, StatusCode::CONFLICT, "already shipped");
    }
    let found = lookup(&sim, "/orders", "c1:acme").await;
    assert_eq!(found.body, json!({"order_id": id, "status": "confirmed"}));
    let log = cancellations(&sim, "").await;
    let answers: Vec<_> = log
        .iter()
        .map(|r| (r["response_status"].clone(), r["answer_reason"].clone()))
        .collect();
    let refused = (json!(409), json!("already shipped"));
    assert_eq!(answers, [refused.clone(), refused]);
}

#[tokio::test]
async fn cancel_hang_cancels_but_its_first_answer_is_lost() {
    let sim = TestSim::start().await;
    let id = place(&sim, "/orders", "c1:acme", &["cancel-hang-dress"]).await;
    let header = cancel_key("c1:acme");
    let first = sim.send(
        Method::POST,
        "/orders/cancellations",
        &headers(Some(&header), &[]),
        body("c1:acme", Some(&id)),
    );
    let gave_up = tokio::time::timeout(Duration::from_millis(300), first).await;
    assert!(
        gave_up.is_err(),
        "a cancel-hang- cancellation was answered: {gave_up:?}"
    );

    // The cancellation took effect all the same.
    let found = lookup(&sim, "/orders", "c1:acme").await;
    assert_eq!(found.body, json!({"order_id": id, "status": "cancelled"}));
    let second = cancel(&sim, "/orders", "c1:acme", Some(&id)).await;
    assert_eq!(second.status, StatusCode::OK, "{second:?}");
    assert_eq!(second.body, json!({"status": "cancelled"}));

    let log = cancellations(&sim, "?idempotency_key=c1:acme").await;
    let answers: Vec<_> = log
        .iter()
        .map(|r| (r["answered"].clone(), r["response_status"].clone()))
        .collect();
    assert_eq!(
        answers,
        [(json!(false), Value::Null), (json!(true), json!(200))]
    );
}

#[tokio::test]
async fn no_order_is_404_and_one_still_being_placed_is_503() {
    let sim = TestSim::start().await;
    let none = cancel(&sim, "/orders", "c1:acme", None).await;
    assert_eq!(none.status, StatusCode::NOT_FOUND, "{none:?}");
    assert!(none.body["reason"]
        .as_str()
        .expect("a reason")
        .contains("c1:acme"));

    // A refused placement places nothing to cancel.
    let rejected = sim
        .order(
            "/orders",
            Some("c2:acme"),
            &order_body("c2", &["reject-hat"]),
        )
        .await;
    assert_eq!(rejected.status, StatusCode::UNPROCESSABLE_ENTITY);
    let none = cancel(&sim, "/orders", "c2:acme", None).await;
    assert_eq!(none.status, StatusCode::NOT_FOUND, "{none:?}");

    // Keys are per retailer: acme's order is not globex's.
    place(&sim, "/acme/orders", "c3:acme", &["dress"]).await;
    let elsewhere = cancel(&sim, "/globex/orders", "c3:acme", None).await;
    assert_eq!(elsewhere.status, StatusCode::NOT_FOUND);
    let found = lookup(&sim, "/acme/orders", "c3:acme").await;
    assert_eq!(found.body["status"], "confirmed");

    let hanging = sim.spawn_order("/orders", "c4:acme", &order_body("c4", &["hang-clock"]));
    sim.wait_until_held("c4:acme").await;
    let busy = cancel(&sim, "/orders", "c4:acme", None).await;
    assert_reason(
        &busy,
        StatusCode::SERVICE_UNAVAILABLE,
        "a request with this key is in progress; try again",
    );
    assert_eq!(busy.headers["retry-after"], "1");
    hanging.abort();
}

#[tokio::test]
async fn a_cancellation_without_its_key_or_a_valid_body_is_400_and_changes_nothing() {
    let sim = TestSim::start().await;
    let id = place(&sim, "/orders", "c1:acme", &["dress"]).await;
    let good = body("c1:acme", Some(&id));
    let no_reason = json!({"idempotency_key": "c1:acme"})
        .to_string()
        .into_bytes();
    // The Idempotency-Key sent, whether the body is said to be JSON, the body, and what the
    // answer's reason must name.
    let cases = [
        (None, true, good.clone(), "Idempotency-Key"),
        (Some("c1:acme"), true, good.clone(), "c1:acme:cancel"),
        (Some("c2:acme:cancel"), true, good.clone(), "c1:acme:cancel"),
        (Some("c1:acme:cancel"), false, good.clone(), "Content-Type"),
        (
            Some("c1:acme:cancel"),
            true,
            b"{not json".to_vec(),
            "not a valid cancellation",
        ),
        (Some("c1:acme:cancel"), true, no_reason, "reason"),
        (Some(":cancel"), true, body(" ", None), "empty"),
    ];
    for (key, is_json, request, names) in cases {
        let mut sent = headers(key, &[]);
        sent.retain(|(name, _)| is_json || *name != "content-type");
        let reply = sim
            .call(Method::POST, "/orders/cancellations", &sent, request)
            .await;
        assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{sent:?}: {reply:?}");
        let reason = reply.body["reason"].as_str().expect("a reason");
        assert!(reason.contains(names), "{sent:?}: {reason}");
    }
    let found = lookup(&sim, "/orders", "c1:acme").await;
    assert_eq!(found.body, json!({"order_id": id, "status": "confirmed"}));

    let log = cancellations(&sim, "").await;
    assert_eq!(log.len(), 7);
    assert!(log
        .iter()
        .all(|r| r["response_status"] == 400 && r["answered"] == true));
    let header_as_sent: Vec<&Value> = log.iter().map(|r| &r["idempotency_key_header"]).collect();
    assert_eq!(
        header_as_sent[..3],
        [&Value::Null, &json!("c1:acme"), &json!("c2:acme:cancel")]
    );
    // What could be read of a refused body is kept.
    assert_eq!(log[1]["idempotency_key"], "c1:acme");
    assert_eq!(log[1]["reason"], WHY);
    assert_eq!(log[4]["idempotency_key"], Value::Null);
}

#[tokio::test]
async fn a_wrongly_signed_cancellation_is_refused_and_changes_nothing() {
    let sim = TestSim::start().await;
    let secret = put_secret(&sim, "acme").await;
    let order = order_body("c1", &["dress"]).to_string().into_bytes();
    let placed = sim
        .call(
            Method::POST,
            "/acme/orders",
            &headers(Some("c1:acme"), &signed(&secret, &order)),
            order,
        )
        .await;
    assert_eq!(placed.status, StatusCode::CREATED, "{placed:?}");
    let id = order_id(&placed);

    let request = body("c1:acme", Some(&id));
    let header = cancel_key("c1:acme");
    let path = "/acme/orders/cancellations";
    let other = WebhookSecret::generate();
    for sig in [vec![], signed(&other, &request), signed(&secret, b"{}")] {
        let reply = sim
            .call(
                Method::POST,
                path,
                &headers(Some(&header), &sig),
                request.clone(),
            )
            .await;
        assert_eq!(reply.status, StatusCode::UNAUTHORIZED, "{sig:?}: {reply:?}");
        assert_eq!(reply.headers["content-type"], "application/problem+json");
        assert!(reply.body["reason"]
            .as_str()
            .expect("a reason")
            .starts_with("signature refused"));
    }
    let sig = signed(&secret, b"");
    let lookup = "/acme/orders?idempotency_key=c1:acme";
    let found = sim
        .call(Method::GET, lookup, &headers(None, &sig), vec![])
        .await;
    assert_eq!(found.body, json!({"order_id": id, "status": "confirmed"}));

    let sig = signed(&secret, &request);
    let reply = sim
        .call(Method::POST, path, &headers(Some(&header), &sig), request)
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{reply:?}");

    let log = cancellations(&sim, "").await;
    let verdicts: Vec<(&Value, &Value)> = log
        .iter()
        .map(|r| (&r["signature_verified"], &r["response_status"]))
        .collect();
    let (no, yes) = (json!(false), json!(true));
    let (refused, ok) = (json!(401), json!(200));
    assert_eq!(
        verdicts,
        [
            (&no, &refused),
            (&no, &refused),
            (&no, &refused),
            (&yes, &ok)
        ]
    );
    assert!(log[0]["webhook_id"].is_null());
    let signature = log[3]["webhook_signature"].as_str().expect("a signature");
    assert!(signature.starts_with("v1,"), "{signature}");
}
