//! `/me/devices` and what a checkout does with them: registering, moving and removing push
//! devices, the per-user bound, validation, and push and e-mail on the checkout's resource,
//! attempts and redelivery. The notifier is held back, so every notification stays as the
//! gateway wrote it unless a test changes it.

use http::Method;
use icon_contracts::topology::CHECKOUT_FINISHED;
use icon_testkit::{eventually, ApiReply, Options, TestApp};
use serde_json::{json, Value};
use std::time::Duration;

fn quiet() -> Options {
    Options {
        start_worker: false,
        start_notifier: false,
        ..Default::default()
    }
}

fn assert_problem(r: &ApiReply, status: u16, code: &str) {
    assert_eq!(r.status, status, "{r:?}");
    assert_eq!(r.content_type(), "application/problem+json", "{r:?}");
    assert_eq!(r.json["code"], code, "{r:?}");
    assert!(
        r.json["detail"].as_str().is_some_and(|d| !d.is_empty()),
        "{r:?}"
    );
}

async fn put_device(app: &TestApp, user: &str, token: &str, platform: &str) -> ApiReply {
    app.api
        .put(
            &format!("/me/devices/{token}"),
            Some(&app.token(user)),
            &json!({ "platform": platform }),
        )
        .await
}

async fn delete_device(app: &TestApp, user: &str, token: &str) -> ApiReply {
    app.api
        .send(
            Method::DELETE,
            &format!("/me/devices/{token}"),
            Some(&app.token(user)),
            None,
            None,
        )
        .await
}

/// The tokens `user` has registered, newest first.
async fn tokens_of(app: &TestApp, user: &str) -> Vec<String> {
    let r = app.api.get("/me/devices", Some(&app.token(user))).await;
    assert_eq!(r.status, 200, "{r:?}");
    r.json["devices"]
        .as_array()
        .expect("devices")
        .iter()
        .map(|d| d["token"].as_str().unwrap().to_owned())
        .collect()
}

/// An app with one retailer (its URL is never called: the worker is held back) and a cart.
async fn with_cart(opts: Options, user: &str) -> (TestApp, i64) {
    let app = TestApp::spawn_with(opts).await;
    app.register_retailer("acme", "http://127.0.0.1:9/acme/orders")
        .await;
    let cart = app.cart_with(user, &[("acme", "dress")]).await;
    (app, cart)
}

async fn submit(app: &TestApp, token: &str, body: Value) -> String {
    let r = app.api.post("/cart/checkout/", Some(token), &body).await;
    assert_eq!(r.status, 202, "{r:?}");
    r.json["checkout_id"].as_str().unwrap().to_owned()
}

async fn resource(app: &TestApp, user: &str, id: &str) -> Value {
    let r = app
        .api
        .get(&format!("/cart/checkout/{id}"), Some(&app.token(user)))
        .await;
    assert_eq!(r.status, 200, "{r:?}");
    r.json
}

