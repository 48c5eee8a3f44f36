//! Push notifications over FCM HTTP v1, against the simulator's FCM and OAuth2 token endpoint:
//! the token endpoint verifies the grant's RS256 signature with the service account's public key
//! and its claims, and the FCM endpoint checks the bearer token and the message's shape and
//! answers by token prefix (`dead-`, `invalid-`, `busy-`, `down-`, `denied-`).

use icon_testkit::{eventually, Options, Sim, TestApp};
use serde_json::{json, Value};
use std::time::Duration;

/// The system with push pointed at `sim`'s FCM, and a cart for alice.
async fn push_app(sim: &Sim, with_credentials: bool) -> (TestApp, i64) {
    let mut extra = vec![("ICON_FCM_ENDPOINT", sim.fcm_endpoint())];
    if with_credentials {
        extra.push((
            "ICON_FCM_CREDENTIALS",
            sim.service_account_file().display().to_string(),
        ));
    }
    let app = TestApp::spawn_with(Options {
        extra,
        ..Options::default()
    })
    .await;
    app.register_retailer("acme", &sim.order_url("acme")).await;
    let cart = app.cart_with("alice", &[("acme", "dress")]).await;
    (app, cart)
}

async fn register(app: &TestApp, user: &str, token: &str, platform: &str) {
    let r = app
        .api
        .put(
            &format!("/me/devices/{token}"),
            Some(&app.token(user)),
            &json!({ "platform": platform }),
        )
        .await;
    assert_eq!(r.status, 201, "register {token}: {r:?}");
}

async fn checkout_with_push(app: &TestApp, user: &str, cart: i64) -> String {
    let r = app
        .api
        .post(
            "/cart/checkout/",
            Some(&app.token(user)),
            &json!({ "cart_id": cart, "push_notification": true }),
        )
        .await;
    assert_eq!(r.status, 202, "{r:?}");
    r.json["checkout_id"].as_str().unwrap().to_owned()
}

/// Waits until no push of the checkout is pending, and returns the resource.
async fn settled(app: &TestApp, user: &str, id: &str) -> Value {
    app.wait_for_checkout(user, id, "push settled", |c| {
        c["push"]["state"] != "pending" && c["push"]["state"].is_string()
    })
    .await
}

/// The messages the simulator's FCM got for `token`, oldest first.
async fn sent_to(sim: &Sim, token: &str) -> Vec<Value> {
    sim.fcm_messages()
        .await
        .into_iter()
        .filter(|m| m["token"] == token)
        .collect()
}

