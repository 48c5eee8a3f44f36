//! `/metrics`: the families of docs/metrics.md, fed by a real checkout. The registry is one per
//! process and the API tests share a process, so counts are checked as "at least", never exact.

use icon_testkit::metrics::{free_port, sample};
use icon_testkit::{eventually, Api, Options, Sim, TestApp};
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_worker_counts_retailer_calls_and_finished_checkouts() {
    let probe = format!("127.0.0.1:{}", free_port());
    let app = TestApp::spawn_with(Options {
        // Only the worker serves ICON_PROBE_ADDR here (the notifier would bind it too).
        start_notifier: false,
        extra: vec![("ICON_PROBE_ADDR", probe.clone())],
        ..Options::default()
    })
    .await;
    let sim = Sim::start().await;
    app.register_retailer("metrics-shop", &sim.order_url("metrics-shop"))
        .await;
    let cart = app.cart_with("mia", &[("metrics-shop", "scarf-1")]).await;
    let r = app.checkout("mia", cart, None).await;
    assert_eq!(r.status, 202, "{r:?}");
    let id = r.json["checkout_id"]
        .as_str()
        .expect("checkout_id")
        .to_owned();
    let token = app.token("mia");
    eventually("the checkout to complete", Duration::from_secs(20), || {
        let (api, token, id) = (app.api.clone(), token.clone(), id.clone());
        async move {
            let r = api.get(&format!("/cart/checkout/{id}"), Some(&token)).await;
            (r.json["status"] == "completed").then_some(())
        }
    })
    .await;

    let probe_api = Api::new(&format!("http://{probe}"));
    let m = probe_api.get("/metrics", None).await;
    assert_eq!(m.status, 200, "{m:?}");
    assert!(
        m.header("content-type")
            .is_some_and(|v| v.starts_with("application/openmetrics-text")),
        "{m:?}"
    );
    let text = &m.text;
    for (series, at_least) in [
        (
            r#"icon_retailer_calls_total{retailer="metrics-shop",step="place",outcome="accepted"}"#,
            1.0,
        ),
        (
            r#"icon_retailer_call_duration_seconds_count{retailer="metrics-shop",step="place"}"#,
            1.0,
        ),
        (r#"icon_checkouts_finished_total{status="completed"}"#, 1.0),
        (
            r#"icon_checkout_accept_to_final_seconds_count{status="completed"}"#,
            1.0,
        ),
        // Registered at start-up, so a rate() has a zero to start from.
        (r#"icon_checkouts_finished_total{status="failed"}"#, 0.0),
        (r#"icon_queue_messages{queue="checkout.requested"}"#, 0.0),
        ("icon_orders_unknown", 0.0),
        ("icon_outbox_backlog", 0.0),
        ("icon_outbox_oldest_age_seconds", 0.0),
        ("icon_ready", 1.0),
    ] {
        let value = sample(text, series).unwrap_or_else(|| panic!("no `{series}` in:\n{text}"));
        assert!(
            value >= at_least,
            "{series} = {value}, expected ≥ {at_least}"
        );
    }
    // No id is ever a label.
    assert!(!text.contains(&id), "a checkout id leaked into a label");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_gateway_counts_requests_by_route_pattern_and_accepted_checkouts() {
    let app = TestApp::spawn_with(Options {
        start_notifier: false,
        ..Options::default()
    })
    .await;
    let sim = Sim::start().await;
    app.register_retailer("gw-metrics", &sim.order_url("gw-metrics"))
        .await;
    let cart = app.cart_with("gus", &[("gw-metrics", "hat-1")]).await;
    let r = app.checkout("gus", cart, None).await;
    assert_eq!(r.status, 202, "{r:?}");
    let id = r.json["checkout_id"]
        .as_str()
        .expect("checkout_id")
        .to_owned();
    let token = app.token("gus");
    let r = app
        .api
        .get(&format!("/cart/checkout/{id}"), Some(&token))
        .await;
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(app.api.get("/no/such/path/7f3a", None).await.status, 404);

    let m = app.api.get("/metrics", None).await;
    assert_eq!(m.status, 200, "{m:?}");
    let text = &m.text;
    let count = |prefix: &str, status: &str| -> f64 {
        text.lines()
            .filter(|l| l.starts_with(prefix) && l.contains(&format!("status=\"{status}\"")))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    };
    assert!(
        count(r#"icon_http_requests_total{route="/cart/checkout"#, "202") >= 1.0,
        "{text}"
    );
    assert!(
        count(
            r#"icon_http_requests_total{route="/cart/checkout/{checkout_id}",method="GET""#,
            "200"
        ) >= 1.0,
        "{text}"
    );
    assert!(
        count(r#"icon_http_requests_total{route="unmatched""#, "404") >= 1.0,
        "{text}"
    );
    assert!(
        text.contains("# TYPE icon_http_request_duration_seconds histogram"),
        "{text}"
    );
    assert!(sample(text, "icon_checkouts_accepted_total").is_some_and(|v| v >= 1.0));
    assert!(
        sample(text, "icon_ready").is_some_and(|v| v == 1.0),
        "{text}"
    );
    assert!(sample(text, "icon_outbox_backlog").is_some(), "{text}");
    // Routes are patterns: no checkout id, nor the unknown path, became a label.
    assert!(!text.contains(&id) && !text.contains("7f3a"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn made_up_methods_share_one_label_and_grow_no_series() {
    // Before the fix each invented method became a label value: 300 of them on `/healthz` (no
    // token, exempt from the limiter) added about 6,300 series.
    let app = TestApp::spawn_with(Options {
        start_worker: false,
        start_notifier: false,
        ..Options::default()
    })
    .await;
    for n in 0..50 {
        let method = http::Method::from_bytes(format!("XINVENTED{n}").as_bytes()).unwrap();
        let r = app.api.send(method, "/healthz", None, None, None).await;
        assert_eq!(r.status, 405, "{r:?}");
    }
    let text = app.api.get("/metrics", None).await.text;
    assert!(
        !text.contains("XINVENTED"),
        "a made-up method became a label value"
    );
    let other: f64 = text
        .lines()
        .filter(|l| {
            l.starts_with(r#"icon_http_requests_total{route="/healthz",method="other""#)
                && l.contains(r#"status="405""#)
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum();
    assert!(other >= 50.0, "{text}");
    app.stop().await;
}
