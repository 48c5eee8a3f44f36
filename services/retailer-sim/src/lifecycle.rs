//! What an `async-` order does after its 202: the events its behaviour scripts, one
//! `ICON_SIM_ASYNC_DELAY` after the other, each reported to ICON (`events::report`) and moving
//! the order on in the book.
//!
//! - `async-`: `order.confirmed`.
//! - `async-reject-`: `order.rejected`, `reason` `out of stock: {sku}` (the SKU that chose it).
//! - `async-ship-`: `order.confirmed`, `order.shipped` (tracking by carrier `SIM`),
//!   `order.delivered`.
//! - `async-silent-`: nothing, ever; the order stays accepted.
//!
//! The order moves on in the book once its event has been sent the first time, whatever ICON
//! answered, or found unsendable (no secret known): a lookup never tells ICON more than it could
//! have been told already, and still tells the truth when the event is lost (ICON down, no
//! secret), which is what lookups are for. The next event waits for the previous one to be
//! delivered or given up, so ICON gets an order's events in the order they happened.
//!
//! Which retailer an event is sent as: the `{retailer}` of `/{retailer}/orders`, or for
//! `/orders` the part of the `Idempotency-Key` after its last `:` (ICON's keys are
//! `<checkout_id>:<retailer_id>`).

use crate::behaviour::Behaviour;
use crate::book::{KeyId, OrderState};
use crate::{events, lock, Sim};
use actix_web::web;
use chrono::Utc;
use icon_contracts::retailer::{RetailerEvent, RetailerEventType, Tracking};

/// The carrier `async-ship-` orders ship with.
pub const CARRIER: &str = "SIM";

/// An `async-` order just accepted.
#[derive(Debug, Clone)]
pub(crate) struct Order {
    pub(crate) key: KeyId,
    pub(crate) checkout_id: String,
    pub(crate) order_id: String,
}

/// One thing that happens to an order at the retailer.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Step {
    Confirm,
    Reject { reason: String },
    Ship,
    Deliver,
}

/// What `behaviour` does after its 202 (`sku` is the item that chose it).
fn script(behaviour: Behaviour, sku: &str) -> Vec<Step> {
    match behaviour {
        Behaviour::Async => vec![Step::Confirm],
        Behaviour::AsyncReject => vec![Step::Reject {
            reason: format!("out of stock: {sku}"),
        }],
        Behaviour::AsyncShip => vec![Step::Confirm, Step::Ship, Step::Deliver],
        _ => vec![],
    }
}

impl Step {
    /// Where the order stands after this step, and the event that says so, happening now.
    fn happen(self, order: &Order) -> (OrderState, RetailerEvent) {
        let mut event = RetailerEvent {
            kind: RetailerEventType::Confirmed,
            idempotency_key: order.key.key.clone(),
            order_id: Some(order.order_id.clone()),
            occurred_at: Utc::now(),
            reason: None,
            tracking: None,
            refund: None,
        };
        let state = match self {
            Step::Confirm => OrderState::Confirmed,
            Step::Reject { reason } => {
                event.kind = RetailerEventType::Rejected;
                event.reason = Some(reason.clone());
                OrderState::Rejected { reason }
            }
            Step::Ship => {
                event.kind = RetailerEventType::Shipped;
                event.tracking = Some(tracking());
                OrderState::Shipped
            }
            Step::Deliver => {
                event.kind = RetailerEventType::Delivered;
                OrderState::Delivered
            }
        };
        (state, event)
    }
}

/// A parcel number of the simulator's own carrier, and a tracking page on loopback (nothing
/// serves it: it only has to be a well-formed URL that goes nowhere).
fn tracking() -> Tracking {
    let random = uuid::Uuid::new_v4().simple().to_string();
    let number = format!("{CARRIER}{}", random[..12].to_ascii_uppercase());
    Tracking {
        carrier: CARRIER.to_owned(),
        url: Some(format!("http://127.0.0.1/track/{number}")),
        number,
    }
}

