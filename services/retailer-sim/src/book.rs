//! The order book: what the simulated retailer has done for each idempotency key, and the log of
//! every order request received, served at `GET /requests`.
//!
//! Both sit behind one lock (the simulator state's `orders`) on purpose. A request is logged and
//! claims its key in one step, so a test that sees a request unanswered in the log knows the key
//! is held; and checking for an order and creating it cannot interleave with another request, so
//! one key never gets two orders.
//!
//! An order placed by an `async-` SKU moves on after its 202 (`OrderState`) as
//! [`crate::lifecycle`] reports its events, so lookups and replays follow it; a cancellation
//! moves it to `Cancelled` and the book keeps where an unfinished one stands (`cancel`).

mod cancel;
mod state;

pub(crate) use cancel::{CancelTarget, Cancellation};
pub(crate) use state::{OrderState, OrderView};

use crate::orders::OrderItem;
use crate::signing::SignatureHeaders;
use crate::{lock, Sim};
use actix_web::{web, HttpResponse};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::collections::{HashMap, VecDeque};

/// How many order requests the log keeps. A benchmark can send millions; past this the oldest
/// records are dropped so memory stays bounded (idempotency is unaffected: it has its own table).
pub const MAX_RECORDED_ORDERS: usize = 100_000;

/// One order request as received and answered; `GET /requests` returns these.
#[derive(Debug, Clone, Serialize)]
pub struct OrderRecord {
    pub received_at: DateTime<Utc>,
    /// The `{retailer}` path segment, or `None` for `POST /orders`.
    pub retailer: Option<String>,
    pub idempotency_key: Option<String>,
    pub checkout_id: Option<String>,
    /// Empty when the body could not be parsed.
    pub items: Vec<OrderItem>,
    /// `None` while the request is still unanswered (a `slow-` one waiting, a `hang-` one).
    pub response_status: Option<u16>,
    /// The order this request placed or replayed. Set on a `ghost-` 502 too: the order exists
    /// even though the answer says otherwise, and a check for double orders must see it.
    pub order_id: Option<String>,
    /// The reason given with a non-2xx answer.
    pub reason: Option<String>,
    /// The body exactly as received (UTF-8, lossily), what `webhook-signature` signs.
    pub raw_body: String,
    /// `webhook-id`, `webhook-timestamp`, `webhook-signature` and whether they verified.
    #[serde(flatten)]
    pub signature: SignatureHeaders,
}

/// Whose idempotency key: keys are per retailer, so one simulator acting as several retailers
/// gives each its own key space, as separate retailers would have.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct KeyId {
    /// The `{retailer}` path segment, or `None` for `/orders`.
    pub(crate) retailer: Option<String>,
    pub(crate) key: String,
}

#[derive(Debug, Default)]
pub(crate) struct OrderBook {
    log: VecDeque<OrderRecord>,
    /// The sequence number of `log[0]`. Records are addressed by sequence number, so a request
    /// answered after its record was dropped from a full log updates nothing.
    first_seq: u64,
    keys: HashMap<KeyId, KeyState>,
}

#[derive(Debug, Default)]
struct KeyState {
    /// Requests acted on for this key, the current one included: `conflict-`, `flaky-` and
    /// `busy-` fail only the first. Replays and requests refused as in progress do not count.
    attempts: u32,
    /// A request for this key is being processed (a `slow-` one waiting, a `hang-` one held):
    /// another one arriving now is answered 409.
    in_progress: bool,
    order: Option<PlacedOrder>,
}

#[derive(Debug)]
struct PlacedOrder {
    order_id: String,
    checkout_id: String,
    items: Vec<OrderItem>,
    state: OrderState,
    cancellation: Cancellation,
}

impl PlacedOrder {
    fn view(&self) -> OrderView {
        OrderView {
            order_id: self.order_id.clone(),
            state: self.state.clone(),
        }
    }
}

/// What a request finds for its key on arrival.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Arrival {
    /// An order was placed for this key and this request is the same order: replay it, as it
    /// stands now. A retailer looks the key up before anything else, whatever the SKUs would
    /// do now.
    Placed(OrderView),
    /// An order was placed for this key with a different body: the key was reused.
    KeyReused,
    /// Another request for this key is still being processed.
    InProgress,
    /// Nothing placed, nothing in progress: this request now holds the key (see [`Claim`]) and
    /// is attempt number `attempt` for it.
    Claimed { attempt: u32 },
}

/// What placing an order did.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Placement {
    Created(String),
    /// The same order already existed for the key.
    Existing(OrderView),
    KeyReused,
}

impl OrderBook {
    /// Logs a request and returns the sequence number to [`answer`](Self::answer) it by.
    pub(crate) fn push(&mut self, record: OrderRecord) -> u64 {
        if self.log.len() >= MAX_RECORDED_ORDERS {
            self.log.pop_front();
            self.first_seq += 1;
        }
        self.log.push_back(record);
        self.first_seq + self.log.len() as u64 - 1
    }

