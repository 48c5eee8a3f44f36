//! The fake FCM's send, `/v1/projects/{id}/messages:send`: access tokens and revocation, what
//! each registration-token prefix answers, malformed messages, and the log, `/fcm/messages`.

use crate::helpers::{access_token, Reply, TestSim};
use hyper::{Method, StatusCode};
use serde_json::{json, Value};
use std::time::{Duration, Instant};

const UNAUTHENTICATED: &str = "Request had invalid authentication credentials. Expected OAuth 2 \
    access token, login cookie or other valid authentication credential. See \
    https://developers.google.com/identity/sign-in/web/devconsole-project.";

/// A send as ICON's notifier makes it.
fn message(device: &str) -> Value {
    json!({"message": {
        "token": device,
        "notification": {"title": "Checkout completed", "body": "Your order is placed."},
        "data": {"checkout_id": "c1", "status": "completed", "source_url": "https://shop.test/c1"},
        "android": {"priority": "high", "collapse_key": "c1"},
        "apns": {"headers": {"apns-priority": "10", "apns-collapse-id": "c1"}},
    }})
}

async fn push(sim: &TestSim, access_token: Option<&str>, body: Value) -> Reply {
    let bearer = access_token.map(|t| format!("Bearer {t}"));
    let mut headers = vec![("content-type", "application/json")];
    if let Some(bearer) = &bearer {
        headers.push(("authorization", bearer));
    }
    let path = "/v1/projects/icon-demo/messages:send";
    sim.call(Method::POST, path, &headers, body.to_string().into_bytes())
        .await
}

fn fcm_error(code: &str) -> Value {
    json!({"@type": "type.googleapis.com/google.firebase.fcm.v1.FcmError", "errorCode": code})
}

#[tokio::test]
async fn sends_need_a_live_access_token_and_revocation_ends_them() {
    let sim = TestSim::start().await;
    let unauthenticated =
        json!({"error": {"code": 401, "message": UNAUTHENTICATED, "status": "UNAUTHENTICATED"}});
    for token in [None, Some("sim-at-made-up")] {
        let reply = push(&sim, token, message("device-1")).await;
        assert_eq!(reply.status, StatusCode::UNAUTHORIZED, "{token:?}");
        assert_eq!(reply.body, unauthenticated);
        assert!(reply.headers.contains_key("www-authenticate"));
    }

    let token = access_token(&sim).await;
    assert_eq!(
        push(&sim, Some(&token), message("device-1")).await.status,
        StatusCode::OK
    );

    let revoked = sim.call(Method::POST, "/fcm/revoke", &[], vec![]).await;
    assert_eq!(revoked.status, StatusCode::NO_CONTENT);
    let reply = push(&sim, Some(&token), message("device-1")).await;
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
    assert_eq!(reply.body, unauthenticated);

    // A new grant works again: what a notifier does after a 401.
    let renewed = access_token(&sim).await;
    assert_ne!(renewed, token);
    assert_eq!(
        push(&sim, Some(&renewed), message("device-1")).await.status,
        StatusCode::OK
    );

    let sends = sim.log("/fcm/messages").await;
    let auth: Vec<_> = sends
        .iter()
        .map(|s| (s["status"].clone(), s["auth_ok"].clone()))
        .collect();
    assert_eq!(
        auth,
        [
            (json!(401), json!(false)),
            (json!(401), json!(false)),
            (json!(200), json!(true)),
            (json!(401), json!(false)),
            (json!(200), json!(true))
        ]
    );
}

