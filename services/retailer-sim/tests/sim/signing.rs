//! Verifying ICON's signatures: a retailer whose secret the simulator was told
//! (`PUT /_sim/retailers/{retailer}/secret`) gets only requests that verify; others, as before.

use crate::helpers::{order_body, TestSim};
use hyper::{Method, StatusCode};
use icon_webhooks::{SigningSecrets, WebhookSecret};
use serde_json::{json, Value};

fn signed(secret: &WebhookSecret, body: &[u8]) -> Vec<(&'static str, String)> {
    SigningSecrets {
        current: secret.clone(),
        previous: None,
    }
    .signed_headers(
        format!("msg_{}", uuid::Uuid::new_v4().simple()),
        chrono::Utc::now().timestamp(),
        body,
    )
    .to_vec()
}

async fn send(
    sim: &TestSim,
    method: Method,
    path: &str,
    extra: &[(&str, String)],
    body: &[u8],
) -> crate::helpers::Reply {
    let mut headers = vec![
        ("content-type", "application/json"),
        ("idempotency-key", "k1"),
    ];
    headers.extend(extra.iter().map(|(n, v)| (*n, v.as_str())));
    sim.call(method, path, &headers, body.to_vec()).await
}

#[tokio::test]
async fn a_known_secret_is_required_and_checked_an_unknown_one_is_not() {
    let sim = TestSim::start().await;
    let bad = sim
        .call(
            Method::PUT,
            "/_sim/retailers/acme/secret",
            &[("content-type", "application/json")],
            json!({"secret": "whsec_tooshort"}).to_string().into_bytes(),
        )
        .await;
    assert_eq!(bad.status, StatusCode::UNPROCESSABLE_ENTITY);
    let secret = WebhookSecret::generate();
    let put = sim
        .call(
            Method::PUT,
            "/_sim/retailers/acme/secret",
            &[("content-type", "application/json")],
            json!({"secret": secret.expose_whsec()})
                .to_string()
                .into_bytes(),
        )
        .await;
    assert_eq!(put.status, StatusCode::NO_CONTENT);

    let body = order_body("c1", &["dress"]).to_string().into_bytes();
    let other = WebhookSecret::generate();
    for headers in [vec![], signed(&other, &body), signed(&secret, b"{}")] {
        let r = send(&sim, Method::POST, "/acme/orders", &headers, &body).await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{headers:?}");
        assert_eq!(r.headers["content-type"], "application/problem+json");
        assert_eq!(r.body["status"], 401);
        assert!(r.body["reason"].is_string());
    }
    let lookup = "/acme/orders?idempotency_key=k1";
    let r = send(&sim, Method::GET, lookup, &[], b"").await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    // Nothing was placed by the refused requests: a signed lookup finds no order.
    let r = send(&sim, Method::GET, lookup, &signed(&secret, b""), b"").await;
    assert_eq!(r.status, StatusCode::NOT_FOUND, "{:?}", r.body);
    let r = send(
        &sim,
        Method::POST,
        "/acme/orders",
        &signed(&secret, &body),
        &body,
    )
    .await;
    assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
    let r = send(&sim, Method::GET, lookup, &signed(&secret, b""), b"").await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);

    // Globex's secret is unknown: served unchecked.
    let r = send(&sim, Method::POST, "/globex/orders", &[], &body).await;
    assert_eq!(r.status, StatusCode::CREATED);

    let log = sim.requests("").await;
    let verdicts: Vec<&Value> = log.iter().map(|r| &r["signature_verified"]).collect();
    assert_eq!(
        verdicts,
        [
            &json!(false),
            &json!(false),
            &json!(false),
            &json!(true),
            &Value::Null
        ]
    );
    assert_eq!(log[3]["raw_body"], String::from_utf8(body.clone()).unwrap());
    assert!(log[3]["webhook_signature"]
        .as_str()
        .unwrap()
        .starts_with("v1,"));
    assert!(log[0]["webhook_id"].is_null());
    let lookups = sim.lookups("").await;
    let verdicts: Vec<&Value> = lookups.iter().map(|r| &r["signature_verified"]).collect();
    assert_eq!(verdicts, [&json!(false), &json!(true), &json!(true)]);

    // Forgotten: unchecked again.
    let r = sim
        .call(Method::DELETE, "/_sim/retailers/acme/secret", &[], vec![])
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    let r = send(&sim, Method::GET, lookup, &[], b"").await;
    assert_eq!(r.status, StatusCode::OK);
}
