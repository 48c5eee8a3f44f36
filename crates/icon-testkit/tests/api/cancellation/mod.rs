//! Cancelling checkouts and orders, and `all_or_nothing` checkouts (issue 18), from outside:
//! the shopper's `DELETE`, the simulator's logs of the order requests and cancellations it
//! received (with their keys and signatures), the callback receiver, and the resource.
//!
//! - [`after_end`]: a checkout that ended is cancelled (its end stays event 1; the
//!   cancellation's end is event 2); a refusal leaves it `partially_cancelled`; one order.
//! - [`before_end`]: cancelled while queued (no retailer ever called) and while a placement is
//!   in flight (cancelled after it lands, once); repeated requests and `Idempotency-Key`.
//! - [`all_or_nothing`]: one rejection cancels the rest; an `unknown` order settled first; a
//!   retailer that refuses.

mod after_end;
mod all_or_nothing;
mod before_end;

use icon_testkit::retailer_events::secret_of;
use icon_testkit::{eventually, ApiReply, Options, Receiver, Recorded, Sim, TestApp};
use serde_json::Value;
use std::time::Duration;

pub const ALICE: &str = "alice";
/// How long any one step may take on a loaded machine.
pub const PATIENCE: Duration = Duration::from_secs(30);

/// The system with `extra` settings, a simulator (reporting to the gateway, events 300 ms
/// apart) serving each of `retailers`, and a callback receiver.
pub async fn shop(
    retailers: &[&str],
    extra: Vec<(&'static str, String)>,
) -> (TestApp, Sim, Receiver) {
    shop_with(
        retailers,
        Options {
            extra,
            ..Options::default()
        },
        SLOW,
    )
    .await
}

/// How long a `slow-` SKU's placement takes at the simulator.
pub const SLOW: Duration = Duration::from_millis(300);

/// As [`shop`], with `opts` and `slow-` placements taking `slow`.
pub async fn shop_with(
    retailers: &[&str],
    opts: Options,
    slow: Duration,
) -> (TestApp, Sim, Receiver) {
    let app = TestApp::spawn_with(opts).await;
    let sim =
        Sim::start_reporting_with_slow_delay(&app.public_url, Duration::from_millis(300), slow)
            .await;
    for r in retailers {
        app.register_retailer(r, &sim.order_url(r)).await;
        sim.set_secret(r, &secret_of(&app, r).await).await;
    }
    let receiver = Receiver::start(vec![], None).await;
    (app, sim, receiver)
}

/// Submits a checkout of `items` for alice with a callback to `receiver` and the extra
/// `fields`; returns its id.
pub async fn submit(
    app: &TestApp,
    receiver: &Receiver,
    items: &[(&str, &str)],
    fields: Value,
) -> String {
    let cart = app.cart_with(ALICE, items).await;
    let mut body = fields;
    body["cart_id"] = cart.into();
    body["callback_url"] = receiver.url.clone().into();
    let r = app
        .api
        .post("/cart/checkout/", Some(&app.token(ALICE)), &body)
        .await;
    assert_eq!(r.status, 202, "{r:?}");
    r.json["checkout_id"].as_str().unwrap().to_owned()
}

/// `DELETE path` as alice, with an `Idempotency-Key` if given.
pub async fn delete(app: &TestApp, path: &str, key: Option<&str>) -> ApiReply {
    let headers: Vec<(&str, &str)> = key.map(|k| ("idempotency-key", k)).into_iter().collect();
    app.api
        .send_with(
            http::Method::DELETE,
            path,
            Some(&app.token(ALICE)),
            &headers,
            None,
        )
        .await
}

/// Cancels the whole checkout and checks the 202.
pub async fn cancel(app: &TestApp, checkout_id: &str) -> ApiReply {
    let r = delete(app, &format!("/cart/checkout/{checkout_id}"), None).await;
    assert_202(app, &r, checkout_id);
    r
}

pub fn assert_202(app: &TestApp, r: &ApiReply, checkout_id: &str) {
    assert_eq!(r.status, 202, "{r:?}");
    let url = format!("{}/cart/checkout/{checkout_id}", app.public_url);
    assert_eq!(r.header("location"), Some(url.as_str()), "{r:?}");
    assert_eq!(r.json["resource_url"], url.as_str(), "{r:?}");
    assert_eq!(r.json["checkout_id"], checkout_id, "{r:?}");
}

/// Waits until the checkout is in one of the final states.
pub async fn ended(app: &TestApp, checkout_id: &str) -> Value {
    app.wait_for_checkout(ALICE, checkout_id, "the checkout ended", |c| {
        !["queued", "processing", "cancelling"].contains(&c["status"].as_str().unwrap_or(""))
    })
    .await
}

/// Waits until the checkout is `status`.
pub async fn reaches(app: &TestApp, checkout_id: &str, status: &str) -> Value {
    eventually(
        &format!("checkout {checkout_id} is {status}"),
        PATIENCE,
        || async {
            let r = app
                .api
                .get(
                    &format!("/cart/checkout/{checkout_id}"),
                    Some(&app.token(ALICE)),
                )
                .await;
            (r.status == 200 && r.json["status"] == status).then_some(r.json)
        },
    )
    .await
}

pub fn order<'a>(view: &'a Value, retailer: &str) -> &'a Value {
    view["orders"]
        .as_array()
        .and_then(|orders| orders.iter().find(|o| o["retailer_id"] == retailer))
        .unwrap_or_else(|| panic!("no {retailer} order: {view}"))
}