async fn attempts(app: &TestApp, user: &str, id: &str) -> Vec<Value> {
    let r = app
        .api
        .get(
            &format!("/cart/checkout/{id}/attempts"),
            Some(&app.token(user)),
        )
        .await;
    assert_eq!(r.status, 200, "{r:?}");
    r.json["attempts"].as_array().unwrap().clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_device_gets_the_outcome_in_its_platforms_shape() {
    let sim = Sim::start().await;
    let (app, cart) = push_app(&sim, true).await;
    register(&app, "alice", "phone-android-1", "android").await;
    register(&app, "alice", "phone-ios-1", "ios").await;
    register(&app, "alice", "browser-web-1", "web").await;
    // Bob's device must not hear about alice's checkout.
    register(&app, "bob", "phone-bob-1", "android").await;

    let id = checkout_with_push(&app, "alice", cart).await;
    let view = settled(&app, "alice", &id).await;
    assert_eq!(view["status"], "completed");
    assert_eq!(view["push"]["state"], "sent", "{view}");
    assert_eq!(view["push"]["devices"], 3);
    assert_eq!(view["push"]["sent"], 3);
    assert_eq!(view["push"]["failed"], 0);

    let android = sent_to(&sim, "phone-android-1").await;
    assert_eq!(android.len(), 1, "{android:?}");
    assert_eq!(android[0]["status"], 200);
    let m = &android[0]["message"];
    assert_eq!(m["android"]["priority"], "high");
    assert_eq!(m["android"]["collapse_key"], id.as_str());
    assert_eq!(m["data"]["checkout_id"], id.as_str());
    assert_eq!(m["data"]["status"], "completed");
    assert_eq!(m["data"]["source_url"], view["resource_url"]);
    assert_eq!(m["notification"]["title"], "Your order is placed");
    assert_eq!(
        m["notification"]["body"],
        "The retailer confirmed your order."
    );

    let ios = sent_to(&sim, "phone-ios-1").await;
    assert_eq!(ios.len(), 1);
    let headers = &ios[0]["message"]["apns"]["headers"];
    assert_eq!(headers["apns-priority"], "10");
    assert_eq!(headers["apns-collapse-id"], id.as_str());
    assert_eq!(sent_to(&sim, "browser-web-1").await.len(), 1);
    assert!(sent_to(&sim, "phone-bob-1").await.is_empty());

    let pushes: Vec<_> = attempts(&app, "alice", &id)
        .await
        .into_iter()
        .filter(|a| a["channel"] == "push")
        .collect();
    let mut devices: Vec<_> = pushes
        .iter()
        .map(|a| a["device"].as_str().unwrap().to_owned())
        .collect();
    devices.sort();
    assert_eq!(
        devices,
        vec!["browser-web-1", "phone-android-1", "phone-ios-1"]
    );
    assert!(pushes.iter().all(|a| a["response_status"] == 200));
    // One grant served every push.
    assert_eq!(sim.grants().await.len(), 1);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_token_is_removed_and_does_not_hold_back_the_others() {
    let sim = Sim::start().await;
    let (app, cart) = push_app(&sim, true).await;
    register(&app, "alice", "dead-phone", "android").await;
    register(&app, "alice", "invalid-tablet", "android").await;
    register(&app, "alice", "good-phone", "ios").await;

    let id = checkout_with_push(&app, "alice", cart).await;
    let view = settled(&app, "alice", &id).await;
    assert_eq!(view["push"]["state"], "partially_sent", "{view}");
    assert_eq!(view["push"]["sent"], 1);
    assert_eq!(view["push"]["failed"], 2);
    let last_error = view["push"]["last_error"].as_str().unwrap_or_default();
    assert!(last_error.contains("removed from the registry"), "{view}");

    // Each dead device was tried once, never again, and is gone from the registry.
    assert_eq!(sent_to(&sim, "dead-phone").await.len(), 1);
    assert_eq!(sent_to(&sim, "invalid-tablet").await.len(), 1);
    let list = app.api.get("/me/devices", Some(&app.token("alice"))).await;
    let left: Vec<_> = list.json["devices"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["token"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(left, vec!["good-phone"]);
    // Dropped, not parked: there is nothing an operator could redo.
    assert_eq!(app.env.queue_len(icon_contracts::topology::PARKED).await, 0);
    // Nor counted by the parked gauge (`icon_notifications_parked` reads this table).
    assert_eq!(app.env.count("parked_notifications").await, 0);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn busy_and_unavailable_are_retried_honouring_retry_after() {
    let sim = Sim::start().await;
    let (app, cart) = push_app(&sim, true).await;
    register(&app, "alice", "busy-phone", "android").await;
    register(&app, "alice", "down-phone", "android").await;

    let id = checkout_with_push(&app, "alice", cart).await;
    let view = settled(&app, "alice", &id).await;
    assert_eq!(view["push"]["state"], "sent", "{view}");

    let busy = sent_to(&sim, "busy-phone").await;
    assert_eq!(
        busy.iter().map(|m| m["status"].clone()).collect::<Vec<_>>(),
        vec![json!(429), json!(200)]
    );
    // The schedule says 100ms; FCM's Retry-After said 1s, and wins.
    let at = |m: &Value| {
        chrono::DateTime::parse_from_rfc3339(m["received_at"].as_str().unwrap()).unwrap()
    };
    let waited = at(&busy[1]) - at(&busy[0]);
    assert!(
        waited >= chrono::Duration::milliseconds(950),
        "retried after {waited:?}, before Retry-After"
    );
    let down = sent_to(&sim, "down-phone").await;
    assert_eq!(
        down.iter().map(|m| m["status"].clone()).collect::<Vec<_>>(),
        vec![json!(503), json!(200)]
    );
    let statuses: Vec<_> = attempts(&app, "alice", &id)
        .await
        .into_iter()
        .filter(|a| a["device"] == "down-phone")
        .map(|a| a["response_status"].clone())
        .collect();
    assert_eq!(statuses, vec![json!(503), json!(200)]);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_access_token_is_renewed_once_and_one_grant_serves_many_pushes() {
    let sim = Sim::start().await;
    let (app, cart) = push_app(&sim, true).await;
    for i in 0..5 {
        register(&app, "alice", &format!("phone-{i}"), "android").await;
    }
    let first = checkout_with_push(&app, "alice", cart).await;
    assert_eq!(settled(&app, "alice", &first).await["push"]["sent"], 5);
    let second_cart = app.cart_with("alice", &[("acme", "coat")]).await;
    let second = checkout_with_push(&app, "alice", second_cart).await;
    assert_eq!(settled(&app, "alice", &second).await["push"]["sent"], 5);
    assert_eq!(sim.fcm_messages().await.len(), 10);
    assert_eq!(sim.grants().await.len(), 1, "one grant for ten pushes");

    // FCM stops accepting the cached token: the next push gets a 401, renews, and goes out.
    sim.revoke_tokens().await;
    let third_cart = app.cart_with("alice", &[("acme", "hat")]).await;
    let third = checkout_with_push(&app, "alice", third_cart).await;
    let view = settled(&app, "alice", &third).await;
    assert_eq!(view["push"]["state"], "sent", "{view}");
    let grants = sim.grants().await;
    assert_eq!(
        grants.len(),
        2,
        "one renewal for all five pushes: {grants:?}"
    );
    let statuses: Vec<_> = sim
        .fcm_messages()
        .await
        .iter()
        .skip(10)
        .map(|m| m["status"].as_i64().unwrap())
        .collect();
    assert_eq!(
        statuses.iter().filter(|s| **s == 200).count(),
        5,
        "{statuses:?}"
    );
    assert!(
        statuses.iter().all(|s| *s == 200 || *s == 401),
        "{statuses:?}"
    );
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_push_fcm_refuses_for_good_is_given_up_with_its_error() {
    let sim = Sim::start().await;
    let (app, cart) = push_app(&sim, true).await;
    register(&app, "alice", "denied-phone", "android").await;
    let id = checkout_with_push(&app, "alice", cart).await;
    let view = settled(&app, "alice", &id).await;
    assert_eq!(view["push"]["state"], "failed", "{view}");
    let error = view["push"]["last_error"].as_str().unwrap_or_default();
    assert!(
        error.contains("403") && error.contains("SENDER_ID_MISMATCH"),
        "{error}"
    );
    assert_eq!(sent_to(&sim, "denied-phone").await.len(), 1);
    // Given up for good is parked for operators, and the device stays registered.
    eventually("the push parked", Duration::from_secs(10), || async {
        (app.env.queue_len(icon_contracts::topology::PARKED).await == 1).then_some(())
    })
    .await;
    // Counted by the parked gauge (`icon_notifications_parked` reads this table).
    assert_eq!(app.env.count("parked_notifications").await, 1);
    let list = app.api.get("/me/devices", Some(&app.token("alice"))).await;
    assert_eq!(list.json["devices"].as_array().unwrap().len(), 1);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_credentials_push_is_recorded_as_not_configured() {
    let sim = Sim::start().await;
    let (app, cart) = push_app(&sim, false).await;
    register(&app, "alice", "phone-1", "android").await;
    let id = checkout_with_push(&app, "alice", cart).await;
    let view = settled(&app, "alice", &id).await;
    assert_eq!(view["status"], "completed");
    assert_eq!(view["push"]["state"], "not_configured", "{view}");
    assert!(sim.fcm_messages().await.is_empty());
    assert!(sim.grants().await.is_empty());
    app.stop().await;
}
