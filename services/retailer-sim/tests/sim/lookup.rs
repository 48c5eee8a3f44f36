//! The status lookup, `GET <order_url>?idempotency_key=K`, and its log, `GET /lookups`.

use crate::helpers::{order_body, order_id, TestSim};
use hyper::StatusCode;
use serde_json::{json, Value};

#[tokio::test]
async fn lookup_finds_the_order_placed_with_a_key_in_that_retailers_key_space() {
    let sim = TestSim::start().await;
    let placed = sim
        .order(
            "/acme/orders",
            Some("c1:acme"),
            &order_body("c1", &["dress"]),
        )
        .await;
    assert_eq!(placed.status, StatusCode::CREATED);

    let found = sim.get("/acme/orders?idempotency_key=c1:acme").await;
    assert_eq!(found.status, StatusCode::OK);
    assert_eq!(
        found.body,
        json!({"order_id": order_id(&placed), "status": "confirmed"})
    );

    for elsewhere in [
        "/globex/orders?idempotency_key=c1:acme",
        "/orders?idempotency_key=c1:acme",
        "/acme/orders?idempotency_key=c2:acme",
    ] {
        let none = sim.get(elsewhere).await;
        assert_eq!(none.status, StatusCode::NOT_FOUND, "{elsewhere}");
        assert!(none.body["reason"].is_string(), "{elsewhere}: {none:?}");
        assert!(none.body["order_id"].is_null());
    }
}

#[tokio::test]
async fn lookup_is_404_until_an_order_is_placed() {
    let sim = TestSim::start().await;
    let rejected = sim
        .order(
            "/orders",
            Some("c1:acme"),
            &order_body("c1", &["reject-hat"]),
        )
        .await;
    assert_eq!(rejected.status, StatusCode::UNPROCESSABLE_ENTITY);
    let lookup = sim.get("/orders?idempotency_key=c1:acme").await;
    assert_eq!(lookup.status, StatusCode::NOT_FOUND);

    let body = order_body("c2", &["flaky-mug"]);
    let failed = sim.order("/orders", Some("c2:acme"), &body).await;
    assert_eq!(failed.status, StatusCode::SERVICE_UNAVAILABLE);
    let lookup = sim.get("/orders?idempotency_key=c2:acme").await;
    assert_eq!(lookup.status, StatusCode::NOT_FOUND);

    let confirmed = sim.order("/orders", Some("c2:acme"), &body).await;
    assert_eq!(confirmed.status, StatusCode::CREATED);
    let lookup = sim.get("/orders?idempotency_key=c2:acme").await;
    assert_eq!(lookup.status, StatusCode::OK);
    assert_eq!(order_id(&lookup), order_id(&confirmed));
}

#[tokio::test]
async fn lookup_without_a_key_is_400() {
    let sim = TestSim::start().await;
    for path in [
        "/orders",
        "/orders?idempotency_key=",
        "/acme/orders?idempotency_key=%20",
        "/acme/orders?retailer=acme",
    ] {
        let reply = sim.get(path).await;
        assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{path}");
        let reason = reply.body["reason"].as_str().expect("a reason");
        assert!(reason.contains("idempotency_key"), "{path}: {reason}");
    }
}

#[tokio::test]
async fn lookup_log_lists_every_lookup_oldest_first_and_filters() {
    let sim = TestSim::start().await;
    sim.order(
        "/acme/orders",
        Some("c1:acme"),
        &order_body("c1", &["dress"]),
    )
    .await;
    sim.get("/acme/orders?idempotency_key=c1:acme").await;
    sim.get("/orders?idempotency_key=c1:acme").await;
    sim.get("/acme/orders").await;
    sim.get("/acme/orders?idempotency_key=c1:acme").await;

    let log = sim.lookups("").await;
    let seen: Vec<_> = log
        .iter()
        .map(|r| {
            (
                r["retailer"].clone(),
                r["idempotency_key"].clone(),
                r["response_status"].clone(),
            )
        })
        .collect();
    assert_eq!(
        seen,
        [
            (json!("acme"), json!("c1:acme"), json!(200)),
            (Value::Null, json!("c1:acme"), json!(404)),
            (json!("acme"), Value::Null, json!(400)),
            (json!("acme"), json!("c1:acme"), json!(200)),
        ]
    );
    let times: Vec<_> = log
        .iter()
        .map(|r| {
            let at = r["received_at"].as_str().expect("a timestamp");
            chrono::DateTime::parse_from_rfc3339(at).expect("RFC 3339")
        })
        .collect();
    assert!(times.windows(2).all(|w| w[0] <= w[1]), "{times:?}");

    assert_eq!(sim.lookups("?idempotency_key=c1:acme").await.len(), 3);
    assert_eq!(sim.lookups("?retailer=acme").await.len(), 3);
    let both = sim.lookups("?idempotency_key=c1:acme&retailer=acme").await;
    assert_eq!(both.len(), 2);
    assert!(sim.lookups("?idempotency_key=nope").await.is_empty());
    // Lookups are not order requests, and reading a log is not a lookup.
    assert_eq!(sim.requests("").await.len(), 1);
    assert_eq!(sim.lookups("").await.len(), 4);
}
