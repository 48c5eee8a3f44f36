//! The request log, routing, the callback sink, health and shutdown.

use crate::helpers::{order_body, order_id, TestSim, DEADLINE};
use http_body_util::Full;
use hyper::body::Bytes;
use hyper::{Method, Request, StatusCode};
use serde_json::{json, Value};
use std::time::{Duration, Instant};

#[tokio::test]
async fn healthz_answers_ok() {
    let sim = TestSim::start().await;
    let reply = sim.get("/healthz").await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.body, json!({"status": "ok"}));
}

#[tokio::test]
async fn request_log_lists_every_order_request_oldest_first_and_filters() {
    let sim = TestSim::start().await;
    let confirmed = sim
        .order(
            "/acme/orders",
            Some("c1:acme"),
            &order_body("c1", &["dress"]),
        )
        .await;
    sim.order(
        "/orders",
        Some("c2:plain"),
        &order_body("c2", &["reject-hat"]),
    )
    .await;
    sim.order(
        "/acme/orders",
        Some("c1:acme"),
        &order_body("c1", &["dress"]),
    )
    .await;

    let log = sim.requests("").await;
    assert_eq!(log.len(), 3);
    let statuses: Vec<&Value> = log.iter().map(|r| &r["response_status"]).collect();
    assert_eq!(statuses, [&json!(201), &json!(422), &json!(200)]);
    assert_eq!(log[0]["retailer"], "acme");
    assert_eq!(log[1]["retailer"], Value::Null);
    assert_eq!(log[0]["checkout_id"], "c1");
    assert_eq!(log[0]["idempotency_key"], "c1:acme");
    assert_eq!(log[0]["order_id"], json!(order_id(&confirmed)));
    assert_eq!(log[1]["order_id"], Value::Null);
    assert_eq!(log[0]["items"], order_body("c1", &["dress"])["items"]);
    let times: Vec<_> = log
        .iter()
        .map(|r| {
            let at = r["received_at"].as_str().expect("a timestamp");
            chrono::DateTime::parse_from_rfc3339(at).expect("RFC 3339")
        })
        .collect();
    assert!(times.windows(2).all(|w| w[0] <= w[1]), "{times:?}");

    let only = sim.requests("?idempotency_key=c1:acme").await;
    assert_eq!(only.len(), 2);
    assert!(only.iter().all(|r| r["idempotency_key"] == "c1:acme"));
    assert!(sim.requests("?idempotency_key=nope").await.is_empty());
    assert_eq!(sim.requests("?retailer=acme").await.len(), 2);
}

#[tokio::test]
async fn logs_and_retailers_do_not_shadow_each_other() {
    let sim = TestSim::start().await;
    // Retailers may be called like the logs: their orders go to them...
    for retailer in ["requests", "lookups"] {
        let path = format!("/{retailer}/orders");
        let placed = sim
            .order(&path, Some("c1:x"), &order_body("c1", &["dress"]))
            .await;
        assert_eq!(placed.status, StatusCode::CREATED, "{path}");
        let found = sim.get(&format!("{path}?idempotency_key=c1:x")).await;
        assert_eq!(found.status, StatusCode::OK, "{path}");
        assert_eq!(order_id(&found), order_id(&placed));
    }
    // ...and the logs still answer, with those retailers in them.
    let requests = sim.requests("").await;
    let retailers: Vec<_> = requests.iter().map(|r| r["retailer"].clone()).collect();
    assert_eq!(retailers, [json!("requests"), json!("lookups")]);
    let lookups = sim.lookups("").await;
    let retailers: Vec<_> = lookups.iter().map(|r| r["retailer"].clone()).collect();
    assert_eq!(retailers, [json!("requests"), json!("lookups")]);
    // The logs take no orders.
    let post = sim
        .order("/requests", Some("c1:x"), &order_body("c1", &["dress"]))
        .await;
    assert_eq!(post.status, StatusCode::METHOD_NOT_ALLOWED);
    // `/sink/orders` is the sink named `orders`, not a retailer (see the crate docs).
    assert_eq!(sim.get("/sink/orders").await.body, json!([]));
}

