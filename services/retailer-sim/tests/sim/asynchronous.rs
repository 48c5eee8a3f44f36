//! Asynchronous retailers (issue 17 §2): `async-` orders answered 202 and reported later by
//! signed events to a receiver standing in for ICON's gateway, lookups and replays that follow
//! the order.

use crate::helpers::{
    eventually, order_body, order_id, put_secret, settled_event, statuses, Reply, TestSim,
};
use crate::receiver::{Received, Receiver};
use hyper::{Method, StatusCode};
use icon_webhooks::{SigningSecrets, WebhookSecret};
use serde_json::{json, Value};
use std::collections::HashSet;

/// A request signed as ICON signs them, for a retailer whose secret the simulator knows.
async fn signed(
    sim: &TestSim,
    secret: &WebhookSecret,
    method: Method,
    path: &str,
    key: Option<&str>,
    body: Vec<u8>,
) -> Reply {
    let signing = SigningSecrets {
        current: secret.clone(),
        previous: None,
    };
    let id = format!("msg_{}", uuid::Uuid::new_v4().simple());
    let headers = signing.signed_headers(id, chrono::Utc::now().timestamp(), &body);
    let mut all: Vec<(&str, &str)> = headers.iter().map(|(n, v)| (*n, v.as_str())).collect();
    all.push(("content-type", "application/json"));
    if let Some(key) = key {
        all.push(("idempotency-key", key));
    }
    sim.call(method, path, &all, body).await
}

async fn lookup(sim: &TestSim, key: &str) -> Reply {
    let reply = sim.get(&format!("/orders?idempotency_key={key}")).await;
    assert_eq!(reply.status, StatusCode::OK, "{reply:?}");
    reply
}

/// Waits until the lookup for `key` shows `status`, and returns its body.
async fn lookup_until(sim: &TestSim, key: &str, status: &str) -> Value {
    eventually(&format!("{key} {status}"), || async {
        let reply = lookup(sim, key).await;
        (reply.body["status"] == status).then_some(reply.body)
    })
    .await
}

fn kinds(events: &[Received]) -> Vec<String> {
    events
        .iter()
        .map(|e| e.json()["type"].as_str().expect("a type").to_owned())
        .collect()
}

#[tokio::test]
async fn an_async_order_is_accepted_then_confirmed_by_a_signed_event() {
    let icon = Receiver::start().await;
    let sim = TestSim::start_reporting_to(icon.addr).await;
    let secret = put_secret(&sim, "acme").await;
    icon.hold();

    let body = order_body("c1", &["async-dress"]);
    let placed = sim.order("/orders", Some("c1:acme"), &body).await;
    assert_eq!(placed.status, StatusCode::ACCEPTED, "{placed:?}");
    let id = order_id(&placed);
    assert!(id.starts_with("sim-"), "{id}");
    assert_eq!(placed.body, json!({"order_id": id, "status": "accepted"}));

    // The confirmation is in flight (held by the receiver): the order is still accepted.
    let [event] = <[Received; 1]>::try_from(icon.wait_for("c1:acme", 1).await).expect("one");
    let still = lookup(&sim, "c1:acme").await;
    assert_eq!(still.body, json!({"order_id": id, "status": "accepted"}));

    // Sent as the retailer of the key (`/orders` names none), signed with its secret.
    assert_eq!(event.path, "/retailers/acme/events");
    assert_eq!(event.header("content-type"), Some("application/json"));
    assert_eq!(event.verify(&secret), Ok(()));
    let webhook_id = event.header("webhook-id").expect("webhook-id").to_owned();
    assert!(webhook_id.starts_with("evt_"), "{webhook_id}");
    let sent = event.json();
    assert_eq!(sent["type"], "order.confirmed");
    assert_eq!(sent["idempotency_key"], "c1:acme");
    assert_eq!(sent["order_id"], id.as_str());
    let at = sent["occurred_at"].as_str().expect("occurred_at");
    chrono::DateTime::parse_from_rfc3339(at).expect("RFC 3339");

    icon.release();
    let confirmed = lookup_until(&sim, "c1:acme", "confirmed").await;
    assert_eq!(confirmed, json!({"order_id": id, "status": "confirmed"}));

    let record = settled_event(&sim, "c1:acme").await;
    assert_eq!(record["source"], "order");
    assert_eq!(record["retailer"], "acme");
    assert_eq!(record["webhook_id"], webhook_id.as_str());
    assert_eq!(record["type"], "order.confirmed");
    assert_eq!(record["order_id"], id.as_str());
    assert_eq!(record["delivered"], true);
    assert_eq!(record["error"], Value::Null);
    assert_eq!(statuses(&record), [json!(200)]);
    assert_eq!(
        record["body"],
        String::from_utf8_lossy(&event.body).as_ref()
    );
    let url = format!("http://{}/retailers/acme/events", icon.addr);
    assert_eq!(record["url"], url);
    assert_eq!(sim.log("/events").await.len(), 1);
}

