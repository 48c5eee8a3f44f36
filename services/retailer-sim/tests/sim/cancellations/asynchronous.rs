//! Cancellations answered 202 and reported later by signed events to a receiver standing in for
//! ICON's gateway (`cancel-async-`, `cancel-async-refuse-`), and an `async-` order that stops
//! reporting once cancelled.

use super::{assert_reason, body, cancel, headers, lookup, place, signed};
use crate::helpers::{eventually, order_body, order_id, put_secret, settled_event, TestSim};
use crate::receiver::{Received, Receiver};
use hyper::{Method, StatusCode};
use icon_contracts::retailer::cancel_key;
use serde_json::json;

fn kinds(events: &[Received]) -> Vec<String> {
    let kind = |e: &Received| e.json()["type"].as_str().expect("a type").to_owned();
    events.iter().map(kind).collect()
}

#[tokio::test]
async fn cancel_async_is_accepted_then_reported_by_a_signed_order_cancelled() {
    let icon = Receiver::start().await;
    let sim = TestSim::start_reporting_to(icon.addr).await;
    let secret = put_secret(&sim, "acme").await;
    let id = place(&sim, "/orders", "c1:acme", &["cancel-async-dress"]).await;
    icon.hold();

    let accepted = cancel(&sim, "/orders", "c1:acme", Some(&id)).await;
    assert_eq!(accepted.status, StatusCode::ACCEPTED, "{accepted:?}");
    assert_eq!(accepted.body, json!({"status": "accepted"}));

    // The event is in flight (held by the receiver): not cancelled yet, and a repeat is told
    // the same 202 without a second event.
    let [event] = <[Received; 1]>::try_from(icon.wait_for("c1:acme", 1).await).expect("one");
    let still = lookup(&sim, "/orders", "c1:acme").await;
    assert_eq!(still.body, json!({"order_id": id, "status": "confirmed"}));
    let repeat = cancel(&sim, "/orders", "c1:acme", Some(&id)).await;
    assert_eq!(repeat.status, StatusCode::ACCEPTED, "{repeat:?}");

    assert_eq!(event.path, "/retailers/acme/events");
    assert_eq!(event.verify(&secret), Ok(()));
    let sent = event.json();
    assert_eq!(sent["type"], "order.cancelled");
    assert_eq!(sent["idempotency_key"], "c1:acme");
    assert_eq!(sent["order_id"], id.as_str());
    assert!(sent.get("reason").is_none(), "{sent}");

    icon.release();
    eventually("the order cancelled", || async {
        let found = lookup(&sim, "/orders", "c1:acme").await;
        (found.body == json!({"order_id": id, "status": "cancelled"})).then_some(())
    })
    .await;
    let done = cancel(&sim, "/orders", "c1:acme", Some(&id)).await;
    assert_eq!(done.status, StatusCode::OK, "{done:?}");
    assert_eq!(done.body, json!({"status": "cancelled"}));
    assert_eq!(
        icon.for_key("c1:acme").len(),
        1,
        "one event for one cancellation"
    );
    let record = settled_event(&sim, "c1:acme").await;
    assert_eq!(record["type"], "order.cancelled");
    assert_eq!(record["delivered"], true);
}

#[tokio::test]
async fn cancel_async_refuse_is_accepted_then_reported_refused_with_a_reason() {
    let icon = Receiver::start().await;
    let sim = TestSim::start_reporting_to(icon.addr).await;
    let secret = put_secret(&sim, "globex").await;
    let skus = ["mug", "cancel-async-refuse-sofa"];
    let order = order_body("c2", &skus).to_string().into_bytes();
    let placed = sim
        .call(
            Method::POST,
            "/globex/orders",
            &headers(Some("c2:globex"), &signed(&secret, &order)),
            order,
        )
        .await;
    assert_eq!(placed.status, StatusCode::CREATED, "{placed:?}");
    let id = order_id(&placed);

    let request = body("c2:globex", Some(&id));
    let header = cancel_key("c2:globex");
    let path = "/globex/orders/cancellations";
    let sig = signed(&secret, &request);
    let accepted = sim
        .call(Method::POST, path, &headers(Some(&header), &sig), request)
        .await;
    assert_eq!(accepted.status, StatusCode::ACCEPTED, "{accepted:?}");

    let events = icon.wait_for("c2:globex", 1).await;
    assert_eq!(kinds(&events), ["order.cancel_refused"]);
    assert_eq!(events[0].path, "/retailers/globex/events");
    assert_eq!(events[0].verify(&secret), Ok(()));
    assert_eq!(events[0].json()["reason"], "already shipped");
    assert_eq!(events[0].json()["order_id"], id.as_str());

    // Once reported, the refusal is what a repeat is told; the order is still placed.
    settled_event(&sim, "c2:globex").await;
    let request = body("c2:globex", Some(&id));
    let sig = signed(&secret, &request);
    let refused = sim
        .call(Method::POST, path, &headers(Some(&header), &sig), request)
        .await;
    assert_reason(&refused, StatusCode::CONFLICT, "already shipped");
    let sig = signed(&secret, b"");
    let found = sim
        .call(
            Method::GET,
            "/globex/orders?idempotency_key=c2:globex",
            &headers(None, &sig),
            vec![],
        )
        .await;
    assert_eq!(found.body, json!({"order_id": id, "status": "confirmed"}));
}

#[tokio::test]
async fn a_cancelled_async_order_reports_nothing_more() {
    let icon = Receiver::start().await;
    let sim = TestSim::start_reporting_to(icon.addr).await;
    put_secret(&sim, "acme").await;
    let placed = sim
        .order(
            "/orders",
            Some("c1:acme"),
            &order_body("c1", &["async-ship-sofa"]),
        )
        .await;
    assert_eq!(placed.status, StatusCode::ACCEPTED, "{placed:?}");
    let reply = cancel(&sim, "/orders", "c1:acme", Some(&order_id(&placed))).await;
    assert_eq!(reply.status, StatusCode::OK, "{reply:?}");

    // Placed after it, this order's third event comes three delays after the cancelled one
    // would have sent its own.
    let marker = sim
        .order(
            "/orders",
            Some("c2:acme"),
            &order_body("c2", &["async-ship-mug"]),
        )
        .await;
    assert_eq!(marker.status, StatusCode::ACCEPTED);
    icon.wait_for("c2:acme", 3).await;
    assert!(icon.for_key("c1:acme").is_empty());
    let found = lookup(&sim, "/orders", "c1:acme").await;
    assert_eq!(found.body["status"], "cancelled");
}
