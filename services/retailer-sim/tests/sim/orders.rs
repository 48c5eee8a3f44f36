//! What each SKU prefix answers, and requests that break the protocol.

use crate::helpers::{order_body, order_id, TestSim};
use hyper::{Method, StatusCode};
use serde_json::{json, Value};
use std::time::{Duration, Instant};

#[tokio::test]
async fn reject_sku_is_refused_with_422_and_a_reason() {
    let sim = TestSim::start().await;
    let reply = sim
        .order(
            "/orders",
            Some("c1:acme"),
            &order_body("c1", &["dress", "reject-hat"]),
        )
        .await;
    assert_eq!(reply.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(reply.body, json!({"reason": "reject-hat is out of stock"}));
}

#[tokio::test]
async fn conflict_sku_is_409_in_progress_once_then_confirms() {
    let sim = TestSim::start().await;
    let body = order_body("c1", &["conflict-lamp"]);

    let first = sim.order("/orders", Some("c1:acme"), &body).await;
    assert_eq!(first.status, StatusCode::CONFLICT);
    assert_eq!(
        first.body,
        json!({"reason": "a request with this Idempotency-Key is in progress"})
    );

    let second = sim.order("/orders", Some("c1:acme"), &body).await;
    assert_eq!(second.status, StatusCode::CREATED);
    let third = sim.order("/orders", Some("c1:acme"), &body).await;
    assert_eq!(third.status, StatusCode::OK);
    assert_eq!(order_id(&third), order_id(&second));
}

#[tokio::test]
async fn down_sku_always_fails_with_500() {
    let sim = TestSim::start().await;
    let body = order_body("c1", &["down-anything"]);
    for _ in 0..3 {
        let reply = sim.order("/orders", Some("c1:acme"), &body).await;
        assert_eq!(reply.status, StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(reply.body, json!({"reason": "simulated outage"}));
    }
}

#[tokio::test]
async fn prefix_priority_decides_mixed_orders() {
    let sim = TestSim::start().await;
    // `reject-` outranks `flaky-` whatever the item order.
    let reply = sim
        .order(
            "/orders",
            Some("c1:acme"),
            &order_body("c1", &["flaky-a", "reject-b"]),
        )
        .await;
    assert_eq!(reply.status, StatusCode::UNPROCESSABLE_ENTITY);
}

#[tokio::test]
async fn flaky_sku_fails_once_per_key_then_confirms() {
    let sim = TestSim::start().await;
    let body = order_body("c1", &["flaky-mug"]);

    let first = sim.order("/orders", Some("c1:acme"), &body).await;
    assert_eq!(first.status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(first.body["reason"].is_string());

    let second = sim.order("/orders", Some("c1:acme"), &body).await;
    assert_eq!(second.status, StatusCode::CREATED);
    let third = sim.order("/orders", Some("c1:acme"), &body).await;
    assert_eq!(third.status, StatusCode::OK);
    assert_eq!(order_id(&third), order_id(&second));

    // A new key starts over.
    let other = sim
        .order(
            "/orders",
            Some("c9:acme"),
            &order_body("c9", &["flaky-mug"]),
        )
        .await;
    assert_eq!(other.status, StatusCode::SERVICE_UNAVAILABLE);
}

#[tokio::test]
async fn busy_sku_answers_429_with_retry_after_then_confirms() {
    let sim = TestSim::start().await;
    let body = order_body("c1", &["busy-chair"]);

    let first = sim.order("/orders", Some("c1:acme"), &body).await;
    assert_eq!(first.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(
        first
            .headers
            .get("retry-after")
            .and_then(|v| v.to_str().ok()),
        Some("1")
    );

    let second = sim.order("/orders", Some("c1:acme"), &body).await;
    assert_eq!(second.status, StatusCode::CREATED);
    assert!(second.headers.get("retry-after").is_none());
}

#[tokio::test]
async fn slow_sku_waits_the_configured_delay_then_confirms() {
    let delay = Duration::from_millis(400);
    let sim = TestSim::start_with(delay).await;
    let started = Instant::now();
    let reply = sim
        .order(
            "/orders",
            Some("c1:acme"),
            &order_body("c1", &["slow-desk"]),
        )
        .await;
    assert_eq!(reply.status, StatusCode::CREATED);
    // A lower bound only: the sleep cannot end early, however loaded the machine.
    assert!(
        started.elapsed() >= delay,
        "answered after {:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn hang_sku_does_not_answer_but_is_logged_as_unanswered() {
    let sim = TestSim::start().await;
    let hanging = sim.spawn_order("/orders", "c1:acme", &order_body("c1", &["hang-clock"]));
    sim.wait_until_held("c1:acme").await;
    assert!(!hanging.is_finished(), "a hang- order was answered");

    let log = sim.requests("?idempotency_key=c1:acme").await;
    assert_eq!(log.len(), 1);
    assert_eq!(log[0]["response_status"], Value::Null);
    hanging.abort();
}

#[tokio::test]
async fn ghost_sku_places_the_order_but_answers_502() {
    let sim = TestSim::start().await;
    let body = order_body("c1", &["dress", "ghost-coat"]);

    let lost = sim.order("/acme/orders", Some("c1:acme"), &body).await;
    assert_eq!(lost.status, StatusCode::BAD_GATEWAY);
    assert_eq!(lost.body, json!({"reason": "simulated lost response"}));

    // The order exists: a lookup finds it, and the same key replays it.
    let found = sim.get("/acme/orders?idempotency_key=c1:acme").await;
    assert_eq!(found.status, StatusCode::OK);
    assert_eq!(found.body["status"], "confirmed");
    let id = order_id(&found);
    let again = sim.order("/acme/orders", Some("c1:acme"), &body).await;
    assert_eq!(again.status, StatusCode::OK);
    assert_eq!(again.body, json!({"order_id": id, "status": "confirmed"}));

    // The log shows which order the lost answer was for, so one key still has one order.
    let log = sim.requests("?idempotency_key=c1:acme").await;
    assert_eq!(log.len(), 2);
    assert_eq!(log[0]["response_status"], 502);
    assert_eq!(log[0]["order_id"], json!(id));
    assert_eq!(log[0]["reason"], "simulated lost response");
    assert_eq!(log[1]["response_status"], 200);
    assert_eq!(log[1]["order_id"], json!(id));
}

#[tokio::test]
async fn nul_sku_confirms_with_control_characters_in_the_order_id() {
    let sim = TestSim::start().await;
    let reply = sim
        .order("/orders", Some("c1:acme"), &order_body("c1", &["nul-vase"]))
        .await;
    assert_eq!(reply.status, StatusCode::CREATED);
    assert_eq!(reply.body["status"], "confirmed");
    let id = order_id(&reply);
    assert!(id.starts_with("sim-"), "{id:?}");
    assert!(id.contains('\0'), "{id:?}");
    assert!(id.chars().filter(|c| c.is_control()).count() > 1, "{id:?}");

    let found = sim.get("/orders?idempotency_key=c1:acme").await;
    assert_eq!(found.status, StatusCode::OK);
    assert_eq!(order_id(&found), id);
}

#[tokio::test]
async fn missing_idempotency_key_is_400_and_still_logged() {
    let sim = TestSim::start().await;
    let reply = sim
        .order("/orders", None, &order_body("c1", &["dress"]))
        .await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST);
    let reason = reply.body["reason"].as_str().expect("a reason");
    assert!(reason.contains("Idempotency-Key"), "{reason}");

    let log = sim.requests("").await;
    assert_eq!(log.len(), 1);
    assert_eq!(log[0]["response_status"], 400);
    assert_eq!(log[0]["idempotency_key"], Value::Null);
    assert_eq!(log[0]["checkout_id"], "c1");
    assert_eq!(log[0]["order_id"], Value::Null);
}

#[tokio::test]
async fn malformed_orders_are_400() {
    let sim = TestSim::start().await;
    let key = [
        ("content-type", "application/json"),
        ("idempotency-key", "c1:acme"),
    ];

    let garbage = sim
        .call(Method::POST, "/orders", &key, b"{not json".to_vec())
        .await;
    assert_eq!(garbage.status, StatusCode::BAD_REQUEST);
    assert!(garbage.body["reason"].is_string());

    let no_items = sim
        .order(
            "/orders",
            Some("c1:acme"),
            &json!({"checkout_id": "c1", "items": []}),
        )
        .await;
    assert_eq!(no_items.status, StatusCode::BAD_REQUEST);

    let mut zero = order_body("c1", &["dress"]);
    zero["items"][0]["quantity"] = json!(0);
    let zero = sim.order("/orders", Some("c1:acme"), &zero).await;
    assert_eq!(zero.status, StatusCode::BAD_REQUEST);

    let text = [
        ("content-type", "text/plain"),
        ("idempotency-key", "c1:acme"),
    ];
    let body = order_body("c1", &["dress"]).to_string().into_bytes();
    let wrong_type = sim.call(Method::POST, "/orders", &text, body).await;
    assert_eq!(wrong_type.status, StatusCode::BAD_REQUEST);

    // None of them created an order, so the key is still free.
    let ok = sim
        .order("/orders", Some("c1:acme"), &order_body("c1", &["dress"]))
        .await;
    assert_eq!(ok.status, StatusCode::CREATED);
    assert_eq!(sim.requests("").await.len(), 5);
}