async fn notification_rows(app: &TestApp, id: &str, channel: &str) -> Vec<(String, String)> {
    let id: uuid::Uuid = id.parse().unwrap();
    app.env
        .db()
        .await
        .query(
            "SELECT target, state FROM notifications WHERE checkout_id = $1 AND channel = $2
             ORDER BY target",
            &[&id, &channel],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn register_update_list_move_and_delete() {
    let app = TestApp::spawn_with(quiet()).await;

    let r = put_device(&app, "alice", "fcm:phone-1", "android").await;
    assert_eq!(r.status, 201, "{r:?}");
    assert_eq!(r.header("location"), Some("/me/devices/fcm:phone-1"));
    assert_eq!(r.json["token"], "fcm:phone-1");
    assert_eq!(r.json["platform"], "android");
    let created_at = r.json["created_at"].clone();
    assert!(created_at.is_string() && r.json["updated_at"].is_string());

    // Again: an update of the same registration.
    let r = put_device(&app, "alice", "fcm:phone-1", "ios").await;
    assert_eq!(r.status, 200, "{r:?}");
    assert!(r.header("location").is_none());
    assert_eq!(r.json["platform"], "ios");
    assert_eq!(r.json["created_at"], created_at);

    let r = put_device(&app, "alice", "fcm:tablet-2", "web").await;
    assert_eq!(r.status, 201, "{r:?}");
    assert_eq!(
        tokens_of(&app, "alice").await,
        vec!["fcm:tablet-2", "fcm:phone-1"],
        "newest first"
    );
    let r = app.api.get("/me/devices", Some(&app.token("alice"))).await;
    assert_eq!(r.json["devices"][1]["platform"], "ios");

    // Bob signs in on alice's phone: the token moves to him.
    let r = put_device(&app, "bob", "fcm:phone-1", "android").await;
    assert_eq!(r.status, 201, "new to bob: {r:?}");
    assert_eq!(tokens_of(&app, "alice").await, vec!["fcm:tablet-2"]);
    assert_eq!(tokens_of(&app, "bob").await, vec!["fcm:phone-1"]);

    // A stranger's delete leaves a registration alone, and still answers 204.
    let r = delete_device(&app, "alice", "fcm:phone-1").await;
    assert_eq!(r.status, 204, "{r:?}");
    assert_eq!(tokens_of(&app, "bob").await, vec!["fcm:phone-1"]);

    // Deleting is idempotent.
    for _ in 0..2 {
        let r = delete_device(&app, "alice", "fcm:tablet-2").await;
        assert_eq!(r.status, 204, "{r:?}");
        assert!(r.text.is_empty());
    }
    assert!(tokens_of(&app, "alice").await.is_empty());
    assert_eq!(app.env.count("devices").await, 1);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_tokens_and_platforms_are_422_naming_each_field() {
    let app = TestApp::spawn_with(quiet()).await;
    let alice = app.token("alice");
    let fields = |r: &ApiReply| -> Vec<String> {
        r.json["errors"]
            .as_array()
            .map(|e| {
                e.iter()
                    .map(|e| e["field"].as_str().unwrap().to_owned())
                    .collect()
            })
            .unwrap_or_default()
    };

    let r = put_device(&app, "alice", &"a".repeat(4097), "android").await;
    assert_problem(&r, 422, "validation_failed");
    assert_eq!(fields(&r), vec!["token"]);
    // 4,096 is still a token.
    let r = put_device(&app, "alice", &"a".repeat(4096), "android").await;
    assert_eq!(r.status, 201, "{r:?}");

    // A slash, percent-encoded so it stays in the one path segment; and a bad platform: both
    // in one answer.
    let r = put_device(&app, "alice", "a%2Fb", "Android").await;
    assert_problem(&r, 422, "validation_failed");
    assert_eq!(fields(&r), vec!["token", "platform"]);
    let r = put_device(&app, "alice", "a%20b", "ios").await;
    assert_eq!(fields(&r), vec!["token"]);
    let r = put_device(&app, "alice", "fcm:ok", "blackberry").await;
    assert_eq!(fields(&r), vec!["platform"]);
    let r = delete_device(&app, "alice", "a%2Fb").await;
    assert_problem(&r, 422, "validation_failed");
    assert_eq!(fields(&r), vec!["token"]);

    // The body is parsed strictly.
    for body in [json!({}), json!({"platform": 1})] {
        let r = app.api.put("/me/devices/fcm:ok", Some(&alice), &body).await;
        assert_problem(&r, 400, "malformed_json");
    }
    let r = app
        .api
        .put(
            "/me/devices/fcm:ok",
            Some(&alice),
            &json!({"platform": "ios", "plat": "x"}),
        )
        .await;
    assert_problem(&r, 400, "unknown_field");
    assert_eq!(r.json["field"], "plat");

    // No token, no devices.
    let r = app.api.get("/me/devices", None).await;
    assert_problem(&r, 401, "unauthorized");
    let r = app
        .api
        .put("/me/devices/fcm:ok", None, &json!({"platform": "ios"}))
        .await;
    assert_problem(&r, 401, "unauthorized");
    let r = app
        .api
        .send(Method::DELETE, "/me/devices/fcm:ok", None, None, None)
        .await;
    assert_problem(&r, 401, "unauthorized");

    // Only the 4,096-character token was stored.
    assert_eq!(app.env.count("devices").await, 1);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_keeps_the_newest_devices_within_the_bound() {
    let app = TestApp::spawn_with(Options {
        extra: vec![("ICON_MAX_DEVICES_PER_USER", "3".into())],
        ..quiet()
    })
    .await;
    for n in 1..=4 {
        let r = put_device(&app, "alice", &format!("fcm:device-{n}"), "android").await;
        assert_eq!(r.status, 201, "{r:?}");
    }
    assert_eq!(
        tokens_of(&app, "alice").await,
        vec!["fcm:device-4", "fcm:device-3", "fcm:device-2"],
        "the oldest is dropped"
    );
    // Registering an old one again makes it the newest; the bound drops the next oldest.
    put_device(&app, "alice", "fcm:device-2", "ios").await;
    put_device(&app, "alice", "fcm:device-5", "ios").await;
    assert_eq!(
        tokens_of(&app, "alice").await,
        vec!["fcm:device-5", "fcm:device-2", "fcm:device-4"]
    );
    // Other users are not affected by alice's bound.
    put_device(&app, "bob", "fcm:bobs", "web").await;
    assert_eq!(tokens_of(&app, "bob").await, vec!["fcm:bobs"]);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn push_without_a_device_is_accepted_and_says_why_nothing_is_pushed() {
    let (app, cart) = with_cart(quiet(), "alice").await;
    let alice = app.token("alice");
    let id = submit(
        &app,
        &alice,
        json!({"cart_id": cart, "push_notification": true}),
    )
    .await;
    assert!(notification_rows(&app, &id, "push").await.is_empty());

    let view = resource(&app, "alice", &id).await;
    assert_eq!(view["push_notification"], true);
    assert_eq!(view["push"]["state"], "no_devices");
    assert_eq!(view["push"]["devices"], 0);
    let detail = view["push"]["detail"].as_str().unwrap();
    assert!(detail.contains("PUT /me/devices/"), "{detail}");
    assert!(view.get("email").is_none(), "no email claim: {view}");

    // Nothing to redeliver on either channel.
    for (channel, code) in [("push", "push_not_found"), ("email", "email_not_found")] {
        let r = app
            .api
            .post(
                &format!("/cart/checkout/{id}/{channel}/redeliver"),
                Some(&alice),
                &json!({}),
            )
            .await;
        assert_problem(&r, 409, code);
    }

    // Without push_notification, `push` is null.
    let other = app.cart_with("alice", &[("acme", "belt")]).await;
    let id = submit(&app, &alice, json!({"cart_id": other})).await;
    let view = resource(&app, "alice", &id).await;
    assert!(view["push"].is_null(), "{view}");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn push_goes_to_each_device_and_only_failed_ones_are_redelivered() {
    let (app, cart) = with_cart(quiet(), "alice").await;
    let alice = app.token("alice");
    put_device(&app, "alice", "fcm:phone", "android").await;
    put_device(&app, "alice", "fcm:tablet", "ios").await;
    put_device(&app, "bob", "fcm:bobs-phone", "ios").await;
    let id = submit(
        &app,
        &alice,
        json!({"cart_id": cart, "push_notification": true}),
    )
    .await;

    assert_eq!(
        notification_rows(&app, &id, "push").await,
        vec![
            ("fcm:phone".to_owned(), "pending".to_owned()),
            ("fcm:tablet".to_owned(), "pending".to_owned()),
        ]
    );
    let view = resource(&app, "alice", &id).await;
    assert_eq!(view["push"]["state"], "pending");
    assert_eq!(view["push"]["devices"], 2);
    assert_eq!(view["push"]["sent"], 0);
    assert_eq!(view["push"]["failed"], 0);

    // Nothing was given up on yet.
    let redeliver = format!("/cart/checkout/{id}/push/redeliver");
    let r = app.api.post(&redeliver, Some(&alice), &json!({})).await;
    assert_problem(&r, 409, "push_not_failed");

    // The phone got it; the tablet was given up on after an attempt.
    let db = app.env.db().await;
    let checkout: uuid::Uuid = id.parse().unwrap();
    db.execute(
        "UPDATE notifications SET state = 'delivered', attempts = 1, updated_at = now()
         WHERE checkout_id = $1 AND target = 'fcm:phone'",
        &[&checkout],
    )
    .await
    .unwrap();
    db.execute(
        "UPDATE notifications SET state = 'failed', attempts = 1,
                last_error = 'FCM answered 404 UNREGISTERED', updated_at = now()
         WHERE checkout_id = $1 AND target = 'fcm:tablet'",
        &[&checkout],
    )
    .await
    .unwrap();
    db.execute(
        "INSERT INTO notification_attempts
           (notification_id, attempt, started_at, duration_ms, response_status, error)
         SELECT id, 1, now(), 12, 404, 'FCM answered 404 UNREGISTERED'
         FROM notifications WHERE checkout_id = $1 AND target = 'fcm:tablet'",
        &[&checkout],
    )
    .await
    .unwrap();
    let view = resource(&app, "alice", &id).await;
    assert_eq!(view["push"]["state"], "partially_sent");
    assert_eq!(
        (
            view["push"]["sent"].as_i64(),
            view["push"]["failed"].as_i64()
        ),
        (Some(1), Some(1))
    );
    assert_eq!(view["push"]["last_error"], "FCM answered 404 UNREGISTERED");
    assert!(view["push"]["detail"]
        .as_str()
        .unwrap()
        .contains(&redeliver));

    let r = app
        .api
        .get(&format!("/cart/checkout/{id}/attempts"), Some(&alice))
        .await;
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.json["attempts"][0]["channel"], "push");
    assert_eq!(r.json["attempts"][0]["device"], "fcm:tablet");
    assert_eq!(r.json["attempts"][0]["response_status"], 404);

    // Someone else cannot redeliver; the owner re-queues the failed device only.
    let r = app
        .api
        .post(&redeliver, Some(&app.token("bob")), &json!({}))
        .await;
    assert_problem(&r, 404, "checkout_not_found");
    let r = app.api.post(&redeliver, Some(&alice), &json!({})).await;
    assert_eq!(r.status, 202, "{r:?}");
    assert!(r.header("location").unwrap().ends_with(&id));
    assert_eq!(r.json["checkout_id"], id.as_str());
    let push = r.json["push"].as_array().unwrap();
    assert_eq!(push.len(), 1, "{push:?}");
    assert_eq!(push[0]["device"], "fcm:tablet");
    assert_eq!(push[0]["state"], "pending");
    assert_eq!(push[0]["attempts"], 1);
    // One due message for the notifier (held back here), through the outbox.
    eventually(
        "the redelivery to be queued",
        Duration::from_secs(10),
        || async { (app.env.queue_len(CHECKOUT_FINISHED).await == 1).then_some(()) },
    )
    .await;
    assert_eq!(
        notification_rows(&app, &id, "push").await,
        vec![
            ("fcm:phone".to_owned(), "delivered".to_owned()),
            ("fcm:tablet".to_owned(), "pending".to_owned()),
        ]
    );
    let r = app.api.post(&redeliver, Some(&alice), &json!({})).await;
    assert_problem(&r, 409, "push_not_failed");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_email_claim_adds_an_email_without_showing_the_address() {
    let (app, cart) = with_cart(quiet(), "alice").await;
    let with_email = app.token_with_email("alice", "alice@example.com");
    let body = json!({"cart_id": cart});
    let first = app
        .api
        .send_with(
            Method::POST,
            "/cart/checkout/",
            Some(&app.token("alice")),
            &[("idempotency-key", "email-key")],
            Some(body.to_string()),
        )
        .await;
    assert_eq!(first.status, 202, "{first:?}");
    let id = first.json["checkout_id"].as_str().unwrap().to_owned();
    assert!(notification_rows(&app, &id, "email").await.is_empty());

    // The same request with a refreshed token that carries an email claim is a replay.
    let again = app
        .api
        .send_with(
            Method::POST,
            "/cart/checkout/",
            Some(&with_email),
            &[("idempotency-key", "email-key")],
            Some(body.to_string()),
        )
        .await;
    assert_eq!(again.status, 202, "{again:?}");
    assert_eq!(again.header("idempotent-replayed"), Some("true"));
    assert_eq!(again.json, first.json);

    let other = app.cart_with("alice", &[("acme", "belt")]).await;
    let id = submit(&app, &with_email, json!({"cart_id": other})).await;
    assert_eq!(
        notification_rows(&app, &id, "email").await,
        vec![("alice@example.com".to_owned(), "pending".to_owned())]
    );
    let r = app
        .api
        .get(&format!("/cart/checkout/{id}"), Some(&with_email))
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.json["email"]["state"], "pending");
    assert_eq!(r.json["email"]["attempts"], 0);
    assert!(r.json["push"].is_null());
    assert!(!r.text.contains("alice@example.com"), "{}", r.text);

    let redeliver = format!("/cart/checkout/{id}/email/redeliver");
    let r = app
        .api
        .post(&redeliver, Some(&with_email), &json!({}))
        .await;
    assert_problem(&r, 409, "email_not_failed");
    assert!(r.json["detail"].as_str().unwrap().contains("pending"));

    // Given up on (no SMTP on this deployment): it can be sent again.
    let checkout: uuid::Uuid = id.parse().unwrap();
    app.env
        .db()
        .await
        .execute(
            "UPDATE notifications SET state = 'not_configured',
                    last_error = 'e-mail is not configured', updated_at = now()
             WHERE checkout_id = $1 AND channel = 'email'",
            &[&checkout],
        )
        .await
        .unwrap();
    let view = resource(&app, "alice", &id).await;
    assert_eq!(view["email"]["state"], "not_configured");
    assert_eq!(view["email"]["last_error"], "e-mail is not configured");
    let r = app
        .api
        .post(&redeliver, Some(&with_email), &json!({}))
        .await;
    assert_eq!(r.status, 202, "{r:?}");
    assert_eq!(r.json["email"]["state"], "pending");
    assert!(!r.text.contains("alice@example.com"), "{}", r.text);
    app.stop().await;
}
