//! Signed callbacks (Standard Webhooks): real deliveries verified with the `standardwebhooks`
//! crate, an implementation written independently of ICON's; the secret endpoints, rotation and
//! its grace, one secret per owner, and secrets sealed at rest and kept out of error bodies.

use http::{HeaderMap, HeaderValue, Method};
use icon_testkit::{eventually, Options, Receiver, Recorded, Scripted, Sim, TestApp};
use standardwebhooks::Webhook;
use std::time::Duration;

async fn app_with(opts: Options) -> (TestApp, Sim) {
    let app = TestApp::spawn_with(opts).await;
    let sim = Sim::start().await;
    app.register_retailer("acme", &sim.order_url("acme")).await;
    (app, sim)
}

/// The owner's secret as `GET /webhook-secret` answers it.
async fn secret_of(app: &TestApp, user: &str) -> String {
    let r = app.api.get("/webhook-secret", Some(&app.token(user))).await;
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.header("cache-control"), Some("no-store"));
    r.json["secret"].as_str().expect("secret").to_owned()
}

async fn rotate(app: &TestApp, user: &str) -> serde_json::Value {
    let r = app
        .api
        .send(
            Method::POST,
            "/webhook-secret/rotate",
            Some(&app.token(user)),
            None,
            None,
        )
        .await;
    assert_eq!(r.status, 200, "{r:?}");
    r.json
}

/// Verifies a received callback as a partner's receiver would, with the reference library.
fn verifies(secret: &str, seen: &Recorded) -> bool {
    let mut headers = HeaderMap::new();
    for (name, value) in [
        ("webhook-id", &seen.webhook_id),
        ("webhook-timestamp", &seen.webhook_timestamp),
        ("webhook-signature", &seen.webhook_signature),
    ] {
        let value = value
            .as_deref()
            .unwrap_or_else(|| panic!("no {name} header"));
        headers.insert(name, HeaderValue::from_str(value).unwrap());
    }
    Webhook::new(secret)
        .expect("a whsec_ secret")
        .verify(&seen.raw_body, &headers)
        .is_ok()
}

