//! The holes closed by "never twice, never stuck", each proven from outside: the retailer's
//! request and lookup logs, the callback receiver, the resource. Each test fails on the code
//! before the fix and adds a `FAULT` line to the report.

use icon_contracts::topology::CHECKOUT_FINISHED;
use icon_testkit::{eventually, Options, Receiver, Sim, TestApp};
use serde_json::Value;
use std::collections::HashSet;
use std::time::Duration;

async fn with_acme(opts: Options) -> (TestApp, Sim) {
    let app = TestApp::spawn_with(opts).await;
    let sim = Sim::start().await;
    app.register_retailer("acme", &sim.order_url("acme")).await;
    (app, sim)
}

fn id_of(reply: &icon_testkit::ApiReply) -> String {
    assert_eq!(reply.status, 202, "{reply:?}");
    reply.json["checkout_id"].as_str().unwrap().to_owned()
}

fn order<'a>(checkout: &'a Value, retailer: &str) -> &'a Value {
    checkout["orders"]
        .as_array()
        .unwrap()
        .iter()
        .find(|o| o["retailer_id"] == retailer)
        .unwrap()
}

fn report(line: &str) {
    println!("{line}");
    icon_testkit::fleet::record(line);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retrying_a_failed_cart_resends_the_earlier_key_and_places_no_second_order() {
    // `ghost-`: the retailer places the order but every answer is lost (502). With lookups off
    // the order stays `unknown`, the checkout fails and the cart is free again.
    // One attempt: a retry with the same key would be answered (the simulator replays it).
    let (app, sim) = with_acme(Options {
        retailer_max_attempts: "1".into(),
        extra: vec![("ICON_RETAILER_SETTLE_WITHIN", "0s".into())],
        ..Options::default()
    })
    .await;
    let receiver = Receiver::start(vec![], None).await;
    let cart = app.cart_with("alice", &[("acme", "ghost-dress")]).await;
    let first = id_of(&app.checkout("alice", cart, Some(&receiver.url)).await);
    let view = app
        .wait_for_checkout("alice", &first, "failed", |c| c["status"] == "failed")
        .await;
    assert_eq!(order(&view, "acme")["status"], "unknown", "{view}");
    let callback = receiver.wait_for(1, Duration::from_secs(20)).await;
    assert_eq!(callback[0].body["orders"][0]["status"], "unknown");

    // What is ordered from that retailer can no longer change: a retry re-sends that order.
    let r = app
        .api
        .post(
            &format!("/carts/{cart}/items"),
            Some(&app.token("alice")),
            &serde_json::json!({"retailer_id": "acme", "sku": "belt", "quantity": 1,
                                "unit_price": {"amount_minor": 500, "currency": "GBP"}}),
        )
        .await;
    assert_eq!(r.status, 409, "{r:?}");
    assert_eq!(r.json["code"], "order_unknown");
    assert_eq!(r.json["checkout_id"], first.as_str());

    // The shopper tries again: the retailer gets the earlier key (and body) and answers with
    // the order it placed the first time.
    let second = id_of(&app.checkout("alice", cart, None).await);
    let view = app
        .wait_for_checkout("alice", &second, "completed", |c| {
            c["status"] == "completed"
        })
        .await;
    let requests = sim.orders().await;
    let keys: HashSet<&str> = requests
        .iter()
        .filter_map(|r| r["idempotency_key"].as_str())
        .collect();
    let placed: HashSet<&str> = requests
        .iter()
        .filter_map(|r| r["order_id"].as_str())
        .collect();
    assert_eq!(keys, HashSet::from([format!("{first}:acme").as_str()]));
    assert_eq!(placed.len(), 1, "one order at the retailer: {requests:?}");
    assert_eq!(
        order(&view, "acme")["retailer_order_id"].as_str(),
        placed.iter().next().copied()
    );
    report(&format!(
        "FAULT retry of a failed cart after lost answers: requests={}, keys=1, orders placed=1, \
         placed twice=0",
        requests.len()
    ));
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_order_placed_but_never_acknowledged_is_settled_by_lookup() {
    // One attempt, whose answer is lost: only the lookup can tell that the order exists.
    let (app, sim) = with_acme(Options {
        retailer_max_attempts: "1".into(),
        ..Options::default()
    })
    .await;
    let receiver = Receiver::start(vec![], None).await;
    let cart = app.cart_with("alice", &[("acme", "ghost-dress")]).await;
    let id = id_of(&app.checkout("alice", cart, Some(&receiver.url)).await);
    let callbacks = receiver.wait_for(1, Duration::from_secs(20)).await;
    let view = app
        .wait_for_checkout("alice", &id, "completed", |c| c["status"] == "completed")
        .await;
    let placed = sim
        .orders()
        .await
        .iter()
        .find_map(|r| r["order_id"].as_str().map(str::to_owned))
        .expect("the retailer placed the order");
    assert_eq!(order(&view, "acme")["status"], "confirmed");
    assert_eq!(order(&view, "acme")["retailer_order_id"], placed.as_str());
    let lookups = sim.lookups().await;
    assert!(
        lookups
            .iter()
            .any(|l| l["response_status"] == 200 && l["idempotency_key"] == format!("{id}:acme")),
        "{lookups:?}"
    );
    // One callback, sent once the order was settled, saying what really happened.
    assert_eq!(callbacks.len(), 1);
    assert_eq!(callbacks[0].body["status"], "completed");
    assert_eq!(
        callbacks[0].body["orders"][0]["retailer_order_id"],
        placed.as_str()
    );
    report(&format!(
        "FAULT order placed but never acknowledged: settled by lookup={} (confirmed), callbacks=1",
        lookups.len()
    ));
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retailer_409_is_a_request_in_progress_and_is_retried() {
    let (app, sim) = with_acme(Options::default()).await;
    let cart = app.cart_with("alice", &[("acme", "conflict-dress")]).await;
    let id = id_of(&app.checkout("alice", cart, None).await);
    let view = app
        .wait_for_checkout("alice", &id, "completed", |c| c["status"] == "completed")
        .await;
    assert_eq!(order(&view, "acme")["status"], "confirmed");
    let requests = sim.orders().await;
    assert_eq!(requests.len(), 2, "{requests:?}");
    assert_eq!(requests[0]["response_status"], 409);
    assert_eq!(
        requests[0]["idempotency_key"],
        requests[1]["idempotency_key"]
    );
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_nul_byte_order_id_cannot_stall_the_checkout() {
    let (app, _sim) = with_acme(Options::default()).await;
    let receiver = Receiver::start(vec![], None).await;
    let cart = app.cart_with("alice", &[("acme", "nul-dress")]).await;
    let id = id_of(&app.checkout("alice", cart, Some(&receiver.url)).await);
    let callbacks = receiver.wait_for(1, Duration::from_secs(20)).await;
    assert_eq!(callbacks[0].body["status"], "completed");
    let view = app
        .wait_for_checkout("alice", &id, "completed", |c| c["status"] == "completed")
        .await;
    let stored = order(&view, "acme")["retailer_order_id"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(stored.starts_with("sim-"), "{stored:?}");
    assert!(!stored.chars().any(char::is_control), "{stored:?}");
    report("FAULT NUL byte in a retailer order id: sanitised, completed, callbacks=1");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_checkout_that_cannot_be_recorded_fails_with_a_reason_and_still_calls_back() {
    let (app, sim) = with_acme(Options {
        extra: vec![("ICON_WORKER_MAX_DELIVERIES", "3".into())],
        ..Options::default()
    })
    .await;
    // A database error that is not an outage, on every try: the retailer's answer cannot be
    // stored (as a NUL byte once could not be).
    app.env
        .db()
        .await
        .batch_execute(
            "CREATE FUNCTION refuse_acme() RETURNS trigger LANGUAGE plpgsql AS $$
             BEGIN
               IF NEW.retailer_id = 'acme' AND NEW.status = 'confirmed' THEN
                 RAISE EXCEPTION 'simulated bad data: this answer cannot be stored';
               END IF;
               RETURN NEW;
             END $$;
             CREATE TRIGGER refuse_acme BEFORE UPDATE ON checkout_orders
               FOR EACH ROW EXECUTE FUNCTION refuse_acme();",
        )
        .await
        .unwrap();
    let receiver = Receiver::start(vec![], None).await;
    let cart = app.cart_with("alice", &[("acme", "dress")]).await;
    let id = id_of(&app.checkout("alice", cart, Some(&receiver.url)).await);
    let callbacks = receiver.wait_for(1, Duration::from_secs(30)).await;
    assert_eq!(callbacks[0].body["status"], "failed");
    let reason = callbacks[0].body["reason"].as_str().unwrap_or_default();
    assert!(
        reason.contains("3 times") && reason.contains("simulated bad data"),
        "{reason}"
    );
    let view = app
        .wait_for_checkout("alice", &id, "failed", |c| c["status"] == "failed")
        .await;
    assert_eq!(
        view["reason"], reason,
        "the resource says why, as the callback does"
    );
    // The retailer may have placed it: the order is `unknown`, so a retry re-sends its key.
    assert_eq!(order(&view, "acme")["status"], "unknown");
    // Three passes, each calling the retailer with the same key: one order there.
    let requests = sim.orders().await;
    assert_eq!(requests.len(), 3, "{requests:?}");
    let placed: HashSet<&str> = requests
        .iter()
        .filter_map(|r| r["order_id"].as_str())
        .collect();
    assert_eq!(placed.len(), 1);
    app.env.outbox_drained().await;
    report(
        "FAULT unstorable retailer answer: passes=3 (ICON_WORKER_MAX_DELIVERIES), then failed \
         with a reason; callbacks=1, placed twice=0",
    );
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_copies_of_one_message_call_the_receiver_once() {
    let (mut app, _sim) = with_acme(Options {
        start_notifier: false,
        ..Options::default()
    })
    .await;
    // A slow receiver: both copies are in the notifier at the same time.
    let receiver = Receiver::start_on(0, vec![], None, Duration::from_millis(700)).await;
    let cart = app.cart_with("alice", &[("acme", "dress")]).await;
    let id = id_of(&app.checkout("alice", cart, Some(&receiver.url)).await);
    app.wait_for_checkout("alice", &id, "completed", |c| c["status"] == "completed")
        .await;
    let finished = eventually("checkout.finished", Duration::from_secs(10), || async {
        let m = app.env.drain_queue_raw(CHECKOUT_FINISHED).await;
        (!m.is_empty()).then_some(m)
    })
    .await;
    assert_eq!(finished.len(), 1);
    // A redelivery and a duplicate publish: two identical copies.
    for _ in 0..2 {
        app.env.publish_raw(CHECKOUT_FINISHED, &finished[0].0).await;
    }
    app.start_notifier();
    app.wait_for_checkout("alice", &id, "delivered", |c| {
        c["callback"]["state"] == "delivered"
    })
    .await;
    let attempts = app
        .api
        .get(
            &format!("/cart/checkout/{id}/attempts"),
            Some(&app.token("alice")),
        )
        .await;
    assert_eq!(
        attempts.json["attempts"].as_array().map(Vec::len),
        Some(1),
        "{attempts:?}"
    );
    assert_eq!(receiver.seen().len(), 1, "one call for one attempt");
    report("FAULT two copies of one checkout.finished at once: receiver calls=1, attempts=1");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_checkout_slower_than_the_stuck_threshold_gets_one_callback_chain() {
    let (mut app, _sim) = with_acme(Options {
        stuck_after: "1s".into(),
        retailer_timeout: "300ms".into(),
        retailer_max_attempts: "2".into(),
        extra: vec![("ICON_RETAILER_RETRY_BACKOFF_MAX", "100ms".into())],
        start_worker: false,
        ..Options::default()
    })
    .await;
    // The receiver is slow and fails twice, so the chain is in flight or waiting for a while.
    let receiver = Receiver::start_on(
        0,
        vec![
            icon_testkit::Scripted::status(500),
            icon_testkit::Scripted::status(500),
        ],
        None,
        Duration::from_millis(600),
    )
    .await;
    let cart = app.cart_with("alice", &[("acme", "dress")]).await;
    let id = id_of(&app.checkout("alice", cart, Some(&receiver.url)).await);
    // The checkout waits (a backlog, say) well past ICON_NOTIFIER_STUCK_AFTER.
    let db = app.env.db().await;
    eventually(
        "the checkout to be older than the stuck threshold",
        Duration::from_secs(20),
        || async {
            let old: bool = db
                .query_one(
                    "SELECT now() - created_at > interval '2500 ms' FROM checkouts",
                    &[],
                )
                .await
                .unwrap()
                .get(0);
            old.then_some(())
        },
    )
    .await;
    app.start_worker();
    app.wait_for_checkout("alice", &id, "delivered", |c| {
        c["callback"]["state"] == "delivered"
    })
    .await;
    let seen = receiver.seen();
    assert_eq!(seen.len(), 3, "500, 500, 200 and nothing forked: {seen:?}");
    let attempts: i32 = db
        .query_one("SELECT attempts FROM notifications", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(attempts, 3);
    report("FAULT checkout slower than ICON_NOTIFIER_STUCK_AFTER: receiver calls=3 for 3 attempts, chains=1");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sweepers_requeue_at_most_once_per_period_and_never_work_still_in_the_outbox() {
    let (app, _sim) = with_acme(Options {
        start_worker: false,
        start_notifier: false,
        ..Options::default()
    })
    .await;
    let cart = app.cart_with("alice", &[("acme", "dress")]).await;
    id_of(&app.checkout("alice", cart, None).await);
    let pool = app.env.pool().await;
    let mut conn = pool.get().await.unwrap();
    let db = app.env.db().await;
    app.env.outbox_drained().await;
    let age = "UPDATE checkouts SET updated_at = now() - interval '1 hour',
                      next_due_at = now() - interval '1 hour'";
    let stuck = Duration::from_secs(60);
    db.batch_execute(age).await.unwrap();
    let first = icon_store::passes::requeue_stuck(&mut conn, stuck)
        .await
        .unwrap();
    let again = icon_store::passes::requeue_stuck(&mut conn, stuck)
        .await
        .unwrap();
    assert_eq!((first, again), (1, 0), "once per period");

    // The broker is down (the relay cannot publish): the outbox still holds a message for the
    // checkout, so the sweeper adds nothing, however long the outage lasts.
    app.env.outbox_drained().await;
    db.batch_execute(&format!(
        "{age}; INSERT INTO outbox (exchange, routing_key, message_id, message_type, checkout_id, body)
         SELECT '', 'nowhere', gen_random_uuid(), 'checkout.requested', id, '\\x00' FROM checkouts"
    ))
    .await
    .unwrap();
    let during_outage = icon_store::passes::requeue_stuck(&mut conn, stuck)
        .await
        .unwrap();
    assert_eq!(during_outage, 0);
    report(&format!(
        "FAULT checkout sweeper: requeued={first} then {again} in one period, {during_outage} while the outbox held its message"
    ));
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hanging_retailer_does_not_hold_back_the_others() {
    let (app, sim) = with_acme(Options {
        retailer_timeout: "3s".into(),
        retailer_max_attempts: "2".into(),
        extra: vec![
            ("ICON_WORKER_PREFETCH", "4".into()),
            ("ICON_RETAILER_MAX_IN_FLIGHT", "2".into()),
        ],
        ..Options::default()
    })
    .await;
    app.register_retailer("slowco", &sim.order_url("slowco"))
        .await;
    // More than twice the prefetch in checkouts wait on a retailer that never answers.
    let mut hanging = vec![];
    for i in 0..10 {
        let cart = app
            .cart_with("alice", &[("slowco", &format!("hang-{i}"))])
            .await;
        hanging.push(id_of(&app.checkout("alice", cart, None).await));
    }
    eventually(
        "calls to the hanging retailer",
        Duration::from_secs(10),
        || async { (sim.orders().await.len() >= 2).then_some(()) },
    )
    .await;
    let mut healthy = vec![];
    for _ in 0..5 {
        let cart = app.cart_with("bob", &[("acme", "dress")]).await;
        healthy.push(id_of(&app.checkout("bob", cart, None).await));
    }
    for id in &healthy {
        app.wait_for_checkout("bob", id, "completed", |c| c["status"] == "completed")
            .await;
    }
    // Every healthy checkout closed while every hanging one was still waiting on its first
    // call's timeout: they did not queue behind it.
    let token = app.token("alice");
    for id in &hanging {
        let c = app
            .api
            .get(&format!("/cart/checkout/{id}"), Some(&token))
            .await;
        assert_eq!(c.json["status"], "processing", "{}", c.json);
    }
    let slow_calls = sim
        .orders()
        .await
        .iter()
        .filter(|o| o["retailer"] == "slowco")
        .count();
    assert!(
        slow_calls <= 2,
        "at most ICON_RETAILER_MAX_IN_FLIGHT calls: {slow_calls}"
    );
    report(&format!(
        "FAULT hanging retailer beside a healthy one: healthy completed=5 while hanging \
         processing=10 (prefetch 4), calls to the hanging retailer in flight={slow_calls} (max 2)"
    ));
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pass_or_attempt_whose_claimer_died_is_taken_over_after_its_lease() {
    let (mut app, sim) = with_acme(Options {
        start_worker: false,
        start_notifier: false,
        ..Options::default()
    })
    .await;
    let receiver = Receiver::start(vec![], None).await;
    let cart = app.cart_with("alice", &[("acme", "dress")]).await;
    let id = id_of(&app.checkout("alice", cart, Some(&receiver.url)).await);
    let db = app.env.db().await;
    // A worker claimed the first pass and died before recording anything.
    db.execute(
        "UPDATE checkouts SET pass = 1, claim = gen_random_uuid(), status = 'processing',
                claimed_until = now() + interval '400 ms', deliveries = 1",
        &[],
    )
    .await
    .unwrap();
    app.start_worker();
    app.wait_for_checkout("alice", &id, "completed", |c| c["status"] == "completed")
        .await;
    assert_eq!(sim.orders().await.len(), 1);
    // A notifier claimed the first attempt and died before calling out.
    db.execute(
        "UPDATE notifications SET attempts = 1, claim = gen_random_uuid(),
                claimed_until = now() + interval '400 ms'",
        &[],
    )
    .await
    .unwrap();
    app.start_notifier();
    app.wait_for_checkout("alice", &id, "delivered", |c| {
        c["callback"]["state"] == "delivered"
    })
    .await;
    assert_eq!(receiver.seen().len(), 1);
    let attempts: Vec<i32> = db
        .query("SELECT attempt FROM notification_attempts", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(attempts, vec![1], "the taken-over attempt keeps its number");
    report(
        "FAULT claims whose holder died: pass and attempt taken over after the lease; callbacks=1",
    );
    app.stop().await;
}
