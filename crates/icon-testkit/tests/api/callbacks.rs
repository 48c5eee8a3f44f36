//! The callback's retry schedule through the delay tiers: retries with one webhook-id,
//! Retry-After, 410 Gone, giving up and parking.

use icon_contracts::topology::PARKED;
use icon_testkit::{Options, Receiver, Scripted, Sim, TestApp};
use std::time::Duration;

async fn app_with(opts: Options) -> (TestApp, Sim, i64) {
    let app = TestApp::spawn_with(opts).await;
    let sim = Sim::start().await;
    app.register_retailer("acme", &sim.order_url("acme")).await;
    let cart = app.cart_with("alice", &[("acme", "dress")]).await;
    (app, sim, cart)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_callbacks_are_retried_with_the_same_webhook_id() {
    let (app, _sim, cart) = app_with(Options::default()).await;
    let receiver = Receiver::start(vec![Scripted::status(500), Scripted::status(502)], None).await;
    let r = app.checkout("alice", cart, Some(&receiver.url)).await;
    let id = r.json["checkout_id"].as_str().unwrap().to_owned();
    let seen = receiver.wait_for(3, Duration::from_secs(20)).await;
    assert_eq!(
        seen.iter().map(|s| s.answered).collect::<Vec<_>>(),
        vec![500, 502, 200]
    );
    let ids: Vec<_> = seen.iter().map(|s| s.webhook_id.clone().unwrap()).collect();
    assert!(
        ids.iter().all(|i| *i == ids[0]),
        "one webhook-id across retries: {ids:?}"
    );
    assert!(
        seen.iter().all(|s| s.body == seen[0].body),
        "same payload on every attempt"
    );

    let view = app
        .wait_for_checkout("alice", &id, "delivered", |c| {
            c["callback"]["state"] == "delivered"
        })
        .await;
    assert_eq!(view["callback"]["attempts"], 3);
    assert!(view["callback"]["next_attempt_at"].is_null());
    let attempts = app
        .api
        .get(
            &format!("/cart/checkout/{id}/attempts"),
            Some(&app.token("alice")),
        )
        .await;
    let statuses: Vec<_> = attempts.json["attempts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["response_status"].as_i64().unwrap())
        .collect();
    assert_eq!(statuses, vec![500, 502, 200]);
    // Exactly three: the delivered notification is not attempted again.
    assert_eq!(receiver.seen().len(), 3);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_state_is_visible_while_waiting() {
    let (app, _sim, cart) = app_with(Options {
        retry_schedule: "1h".into(),
        ..Options::default()
    })
    .await;
    let receiver = Receiver::start(vec![], Some(Scripted::status(500))).await;
    let r = app.checkout("alice", cart, Some(&receiver.url)).await;
    let id = r.json["checkout_id"].as_str().unwrap();
    let view = app
        .wait_for_checkout("alice", id, "retrying", |c| {
            c["callback"]["state"] == "retrying"
        })
        .await;
    assert_eq!(view["callback"]["attempts"], 1);
    assert_eq!(view["callback"]["last_response_status"], 500);
    let next =
        chrono::DateTime::parse_from_rfc3339(view["callback"]["next_attempt_at"].as_str().unwrap())
            .unwrap();
    let wait = next.signed_duration_since(chrono::Utc::now());
    assert!(
        wait > chrono::Duration::minutes(55),
        "next attempt about an hour out: {wait}"
    );
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_after_is_honoured() {
    let (app, _sim, cart) = app_with(Options {
        retry_schedule: "50ms".into(),
        ..Options::default()
    })
    .await;
    let receiver = Receiver::start(
        vec![Scripted {
            status: 503,
            retry_after: Some(1),
        }],
        None,
    )
    .await;
    app.checkout("alice", cart, Some(&receiver.url)).await;
    let seen = receiver.wait_for(2, Duration::from_secs(20)).await;
    let gap = seen[1].at - seen[0].at;
    // The schedule alone would retry after 50ms; the receiver asked for 1s.
    assert!(gap >= Duration::from_millis(950), "retried after {gap:?}");
    assert_eq!(seen[1].answered, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gone_stops_at_once_and_parks() {
    let (app, _sim, cart) = app_with(Options::default()).await;
    let receiver = Receiver::start(vec![], Some(Scripted::status(410))).await;
    let r = app.checkout("alice", cart, Some(&receiver.url)).await;
    let id = r.json["checkout_id"].as_str().unwrap().to_owned();
    let view = app
        .wait_for_checkout("alice", &id, "failed", |c| {
            c["callback"]["state"] == "failed"
        })
        .await;
    assert_eq!(view["callback"]["attempts"], 1);
    assert_eq!(view["callback"]["last_response_status"], 410);
    let parked = app.env.drain_queue(PARKED).await;
    assert_eq!(parked.len(), 1);
    assert_eq!(parked[0]["data"]["checkout_id"], id.as_str());
    assert!(parked[0]["data"]["reason"]
        .as_str()
        .unwrap()
        .contains("410"));
    assert_eq!(receiver.seen().len(), 1, "410 is never retried");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gives_up_after_the_deadline_and_parks() {
    let (app, _sim, cart) = app_with(Options {
        retry_schedule: "100ms".into(),
        give_up_after: "700ms".into(),
        ..Options::default()
    })
    .await;
    // A receiver that is not there: every attempt is a connection error.
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://{}/hook", l.local_addr().unwrap())
    };
    let r = app.checkout("alice", cart, Some(&closed)).await;
    let id = r.json["checkout_id"].as_str().unwrap().to_owned();
    let view = app
        .wait_for_checkout("alice", &id, "given up", |c| {
            c["callback"]["state"] == "failed"
        })
        .await;
    let attempts = view["callback"]["attempts"].as_i64().unwrap();
    assert!(attempts >= 2, "retried until the deadline: {attempts}");
    let listed = app
        .api
        .get(
            &format!("/cart/checkout/{id}/attempts"),
            Some(&app.token("alice")),
        )
        .await;
    let list = listed.json["attempts"].as_array().unwrap();
    assert_eq!(list.len() as i64, attempts);
    assert!(list
        .iter()
        .all(|a| a["response_status"].is_null() && a["error"].as_str().is_some()));
    let parked = app.env.drain_queue(PARKED).await;
    assert_eq!(parked.len(), 1);
    assert!(parked[0]["data"]["reason"]
        .as_str()
        .unwrap()
        .contains("no 2xx within"));
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redirects_are_not_followed() {
    let (app, _sim, cart) = app_with(Options::default()).await;
    // A 302 is an answer like any other non-2xx: retried at the same URL, never followed.
    let receiver = Receiver::start(vec![Scripted::status(302)], None).await;
    let r = app.checkout("alice", cart, Some(&receiver.url)).await;
    let id = r.json["checkout_id"].as_str().unwrap().to_owned();
    app.wait_for_checkout("alice", &id, "delivered", |c| {
        c["callback"]["state"] == "delivered"
    })
    .await;
    let seen = receiver.seen();
    assert_eq!(
        seen.iter().map(|s| s.answered).collect::<Vec<_>>(),
        vec![302, 200]
    );
    app.stop().await;
}