    /// Fills in the answer of a logged request.
    pub(crate) fn answer(
        &mut self,
        seq: u64,
        status: u16,
        order_id: Option<&str>,
        reason: Option<&str>,
    ) {
        let index = seq
            .checked_sub(self.first_seq)
            .and_then(|i| usize::try_from(i).ok());
        if let Some(record) = index.and_then(|i| self.log.get_mut(i)) {
            record.response_status = Some(status);
            record.order_id = order_id.map(str::to_owned);
            record.reason = reason.map(str::to_owned);
        }
    }

    /// Says what was already done for the key and, when nothing was and no other request is
    /// at work on it, claims it for this request.
    pub(crate) fn arrive(
        &mut self,
        key: &KeyId,
        checkout_id: &str,
        items: &[OrderItem],
    ) -> Arrival {
        let state = self.keys.entry(key.clone()).or_default();
        match &state.order {
            Some(o) if o.checkout_id == checkout_id && o.items == items => {
                Arrival::Placed(o.view())
            }
            Some(_) => Arrival::KeyReused,
            None if state.in_progress => Arrival::InProgress,
            None => {
                state.in_progress = true;
                state.attempts += 1;
                Arrival::Claimed {
                    attempt: state.attempts,
                }
            }
        }
    }

    fn release(&mut self, key: &KeyId) {
        if let Some(state) = self.keys.get_mut(key) {
            state.in_progress = false;
        }
    }

    /// Places the order for the key, in `initial` state, unless one exists. Only the request
    /// holding the key gets here, but the check stays: never two orders for one key must not
    /// rest on claims alone.
    pub(crate) fn place(
        &mut self,
        key: &KeyId,
        checkout_id: &str,
        items: &[OrderItem],
        initial: OrderState,
        new_order_id: impl FnOnce() -> String,
    ) -> Placement {
        let state = self.keys.entry(key.clone()).or_default();
        match &state.order {
            Some(o) if o.checkout_id == checkout_id && o.items == items => {
                Placement::Existing(o.view())
            }
            Some(_) => Placement::KeyReused,
            None => {
                let order_id = new_order_id();
                state.order = Some(PlacedOrder {
                    order_id: order_id.clone(),
                    checkout_id: checkout_id.to_owned(),
                    items: items.to_vec(),
                    state: initial,
                    cancellation: Cancellation::NotAsked,
                });
                Placement::Created(order_id)
            }
        }
    }

    /// A request for the key is being processed and no order exists yet.
    pub(crate) fn in_progress(&self, key: &KeyId) -> bool {
        self.keys
            .get(key)
            .is_some_and(|s| s.in_progress && s.order.is_none())
    }

    /// The order placed for the key, if any, as it stands now.
    pub(crate) fn order(&self, key: &KeyId) -> Option<OrderView> {
        self.keys
            .get(key)
            .and_then(|s| s.order.as_ref())
            .map(PlacedOrder::view)
    }

    /// Moves the key's order on (an `async-` order reporting, a cancellation); nothing if it
    /// has none, or it was cancelled: an event of an `async-` order sent as it was being
    /// cancelled must not bring it back.
    pub(crate) fn set_state(&mut self, key: &KeyId, state: OrderState) {
        if let Some(order) = self.keys.get_mut(key).and_then(|s| s.order.as_mut()) {
            if order.state != OrderState::Cancelled {
                order.state = state;
            }
        }
    }

    fn list(&self, filter: &LogFilter) -> Vec<OrderRecord> {
        self.log
            .iter()
            .filter(|r| filter.matches(r.retailer.as_deref(), r.idempotency_key.as_deref()))
            .cloned()
            .collect()
    }
}

/// A request's hold on its key while it is processed. Dropping it frees the key however the
/// handler ends: answered, ended by shutdown, or dropped mid-way. actix-web keeps running a
/// handler whose client has gone away, so an abandoned `hang-` request holds its key until
/// shutdown, like a retailer still at work on a request its caller gave up on.
pub(crate) struct Claim<'a> {
    sim: &'a Sim,
    key: KeyId,
}

impl<'a> Claim<'a> {
    /// Takes charge of a key that [`OrderBook::arrive`] just answered [`Arrival::Claimed`] for.
    pub(crate) fn of(sim: &'a Sim, key: KeyId) -> Self {
        Self { sim, key }
    }
}

impl Drop for Claim<'_> {
    fn drop(&mut self) {
        lock(&self.sim.orders).release(&self.key);
    }
}

/// Query of `GET /requests` and `GET /lookups`.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct LogFilter {
    idempotency_key: Option<String>,
    retailer: Option<String>,
}

impl LogFilter {
    pub(crate) fn matches(&self, retailer: Option<&str>, key: Option<&str>) -> bool {
        self.idempotency_key
            .as_deref()
            .is_none_or(|k| key == Some(k))
            && self.retailer.as_deref().is_none_or(|r| retailer == Some(r))
    }
}

