//! Delivery guarantees that can be proven in-process: idempotent submission, redelivery of a
//! parked callback, duplicate and poison messages, and the stuck-work sweepers.

use icon_contracts::topology::{dead_letter_queue, CHECKOUT_FINISHED, CHECKOUT_REQUESTED, PARKED};
use icon_contracts::{CheckoutRequested, Envelope};
use icon_domain::{CartId, CheckoutId};
use icon_testkit::{eventually, Options, Receiver, Scripted, Sim, TestApp};
use serde_json::json;
use std::collections::{HashMap, HashSet};
use std::time::Duration;

async fn setup(opts: Options) -> (TestApp, Sim) {
    let app = TestApp::spawn_with(opts).await;
    let sim = Sim::start().await;
    app.register_retailer("acme", &sim.order_url("acme")).await;
    (app, sim)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idempotency_key_replays_refuses_and_reports_in_progress() {
    let (app, _sim) = setup(Options::default()).await;
    let cart = app.cart_with("alice", &[("acme", "dress")]).await;
    let body = json!({"cart_id": cart});

    let first = app.checkout_with_key("alice", &body, "key-1").await;
    assert_eq!(first.status, 202, "{first:?}");
    assert!(first.header("idempotent-replayed").is_none());
    // Same key, same body (even with a default spelled out): the first response again.
    let again = app
        .checkout_with_key(
            "alice",
            &json!({"cart_id": cart, "push_notification": false}),
            "key-1",
        )
        .await;
    assert_eq!(again.status, 202);
    assert_eq!(again.json, first.json);
    assert_eq!(again.header("location"), first.header("location"));
    assert_eq!(again.header("idempotent-replayed"), Some("true"));
    // Same key, different body: 422.
    let other = app.cart_with("alice", &[("acme", "belt")]).await;
    let r = app
        .checkout_with_key("alice", &json!({"cart_id": other}), "key-1")
        .await;
    assert_eq!(r.status, 422);
    assert_eq!(r.json["code"], "idempotency_key_reused");
    // Keys belong to their user: bob's "key-1" is his own.
    let r = app
        .checkout_with_key("bob", &json!({"cart_id": other}), "key-1")
        .await;
    assert_eq!(r.status, 404, "bob's key is fresh, alice's cart is not his");
    assert_eq!(app.env.count("checkouts").await, 1);

    // A request still being processed holds the key: hold it like one would, and retry.
    let db = app.env.db().await;
    db.batch_execute(
        "BEGIN; SELECT pg_advisory_xact_lock(hashtextextended('alice' || chr(31) || 'key-2', 0))",
    )
    .await
    .unwrap();
    let r = app
        .checkout_with_key("alice", &json!({"cart_id": other}), "key-2")
        .await;
    assert_eq!(r.status, 409, "{r:?}");
    assert_eq!(r.json["code"], "idempotency_key_in_progress");
    assert!(r.header("retry-after").is_some());
    db.batch_execute("COMMIT").await.unwrap();
    let r = app
        .checkout_with_key("alice", &json!({"cart_id": other}), "key-2")
        .await;
    assert_eq!(r.status, 202);

    // Two identical requests at once make one checkout; the other is a replay or a 409.
    let third = app.cart_with("alice", &[("acme", "hat")]).await;
    let b = json!({"cart_id": third});
    let (x, y) = tokio::join!(
        app.checkout_with_key("alice", &b, "key-3"),
        app.checkout_with_key("alice", &b, "key-3")
    );
    let mut statuses = [x.status, y.status];
    statuses.sort();
    assert!(
        statuses == [202, 202] || statuses == [202, 409],
        "{statuses:?}"
    );
    if statuses == [202, 202] {
        assert_eq!(x.json["checkout_id"], y.json["checkout_id"]);
    }
    assert_eq!(app.env.count("checkouts").await, 3);

    let r = app
        .api
        .send_with(
            http::Method::POST,
            "/cart/checkout/",
            Some(&app.token("alice")),
            &[("idempotency-key", "")],
            Some(b.to_string()),
        )
        .await;
    assert_eq!(r.json["code"], "invalid_idempotency_key");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parked_callback_can_be_redelivered() {
    let (app, _sim) = setup(Options::default()).await;
    let cart = app.cart_with("alice", &[("acme", "dress")]).await;
    let receiver = Receiver::start(vec![Scripted::status(410)], None).await;
    let r = app.checkout("alice", cart, Some(&receiver.url)).await;
    let id = r.json["checkout_id"].as_str().unwrap().to_owned();
    let path = format!("/cart/checkout/{id}/callback/redeliver");
    let alice = app.token("alice");
    app.wait_for_checkout("alice", &id, "failed", |c| {
        c["callback"]["state"] == "failed"
    })
    .await;
    assert_eq!(app.env.drain_queue(PARKED).await.len(), 1);

    // Someone else cannot; the owner can.
    let r = app
        .api
        .post(&path, Some(&app.token("bob")), &json!({}))
        .await;
    assert_eq!(r.status, 404);
    let r = app.api.post(&path, Some(&alice), &json!({})).await;
    assert_eq!(r.status, 202, "{r:?}");
    assert_eq!(r.json["callback"]["state"], "pending");
    assert!(r.header("location").unwrap().ends_with(&id));

    let view = app
        .wait_for_checkout("alice", &id, "delivered", |c| {
            c["callback"]["state"] == "delivered"
        })
        .await;
    assert_eq!(view["callback"]["attempts"], 2);
    let attempts = app
        .api
        .get(&format!("/cart/checkout/{id}/attempts"), Some(&alice))
        .await;
    let list: Vec<_> = attempts.json["attempts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| {
            (
                a["attempt"].as_i64().unwrap(),
                a["response_status"].as_i64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        list,
        vec![(1, 410), (2, 200)],
        "new attempts after the old ones"
    );
    let seen = receiver.seen();
    assert_eq!(seen.len(), 2);
    assert_eq!(seen[0].webhook_id, seen[1].webhook_id);

    // Delivered now: a second redelivery would duplicate it.
    let r = app.api.post(&path, Some(&alice), &json!({})).await;
    assert_eq!(r.status, 409);
    assert_eq!(r.json["code"], "callback_not_failed");
    // A checkout without a callback has nothing to redeliver.
    let plain = app.cart_with("alice", &[("acme", "belt")]).await;
    let r = app.checkout("alice", plain, None).await;
    let plain_id = r.json["checkout_id"].as_str().unwrap();
    let r = app
        .api
        .post(
            &format!("/cart/checkout/{plain_id}/callback/redeliver"),
            Some(&alice),
            &json!({}),
        )
        .await;
    assert_eq!(r.status, 409, "{:?}", r.json);
    assert_eq!(r.json["code"], "callback_not_found");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retrying_callback_is_not_redelivered() {
    let (app, _sim) = setup(Options {
        retry_schedule: "1h".into(),
        ..Options::default()
    })
    .await;
    let cart = app.cart_with("alice", &[("acme", "dress")]).await;
    let receiver = Receiver::start(vec![], Some(Scripted::status(500))).await;
    let r = app.checkout("alice", cart, Some(&receiver.url)).await;
    let id = r.json["checkout_id"].as_str().unwrap().to_owned();
    app.wait_for_checkout("alice", &id, "retrying", |c| {
        c["callback"]["state"] == "retrying"
    })
    .await;
    let r = app
        .api
        .post(
            &format!("/cart/checkout/{id}/callback/redeliver"),
            Some(&app.token("alice")),
            &json!({}),
        )
        .await;
    assert_eq!(r.status, 409);
    assert!(r.json["detail"].as_str().unwrap().contains("retrying"));
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn duplicate_requests_place_one_order_and_finish_once() {
    let (app, sim) = setup(Options::default()).await;
    let receiver = Receiver::start(vec![], None).await;
    let cart = app.cart_with("alice", &[("acme", "slow-dress")]).await;
    let r = app.checkout("alice", cart, Some(&receiver.url)).await;
    let id: CheckoutId = r.json["checkout_id"].as_str().unwrap().parse().unwrap();
    // Two more copies while the first is in flight (the retailer is slow): one with the same
    // message id as a redelivery would have, one as a second publish would.
    let copy = Envelope::new(CheckoutRequested {
        checkout_id: id,
        cart_id: CartId::new(cart),
    });
    app.env
        .publish_raw(CHECKOUT_REQUESTED, &copy.to_json())
        .await;
    app.env
        .publish_raw(CHECKOUT_REQUESTED, &copy.to_json())
        .await;

    app.wait_for_checkout("alice", &id.to_string(), "delivered", |c| {
        c["callback"]["state"] == "delivered"
    })
    .await;
    eventually(
        "the worker queue to drain",
        Duration::from_secs(10),
        || async { (app.env.queue_len(CHECKOUT_REQUESTED).await == 0).then_some(()) },
    )
    .await;
    // And once more after it finished.
    app.env
        .publish_raw(
            CHECKOUT_REQUESTED,
            &Envelope::new(CheckoutRequested {
                checkout_id: id,
                cart_id: CartId::new(cart),
            })
            .to_json(),
        )
        .await;
    eventually(
        "the worker queue to drain",
        Duration::from_secs(10),
        || async { (app.env.queue_len(CHECKOUT_REQUESTED).await == 0).then_some(()) },
    )
    .await;

    let orders = sim.orders().await;
    let mut order_ids: HashMap<String, HashSet<String>> = HashMap::new();
    for o in &orders {
        if let Some(oid) = o["order_id"].as_str() {
            order_ids
                .entry(o["idempotency_key"].as_str().unwrap().to_owned())
                .or_default()
                .insert(oid.to_owned());
        }
    }
    assert_eq!(order_ids.len(), 1, "one retailer order key: {orders:?}");
    assert!(
        order_ids.values().all(|ids| ids.len() == 1),
        "never a second order: {order_ids:?}"
    );
    assert!(orders
        .iter()
        .all(|o| o["idempotency_key"] == format!("{id}:acme")));
    // One final transition: one checkout.finished, one callback.
    assert_eq!(receiver.seen().len(), 1);
    let line = format!(
        "FAULT checkout.requested published three times: accepted=1 completed=1 callbacks={} \
         duplicates=0 lost=0 double_orders={} (retailer requests with the same key={})",
        receiver.seen().len(),
        order_ids.values().filter(|ids| ids.len() > 1).count(),
        orders.len()
    );
    println!("{line}");
    icon_testkit::fleet::record(&line);
    let view = app
        .api
        .get(&format!("/cart/checkout/{id}"), Some(&app.token("alice")))
        .await;
    assert_eq!(view.json["status"], "completed");
    assert_eq!(view.json["callback"]["attempts"], 1);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn poison_messages_are_dead_lettered_with_a_reason_and_work_goes_on() {
    let (app, _sim) = setup(Options::default()).await;
    // Wait until both consumers have declared their queues.
    let receiver = Receiver::start(vec![], None).await;
    let cart = app.cart_with("alice", &[("acme", "dress")]).await;
    app.checkout("alice", cart, Some(&receiver.url)).await;
    receiver.wait_for(1, Duration::from_secs(20)).await;

    app.env
        .publish_raw(CHECKOUT_REQUESTED, b"this is not json")
        .await;
    let future = json!({"type": "checkout.finished", "version": 99, "message_id": uuid::Uuid::new_v4(),
        "checkout_id": uuid::Uuid::new_v4(), "occurred_at": "2026-01-01T00:00:00Z", "data": {}});
    app.env
        .publish_raw(CHECKOUT_FINISHED, future.to_string().as_bytes())
        .await;

    let dead = eventually("dead letters", Duration::from_secs(10), || async {
        let q = dead_letter_queue(CHECKOUT_REQUESTED);
        let f = dead_letter_queue(CHECKOUT_FINISHED);
        (app.env.queue_len(&q).await == 1 && app.env.queue_len(&f).await == 1).then_some((q, f))
    })
    .await;
    let requested = app.env.drain_queue_raw(&dead.0).await;
    assert_eq!(requested[0].0, b"this is not json");
    assert!(requested[0]
        .1
        .as_deref()
        .unwrap()
        .contains("not a JSON message envelope"));
    let finished = app.env.drain_queue_raw(&dead.1).await;
    assert!(finished[0]
        .1
        .as_deref()
        .unwrap()
        .contains("unsupported version 99"));

    // No redelivery loop, and the consumers keep going.
    let cart = app.cart_with("alice", &[("acme", "belt")]).await;
    app.checkout("alice", cart, Some(&receiver.url)).await;
    receiver.wait_for(2, Duration::from_secs(20)).await;
    assert_eq!(
        app.env
            .queue_len(&dead_letter_queue(CHECKOUT_REQUESTED))
            .await,
        0
    );
    let line = "FAULT poison messages: dead-lettered=2 (each once, with its reason); the next \
                checkout completed and was called back";
    println!("{line}");
    icon_testkit::fleet::record(line);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stuck_checkouts_and_notifications_are_picked_up_again() {
    let (mut app, _sim) = setup(Options {
        stuck_after: "1s".into(),
        // Placing one order must fit within the stuck threshold (the settings refuse it else).
        retailer_timeout: "300ms".into(),
        retailer_max_attempts: "2".into(),
        extra: vec![("ICON_RETAILER_RETRY_BACKOFF_MAX", "100ms".into())],
        start_worker: false,
        start_notifier: false,
        ..Options::default()
    })
    .await;
    let receiver = Receiver::start(vec![], None).await;
    let cart = app.cart_with("alice", &[("acme", "dress")]).await;
    let r = app.checkout("alice", cart, Some(&receiver.url)).await;
    let id = r.json["checkout_id"].as_str().unwrap().to_owned();
    // The message is lost (as if a queue were purged by mistake).
    let lost = eventually(
        "the request to be queued",
        Duration::from_secs(10),
        || async {
            let m = app.env.drain_queue(CHECKOUT_REQUESTED).await;
            (!m.is_empty()).then_some(m)
        },
    )
    .await;
    assert_eq!(lost.len(), 1);
    app.start_worker();
    app.wait_for_checkout("alice", &id, "completed by the sweeper", |c| {
        c["status"] == "completed"
    })
    .await;

    // Same for the finished message: lost before the notifier saw it.
    let lost = eventually("the finished event", Duration::from_secs(10), || async {
        let m = app.env.drain_queue(CHECKOUT_FINISHED).await;
        (!m.is_empty()).then_some(m)
    })
    .await;
    assert_eq!(lost.len(), 1);
    app.start_notifier();
    receiver.wait_for(1, Duration::from_secs(20)).await;
    app.wait_for_checkout("alice", &id, "delivered", |c| {
        c["callback"]["state"] == "delivered"
    })
    .await;
    app.stop().await;
}
