//! Trace context and structured logs: a client's `traceparent` reaches the retailer and the
//! callback receiver with the same trace id (through the outbox and both queues), spans from the
//! three services reach an OTLP/HTTP collector under that trace id, and JSON log lines about a
//! checkout carry its `checkout_id`.
//!
//! The second test runs the services as processes (it needs `cargo build --bins` first), since
//! logging and span export are set up once per process by `main`.

use http::Method;
use icon_gateway::auth::JwtKeys;
use icon_testkit::fleet::Fleet;
use icon_testkit::{eventually, Options, Receiver, Recorded, TestApp, TestEnv, JWT_SECRET};
use serde_json::{json, Value};
use std::collections::HashSet;
use std::time::Duration;

/// A client's context, as in the W3C spec's example.
const TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const CLIENT_SPAN: &str = "00f067aa0ba902b7";

fn client_traceparent() -> String {
    format!("00-{TRACE_ID}-{CLIENT_SPAN}-01")
}

/// The trace id and parent span id of a received `traceparent`.
fn parts(r: &Recorded) -> (String, String) {
    let tp = r.traceparent.as_deref().expect("a traceparent header");
    let fields: Vec<&str> = tp.split('-').collect();
    assert_eq!(fields.len(), 4, "{tp}");
    assert_eq!(fields[0], "00", "{tp}");
    (fields[1].to_owned(), fields[2].to_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_clients_trace_reaches_the_retailer_and_the_callback() {
    let app = TestApp::spawn_with(Options::default()).await;
    let retailer = Receiver::start(vec![], None).await;
    let callback = Receiver::start(vec![], None).await;
    app.register_retailer("acme", &retailer.url).await;

    // With the client's context.
    let cart = app.cart_with("alice", &[("acme", "dress")]).await;
    let r = app
        .api
        .send_with(
            Method::POST,
            "/cart/checkout/",
            Some(&app.token("alice")),
            &[("traceparent", &client_traceparent())],
            Some(json!({"cart_id": cart, "callback_url": callback.url}).to_string()),
        )
        .await;
    assert_eq!(r.status, 202, "{r:?}");
    let placed = retailer.wait_for(1, Duration::from_secs(30)).await;
    let delivered = callback.wait_for(1, Duration::from_secs(30)).await;
    let (trace, parent) = parts(&placed[0]);
    assert_eq!(
        trace, TRACE_ID,
        "the retailer call continues the client's trace"
    );
    assert_ne!(parent, CLIENT_SPAN, "the worker sends its own span id");
    let (trace, parent) = parts(&delivered[0]);
    assert_eq!(trace, TRACE_ID, "the callback continues the client's trace");
    assert_ne!(parent, CLIENT_SPAN);

    // Without one (or with a malformed one), the gateway starts a trace and it flows the same.
    let cart = app.cart_with("bob", &[("acme", "shoes")]).await;
    let r = app
        .api
        .send_with(
            Method::POST,
            "/cart/checkout/",
            Some(&app.token("bob")),
            &[("traceparent", "00-not-a-trace-01")],
            Some(json!({"cart_id": cart, "callback_url": callback.url}).to_string()),
        )
        .await;
    assert_eq!(r.status, 202, "{r:?}");
    let placed = retailer.wait_for(2, Duration::from_secs(30)).await;
    let delivered = callback.wait_for(2, Duration::from_secs(30)).await;
    let (started, _) = parts(&placed[1]);
    assert_ne!(started, TRACE_ID);
    assert_eq!(started.len(), 32);
    assert_ne!(started, "0".repeat(32));
    assert_eq!(
        parts(&delivered[1]).0,
        started,
        "one trace from gateway to callback"
    );
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_logs_carry_the_checkout_id_and_spans_reach_the_collector() {
    let env = TestEnv::create().await;
    let collector = Receiver::start(vec![], None).await;
    let endpoint = collector.url.trim_end_matches("/hook").to_owned();
    let fleet = Fleet::start(
        &env.database_url,
        &env.amqp_url,
        &[
            ("ICON_LOG_FORMAT", "json"),
            ("ICON_OTLP_ENDPOINT", &endpoint),
            // Export batches quickly rather than every 5 s (an OpenTelemetry SDK setting).
            ("OTEL_BSP_SCHEDULE_DELAY", "200"),
        ],
    )
    .await;
    let retailer = Receiver::start(vec![], None).await;
    let callback = Receiver::start(vec![], None).await;
    let admin = JwtKeys::new(JWT_SECRET)
        .mint("ops", true, Duration::from_secs(3600))
        .expect("token");
    let r = fleet
        .api
        .put(
            "/retailers/acme",
            Some(&admin),
            &json!({"name": "acme", "order_url": retailer.url}),
        )
        .await;
    assert!(r.status == 200 || r.status == 201, "{r:?}");
    let token = JwtKeys::new(JWT_SECRET)
        .mint("shopper", false, Duration::from_secs(3600))
        .expect("token");
    let cart = fleet.api.post("/carts", Some(&token), &json!({})).await;
    let cart = cart.json["cart_id"].as_i64().expect("cart id");
    let r = fleet
        .api
        .post(
            &format!("/carts/{cart}/items"),
            Some(&token),
            &json!({"retailer_id": "acme", "sku": "dress", "quantity": 1,
                    "unit_price": {"amount_minor": 1000, "currency": "GBP"}}),
        )
        .await;
    assert_eq!(r.status, 201, "{r:?}");
    let r = fleet
        .api
        .send_with(
            Method::POST,
            "/cart/checkout/",
            Some(&token),
            &[("traceparent", &client_traceparent())],
            Some(json!({"cart_id": cart, "callback_url": callback.url}).to_string()),
        )
        .await;
    assert_eq!(r.status, 202, "{r:?}");
    let id = r.json["checkout_id"].as_str().expect("id").to_owned();
    let delivered = callback.wait_for(1, Duration::from_secs(30)).await;
    assert_eq!(parts(&delivered[0]).0, TRACE_ID);

    // Spans of all three services, under the client's trace id, in one tree: every span's
    // parent is the client's span or another exported span (a message's span continues the
    // span that wrote it to the outbox).
    eventually(
        "spans of the gateway, the worker and the notifier, in one tree, at the collector",
        Duration::from_secs(30),
        || async {
            let spans = spans_of_trace(&collector.seen(), TRACE_ID);
            let services: HashSet<&str> = spans.iter().map(|s| s.service.as_str()).collect();
            let ids: HashSet<&str> = spans.iter().map(|s| s.id.as_str()).collect();
            let all = ["icon-gateway", "icon-checkout-worker", "icon-notifier"]
                .iter()
                .all(|s| services.contains(s));
            let linked = spans
                .iter()
                .all(|s| s.parent == CLIENT_SPAN || ids.contains(s.parent.as_str()));
            (all && linked).then_some(())
        },
    )
    .await;

    // Every JSON line logged inside a delivery's span, and the gateway's line accepting the
    // checkout, name the checkout.
    let gateway = json_lines(&fleet.gateway.log());
    let accepted = gateway
        .iter()
        .find(|l| l["fields"]["message"] == "checkout accepted")
        .unwrap_or_else(|| panic!("no `checkout accepted` line:\n{}", fleet.gateway.log()));
    assert!(
        in_span_with(accepted, "checkout_id", &id),
        "the request's span names the checkout: {accepted}"
    );
    assert!(in_span_with(accepted, "trace_id", TRACE_ID), "{accepted}");
    for (name, log) in [
        ("worker", fleet.worker.log()),
        ("notifier", fleet.notifier.log()),
    ] {
        let lines = json_lines(&log);
        assert!(!lines.is_empty(), "{name} writes JSON lines:\n{log}");
        let in_delivery: Vec<&Value> = lines.iter().filter(|l| in_span(l, "message")).collect();
        assert!(
            in_delivery
                .iter()
                .any(|l| in_span_with(l, "checkout_id", &id)),
            "{name} logged about checkout {id}:\n{log}"
        );
        for line in in_delivery {
            assert!(
                spans(line).any(|s| s["checkout_id"].as_str().is_some_and(|c| !c.is_empty())),
                "{name}: a line in a delivery's span without checkout_id: {line}"
            );
        }
    }
    drop(fleet);
}

/// An exported span, from an OTLP/HTTP JSON body.
struct ExportedSpan {
    service: String,
    id: String,
    parent: String,
}

/// The spans with `trace_id` the collector received.
fn spans_of_trace(requests: &[Recorded], trace_id: &str) -> Vec<ExportedSpan> {
    let mut found = vec![];
    for body in requests.iter().map(|r| &r.body) {
        for rs in body["resourceSpans"].as_array().into_iter().flatten() {
            let service = rs["resource"]["attributes"]
                .as_array()
                .into_iter()
                .flatten()
                .find(|a| a["key"] == "service.name")
                .and_then(|a| a["value"]["stringValue"].as_str())
                .unwrap_or_default();
            let spans = rs["scopeSpans"]
                .as_array()
                .into_iter()
                .flatten()
                .flat_map(|ss| ss["spans"].as_array().into_iter().flatten())
                .filter(|s| s["traceId"].as_str() == Some(trace_id));
            for s in spans {
                found.push(ExportedSpan {
                    service: service.to_owned(),
                    id: s["spanId"].as_str().unwrap_or_default().to_owned(),
                    parent: s["parentSpanId"].as_str().unwrap_or_default().to_owned(),
                });
            }
        }
    }
    found
}

fn json_lines(log: &str) -> Vec<Value> {
    log.lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|v| v.is_object())
        .collect()
}

/// The line's enclosing spans (outermost first) and its current span.
fn spans(line: &Value) -> impl Iterator<Item = &Value> {
    line["spans"]
        .as_array()
        .into_iter()
        .flatten()
        .chain(std::iter::once(&line["span"]))
}

fn in_span(line: &Value, name: &str) -> bool {
    spans(line).any(|s| s["name"] == name)
}

fn in_span_with(line: &Value, field: &str, value: &str) -> bool {
    spans(line).any(|s| s[field].as_str() == Some(value))
}
