//! Events beyond an order's own schedule: on demand (`POST /_sim/retailers/{retailer}/events`,
//! with its ways of getting them wrong), none without a secret, and retries while ICON cannot
//! take one; and the event log, `GET /events`, that shows each.

use crate::helpers::{
    events_log, order_body, order_id, put_secret, settled_event, statuses, TestSim,
};
use crate::receiver::Receiver;
use hyper::{Method, StatusCode};
use icon_webhooks::Unverified;
use serde_json::{json, Value};

#[tokio::test]
async fn events_on_demand_are_sent_as_asked() {
    let icon = Receiver::start().await;
    let sim = TestSim::start_reporting_to(icon.addr).await;
    let secret = put_secret(&sim, "acme").await;
    let placed = sim
        .order(
            "/orders",
            Some("c9:acme"),
            &order_body("c9", &["async-silent-x"]),
        )
        .await;
    let sim = &sim;
    let send = move |body: Value| async move {
        sim.send_json(Method::POST, "/_sim/retailers/acme/events", &body)
            .await
    };

    // Two copies: the same bytes and webhook-id twice, each signed; order_id from the book.
    let tracking = json!({"carrier": "DHL", "number": "123"});
    let reply = send(
        json!({"type": "order.shipped", "idempotency_key": "c9:acme",
        "tracking": tracking, "copies": 2}),
    )
    .await;
    assert_eq!(reply.status, StatusCode::OK, "{reply:?}");
    let webhook_id = reply.body["webhook_id"].as_str().expect("an id").to_owned();
    let ok = json!({"status": 200, "body": {"status": "recorded"}, "error": null});
    assert_eq!(reply.body["sent"], json!([ok, ok]));
    let copies = icon.wait_for("c9:acme", 2).await;
    for copy in &copies {
        assert_eq!(copy.header("webhook-id"), Some(webhook_id.as_str()));
        assert_eq!(copy.verify(&secret), Ok(()));
        assert_eq!(copy.body, copies[0].body);
    }
    let sent = copies[0].json();
    assert_eq!(sent["order_id"], order_id(&placed).as_str());
    assert_eq!(sent["tracking"], tracking);
    let record = &events_log(sim, "c9:acme").await[0];
    assert_eq!(record["source"], "api");
    assert_eq!(statuses(record), [json!(200), json!(200)]);

    // Forged: well formed, signed with another secret.
    let reply = send(
        json!({"type": "order.cancelled", "idempotency_key": "c10:acme",
        "reason": "changed mind", "signature": "forged"}),
    )
    .await;
    assert_eq!(reply.status, StatusCode::OK);
    let forged = &icon.wait_for("c10:acme", 1).await[0];
    assert!(forged.header("webhook-signature").is_some());
    assert_eq!(forged.verify(&secret), Err(Unverified::BadSignature));
    assert_eq!(forged.json()["reason"], "changed mind");
    assert_eq!(forged.json().get("order_id"), None, "no order for c10");

    // Missing: no signature headers at all.
    let reply = send(
        json!({"type": "order.delivered", "idempotency_key": "c11:acme",
        "signature": "missing"}),
    )
    .await;
    assert_eq!(reply.status, StatusCode::OK);
    let unsigned = &icon.wait_for("c11:acme", 1).await[0];
    for header in ["webhook-id", "webhook-timestamp", "webhook-signature"] {
        assert_eq!(unsigned.header(header), None, "{header}");
    }

    // A replayed one: an old timestamp (and the id it had), validly signed.
    let reply = send(
        json!({"type": "order.refunded", "idempotency_key": "c12:acme",
        "refund": {"amount_minor": 1999, "currency": "GBP"},
        "webhook_id": "evt_replayed", "timestamp_offset_secs": -600}),
    )
    .await;
    assert_eq!(reply.body["webhook_id"], "evt_replayed");
    let stale = &icon.wait_for("c12:acme", 1).await[0];
    assert_eq!(stale.header("webhook-id"), Some("evt_replayed"));
    let timestamp: i64 = stale
        .header("webhook-timestamp")
        .expect("ts")
        .parse()
        .expect("a number");
    let expected = chrono::Utc::now().timestamp() - 600;
    assert!(
        (expected - 60..=expected).contains(&timestamp),
        "{timestamp}"
    );
    assert_eq!(stale.verify(&secret), Err(Unverified::Stale));
    assert_eq!(stale.json()["refund"]["amount_minor"], 1999);

    // A raw body, sent and signed byte for byte; ICON's answer comes back as it was.
    icon.answer_next(&[422]);
    let reply = send(json!({"raw_body": "{not json"})).await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(
        reply.body["sent"],
        json!([{"status": 422, "body": {"title": "simulated", "status": 422}, "error": null}])
    );
    let raw = icon.received().pop().expect("the raw one");
    assert_eq!(&raw.body[..], b"{not json");
    assert_eq!(raw.verify(&secret), Ok(()));

    // Bad input names the field; a valid signature needs the retailer's secret.
    let reply = send(json!({"type": "order.confirmed", "idempotency_key": "k", "copies": 0})).await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST);
    assert_eq!(reply.headers["content-type"], "application/problem+json");
    assert_eq!(reply.body["field"], "copies");
    assert!(reply.body["title"].is_string());
    assert!(reply.body["detail"]
        .as_str()
        .expect("detail")
        .contains("copies"));
    let path = "/_sim/retailers/nobody/events";
    let event = json!({"type": "order.confirmed", "idempotency_key": "c13:nobody"});
    let reply = sim.send_json(Method::POST, path, &event).await;
    assert_eq!(reply.status, StatusCode::CONFLICT, "{reply:?}");
    assert_eq!(reply.headers["content-type"], "application/problem+json");
    let why = "no signing secret for retailer nobody: PUT /_sim/retailers/nobody/secret first";
    assert_eq!(reply.body["detail"], why);
    assert!(icon.for_key("c13:nobody").is_empty());
    assert_eq!(events_log(sim, "c13:nobody").await[0]["error"], why);
}