#[tokio::test]
async fn each_token_prefix_answers_as_fcm_would() {
    let sim = TestSim::start().await;
    let token = access_token(&sim).await;
    let send = |device: &str| push(&sim, Some(&token), message(device));

    let dead = send("dead-phone").await;
    assert_eq!(dead.status, StatusCode::NOT_FOUND);
    assert_eq!(
        dead.body,
        json!({"error": {"code": 404, "message": "Requested entity was not found.", "status": "NOT_FOUND", "details": [fcm_error("UNREGISTERED")]}})
    );

    let invalid = send("invalid-phone").await;
    let why = "The registration token is not a valid FCM registration token";
    assert_eq!(invalid.status, StatusCode::BAD_REQUEST);
    assert_eq!(
        invalid.body,
        json!({"error": {"code": 400, "message": why, "status": "INVALID_ARGUMENT", "details": [
            fcm_error("INVALID_ARGUMENT"),
            {"@type": "type.googleapis.com/google.rpc.BadRequest", "fieldViolations": [{"field": "message.token", "description": why}]},
        ]}})
    );

    let busy = send("busy-phone").await;
    assert_eq!(busy.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(busy.headers["retry-after"], "1");
    assert_eq!(busy.body["error"]["status"], "RESOURCE_EXHAUSTED");
    assert_eq!(
        busy.body["error"]["details"],
        json!([fcm_error("QUOTA_EXCEEDED")])
    );
    assert_eq!(send("busy-phone").await.status, StatusCode::OK);
    // The first request for each token fails, not the first request overall.
    assert_eq!(
        send("busy-tablet").await.status,
        StatusCode::TOO_MANY_REQUESTS
    );

    let down = send("down-phone").await;
    assert_eq!(down.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(down.body["error"]["status"], "UNAVAILABLE");
    assert_eq!(
        down.body["error"]["details"],
        json!([fcm_error("UNAVAILABLE")])
    );
    assert_eq!(send("down-phone").await.status, StatusCode::OK);

    for _ in 0..2 {
        let denied = send("denied-phone").await;
        assert_eq!(denied.status, StatusCode::FORBIDDEN);
        assert_eq!(denied.body["error"]["status"], "PERMISSION_DENIED");
        assert_eq!(
            denied.body["error"]["details"],
            json!([fcm_error("SENDER_ID_MISMATCH")])
        );
    }

    let started = Instant::now();
    let slow = send("slow-phone").await;
    assert_eq!(slow.status, StatusCode::OK);
    assert!(
        started.elapsed() >= Duration::from_millis(300),
        "{:?}",
        started.elapsed()
    );

    let plain = send("fMEP0vJqS0:APA91b").await;
    assert_eq!(plain.status, StatusCode::OK);
    let name = plain.body["name"].as_str().expect("a name");
    assert!(name.starts_with("projects/icon-demo/messages/"), "{name}");
}

#[tokio::test]
async fn a_malformed_message_is_400_naming_the_field() {
    let sim = TestSim::start().await;
    let token = access_token(&sim).await;
    let mut no_checkout = message("device-1");
    no_checkout["message"]["data"]
        .as_object_mut()
        .expect("data")
        .remove("checkout_id");
    let mut topic = message("device-1");
    topic["message"]["topic"] = json!("news");
    let mut priority = message("device-1");
    priority["message"]["android"]["priority"] = json!("urgent");
    let mut collapse = message("device-1");
    collapse["message"]["apns"]["headers"]["apns-collapse-id"] = json!("x".repeat(65));
    let mut number = message("device-1");
    number["message"]["data"]["status"] = json!(2);

    for (body, field) in [
        (no_checkout, "message.data.checkout_id"),
        (topic, "message.topic"),
        (priority, "message.android.priority"),
        (collapse, "message.apns.headers.apns-collapse-id"),
        (number, "message.data.status"),
        (json!({"message": {"notification": {}}}), "message"),
    ] {
        let reply = push(&sim, Some(&token), body).await;
        assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{field}: {reply:?}");
        let error = &reply.body["error"];
        assert_eq!(error["code"], 400);
        assert_eq!(error["status"], "INVALID_ARGUMENT");
        assert_eq!(
            error["details"][0]["@type"],
            "type.googleapis.com/google.rpc.BadRequest"
        );
        assert_eq!(
            error["details"][0]["fieldViolations"][0]["field"], field,
            "{reply:?}"
        );
        assert!(error["details"][0]["fieldViolations"][0]["description"].is_string());
    }
}

#[tokio::test]
async fn the_message_log_shows_what_was_received() {
    let sim = TestSim::start().await;
    let token = access_token(&sim).await;
    let delivered = push(&sim, Some(&token), message("device-1")).await;
    push(&sim, Some(&token), message("dead-device")).await;

    let sends = sim.log("/fcm/messages").await;
    assert_eq!(sends.len(), 2);
    assert_eq!(sends[0]["project_id"], "icon-demo");
    assert_eq!(sends[0]["token"], "device-1");
    assert_eq!(sends[0]["status"], 200);
    assert_eq!(sends[0]["auth_ok"], true);
    assert_eq!(sends[0]["message"], message("device-1")["message"]);
    assert_eq!(sends[0]["name"], delivered.body["name"]);
    assert!(sends[0]["received_at"].is_string());
    assert_eq!(sends[1]["token"], "dead-device");
    assert_eq!(sends[1]["status"], 404);
    assert_eq!(sends[1]["name"], Value::Null);
}