/// Submits a checkout of one item for `user` with its callback at `receiver` and returns the
/// checkout id.
async fn checkout(app: &TestApp, user: &str, receiver: &Receiver) -> String {
    let cart = app.cart_with(user, &[("acme", "dress")]).await;
    let r = app.checkout(user, cart, Some(&receiver.url)).await;
    assert_eq!(r.status, 202, "{r:?}");
    r.json["checkout_id"].as_str().unwrap().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn callbacks_verify_with_their_owners_secret_created_on_first_use() {
    let (app, _sim) = app_with(Options::default()).await;
    // Alice never asked for her secret: the notifier creates it for her first callback. The
    // first attempt fails, so the retry (claimed on another path) is checked too.
    let alice_hooks = Receiver::start(vec![Scripted::status(500)], None).await;
    checkout(&app, "alice", &alice_hooks).await;
    let seen = alice_hooks.wait_for(2, Duration::from_secs(20)).await;
    let alice = secret_of(&app, "alice").await;
    assert!(alice.starts_with("whsec_"), "{alice}");
    let key = base64_len(&alice);
    assert!((24..=64).contains(&key), "{key} bytes");
    for s in &seen {
        assert!(verifies(&alice, s), "signed with Alice's secret: {s:?}");
        let sig = s.webhook_signature.as_deref().unwrap();
        assert!(sig.starts_with("v1,") && !sig.contains(' '), "{sig}");
    }
    // Real verification: a changed body or id does not verify.
    let mut forged = seen[1].clone();
    forged.raw_body = String::from_utf8_lossy(&forged.raw_body)
        .replace("completed", "failed")
        .into_bytes()
        .into();
    assert_ne!(forged.raw_body, seen[1].raw_body);
    assert!(!verifies(&alice, &forged));
    let mut forged = seen[1].clone();
    forged.webhook_id = Some(uuid::Uuid::new_v4().to_string());
    assert!(!verifies(&alice, &forged));

    // Stable: asking again answers the same secret.
    assert_eq!(secret_of(&app, "alice").await, alice);

    // Bob asks first (created by the GET), gets his own, and his callbacks verify with his
    // secret only.
    let bob = secret_of(&app, "bob").await;
    assert_ne!(bob, alice);
    let bob_hooks = Receiver::start(vec![], None).await;
    checkout(&app, "bob", &bob_hooks).await;
    let seen = bob_hooks.wait_for(1, Duration::from_secs(20)).await;
    assert!(verifies(&bob, &seen[0]));
    assert!(!verifies(&alice, &seen[0]));
    assert_eq!(secret_of(&app, "bob").await, bob);
    app.stop().await;
}

/// The number of bytes a `whsec_` secret's base64 holds.
fn base64_len(secret: &str) -> usize {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD
        .decode(secret.trim_start_matches("whsec_"))
        .expect("base64")
        .len()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_rotation_both_secrets_verify_until_the_grace_ends() {
    let (app, _sim) = app_with(Options {
        extra: vec![("ICON_WEBHOOK_SECRET_GRACE", "10s".into())],
        ..Options::default()
    })
    .await;
    let old = secret_of(&app, "alice").await;
    let rotated = rotate(&app, "alice").await;
    let new = rotated["secret"].as_str().unwrap().to_owned();
    assert_ne!(new, old);
    assert_eq!(secret_of(&app, "alice").await, new);
    let until: chrono::DateTime<chrono::Utc> = rotated["previous_valid_until"]
        .as_str()
        .expect("previous_valid_until")
        .parse()
        .unwrap();

    let receiver = Receiver::start(vec![], None).await;
    checkout(&app, "alice", &receiver).await;
    let during = receiver
        .wait_for(1, Duration::from_secs(20))
        .await
        .remove(0);
    let sent_at: i64 = during
        .webhook_timestamp
        .as_deref()
        .unwrap()
        .parse()
        .unwrap();
    assert!(
        sent_at < until.timestamp(),
        "precondition: the callback went out within the grace"
    );
    let sig = during.webhook_signature.as_deref().unwrap();
    assert_eq!(sig.split(' ').count(), 2, "two signatures: {sig}");
    assert!(verifies(&new, &during), "verifies with the new secret");
    assert!(verifies(&old, &during), "verifies with the previous secret");

    // Once the grace is over the gateway no longer mentions the previous secret, and callbacks
    // are signed with the new one only.
    eventually("the grace to end", Duration::from_secs(30), || async {
        let r = app
            .api
            .get("/webhook-secret", Some(&app.token("alice")))
            .await;
        r.json["previous_valid_until"].is_null().then_some(())
    })
    .await;
    checkout(&app, "alice", &receiver).await;
    let after = receiver
        .wait_for(2, Duration::from_secs(20))
        .await
        .remove(1);
    let sig = after.webhook_signature.as_deref().unwrap();
    assert_eq!(sig.split(' ').count(), 1, "one signature: {sig}");
    assert!(verifies(&new, &after));
    assert!(!verifies(&old, &after));
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secrets_are_sealed_at_rest_and_bound_to_their_owner() {
    let app = TestApp::spawn_with(Options {
        start_worker: false,
        start_notifier: false,
        ..Options::default()
    })
    .await;
    let secret = secret_of(&app, "alice").await;
    let rotated = rotate(&app, "alice").await;
    let new = rotated["secret"].as_str().unwrap().to_owned();
    let db = app.env.db().await;
    let row = db
        .query_one(
            "SELECT current, previous FROM webhook_secrets WHERE owner = 'alice'",
            &[],
        )
        .await
        .unwrap();
    use base64::Engine;
    for (column, whsec) in [(0, &new), (1, &secret)] {
        let stored: Vec<u8> = row.get(column);
        let key = base64::engine::general_purpose::STANDARD
            .decode(whsec.trim_start_matches("whsec_"))
            .unwrap();
        assert!(
            !stored.windows(key.len()).any(|w| w == key),
            "column {column} holds the key in the clear"
        );
        let text = String::from_utf8_lossy(&stored);
        assert!(!text.contains(whsec.trim_start_matches("whsec_")));
        // A nonce, the sealed key and its tag.
        assert_eq!(stored.len(), 12 + key.len() + 16);
    }

    // A row copied to another owner does not open for them: a 500 that reveals nothing.
    db.execute(
        "INSERT INTO webhook_secrets (owner, current)
         SELECT 'mallory', current FROM webhook_secrets WHERE owner = 'alice'",
        &[],
    )
    .await
    .unwrap();
    let r = app
        .api
        .get("/webhook-secret", Some(&app.token("mallory")))
        .await;
    assert_eq!(r.status, 500, "{r:?}");
    assert!(!r.text.contains(&new) && !r.text.contains(&secret));
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_error_body_holds_a_secret() {
    let app = TestApp::spawn_with(Options {
        start_worker: false,
        start_notifier: false,
        ..Options::default()
    })
    .await;
    let secret = secret_of(&app, "alice").await;
    let bare = secret.trim_start_matches("whsec_");
    let token = app.token("alice");
    let replies = [
        app.api.get("/webhook-secret", None).await,
        app.api.get("/webhook-secret", Some("not-a-token")).await,
        app.api
            .send(Method::POST, "/webhook-secret", Some(&token), None, None)
            .await,
        app.api.get("/webhook-secret/rotate", Some(&token)).await,
        app.api
            .send(Method::DELETE, "/webhook-secret", Some(&token), None, None)
            .await,
        app.api
            .send(Method::POST, "/webhook-secret/rotate", None, None, None)
            .await,
    ];
    for r in replies {
        assert!(r.status >= 400, "{r:?}");
        assert_eq!(r.content_type(), "application/problem+json", "{r:?}");
        assert!(!r.text.contains(bare), "a secret in an error body: {r:?}");
    }
    app.stop().await;
}

/// The notifier signs without a round trip of its own: the claim statements (first attempts of
/// one checkout or several, and a retry's claim) bring the owner's sealed secrets along, or
/// the owner alone when it has none yet.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn claims_bring_the_owners_secrets_along() {
    use icon_domain::CheckoutId;
    use icon_store::notifications::{claim_attempt, claim_first_attempts, AttemptClaim};
    use icon_store::secrets::SecretsKey;
    let (app, _sim) = app_with(Options {
        start_notifier: false,
        ..Options::default()
    })
    .await;
    let receiver = Receiver::start(vec![], None).await;
    let alice = secret_of(&app, "alice").await;
    let mut ids = Vec::new();
    for user in ["alice", "alice", "bob"] {
        let id = checkout(&app, user, &receiver).await;
        app.wait_for_checkout(user, &id, "completed", |c| c["status"] == "completed")
            .await;
        ids.push(CheckoutId::from_uuid(id.parse().unwrap()));
    }
    let key = SecretsKey::parse(icon_testkit::SECRETS_KEY).unwrap();
    let pool = app.env.pool().await;
    let conn = pool.get().await.unwrap();
    // Alice's two checkouts together (no lease, so a retry may take over at once).
    let found = claim_first_attempts(&conn, &ids[..2], &["callback"], Duration::ZERO)
        .await
        .unwrap();
    for list in &found {
        let signing = list[0].1.as_ref().unwrap().signing.as_ref().unwrap();
        assert_eq!(signing.owner, "alice");
        let secrets = signing.open(&key).unwrap().expect("Alice has a secret");
        assert_eq!(secrets.current.expose_whsec(), alice);
        assert!(secrets.previous.is_none());
    }
    // Bob's alone: he has no secret yet, so the notifier will create it.
    let found = claim_first_attempts(&conn, &ids[2..], &["callback"], Duration::ZERO)
        .await
        .unwrap();
    let signing = found[0][0].1.as_ref().unwrap().signing.clone().unwrap();
    assert_eq!(signing.owner, "bob");
    assert!(signing.open(&key).unwrap().is_none());
    // A retry's claim, after a rotation: both secrets while the grace lasts.
    let new = rotate(&app, "alice").await["secret"]
        .as_str()
        .unwrap()
        .to_owned();
    let n = found_first(&conn, ids[0]).await;
    let claimed = claim_attempt(&conn, n, 1, Duration::from_secs(60))
        .await
        .unwrap();
    let AttemptClaim::Claimed(claimed) = claimed else {
        panic!("{claimed:?}")
    };
    let secrets = claimed.signing.unwrap().open(&key).unwrap().unwrap();
    assert_eq!(secrets.current.expose_whsec(), new);
    assert_eq!(secrets.previous.unwrap().expose_whsec(), alice);
    app.stop().await;
}

/// The id of a checkout's callback notification.
async fn found_first(
    conn: &icon_store::Conn,
    checkout: icon_domain::CheckoutId,
) -> icon_domain::NotificationId {
    icon_store::notifications::for_channel(conn, checkout, "callback")
        .await
        .unwrap()[0]
        .id
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_secret_endpoints_are_in_the_openapi_document() {
    let app = TestApp::spawn_with(Options {
        start_worker: false,
        start_notifier: false,
        ..Options::default()
    })
    .await;
    let spec = app.api.get("/openapi.json", None).await.json;
    for (path, method) in [
        ("/webhook-secret", "get"),
        ("/webhook-secret/rotate", "post"),
    ] {
        let op = &spec["paths"][path][method];
        assert!(op["summary"].is_string(), "{path} {method}: {op}");
        assert_eq!(op["tags"][0], "webhooks");
        let ok = &op["responses"]["200"]["content"]["application/json"];
        assert!(ok.is_object(), "{path} {method}: {op}");
        assert!(op["responses"]["401"].is_object());
    }
    app.stop().await;
}
