//! `ICON_RATE_LIMIT`: one allowance per client address and one per token subject, each
//! answered by 429 with `Retry-After` once spent. Clients play different addresses by
//! connecting from 127.0.0.2, 127.0.0.3, ... (all of 127/8 is loopback).

use icon_testkit::{Api, ApiReply, Options, TestApp};
use std::net::{IpAddr, Ipv4Addr};

fn from(app: &TestApp, last_octet: u8) -> Api {
    Api::from_address(
        &app.public_url,
        IpAddr::V4(Ipv4Addr::new(127, 0, 0, last_octet)),
    )
}

fn assert_limited(r: &ApiReply, why: &str, detail_has: &str) {
    assert_eq!(r.status, 429, "{why}: {r:?}");
    assert_eq!(r.content_type(), "application/problem+json", "{why}");
    assert_eq!(r.json["code"], "rate_limited", "{why}");
    let retry: u64 = r
        .header("retry-after")
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("{why}: Retry-After in whole seconds: {r:?}"));
    // One request a minute comes back within a minute.
    assert!((1..=60).contains(&retry), "{why}: Retry-After {retry}");
    let detail = r.json["detail"].as_str().unwrap_or_default();
    assert!(detail.contains(detail_has), "{why}: {detail}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_spent_allowance_answers_429_with_retry_after_per_address_and_per_subject() {
    let app = TestApp::spawn_with(Options {
        start_worker: false,
        start_notifier: false,
        // Two requests, then one a minute: nothing refills during the test.
        extra: vec![("ICON_RATE_LIMIT", "1/m burst 2".into())],
        ..Options::default()
    })
    .await;
    // `TestApp::spawn` polled /readyz from 127.0.0.1: probes are never limited.
    let local = from(&app, 1);
    for _ in 0..5 {
        assert_eq!(local.get("/readyz", None).await.status, 200);
        assert_eq!(local.get("/healthz", None).await.status, 200);
    }

    // Per address: anything from 127.0.0.2 counts, a bad token or none, a document read.
    let a = from(&app, 2);
    assert_eq!(a.get("/openapi.json", None).await.status, 200);
    assert_eq!(a.get("/carts/1", Some("not-a-token")).await.status, 401);
    let r = a.get("/openapi.json", None).await;
    assert_limited(&r, "third request from 127.0.0.2", "address");
    let r = a.get("/carts/1", Some(&app.token("dave"))).await;
    assert_limited(&r, "a fresh subject from a spent address", "address");
    // Another address is untouched.
    assert_eq!(from(&app, 3).get("/openapi.json", None).await.status, 200);

    // Per subject: alice spreads her requests over addresses; the third is refused although
    // its address has allowance left, and bob from that same address is served.
    let alice = app.token("alice");
    let r = from(&app, 4).get("/me/devices", Some(&alice)).await;
    assert_eq!(r.status, 200, "{r:?}");
    let r = from(&app, 5).get("/me/devices", Some(&alice)).await;
    assert_eq!(r.status, 200, "{r:?}");
    let r = from(&app, 6).get("/me/devices", Some(&alice)).await;
    assert_limited(&r, "alice's third request", "subject");
    let r = from(&app, 6)
        .get("/me/devices", Some(&app.token("bob")))
        .await;
    assert_eq!(r.status, 200, "bob from 127.0.0.6: {r:?}");

    // Tokens forged for carol (a wrong secret) are refused before they are counted, so they
    // cannot spend her allowance: two of them, then carol herself is still served.
    let forged = icon_gateway::auth::JwtKeys::new("not-the-secret-but-32-bytes-long!!")
        .mint("carol", false, std::time::Duration::from_secs(60))
        .unwrap();
    let r = from(&app, 7).get("/me/devices", Some(&forged)).await;
    assert_eq!(r.status, 401, "{r:?}");
    let r = from(&app, 8).get("/me/devices", Some(&forged)).await;
    assert_eq!(r.status, 401, "{r:?}");
    let r = from(&app, 9)
        .get("/me/devices", Some(&app.token("carol")))
        .await;
    assert_eq!(
        r.status, 200,
        "forged tokens did not spend carol's allowance: {r:?}"
    );
    app.stop().await;
}