#[tokio::test]
async fn fcm_and_mail_paths_and_retailers_do_not_shadow_each_other() {
    let sim = TestSim::start().await;
    for retailer in ["fcm", "oauth2", "v1", "mail"] {
        let path = format!("/{retailer}/orders");
        let placed = sim
            .order(&path, Some("c1:x"), &order_body("c1", &["dress"]))
            .await;
        assert_eq!(placed.status, StatusCode::CREATED, "{path}");
    }
    let requests = sim.requests("").await;
    let retailers: Vec<_> = requests.iter().map(|r| r["retailer"].clone()).collect();
    assert_eq!(
        retailers,
        [json!("fcm"), json!("oauth2"), json!("v1"), json!("mail")]
    );
    for log in ["/fcm/grants", "/fcm/messages", "/mail"] {
        assert_eq!(sim.get(log).await.body, json!([]), "{log}");
    }
    // The Google endpoints take POSTs only, and say so like every other endpoint here.
    for path in [
        "/oauth2/token",
        "/v1/projects/icon-demo/messages:send",
        "/fcm/revoke",
    ] {
        let reply = sim.get(path).await;
        assert_eq!(reply.status, StatusCode::METHOD_NOT_ALLOWED, "{path}");
        assert!(reply.body["reason"].is_string());
    }
}

#[tokio::test]
async fn sink_records_deliveries_and_answers_the_requested_status() {
    let sim = TestSim::start().await;
    let headers = [
        ("content-type", "application/json"),
        ("webhook-id", "msg_1"),
        ("webhook-timestamp", "1700000000"),
        ("user-agent", "not-kept"),
    ];
    let ok = sim
        .call(
            Method::POST,
            "/sink/partner",
            &headers,
            br#"{"type":"checkout.completed"}"#.to_vec(),
        )
        .await;
    assert_eq!(ok.status, StatusCode::OK);
    assert_eq!(ok.body, json!({"ok": true}));

    let failing = sim
        .call(
            Method::POST,
            "/sink/partner?status=503",
            &[],
            b"plain text".to_vec(),
        )
        .await;
    assert_eq!(failing.status, StatusCode::SERVICE_UNAVAILABLE);

    let bad = sim
        .call(Method::POST, "/sink/partner?status=abc", &[], vec![])
        .await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);

    let recorded = sim.get("/sink/partner").await;
    assert_eq!(recorded.status, StatusCode::OK);
    let recorded = recorded.body.as_array().expect("an array").clone();
    assert_eq!(recorded.len(), 2, "{recorded:?}");
    assert_eq!(
        recorded[0]["headers"],
        json!({"content-type": "application/json", "webhook-id": "msg_1", "webhook-timestamp": "1700000000"})
    );
    assert_eq!(recorded[0]["body"], json!({"type": "checkout.completed"}));
    assert_eq!(recorded[1]["body"], "plain text");
    assert!(recorded[0]["received_at"].is_string());

    let empty = sim.get("/sink/nobody").await;
    assert_eq!(empty.body, json!([]));
}

#[tokio::test]
async fn unknown_paths_are_404_with_a_reason() {
    let sim = TestSim::start().await;
    let reply = sim.get("/nothing/here").await;
    assert_eq!(reply.status, StatusCode::NOT_FOUND);
    assert!(reply.body["reason"].is_string());
}

#[tokio::test]
async fn cancellation_stops_the_server_promptly_even_with_a_request_hanging() {
    let sim = TestSim::start().await;
    // A keep-alive connection in the client's pool and a hanging request in flight: neither
    // may hold the stop.
    assert_eq!(sim.get("/healthz").await.status, StatusCode::OK);
    let hanging = {
        let client = sim.client.clone();
        let uri = format!("http://{}/orders", sim.addr);
        let body = order_body("c1", &["hang-clock"]).to_string();
        tokio::spawn(async move {
            let req = Request::post(uri)
                .header("content-type", "application/json")
                .header("idempotency-key", "c1:acme")
                .body(Full::new(Bytes::from(body)))
                .expect("request");
            client.request(req).await.map(|r| r.status())
        })
    };
    // Wait until the simulator holds the request, so the cancellation finds it in flight.
    sim.wait_until_held("c1:acme").await;

    let started = Instant::now();
    sim.shutdown.cancel();
    let stopped = tokio::time::timeout(DEADLINE, sim.server).await;
    let result = stopped.expect("server did not stop").expect("server task");
    assert!(result.is_ok(), "{result:?}");
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "took {:?}",
        started.elapsed()
    );

    let hung = tokio::time::timeout(DEADLINE, hanging)
        .await
        .expect("hanging request ended");
    assert_eq!(
        hung.expect("task").ok(),
        Some(StatusCode::SERVICE_UNAVAILABLE)
    );

    let after = tokio::net::TcpStream::connect(sim.addr).await;
    assert!(after.is_err(), "still accepting connections after shutdown");
}
