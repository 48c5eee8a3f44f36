//! `all_or_nothing` checkouts: the first order not placed stops the rest and undoes the others.

use super::*;
use serde_json::json;

fn all_or_nothing() -> Value {
    json!({"policy": "all_or_nothing"})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_rejection_cancels_the_others_and_the_checkout_fails_naming_it() {
    let (app, sim, receiver) = shop(&["acme", "globex", "initech"], vec![]).await;
    // acme confirms, globex rejects, initech answers 503 first (its retry never comes).
    let id = submit(
        &app,
        &receiver,
        &[
            ("acme", "dress"),
            ("globex", "reject-shoes"),
            ("initech", "flaky-belt"),
        ],
        all_or_nothing(),
    )
    .await;
    let view = ended(&app, &id).await;
    assert_eq!(view["status"], "failed", "{view}");
    assert_eq!(view["policy"], "all_or_nothing", "{view}");
    let reason = view["reason"].as_str().expect("a reason");
    assert!(
        reason.contains("all_or_nothing")
            && reason.contains("globex")
            && reason.contains("rejected"),
        "{reason}"
    );
    assert_eq!(order(&view, "acme")["status"], "cancelled", "{view}");
    assert_eq!(order(&view, "globex")["status"], "rejected", "{view}");
    assert_eq!(order(&view, "initech")["status"], "cancelled", "{view}");

    // acme's placed order was cancelled by its key and id; initech's was never placed again.
    let acme = cancellations_of(&sim, &format!("{id}:acme")).await;
    assert_eq!(acme.len(), 1, "{acme:?}");
    assert_well_formed(&acme);
    assert!(acme[0]["order_id"]
        .as_str()
        .is_some_and(|o| o.starts_with("sim-")));
    assert!(
        acme[0]["reason"].as_str().unwrap().contains("globex"),
        "{acme:?}"
    );
    assert_eq!(
        placements(&sim, "initech", &id).await.len(),
        1,
        "not placed again"
    );
    assert!(cancellations_of(&sim, &format!("{id}:globex"))
        .await
        .is_empty());

    let seen = callbacks(&receiver, &id, 1).await;
    assert_eq!(seen[0].body["type"], "checkout.failed");
    assert_eq!(seen[0].body["status"], "failed");
    assert_eq!(seen[0].body["reason"], reason);
    let remaining: Vec<&Value> = seen[0].body["orders"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|o| {
            ["confirmed", "cancel_refused", "unknown"].contains(&o["status"].as_str().unwrap())
        })
        .collect();
    assert!(
        remaining.is_empty(),
        "nothing remains placed: {}",
        seen[0].body
    );

    // A failed checkout frees the cart: the next checkout sends globex and initech new keys,
    // and acme (cancelled) a new one too.
    let cart = view["cart_id"].as_i64().unwrap();
    let r = app.checkout(ALICE, cart, None).await;
    assert_eq!(r.status, 202, "{r:?}");
    let next = r.json["checkout_id"].as_str().unwrap().to_owned();
    ended(&app, &next).await;
    let p = placements(&sim, "acme", &next).await;
    assert_eq!(p[0]["idempotency_key"], format!("{next}:acme"), "{p:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_order_is_settled_first_and_cancelled_once_it_proves_placed() {
    // One attempt: the ghost's 502 leaves acme's order unknown, settled by lookup.
    let (app, sim, receiver) = shop_with(
        &["acme", "globex"],
        Options {
            retailer_max_attempts: "1".into(),
            ..Options::default()
        },
        SLOW,
    )
    .await;
    let id = submit(
        &app,
        &receiver,
        &[("acme", "ghost-dress"), ("globex", "reject-shoes")],
        all_or_nothing(),
    )
    .await;
    let view = ended(&app, &id).await;
    assert_eq!(view["status"], "failed", "{view}");
    assert_eq!(order(&view, "acme")["status"], "cancelled", "{view}");
    let key = format!("{id}:acme");
    let lookups: Vec<Value> = sim
        .lookups()
        .await
        .into_iter()
        .filter(|l| l["idempotency_key"] == key.as_str())
        .collect();
    assert!(!lookups.is_empty(), "settled by lookup first");
    let c = cancellations_of(&sim, &key).await;
    assert_eq!(c.len(), 1, "{c:?}");
    assert_well_formed(&c);
    assert!(
        c[0]["order_id"]
            .as_str()
            .is_some_and(|o| o.starts_with("sim-")),
        "cancelled by the id the lookup found: {c:?}"
    );
    assert_eq!(placements(&sim, "acme", &id).await.len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retailer_that_refuses_leaves_it_partially_cancelled_and_the_callback_says_what_remains()
{
    let (app, sim, receiver) = shop(&["acme", "globex"], vec![]).await;
    let id = submit(
        &app,
        &receiver,
        &[("acme", "nocancel-dress"), ("globex", "reject-shoes")],
        all_or_nothing(),
    )
    .await;
    let view = ended(&app, &id).await;
    assert_eq!(view["status"], "partially_cancelled", "{view}");
    assert!(
        view["reason"].as_str().unwrap().contains("globex"),
        "{view}"
    );
    assert_eq!(order(&view, "acme")["status"], "cancel_refused", "{view}");
    assert_eq!(order(&view, "acme")["reason"], "already shipped", "{view}");
    assert_eq!(cancellations_of(&sim, &format!("{id}:acme")).await.len(), 1);
    let seen = callbacks(&receiver, &id, 1).await;
    assert_eq!(seen[0].body["type"], "checkout.partially_cancelled");
    let remains: Vec<&str> = seen[0].body["orders"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|o| o["status"] == "cancel_refused")
        .map(|o| o["retailer_id"].as_str().unwrap())
        .collect();
    assert_eq!(remains, ["acme"], "{}", seen[0].body);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_policy_is_validated_fingerprinted_and_shown() {
    let (app, _sim, receiver) = shop(&["acme"], vec![]).await;
    let cart = app.cart_with(ALICE, &[("acme", "dress")]).await;
    let r = app
        .api
        .post(
            "/cart/checkout/",
            Some(&app.token(ALICE)),
            &json!({"cart_id": cart, "policy": "most"}),
        )
        .await;
    assert_eq!(r.status, 422, "{r:?}");
    assert_eq!(r.json["code"], "validation_failed");
    assert!(
        r.json["detail"].as_str().unwrap().contains("policy"),
        "{r:?}"
    );

    let body = json!({"cart_id": cart, "policy": "all_or_nothing", "callback_url": receiver.url});
    let first = app.checkout_with_key(ALICE, &body, "k-policy").await;
    assert_eq!(first.status, 202, "{first:?}");
    let mut other = body.clone();
    other["policy"] = "best_effort".into();
    let reused = app.checkout_with_key(ALICE, &other, "k-policy").await;
    assert_eq!(reused.status, 422, "{reused:?}");
    assert_eq!(reused.json["code"], "idempotency_key_reused");
    let replay = app.checkout_with_key(ALICE, &body, "k-policy").await;
    assert_eq!(replay.status, 202);
    assert_eq!(replay.header("idempotent-replayed"), Some("true"));
    let id = first.json["checkout_id"].as_str().unwrap();
    let view = ended(&app, id).await;
    assert_eq!(view["status"], "completed", "{view}");
    assert_eq!(view["policy"], "all_or_nothing");
}
