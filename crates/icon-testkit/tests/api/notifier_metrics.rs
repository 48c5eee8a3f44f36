//! The notifier's `/metrics` on `ICON_PROBE_ADDR` (docs/metrics.md), fed by real checkouts and
//! callbacks: attempts by outcome, retries by tier, finish-to-delivered, and the parked gauge
//! through a give-up and a redeliver. The registry is one per process and the API tests share a
//! process, so counts are checked as "at least"; the parked gauge, read from the test's own
//! database at each scrape, is checked exactly.

use icon_testkit::metrics::{free_port, sample, scrape, value};
use icon_testkit::{eventually, Options, Receiver, Scripted, Sim, TestApp};
use serde_json::json;
use std::time::Duration;

/// Scrapes until the parked gauge of `channel` reads `want`, and returns that scrape. The gauge
/// is read from this test's database at each scrape, but the registry is the process's: another
/// test's notifier scraped at the same moment may set it in between, so one scrape could show
/// that test's count.
async fn scrape_with_parked(probe: &str, channel: &str, want: f64) -> String {
    let series = format!(r#"icon_notifications_parked{{channel="{channel}"}}"#);
    eventually(
        &format!("{series} to read {want}"),
        Duration::from_secs(10),
        || async {
            let text = scrape(probe).await;
            (sample(&text, &series) == Some(want)).then_some(text)
        },
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_notifier_counts_attempts_retries_and_parked_callbacks() {
    let probe = format!("127.0.0.1:{}", free_port());
    let mut app = TestApp::spawn_with(Options {
        retry_schedule: "100ms".into(),
        // Only the notifier serves ICON_PROBE_ADDR here (the worker would bind it too): it is
        // started below, after the worker, with the variable set.
        start_notifier: false,
        ..Options::default()
    })
    .await;
    app.set_var("ICON_PROBE_ADDR", &probe);
    app.start_notifier();
    let sim = Sim::start().await;
    app.register_retailer("notify-shop", &sim.order_url("notify-shop"))
        .await;
    let cart = app.cart_with("noa", &[("notify-shop", "hat-1")]).await;
    // A 500 (retried through the 100ms tier), then 410 Gone (given up and parked), then 200 for
    // the redelivery.
    let receiver = Receiver::start(vec![Scripted::status(500), Scripted::status(410)], None).await;
    let r = app.checkout("noa", cart, Some(&receiver.url)).await;
    assert_eq!(r.status, 202, "{r:?}");
    let id = r.json["checkout_id"]
        .as_str()
        .expect("checkout_id")
        .to_owned();
    app.wait_for_checkout("noa", &id, "the callback given up", |c| {
        c["callback"]["state"] == "failed"
    })
    .await;

    // Read from this test's database when scraped: exact.
    let text = scrape_with_parked(&probe, "callback", 1.0).await;
    assert_eq!(
        value(&text, r#"icon_notifications_parked{channel="push"}"#),
        0.0
    );
    for (series, at_least) in [
        (
            r#"icon_notification_attempts_total{channel="callback",outcome="failed"}"#,
            1.0,
        ),
        (
            r#"icon_notification_attempts_total{channel="callback",outcome="gone"}"#,
            1.0,
        ),
        (
            r#"icon_notification_retries_total{channel="callback",tier="100ms"}"#,
            1.0,
        ),
        // Registered at start-up, so a rate() has a zero to start from.
        (
            r#"icon_notification_attempts_total{channel="email",outcome="refused"}"#,
            0.0,
        ),
        (r#"icon_push_sends_total{outcome="unregistered"}"#, 0.0),
        (r#"icon_deliveries_in_flight{channel="callback"}"#, 0.0),
        (
            r#"icon_notification_finish_to_delivered_seconds_count{channel="push"}"#,
            0.0,
        ),
        (r#"icon_queue_messages{queue="checkout.finished"}"#, 0.0),
        ("icon_ready", 1.0),
    ] {
        let v = value(&text, series);
        assert!(v >= at_least, "{series} = {v}, expected ≥ {at_least}");
    }

    // Redelivered: off the parked count at once (same transaction), then delivered.
    let r = app
        .api
        .post(
            &format!("/cart/checkout/{id}/callback/redeliver"),
            Some(&app.token("noa")),
            &json!({}),
        )
        .await;
    assert_eq!(r.status, 202, "{r:?}");
    app.wait_for_checkout("noa", &id, "the redelivered callback delivered", |c| {
        c["callback"]["state"] == "delivered"
    })
    .await;
    let text = scrape_with_parked(&probe, "callback", 0.0).await;
    for series in [
        r#"icon_notification_attempts_total{channel="callback",outcome="delivered"}"#,
        r#"icon_notification_finish_to_delivered_seconds_count{channel="callback"}"#,
    ] {
        let v = value(&text, series);
        assert!(v >= 1.0, "{series} = {v}, expected ≥ 1");
    }
    assert_eq!(receiver.seen().len(), 3);
    // No id is ever a label.
    assert!(!text.contains(&id), "a checkout id leaked into a label");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_callback_the_policy_refuses_is_counted_refused_and_parked() {
    let probe = format!("127.0.0.1:{}", free_port());
    let mut app = TestApp::spawn_with(Options {
        start_notifier: false,
        ..Options::default()
    })
    .await;
    let sim = Sim::start().await;
    app.register_retailer("refuse-shop", &sim.order_url("refuse-shop"))
        .await;
    let cart = app.cart_with("rex", &[("refuse-shop", "cap-1")]).await;
    let receiver = Receiver::start(vec![], None).await;
    let r = app.checkout("rex", cart, Some(&receiver.url)).await;
    assert_eq!(r.status, 202, "accepted while http was allowed: {r:?}");
    let id = r.json["checkout_id"]
        .as_str()
        .expect("checkout_id")
        .to_owned();
    // The operator turns plain http off before the notifier delivers: nothing is sent.
    app.set_var("ICON_CALLBACK_ALLOW_HTTP", "false");
    app.set_var("ICON_PROBE_ADDR", &probe);
    app.start_notifier();
    app.wait_for_checkout("rex", &id, "the callback given up", |c| {
        c["callback"]["state"] == "failed"
    })
    .await;
    let text = scrape_with_parked(&probe, "callback", 1.0).await;
    let refused = value(
        &text,
        r#"icon_notification_attempts_total{channel="callback",outcome="refused"}"#,
    );
    assert!(refused >= 1.0, "refused = {refused}");
    assert!(receiver.seen().is_empty(), "nothing was sent over http");
    app.stop().await;
}