/// The retailer to send `key`'s events as, or why it cannot be told.
fn retailer_of(key: &KeyId) -> Result<String, String> {
    if let Some(retailer) = &key.retailer {
        return Ok(retailer.clone());
    }
    key.key
        .rsplit_once(':')
        .map(|(_, retailer)| retailer.trim())
        .filter(|retailer| !retailer.is_empty())
        .map(str::to_owned)
        .ok_or_else(|| {
            format!(
                "cannot tell which retailer to send as: /orders was used and Idempotency-Key {} \
                 does not end in :<retailer_id>",
                key.key
            )
        })
}

/// Starts the events of an order `behaviour` just accepted, in the background (none for
/// `async-silent-`). They stop when the simulator shuts down.
pub(crate) fn start(sim: &web::Data<Sim>, order: Order, behaviour: Behaviour, sku: &str) {
    let steps = script(behaviour, sku);
    if steps.is_empty() {
        return;
    }
    tokio::spawn(run(web::Data::clone(sim), order, steps));
}

#[tracing::instrument(name = "async order", skip_all, fields(
    checkout_id = %order.checkout_id,
    idempotency_key = %order.key.key,
    order_id = %order.order_id,
))]
async fn run(sim: web::Data<Sim>, order: Order, steps: Vec<Step>) {
    let retailer = retailer_of(&order.key);
    for step in steps {
        tokio::select! {
            () = tokio::time::sleep(sim.events.delay) => {}
            () = sim.shutdown.cancelled() => return,
        }
        let (state, event) = step.happen(&order);
        let retailer = retailer.as_deref().map_err(Clone::clone);
        events::report(&sim, retailer, &event, || {
            lock(&sim.orders).set_state(&order.key, state);
        })
        .await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(retailer: Option<&str>, key: &str) -> KeyId {
        KeyId {
            retailer: retailer.map(str::to_owned),
            key: key.to_owned(),
        }
    }

    #[test]
    fn the_retailer_is_the_path_one_or_the_end_of_the_key() {
        assert_eq!(
            retailer_of(&key(Some("acme"), "c1:globex")),
            Ok("acme".into())
        );
        assert_eq!(retailer_of(&key(None, "c1:globex")), Ok("globex".into()));
        assert_eq!(retailer_of(&key(None, "a:b:globex")), Ok("globex".into()));
        for unknown in ["c1", "c1:", "c1: "] {
            let why = retailer_of(&key(None, unknown)).expect_err(unknown);
            assert!(why.contains(unknown.trim()), "{why}");
        }
    }

    #[test]
    fn each_behaviour_scripts_its_events() {
        let kinds = |behaviour| -> Vec<RetailerEventType> {
            let order = Order {
                key: key(None, "c1:acme"),
                checkout_id: "c1".into(),
                order_id: "sim-1".into(),
            };
            script(behaviour, "sku-1")
                .into_iter()
                .map(|step| step.happen(&order).1.kind)
                .collect()
        };
        use RetailerEventType::*;
        assert_eq!(kinds(Behaviour::Async), [Confirmed]);
        assert_eq!(kinds(Behaviour::AsyncReject), [Rejected]);
        assert_eq!(kinds(Behaviour::AsyncShip), [Confirmed, Shipped, Delivered]);
        assert_eq!(kinds(Behaviour::AsyncSilent), []);
        assert_eq!(kinds(Behaviour::Confirm), []);
    }

    #[test]
    fn steps_carry_what_their_event_needs() {
        let order = Order {
            key: key(Some("acme"), "c1:acme"),
            checkout_id: "c1".into(),
            order_id: "sim-1".into(),
        };
        let reason = "out of stock: async-reject-hat".to_owned();
        let (state, rejected) = Step::Reject {
            reason: reason.clone(),
        }
        .happen(&order);
        assert_eq!(
            state,
            OrderState::Rejected {
                reason: reason.clone()
            }
        );
        assert_eq!(rejected.reason, Some(reason));
        assert_eq!(rejected.idempotency_key, "c1:acme");
        assert_eq!(rejected.order_id.as_deref(), Some("sim-1"));

        let (_, shipped) = Step::Ship.happen(&order);
        let tracking = shipped.tracking.expect("tracking");
        assert_eq!(tracking.carrier, "SIM");
        assert!(tracking.number.starts_with("SIM") && tracking.number.len() == 15);
        assert_eq!(
            tracking.url,
            Some(format!("http://127.0.0.1/track/{}", tracking.number))
        );
    }
}