/// The simulator's order requests for this checkout at `retailer`.
pub async fn placements(sim: &Sim, retailer: &str, checkout_id: &str) -> Vec<Value> {
    sim.orders()
        .await
        .into_iter()
        .filter(|r| r["retailer"] == retailer && r["checkout_id"] == checkout_id)
        .collect()
}

/// The simulator's cancellations of the order placed with `key`.
pub async fn cancellations_of(sim: &Sim, key: &str) -> Vec<Value> {
    sim.cancellations()
        .await
        .into_iter()
        .filter(|c| c["idempotency_key"] == key)
        .collect()
}

/// Every cancellation the simulator received carries the order's key with `:cancel`, as a
/// signed request that verified.
pub fn assert_well_formed(cancellations: &[Value]) {
    for c in cancellations {
        let key = c["idempotency_key"].as_str().expect("idempotency_key");
        assert_eq!(c["idempotency_key_header"], format!("{key}:cancel"), "{c}");
        assert_eq!(c["signature_verified"], true, "a signed cancellation: {c}");
        assert!(c["reason"].as_str().is_some_and(|r| !r.is_empty()), "{c}");
    }
}

/// The callbacks the receiver got for this checkout, by sequence.
pub async fn callbacks(receiver: &Receiver, checkout_id: &str, n: usize) -> Vec<Recorded> {
    let seen = eventually(
        &format!("{n} callbacks for {checkout_id}"),
        PATIENCE,
        || async {
            let mine: Vec<Recorded> = receiver
                .seen()
                .into_iter()
                .filter(|r| r.body["checkout_id"] == checkout_id)
                .collect();
            (mine.len() >= n).then_some(mine)
        },
    )
    .await;
    let mut seen = seen;
    seen.sort_by_key(|r| r.body["sequence"].as_i64());
    seen
}

/// Waits until the simulator received at least `n` cancellations of the order placed with `key`.
pub async fn wait_cancellations(sim: &Sim, key: &str, n: usize) -> Vec<Value> {
    eventually(
        &format!("{n} cancellation(s) of {key}"),
        PATIENCE,
        || async {
            let c = cancellations_of(sim, key).await;
            (c.len() >= n).then_some(c)
        },
    )
    .await
}
