//! Cancelling a checkout before it ended: while queued, while a placement is in flight, and
//! asking more than once.

use super::*;
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancelled_while_queued_no_retailer_is_ever_called() {
    let (mut app, sim, receiver) = shop_with(
        &["acme", "globex"],
        Options {
            start_worker: false,
            ..Options::default()
        },
        SLOW,
    )
    .await;
    let id = submit(
        &app,
        &receiver,
        &[("acme", "dress"), ("globex", "shoes")],
        json!({}),
    )
    .await;
    let r = cancel(&app, &id).await;
    assert_eq!(r.json["status"], "queued", "{r:?}");
    app.start_worker();

    let view = reaches(&app, &id, "cancelled").await;
    for retailer in ["acme", "globex"] {
        let o = order(&view, retailer);
        assert_eq!(o["status"], "cancelled", "{view}");
        assert!(
            o["reason"]
                .as_str()
                .unwrap()
                .starts_with("cancelled before it was sent"),
            "{view}"
        );
    }
    let seen = callbacks(&receiver, &id, 1).await;
    assert_eq!(seen[0].body["type"], "checkout.cancelled");
    assert_eq!(seen[0].body["sequence"], 1);
    assert_eq!(seen[0].body["status"], "cancelled");
    // Settled: give a stray copy of the request time to do harm.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(sim.orders().await.is_empty(), "no order request was sent");
    assert!(sim.cancellations().await.is_empty(), "nothing to cancel");
    assert!(sim.lookups().await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancelled_while_the_placement_is_in_flight_it_is_cancelled_after_it_lands_once() {
    let (app, sim, receiver) =
        shop_with(&["acme"], Options::default(), Duration::from_secs(1)).await;
    let id = submit(&app, &receiver, &[("acme", "slow-dress")], json!({})).await;
    reaches(&app, &id, "processing").await;
    cancel(&app, &id).await;

    let view = reaches(&app, &id, "cancelled").await;
    assert_eq!(order(&view, "acme")["status"], "cancelled", "{view}");
    let placed = placements(&sim, "acme", &id).await;
    assert_eq!(placed.len(), 1, "placed once: {placed:?}");
    let c = cancellations_of(&sim, &format!("{id}:acme")).await;
    assert_eq!(c.len(), 1, "cancelled once: {c:?}");
    assert_well_formed(&c);
    assert!(
        c[0]["order_id"]
            .as_str()
            .is_some_and(|o| o.starts_with("sim-")),
        "the cancellation names the order that landed: {c:?}"
    );
    // The placement landed first: the checkout completed (event 1), then was cancelled.
    let seen = callbacks(&receiver, &id, 2).await;
    let kinds: Vec<&str> = seen
        .iter()
        .map(|r| r.body["type"].as_str().unwrap())
        .collect();
    assert_eq!(
        kinds,
        ["checkout.completed", "checkout.cancelled"],
        "{seen:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn repeated_deletes_and_one_idempotency_key_cancel_each_order_once() {
    let (app, sim, receiver) = shop(&["acme", "globex"], vec![]).await;
    let id = submit(
        &app,
        &receiver,
        &[("acme", "dress"), ("globex", "shoes")],
        json!({}),
    )
    .await;
    callbacks(&receiver, &id, 1).await;

    let path = format!("/cart/checkout/{id}");
    let first = delete(&app, &path, Some("cancel-1")).await;
    assert_202(&app, &first, &id);
    assert_eq!(first.header("idempotent-replayed"), None);
    let replay = delete(&app, &path, Some("cancel-1")).await;
    assert_202(&app, &replay, &id);
    assert_eq!(
        replay.header("idempotent-replayed"),
        Some("true"),
        "{replay:?}"
    );
    assert_eq!(replay.json, first.json, "the stored answer");
    // The key belongs to that request: on another one it is refused.
    let other = delete(&app, &format!("{path}/orders/acme"), Some("cancel-1")).await;
    assert_eq!(other.status, 422, "{other:?}");
    assert_eq!(other.json["code"], "idempotency_key_reused", "{other:?}");
    // Without a key, and for one order, as often as the client likes.
    for _ in 0..3 {
        assert_202(&app, &delete(&app, &path, None).await, &id);
        assert_202(
            &app,
            &delete(&app, &format!("{path}/orders/globex"), None).await,
            &id,
        );
    }
    reaches(&app, &id, "cancelled").await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    for retailer in ["acme", "globex"] {
        let c = cancellations_of(&sim, &format!("{id}:{retailer}")).await;
        assert_eq!(c.len(), 1, "one cancellation per order: {c:?}");
    }
    let seen = callbacks(&receiver, &id, 2).await;
    assert_eq!(seen.len(), 2, "one end per cancellation: {seen:?}");

    // Someone else's checkout is not there to cancel.
    let r = app
        .api
        .send_with(
            http::Method::DELETE,
            &path,
            Some(&app.token("mallory")),
            &[],
            None,
        )
        .await;
    assert_eq!(r.status, 404, "{r:?}");
    assert_eq!(r.json["code"], "checkout_not_found");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_accepted_order_is_cancelled_at_once_not_after_its_wait_for_an_outcome() {
    // acme answers 202 and never reports; ICON would wait a minute before looking it up.
    let (app, sim, receiver) = shop(
        &["acme"],
        vec![("ICON_RETAILER_CONFIRM_WITHIN", "60s".into())],
    )
    .await;
    let id = submit(
        &app,
        &receiver,
        &[("acme", "async-silent-dress")],
        json!({}),
    )
    .await;
    let view = app
        .wait_for_checkout(ALICE, &id, "the order accepted", |c| {
            order(c, "acme")["status"] == "accepted"
        })
        .await;
    assert_eq!(view["status"], "processing", "{view}");
    cancel(&app, &id).await;
    let view = reaches(&app, &id, "cancelled").await;
    assert_eq!(order(&view, "acme")["status"], "cancelled", "{view}");
    let c = cancellations_of(&sim, &format!("{id}:acme")).await;
    assert_eq!(c.len(), 1, "{c:?}");
    assert_well_formed(&c);
    // It never ended before: its end, event 1, is the cancellation.
    let seen = callbacks(&receiver, &id, 1).await;
    assert_eq!(seen[0].body["type"], "checkout.cancelled");
    assert_eq!(seen[0].body["sequence"], 1);
}