#[tokio::test]
async fn async_ship_reports_confirmed_shipped_and_delivered_in_order() {
    let icon = Receiver::start().await;
    let sim = TestSim::start_reporting_to(icon.addr).await;
    // A retailer of the path this time, whose secret the simulator knows: requests are signed.
    let secret = put_secret(&sim, "globex").await;
    let body = order_body("c2", &["async-ship-sofa"])
        .to_string()
        .into_bytes();
    let placed = signed(
        &sim,
        &secret,
        Method::POST,
        "/globex/orders",
        Some("c2:globex"),
        body,
    )
    .await;
    assert_eq!(placed.status, StatusCode::ACCEPTED, "{placed:?}");
    let id = order_id(&placed);

    let events = icon.wait_for("c2:globex", 3).await;
    assert_eq!(
        kinds(&events),
        ["order.confirmed", "order.shipped", "order.delivered"]
    );
    let mut ids = HashSet::new();
    let mut times = vec![];
    for event in &events {
        assert_eq!(event.path, "/retailers/globex/events");
        assert_eq!(event.verify(&secret), Ok(()), "{event:?}");
        ids.insert(event.header("webhook-id").expect("an id").to_owned());
        let body = event.json();
        assert_eq!(body["order_id"], id.as_str());
        let at = body["occurred_at"].as_str().expect("occurred_at");
        times.push(chrono::DateTime::parse_from_rfc3339(at).expect("RFC 3339"));
    }
    assert_eq!(ids.len(), 3, "one webhook-id per event");
    assert!(times.windows(2).all(|w| w[0] <= w[1]), "{times:?}");
    let tracking = &events[1].json()["tracking"];
    assert_eq!(tracking["carrier"], "SIM");
    let number = tracking["number"].as_str().expect("a number");
    assert!(!number.is_empty());
    assert_eq!(
        tracking["url"],
        format!("http://127.0.0.1/track/{number}").as_str()
    );
    assert!(events[0].json().get("tracking").is_none());

    let path = "/globex/orders?idempotency_key=c2:globex";
    let delivered = eventually("delivered", || async {
        let reply = signed(&sim, &secret, Method::GET, path, None, vec![]).await;
        (reply.body["status"] == "delivered").then_some(reply)
    })
    .await;
    assert_eq!(delivered.status, StatusCode::OK);
    assert_eq!(order_id(&delivered), id);
    // The key belongs to globex's key space only.
    let elsewhere = sim.get("/orders?idempotency_key=c2:globex").await;
    assert_eq!(elsewhere.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn async_reject_reports_a_rejection_with_a_reason_and_replays_it() {
    let icon = Receiver::start().await;
    let sim = TestSim::start_reporting_to(icon.addr).await;
    let secret = put_secret(&sim, "acme").await;
    let body = order_body("c3", &["plain-mug", "async-reject-hat"]);
    let placed = sim.order("/orders", Some("c3:acme"), &body).await;
    assert_eq!(placed.status, StatusCode::ACCEPTED);
    let id = order_id(&placed);

    let events = icon.wait_for("c3:acme", 1).await;
    assert_eq!(kinds(&events), ["order.rejected"]);
    assert_eq!(events[0].verify(&secret), Ok(()));
    let reason = "out of stock: async-reject-hat";
    assert_eq!(events[0].json()["reason"], reason);

    let rejected = lookup_until(&sim, "c3:acme", "rejected").await;
    assert_eq!(
        rejected,
        json!({"order_id": id, "status": "rejected", "reason": reason})
    );
    // ICON re-sending the key learns the refusal as a synchronous retailer would say it.
    let again = sim.order("/orders", Some("c3:acme"), &body).await;
    assert_eq!(again.status, StatusCode::UNPROCESSABLE_ENTITY, "{again:?}");
    assert_eq!(again.body["reason"], reason);
    let log = sim.requests("?idempotency_key=c3:acme").await;
    assert!(log.iter().all(|r| r["order_id"] == id.as_str()), "{log:?}");
}

#[tokio::test]
async fn async_silent_never_reports_and_stays_accepted() {
    let icon = Receiver::start().await;
    let sim = TestSim::start_reporting_to(icon.addr).await;
    put_secret(&sim, "acme").await;
    let silent = sim
        .order(
            "/orders",
            Some("c4:acme"),
            &order_body("c4", &["async-silent-mug"]),
        )
        .await;
    assert_eq!(silent.status, StatusCode::ACCEPTED);
    // Placed after the silent one, this order's third event comes three delays after it: by
    // then the silent order has had as long to report anything.
    let marker = sim
        .order(
            "/orders",
            Some("c5:acme"),
            &order_body("c5", &["async-ship-mug"]),
        )
        .await;
    assert_eq!(marker.status, StatusCode::ACCEPTED);
    icon.wait_for("c5:acme", 3).await;

    assert!(icon.for_key("c4:acme").is_empty());
    assert!(sim.log("/events?idempotency_key=c4:acme").await.is_empty());
    let still = lookup(&sim, "c4:acme").await;
    assert_eq!(
        still.body,
        json!({"order_id": order_id(&silent), "status": "accepted"})
    );
}

#[tokio::test]
async fn a_resent_key_replays_the_order_as_it_stands_and_places_no_second_one() {
    let icon = Receiver::start().await;
    let sim = TestSim::start_reporting_to(icon.addr).await;
    put_secret(&sim, "acme").await;

    // Two at once, then one more: one order, the same 202 for every answered one.
    let body = order_body("c6", &["async-silent-lamp"]);
    let (a, b) = (
        sim.spawn_order("/orders", "c6:acme", &body),
        sim.spawn_order("/orders", "c6:acme", &body),
    );
    let mut answers = vec![];
    for reply in [a.await, b.await] {
        answers.push(reply.expect("joined").expect("answered"));
    }
    answers.push(sim.order("/orders", Some("c6:acme"), &body).await);
    let accepted: Vec<&Reply> = answers
        .iter()
        .filter(|r| r.status == StatusCode::ACCEPTED)
        .collect();
    // A concurrent request may be told 409 (in progress), never anything else.
    assert!(
        answers
            .iter()
            .all(|r| r.status == StatusCode::ACCEPTED || r.status == StatusCode::CONFLICT),
        "{answers:?}"
    );
    assert!(accepted.len() >= 2, "{answers:?}");
    assert!(
        accepted.iter().all(|r| r.body == accepted[0].body),
        "{answers:?}"
    );
    let log = sim.requests("?idempotency_key=c6:acme").await;
    let ids: HashSet<&str> = log.iter().filter_map(|r| r["order_id"].as_str()).collect();
    assert_eq!(ids.len(), 1, "{log:?}");

    // Once confirmed, a re-sent key is answered with the confirmation, and starts nothing new.
    let body = order_body("c7", &["async-lamp"]);
    let placed = sim.order("/orders", Some("c7:acme"), &body).await;
    assert_eq!(placed.status, StatusCode::ACCEPTED);
    icon.wait_for("c7:acme", 1).await;
    lookup_until(&sim, "c7:acme", "confirmed").await;
    let again = sim.order("/orders", Some("c7:acme"), &body).await;
    assert_eq!(again.status, StatusCode::OK);
    assert_eq!(
        again.body,
        json!({"order_id": order_id(&placed), "status": "confirmed"})
    );
    // A later order's event arriving shows a second one for c7 would have had its time.
    let marker = sim
        .order(
            "/orders",
            Some("c8:acme"),
            &order_body("c8", &["async-lamp"]),
        )
        .await;
    assert_eq!(marker.status, StatusCode::ACCEPTED);
    icon.wait_for("c8:acme", 1).await;
    assert_eq!(icon.for_key("c7:acme").len(), 1);
}
