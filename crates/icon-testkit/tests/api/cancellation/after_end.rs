//! Cancelling a checkout that ended: its end stays event 1, the cancellation's end is event 2.

use super::*;
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_completed_checkout_is_cancelled_at_every_retailer_and_the_callback_says_so() {
    let (app, sim, receiver) = shop(&["acme", "globex"], vec![]).await;
    let id = submit(
        &app,
        &receiver,
        &[("acme", "dress"), ("globex", "shoes")],
        json!({}),
    )
    .await;
    let first = callbacks(&receiver, &id, 1).await;
    assert_eq!(first[0].body["type"], "checkout.completed");

    let r = cancel(&app, &id).await;
    assert!(
        ["cancelling", "cancelled"].contains(&r.json["status"].as_str().unwrap()),
        "{r:?}"
    );
    let view = reaches(&app, &id, "cancelled").await;
    for retailer in ["acme", "globex"] {
        assert_eq!(order(&view, retailer)["status"], "cancelled", "{view}");
        let key = format!("{id}:{retailer}");
        let c = cancellations_of(&sim, &key).await;
        assert_eq!(c.len(), 1, "one cancellation per order: {c:?}");
        assert_well_formed(&c);
        assert_eq!(c[0]["response_status"], 200, "{c:?}");
        assert!(
            c[0]["order_id"]
                .as_str()
                .is_some_and(|o| o.starts_with("sim-")),
            "{c:?}"
        );
    }

    // Event 2, to the same receiver, with the full state; event 1 is unchanged.
    let seen = callbacks(&receiver, &id, 2).await;
    assert_eq!(seen[0].body["sequence"], 1);
    assert_eq!(seen[0].body["type"], "checkout.completed");
    assert_eq!(seen[1].body["sequence"], 2);
    assert_eq!(seen[1].body["type"], "checkout.cancelled");
    assert_eq!(seen[1].body["status"], "cancelled");
    for o in seen[1].body["orders"].as_array().unwrap() {
        assert_eq!(o["status"], "cancelled", "{}", seen[1].body);
    }
    let events = app
        .api
        .get(
            &format!("/cart/checkout/{id}/events"),
            Some(&app.token(ALICE)),
        )
        .await;
    let kinds: Vec<&str> = events.json["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["type"].as_str().unwrap())
        .collect();
    assert_eq!(
        kinds,
        ["checkout.completed", "checkout.cancelled"],
        "{:?}",
        events.json
    );

    // Again: the same 202, nothing sent again.
    let again = cancel(&app, &id).await;
    assert_eq!(again.json["status"], "cancelled", "{again:?}");
    tokio::time::sleep(Duration::from_millis(500)).await;
    for retailer in ["acme", "globex"] {
        assert_eq!(
            cancellations_of(&sim, &format!("{id}:{retailer}"))
                .await
                .len(),
            1
        );
    }
    assert_eq!(receiver.seen().len(), 2, "no third callback");

    // The cart is free again: a new checkout sends new keys to both.
    let cart = view["cart_id"].as_i64().unwrap();
    let r = app.checkout(ALICE, cart, None).await;
    assert_eq!(r.status, 202, "{r:?}");
    let again_id = r.json["checkout_id"].as_str().unwrap().to_owned();
    let again_view = ended(&app, &again_id).await;
    assert_eq!(again_view["status"], "completed", "{again_view}");
    for retailer in ["acme", "globex"] {
        let p = placements(&sim, retailer, &again_id).await;
        assert_eq!(p.len(), 1, "{p:?}");
        assert_eq!(p[0]["idempotency_key"], format!("{again_id}:{retailer}"));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refusal_leaves_the_checkout_partially_cancelled_and_says_what_remains() {
    let (app, sim, receiver) = shop(&["acme", "globex"], vec![]).await;
    let id = submit(
        &app,
        &receiver,
        &[("acme", "dress"), ("globex", "nocancel-shoes")],
        json!({}),
    )
    .await;
    callbacks(&receiver, &id, 1).await;
    cancel(&app, &id).await;
    let view = reaches(&app, &id, "partially_cancelled").await;
    assert_eq!(order(&view, "acme")["status"], "cancelled", "{view}");
    let refused = order(&view, "globex");
    assert_eq!(refused["status"], "cancel_refused", "{view}");
    assert_eq!(refused["reason"], "already shipped", "{view}");
    let c = cancellations_of(&sim, &format!("{id}:globex")).await;
    assert_eq!(c.len(), 1, "{c:?}");
    assert_eq!(c[0]["response_status"], 409, "{c:?}");

    let seen = callbacks(&receiver, &id, 2).await;
    assert_eq!(seen[1].body["type"], "checkout.partially_cancelled");
    let remaining: Vec<&str> = seen[1].body["orders"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|o| o["status"] == "cancel_refused")
        .map(|o| o["retailer_id"].as_str().unwrap())
        .collect();
    assert_eq!(remaining, ["globex"], "{}", seen[1].body);

    // partially_cancelled keeps the cart: globex's order remains placed.
    let cart = view["cart_id"].as_i64().unwrap();
    let r = app.checkout(ALICE, cart, None).await;
    assert_eq!(r.status, 409, "{r:?}");
    assert_eq!(r.json["code"], "checkout_exists", "{r:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_retailers_order_is_cancelled_and_the_others_stay() {
    let (app, sim, receiver) = shop(&["acme", "globex"], vec![]).await;
    let id = submit(
        &app,
        &receiver,
        &[("acme", "dress"), ("globex", "shoes")],
        json!({}),
    )
    .await;
    callbacks(&receiver, &id, 1).await;

    let missing = delete(&app, &format!("/cart/checkout/{id}/orders/initech"), None).await;
    assert_eq!(missing.status, 404, "{missing:?}");
    assert_eq!(missing.json["code"], "order_not_found", "{missing:?}");

    let r = delete(&app, &format!("/cart/checkout/{id}/orders/globex"), None).await;
    assert_202(&app, &r, &id);
    let view = reaches(&app, &id, "partially_cancelled").await;
    assert_eq!(order(&view, "acme")["status"], "confirmed", "{view}");
    assert_eq!(order(&view, "globex")["status"], "cancelled", "{view}");
    assert!(cancellations_of(&sim, &format!("{id}:acme"))
        .await
        .is_empty());
    assert_eq!(
        cancellations_of(&sim, &format!("{id}:globex")).await.len(),
        1
    );

    // Then the rest: the whole checkout ends cancelled, acme cancelled once, globex not again.
    cancel(&app, &id).await;
    let view = reaches(&app, &id, "cancelled").await;
    assert_eq!(order(&view, "acme")["status"], "cancelled", "{view}");
    assert_eq!(cancellations_of(&sim, &format!("{id}:acme")).await.len(), 1);
    assert_eq!(
        cancellations_of(&sim, &format!("{id}:globex")).await.len(),
        1
    );
    let seen = callbacks(&receiver, &id, 3).await;
    let kinds: Vec<&str> = seen
        .iter()
        .map(|r| r.body["type"].as_str().unwrap())
        .collect();
    assert_eq!(
        kinds,
        [
            "checkout.completed",
            "checkout.partially_cancelled",
            "checkout.cancelled"
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retailers_that_decide_later_or_lose_the_answer_are_settled_never_guessed() {
    let (app, sim, receiver) = shop(&["acme", "globex", "initech"], vec![]).await;
    let id = submit(
        &app,
        &receiver,
        &[
            ("acme", "cancel-async-dress"),
            ("globex", "cancel-async-refuse-shoes"),
            ("initech", "cancel-hang-belt"),
        ],
        json!({}),
    )
    .await;
    callbacks(&receiver, &id, 1).await;
    cancel(&app, &id).await;
    let view = reaches(&app, &id, "partially_cancelled").await;
    // acme answered 202 and reported `order.cancelled` by event: the reason is the one ICON
    // asked with, not what it noted while waiting.
    assert_eq!(order(&view, "acme")["status"], "cancelled", "{view}");
    assert_eq!(
        order(&view, "acme")["reason"],
        "cancelled by the shopper",
        "{view}"
    );
    let acme = cancellations_of(&sim, &format!("{id}:acme")).await;
    assert_eq!(acme.len(), 1, "{acme:?}");
    assert_eq!(acme[0]["response_status"], 202, "{acme:?}");
    let reported: Vec<Value> = sim
        .events()
        .await
        .into_iter()
        .filter(|e| e["idempotency_key"] == format!("{id}:acme").as_str())
        .filter(|e| e["type"] == "order.cancelled")
        .collect();
    assert_eq!(reported.len(), 1, "{reported:?}");
    // globex answered 202, then refused by `order.cancel_refused`, with its reason.
    let globex = order(&view, "globex");
    assert_eq!(globex["status"], "cancel_refused", "{view}");
    assert_eq!(globex["reason"], "already shipped", "{view}");
    // initech's first answer was lost (a timeout): the same cancellation again, same key.
    assert_eq!(order(&view, "initech")["status"], "cancelled", "{view}");
    let initech = wait_cancellations(&sim, &format!("{id}:initech"), 2).await;
    assert_eq!(initech.len(), 2, "{initech:?}");
    assert_well_formed(&initech);
    assert_eq!(initech[0]["answered"], false, "{initech:?}");
    assert_eq!(initech[1]["response_status"], 200, "{initech:?}");
    assert_eq!(
        initech[0]["idempotency_key_header"], initech[1]["idempotency_key_header"],
        "one key for every try"
    );

    let seen = callbacks(&receiver, &id, 2).await;
    assert_eq!(seen[1].body["type"], "checkout.partially_cancelled");
}
