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
//! A cancelled order reports nothing more: its script stops at the next step. A cancellation
//! answered 202 ([`crate::cancellations`]) reports its own end the same way, one delay after
//! the 202: `order.cancelled` (`cancel-async-`), or `order.cancel_refused` with its `reason`
//! (`cancel-async-refuse-`), which leaves the order where it stands.
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
use crate::book::{Cancellation, KeyId, OrderState};
use crate::{events, lock, Sim};
use actix_web::web;
use chrono::Utc;
use icon_contracts::retailer::{RetailerEvent, RetailerEventType, Tracking};

/// The carrier `async-ship-` orders ship with.
pub const CARRIER: &str = "SIM";

/// An `async-` order just accepted, or an order whose cancellation was just accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
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
        if !wait(&sim).await {
            return;
        }
        let cancelled = lock(&sim.orders)
            .order(&order.key)
            .is_some_and(|o| o.state == OrderState::Cancelled);
        if cancelled {
            tracing::info!("order cancelled: no more events");
            return;
        }
        let (state, event) = step.happen(&order);
        let retailer = retailer.as_deref().map_err(Clone::clone);
        events::report(&sim, retailer, &event, || {
            lock(&sim.orders).set_state(&order.key, state);
        })
        .await;
    }
}

/// How a cancellation answered 202 ends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum CancelOutcome {
    Cancelled,
    Refused { reason: String },
}

impl CancelOutcome {
    /// The event that reports it, happening now.
    fn event(&self, order: &Order) -> RetailerEvent {
        let (kind, reason) = match self {
            CancelOutcome::Cancelled => (RetailerEventType::Cancelled, None),
            CancelOutcome::Refused { reason } => {
                (RetailerEventType::CancelRefused, Some(reason.clone()))
            }
        };
        RetailerEvent {
            kind,
            idempotency_key: order.key.key.clone(),
            order_id: Some(order.order_id.clone()),
            occurred_at: Utc::now(),
            reason,
            tracking: None,
            refund: None,
        }
    }
}

/// Reports in the background, one async delay from now, how the cancellation of `order` that
/// was just answered 202 ends; the book follows once the event has been sent, as for an
/// order's own events. Nothing is sent if the simulator shuts down first.
pub(crate) fn start_cancellation(sim: &web::Data<Sim>, order: Order, outcome: CancelOutcome) {
    tokio::spawn(report_cancellation(web::Data::clone(sim), order, outcome));
}

#[tracing::instrument(name = "async cancellation", skip_all, fields(
    checkout_id = %order.checkout_id,
    idempotency_key = %order.key.key,
    order_id = %order.order_id,
))]
async fn report_cancellation(sim: web::Data<Sim>, order: Order, outcome: CancelOutcome) {
    if !wait(&sim).await {
        return;
    }
    let event = outcome.event(&order);
    let retailer = retailer_of(&order.key);
    let retailer = retailer.as_deref().map_err(Clone::clone);
    events::report(&sim, retailer, &event, || {
        let mut book = lock(&sim.orders);
        match outcome {
            CancelOutcome::Cancelled => book.set_state(&order.key, OrderState::Cancelled),
            CancelOutcome::Refused { reason } => {
                book.set_cancellation(&order.key, Cancellation::Refused { reason });
            }
        }
    })
    .await;
}

/// Waits one `ICON_SIM_ASYNC_DELAY`; `false` if the simulator started shutting down first.
async fn wait(sim: &Sim) -> bool {
    tokio::select! {
        () = tokio::time::sleep(sim.events.delay) => true,
        () = sim.shutdown.cancelled() => false,
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

    #[test]
    fn a_cancellations_end_is_reported_for_the_orders_key() {
        let order = Order {
            key: key(Some("acme"), "c1:acme"),
            checkout_id: "c1".into(),
            order_id: "sim-1".into(),
        };
        let cancelled = CancelOutcome::Cancelled.event(&order);
        assert_eq!(cancelled.kind, RetailerEventType::Cancelled);
        assert_eq!(cancelled.reason, None);
        let refused = CancelOutcome::Refused {
            reason: "already shipped".into(),
        }
        .event(&order);
        assert_eq!(refused.kind, RetailerEventType::CancelRefused);
        assert_eq!(refused.reason.as_deref(), Some("already shipped"));
        for event in [cancelled, refused] {
            // The order's key, not the cancellation's `:cancel` one: that is how ICON finds it.
            assert_eq!(event.idempotency_key, "c1:acme");
            assert_eq!(event.order_id.as_deref(), Some("sim-1"));
        }
    }
}
