//! One order per key: replays, concurrent requests, keys in progress, reused keys.

use crate::helpers::{order_body, order_id, TestSim, DEADLINE};
use hyper::StatusCode;
use serde_json::json;
use std::collections::HashSet;
use std::time::Duration;

const IN_PROGRESS: &str = "a request with this Idempotency-Key is in progress";

#[tokio::test]
async fn confirm_then_replay_returns_the_same_order() {
    let sim = TestSim::start().await;
    let body = order_body("c1", &["dress-42"]);

    let first = sim.order("/orders", Some("c1:acme"), &body).await;
    assert_eq!(first.status, StatusCode::CREATED);
    assert_eq!(first.body["status"], "confirmed");
    let id = order_id(&first);
    assert!(id.starts_with("sim-"), "{id}");

    let again = sim.order("/orders", Some("c1:acme"), &body).await;
    assert_eq!(again.status, StatusCode::OK);
    assert_eq!(order_id(&again), id);

    let other = sim
        .order("/orders", Some("c2:acme"), &order_body("c2", &["dress-42"]))
        .await;
    assert_eq!(other.status, StatusCode::CREATED);
    assert_ne!(order_id(&other), id);
}

#[tokio::test]
async fn identical_requests_at_once_create_one_order() {
    let sim = TestSim::start_with(Duration::from_millis(300)).await;
    // `slow-` keeps the first in flight, so the other usually finds the key in progress (409);
    // if it came after, it is a replay. Either way there is one order.
    let body = order_body("c1", &["slow-sofa"]);
    let (a, b) = tokio::join!(
        sim.order("/orders", Some("c1:acme"), &body),
        sim.order("/orders", Some("c1:acme"), &body),
    );
    let (created, other) = if a.status == StatusCode::CREATED {
        (a, b)
    } else {
        (b, a)
    };
    assert_eq!(created.status, StatusCode::CREATED, "{created:?} {other:?}");
    let id = order_id(&created);
    match other.status {
        StatusCode::CONFLICT => assert_eq!(other.body["reason"], IN_PROGRESS),
        StatusCode::OK => assert_eq!(order_id(&other), id),
        _ => panic!("neither in progress nor a replay: {other:?}"),
    }

    let retry = sim.order("/orders", Some("c1:acme"), &body).await;
    assert_eq!(retry.status, StatusCode::OK);
    assert_eq!(order_id(&retry), id);
    let ids: HashSet<_> = sim
        .requests("?idempotency_key=c1:acme")
        .await
        .iter()
        .filter_map(|r| r["order_id"].as_str().map(str::to_owned))
        .collect();
    assert_eq!(ids, HashSet::from([id]));
}

#[tokio::test]
async fn a_key_in_progress_is_409_until_its_request_ends_then_confirms() {
    // Long enough for the requests below to surely arrive while the first waits; nothing is
    // timed against it.
    let sim = TestSim::start_with(Duration::from_secs(3)).await;
    let body = order_body("c1", &["slow-sofa"]);
    let first = sim.spawn_order("/acme/orders", "c1:acme", &body);
    sim.wait_until_held("c1:acme").await;

    let second = sim.order("/acme/orders", Some("c1:acme"), &body).await;
    assert_eq!(second.status, StatusCode::CONFLICT);
    assert_eq!(second.body, json!({"reason": IN_PROGRESS}));
    // Not a refusal of the payload: a different order with the key is told to wait too.
    let different = order_body("c1", &["hat"]);
    let third = sim.order("/acme/orders", Some("c1:acme"), &different).await;
    assert_eq!(third.status, StatusCode::CONFLICT);
    // Only that retailer's key is held.
    let elsewhere = sim
        .order(
            "/globex/orders",
            Some("c1:acme"),
            &order_body("c1", &["hat"]),
        )
        .await;
    assert_eq!(elsewhere.status, StatusCode::CREATED);

    let first = tokio::time::timeout(DEADLINE, first)
        .await
        .expect("the slow- request ended")
        .expect("task")
        .expect("answered");
    assert_eq!(first.status, StatusCode::CREATED);
    let after = sim.order("/acme/orders", Some("c1:acme"), &body).await;
    assert_eq!(after.status, StatusCode::OK);
    assert_eq!(order_id(&after), order_id(&first));
    let reused = sim.order("/acme/orders", Some("c1:acme"), &different).await;
    assert_eq!(reused.status, StatusCode::UNPROCESSABLE_ENTITY);

    let statuses: Vec<_> = sim
        .requests("?idempotency_key=c1:acme&retailer=acme")
        .await
        .iter()
        .map(|r| r["response_status"].clone())
        .collect();
    assert_eq!(
        statuses,
        [json!(201), json!(409), json!(409), json!(200), json!(422)]
    );
}

#[tokio::test]
async fn a_hanging_request_holds_its_key() {
    let sim = TestSim::start().await;
    let body = order_body("c1", &["hang-clock"]);
    let hanging = sim.spawn_order("/orders", "c1:acme", &body);
    sim.wait_until_held("c1:acme").await;

    // Even after its client gives up: actix-web keeps running a handler whose client has gone,
    // just as a real retailer may go on processing a request whose caller timed out.
    hanging.abort();
    for order in [body, order_body("c1", &["dress"])] {
        let meanwhile = sim.order("/orders", Some("c1:acme"), &order).await;
        assert_eq!(meanwhile.status, StatusCode::CONFLICT);
        assert_eq!(meanwhile.body["reason"], IN_PROGRESS);
    }
    // The protocol's answer to a lookup for a key still in progress is 409, not 404: no order
    // exists yet, but one may a moment later.
    let lookup = sim.get("/orders?idempotency_key=c1:acme").await;
    assert_eq!(lookup.status, StatusCode::CONFLICT);
    let other_key = sim
        .order("/orders", Some("c2:acme"), &order_body("c2", &["dress"]))
        .await;
    assert_eq!(other_key.status, StatusCode::CREATED);
}

#[tokio::test]
async fn a_legacy_retailer_answers_404_for_a_key_in_progress() {
    let sim = TestSim::start().await;
    let body = order_body("c1", &["hang-clock"]);
    let hanging = sim.spawn_order("/legacy-acme/orders", "c1:acme", &body);
    sim.wait_until_held("c1:acme").await;
    hanging.abort();
    let lookup = sim.get("/legacy-acme/orders?idempotency_key=c1:acme").await;
    assert_eq!(lookup.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn a_key_reused_for_a_different_order_is_422() {
    let sim = TestSim::start().await;
    let first = sim
        .order("/orders", Some("c1:acme"), &order_body("c1", &["dress"]))
        .await;
    assert_eq!(first.status, StatusCode::CREATED);
    let reused = sim
        .order("/orders", Some("c1:acme"), &order_body("c1", &["hat"]))
        .await;
    assert_eq!(reused.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(reused.body["order_id"].is_null());
}

#[tokio::test]
async fn each_retailer_path_has_its_own_orders() {
    let sim = TestSim::start().await;
    let body = order_body("c1", &["dress"]);
    let a = sim.order("/acme/orders", Some("c1:x"), &body).await;
    let b = sim.order("/globex/orders", Some("c1:x"), &body).await;
    assert_eq!(a.status, StatusCode::CREATED);
    assert_eq!(b.status, StatusCode::CREATED);
    assert_ne!(order_id(&a), order_id(&b));
}