#[tokio::test]
async fn without_a_secret_nothing_is_sent_and_the_log_says_why() {
    let icon = Receiver::start().await;
    let sim = TestSim::start_reporting_to(icon.addr).await;
    let placed = sim
        .order(
            "/orders",
            Some("c14:nobody"),
            &order_body("c14", &["async-vase"]),
        )
        .await;
    assert_eq!(placed.status, StatusCode::ACCEPTED);

    let record = settled_event(&sim, "c14:nobody").await;
    assert_eq!(
        record["error"],
        "no signing secret for retailer nobody: PUT /_sim/retailers/nobody/secret first"
    );
    assert_eq!(record["retailer"], "nobody");
    assert_eq!(record["type"], "order.confirmed");
    assert_eq!(record["delivered"], false);
    assert_eq!(record["tries"], json!([]));
    assert_eq!(record["url"], Value::Null);
    assert!(icon.received().is_empty());
    // The retailer's own record moved on all the same: a lookup tells.
    let confirmed = sim.get("/orders?idempotency_key=c14:nobody").await;
    assert_eq!(confirmed.status, StatusCode::OK);
    assert_eq!(confirmed.body["status"], "confirmed");
}

#[tokio::test]
async fn an_event_icon_could_not_take_is_retried_with_its_webhook_id_and_a_refusal_is_not() {
    let icon = Receiver::start().await;
    let sim = TestSim::start_reporting_to(icon.addr).await;
    let secret = put_secret(&sim, "acme").await;

    icon.answer_next(&[503, 503]);
    let placed = sim
        .order(
            "/orders",
            Some("c15:acme"),
            &order_body("c15", &["async-bowl"]),
        )
        .await;
    assert_eq!(placed.status, StatusCode::ACCEPTED);
    let tries = icon.wait_for("c15:acme", 3).await;
    let first_id = tries[0].header("webhook-id").expect("an id");
    for tried in &tries {
        assert_eq!(tried.header("webhook-id"), Some(first_id));
        assert_eq!(tried.verify(&secret), Ok(()));
        assert_eq!(tried.body, tries[0].body);
    }
    let record = settled_event(&sim, "c15:acme").await;
    assert_eq!(statuses(&record), [json!(503), json!(503), json!(200)]);
    assert_eq!(record["delivered"], true);
    assert_eq!(record["error"], Value::Null);

    icon.answer_next(&[404]);
    let placed = sim
        .order(
            "/orders",
            Some("c16:acme"),
            &order_body("c16", &["async-bowl"]),
        )
        .await;
    assert_eq!(placed.status, StatusCode::ACCEPTED);
    let record = settled_event(&sim, "c16:acme").await;
    assert_eq!(statuses(&record), [json!(404)]);
    assert_eq!(record["delivered"], false);
    let error = record["error"].as_str().expect("an error");
    assert!(error.contains("404"), "{error}");
    assert_eq!(icon.for_key("c16:acme").len(), 1);
}