/// `GET /requests[?idempotency_key=K][&retailer=R]`: every order request received, oldest first.
pub(crate) async fn list(sim: web::Data<Sim>, filter: web::Query<LogFilter>) -> HttpResponse {
    let records = lock(&sim.orders).list(&filter);
    HttpResponse::Ok().json(records)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(k: &str) -> KeyId {
        KeyId {
            retailer: None,
            key: k.to_owned(),
        }
    }

    #[test]
    fn full_log_drops_the_oldest_and_ignores_late_answers() {
        let mut book = OrderBook::default();
        let record = OrderRecord {
            received_at: Utc::now(),
            retailer: None,
            idempotency_key: None,
            checkout_id: None,
            items: vec![],
            response_status: None,
            order_id: None,
            reason: None,
            raw_body: String::new(),
            signature: SignatureHeaders::default(),
        };
        let first = book.push(record.clone());
        for _ in 0..MAX_RECORDED_ORDERS {
            book.push(record.clone());
        }
        assert_eq!(book.log.len(), MAX_RECORDED_ORDERS);
        book.answer(first, 503, None, None);
        assert!(book.log.iter().all(|r| r.response_status.is_none()));
        let last = first + MAX_RECORDED_ORDERS as u64;
        book.answer(last, 503, None, None);
        assert_eq!(book.log.back().and_then(|r| r.response_status), Some(503));
    }

    #[test]
    fn a_held_key_is_in_progress_until_released_then_counts_the_next_attempt() {
        let mut book = OrderBook::default();
        let k = key("c1:acme");
        assert_eq!(book.arrive(&k, "c1", &[]), Arrival::Claimed { attempt: 1 });
        // Held: any request for the key, the same order or not, is told to come back.
        assert_eq!(book.arrive(&k, "c1", &[]), Arrival::InProgress);
        assert_eq!(book.arrive(&k, "other", &[]), Arrival::InProgress);
        // Another retailer's key of the same name is free.
        let elsewhere = KeyId {
            retailer: Some("acme".to_owned()),
            ..k.clone()
        };
        assert_eq!(
            book.arrive(&elsewhere, "c1", &[]),
            Arrival::Claimed { attempt: 1 }
        );

        book.release(&k);
        assert_eq!(book.arrive(&k, "c1", &[]), Arrival::Claimed { attempt: 2 });
        let placed = book.place(&k, "c1", &[], OrderState::Confirmed, || "sim-1".to_owned());
        assert_eq!(placed, Placement::Created("sim-1".to_owned()));
        // Placed: replays and reuse are answered from the order, held or not.
        let view = OrderView {
            order_id: "sim-1".to_owned(),
            state: OrderState::Confirmed,
        };
        assert_eq!(book.arrive(&k, "c1", &[]), Arrival::Placed(view.clone()));
        assert_eq!(book.arrive(&k, "c2", &[]), Arrival::KeyReused);
        book.release(&k);
        assert_eq!(book.order(&k), Some(view));
        assert_eq!(book.order(&elsewhere), None);
    }

    #[test]
    fn placing_twice_keeps_the_first_order() {
        let mut book = OrderBook::default();
        let k = key("c1:acme");
        book.place(&k, "c1", &[], OrderState::Accepted, || "sim-1".to_owned());
        let confirmed = OrderState::Confirmed;
        let again = book.place(&k, "c1", &[], confirmed.clone(), || {
            unreachable!("a second order id")
        });
        let accepted = OrderView {
            order_id: "sim-1".to_owned(),
            state: OrderState::Accepted,
        };
        assert_eq!(again, Placement::Existing(accepted));
        let reused = book.place(&k, "c2", &[], confirmed, || {
            unreachable!("a second order id")
        });
        assert_eq!(reused, Placement::KeyReused);
    }

    #[test]
    fn an_order_moves_on_and_a_missing_one_stays_missing() {
        let mut book = OrderBook::default();
        let k = key("c1:acme");
        book.set_state(&k, OrderState::Shipped);
        assert_eq!(book.order(&k), None);
        book.place(&k, "c1", &[], OrderState::Accepted, || "sim-1".to_owned());
        book.set_state(&k, OrderState::Shipped);
        let order = book.order(&k).expect("placed");
        assert_eq!(order.state.as_str(), "shipped");
        assert_eq!(
            book.arrive(&k, "c1", &[]),
            Arrival::Placed(order),
            "a replay sees where the order stands"
        );
    }

    #[test]
    fn filters_match_key_and_retailer() {
        let all = LogFilter::default();
        assert!(all.matches(None, None));
        let by_key = LogFilter {
            idempotency_key: Some("k".to_owned()),
            retailer: None,
        };
        assert!(by_key.matches(Some("acme"), Some("k")));
        assert!(!by_key.matches(None, None));
        let by_retailer = LogFilter {
            idempotency_key: None,
            retailer: Some("acme".to_owned()),
        };
        assert!(by_retailer.matches(Some("acme"), None));
        assert!(!by_retailer.matches(None, Some("k")));
    }
}
