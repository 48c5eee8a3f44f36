//! The retailer protocol's cancellation side (issue 18): `POST /orders/cancellations` and
//! `POST /{retailer}/orders/cancellations` (ICON's `<order_url>/cancellations`), and the log of
//! the cancellations received, `GET /cancellations`.
//!
//! A request is signed and verified like an order ([`crate::signing`]: one that does not verify
//! is answered 401 and has no effect). It carries `Idempotency-Key: <order key>:cancel`
//! ([`cancel_key`](icon_contracts::retailer::cancel_key)) and a [`CancellationRequest`] naming
//! the order by the key it was placed with; a missing or mismatching header, or a malformed
//! body, is 400. The order is found by that key in the retailer's key space ([`crate::book`]).
//! The body's `order_id` is logged, not checked: the key names the order, and ICON may hold a
//! sanitised copy of an odd id (`nul-`).
//!
//! - 404 when there is no order for the key (none placed, or it was rejected); 503 with
//!   `Retry-After: 1` while a request placing it is still being processed, since "no order"
//!   would be a guess then and a 5xx is what ICON retries.
//! - 200 `{"status": "cancelled"}` once the order is cancelled, for every repeat too.
//! - Otherwise as the order's SKUs say ([`CancelBehaviour`]): `nocancel-` 409 `{"reason":
//!   "already shipped"}` every time; `cancel-async-` 202 then `order.cancelled` by event, one
//!   async delay later ([`crate::lifecycle`]); `cancel-async-refuse-` 202 then
//!   `order.cancel_refused` ("already shipped") and 409 from then on; `cancel-hang-` cancels
//!   and never answers its first request; anything else cancels, 200. A repeat while a 202's
//!   outcome has not been reported yet is answered 202 again.
//!
//! Once cancelled, lookups show `"status": "cancelled"` and the order request replays the
//! cancelled order (200) without placing another; a refusal leaves both as they were.
//!
//! - `parse`: the protocol's checks on a request.
//! - `answer`: the answer to a request, and how it becomes a response.

mod answer;
mod parse;

pub use answer::{IN_PROGRESS_REASON, REFUSED_REASON};

use crate::behaviour::CancelBehaviour;
use crate::book::{CancelTarget, Cancellation, KeyId, LogFilter, OrderBook, OrderState};
use crate::lifecycle::{self, CancelOutcome};
use crate::orders::{wait_unless_shutdown, HANG_FOR};
use crate::recent::Recent;
use crate::signing::{self, SignatureHeaders};
use crate::{lock, Sim};
use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use answer::Answer;
use chrono::{DateTime, Utc};
use icon_contracts::retailer::CancellationRequest;
use parse::parse;
use serde::Serialize;

/// How many cancellation requests the log keeps; older ones are dropped so a long run stays
/// bounded (the cancellations themselves are kept with their orders, in the book).
pub const MAX_RECORDED_CANCELLATIONS: usize = 100_000;

const IDEMPOTENCY_KEY: &str = "idempotency-key";

/// One cancellation request as received and answered; `GET /cancellations` returns these.
#[derive(Debug, Clone, Serialize)]
pub struct CancellationRecord {
    pub received_at: DateTime<Utc>,
    /// The `{retailer}` path segment, or `None` for `POST /orders/cancellations`.
    pub retailer: Option<String>,
    /// The order's key, from the body (trimmed); `None` when the body could not be read.
    pub idempotency_key: Option<String>,
    /// The `Idempotency-Key` header exactly as received, to check ICON's `<key>:cancel`.
    pub idempotency_key_header: Option<String>,
    /// The order id the body names (`None` also when ICON sent `null`), unchecked.
    pub order_id: Option<String>,
    /// Why ICON cancels, from the body.
    pub reason: Option<String>,
    /// The status answered; `None` while unanswered, and for good for the first cancellation
    /// of a `cancel-hang-` order (which took effect all the same).
    pub response_status: Option<u16>,
    /// Whether it was answered: `false` exactly when `response_status` is `None`, spelt out so
    /// a test of a lost answer can say what it means.
    pub answered: bool,
    /// The reason given with a non-2xx answer.
    pub answer_reason: Option<String>,
    /// The body exactly as received (UTF-8, lossily), what `webhook-signature` signs.
    pub raw_body: String,
    /// `webhook-id`, `webhook-timestamp`, `webhook-signature` and whether they verified.
    #[serde(flatten)]
    pub signature: SignatureHeaders,
}

impl CancellationRecord {
    fn answer(&mut self, answer: &Answer) {
        self.response_status = Some(answer.status.as_u16());
        self.answered = true;
        self.answer_reason.clone_from(&answer.reason);
    }

    fn describe(&mut self, body: &CancellationRequest) {
        self.idempotency_key = Some(body.idempotency_key.clone());
        self.order_id.clone_from(&body.order_id);
        self.reason = Some(body.reason.clone());
    }
}

/// Every cancellation request received, oldest first.
pub(crate) type CancellationLog = Recent<CancellationRecord, MAX_RECORDED_CANCELLATIONS>;

/// `POST /orders/cancellations`.
pub(crate) async fn cancel(
    sim: web::Data<Sim>,
    req: HttpRequest,
    body: web::Bytes,
) -> HttpResponse {
    receive(&sim, None, &req, &body).await
}

/// `POST /{retailer}/orders/cancellations`.
pub(crate) async fn cancel_for(
    sim: web::Data<Sim>,
    retailer: web::Path<String>,
    req: HttpRequest,
    body: web::Bytes,
) -> HttpResponse {
    receive(&sim, Some(retailer.into_inner()), &req, &body).await
}

/// `GET /cancellations[?idempotency_key=K][&retailer=R]`: every cancellation request received,
/// oldest first; `idempotency_key` is the order's key, as in the body.
pub(crate) async fn list(sim: web::Data<Sim>, filter: web::Query<LogFilter>) -> HttpResponse {
    let log = lock(&sim.cancellations);
    let records: Vec<&CancellationRecord> = log
        .iter()
        .filter(|r| filter.matches(r.retailer.as_deref(), r.idempotency_key.as_deref()))
        .collect();
    HttpResponse::Ok().json(records)
}

#[tracing::instrument(name = "cancellation", skip_all, fields(retailer = retailer.as_deref()))]
async fn receive(
    sim: &web::Data<Sim>,
    retailer: Option<String>,
    req: &HttpRequest,
    body: &[u8],
) -> HttpResponse {
    let mut record = CancellationRecord {
        received_at: Utc::now(),
        retailer: retailer.clone(),
        idempotency_key: None,
        idempotency_key_header: req
            .headers()
            .get(IDEMPOTENCY_KEY)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned),
        order_id: None,
        reason: None,
        response_status: None,
        answered: false,
        answer_reason: None,
        raw_body: String::from_utf8_lossy(body).into_owned(),
        signature: SignatureHeaders::of(req),
    };
    // Before anything else: a request that does not verify has no effect at all.
    if let Err(why) = signing::check(sim, retailer.as_deref(), &mut record.signature, body) {
        record.answer(&Answer::refused(
            StatusCode::UNAUTHORIZED,
            "signature refused",
        ));
        tracing::info!(status = 401, "cancellation refused: signature");
        lock(&sim.cancellations).push(record);
        return signing::unauthorized(why);
    }
    let request = parse(req, record.idempotency_key_header.as_deref(), body);
    let request = match request {
        Ok(request) => request,
        Err(invalid) => {
            if let Some(body) = &invalid.body {
                record.describe(body);
            }
            let answer = Answer::refused(StatusCode::BAD_REQUEST, invalid.reason);
            record.answer(&answer);
            tracing::info!(
                idempotency_key = record.idempotency_key.as_deref(),
                status = 400,
                reason = answer.reason.as_deref(),
                "cancellation refused"
            );
            lock(&sim.cancellations).push(record);
            return answer.into_response();
        }
    };
    record.describe(&request);
    // Logged unanswered first, so a request held for ever (`cancel-hang-`) shows in the log.
    let seq = lock(&sim.cancellations).push(record);
    let key = KeyId {
        retailer,
        key: request.idempotency_key,
    };

    let (decision, behaviour) = decide(&mut lock(&sim.orders), &key);
    let answer = match decision {
        Decision::Answer(answer) => answer,
        Decision::Report(order, outcome) => {
            lifecycle::start_cancellation(sim, order, outcome);
            Answer::accepted()
        }
        Decision::Hang => {
            tracing::info!(idempotency_key = %key.key, "cancel-hang- SKU: holding the answer");
            if wait_unless_shutdown(sim, HANG_FOR).await {
                Answer::refused(StatusCode::GATEWAY_TIMEOUT, "simulated hang ended")
            } else {
                Answer::refused(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "simulator is shutting down",
                )
            }
        }
    };
    if let Some(record) = lock(&sim.cancellations).get_mut(seq) {
        record.answer(&answer);
    }
    tracing::info!(
        idempotency_key = %key.key,
        behaviour,
        status = answer.status.as_u16(),
        reason = answer.reason.as_deref(),
        "cancellation answered"
    );
    answer.into_response()
}

/// What to do with a valid cancellation, beyond what is already done to the book.
#[derive(Debug, PartialEq, Eq)]
enum Decision {
    Answer(Answer),
    /// Answer 202, and report the outcome later.
    Report(lifecycle::Order, CancelOutcome),
    /// The order is cancelled; hold the answer back.
    Hang,
}

/// Decides a cancellation of `key`'s order and does it to the book (under its lock, so two
/// cancellations of one order cannot both act). Also says, for the log, what chose it.
fn decide(book: &mut OrderBook, key: &KeyId) -> (Decision, &'static str) {
    let order = match book.cancel_target(key) {
        CancelTarget::NoOrder => return (Decision::Answer(Answer::no_order(&key.key)), "none"),
        CancelTarget::PlacementInProgress => {
            return (Decision::Answer(Answer::in_progress()), "in progress")
        }
        CancelTarget::Order(order) => order,
    };
    let repeat = match order.cancellation {
        _ if order.state == OrderState::Cancelled => Some(Answer::cancelled()),
        Cancellation::Pending => Some(Answer::accepted()),
        Cancellation::Refused { reason } => Some(Answer::refused(StatusCode::CONFLICT, reason)),
        Cancellation::NotAsked => None,
    };
    if let Some(answer) = repeat {
        return (Decision::Answer(answer), "repeat");
    }
    let behaviour = CancelBehaviour::of(&order.items);
    let later = lifecycle::Order {
        key: key.clone(),
        checkout_id: order.checkout_id,
        order_id: order.order_id,
    };
    let decision = match behaviour {
        CancelBehaviour::Refuse => {
            let reason = REFUSED_REASON.to_owned();
            let answer = Answer::refused(StatusCode::CONFLICT, reason.clone());
            book.set_cancellation(key, Cancellation::Refused { reason });
            Decision::Answer(answer)
        }
        CancelBehaviour::Async | CancelBehaviour::AsyncRefuse => {
            book.set_cancellation(key, Cancellation::Pending);
            let outcome = match behaviour {
                CancelBehaviour::Async => CancelOutcome::Cancelled,
                _ => CancelOutcome::Refused {
                    reason: REFUSED_REASON.to_owned(),
                },
            };
            Decision::Report(later, outcome)
        }
        CancelBehaviour::Hang => {
            book.set_state(key, OrderState::Cancelled);
            Decision::Hang
        }
        CancelBehaviour::Cancel => {
            book.set_state(key, OrderState::Cancelled);
            Decision::Answer(Answer::cancelled())
        }
    };
    (decision, behaviour.as_str())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::orders::{OrderItem, Price};

    fn key(k: &str) -> KeyId {
        KeyId {
            retailer: Some("acme".to_owned()),
            key: k.to_owned(),
        }
    }

    fn placed(sku: &str) -> (OrderBook, KeyId) {
        let mut book = OrderBook::default();
        let k = key("c1:acme");
        let items = [OrderItem {
            sku: sku.to_owned(),
            quantity: 1,
            unit_price: Price {
                amount_minor: 100,
                currency: "GBP".to_owned(),
            },
        }];
        book.place(&k, "c1", &items, OrderState::Confirmed, || "sim-1".into());
        (book, k)
    }

    fn status(decision: &(Decision, &str)) -> Option<u16> {
        match &decision.0 {
            Decision::Answer(answer) => Some(answer.status.as_u16()),
            Decision::Report(..) => Some(202),
            Decision::Hang => None,
        }
    }

    #[test]
    fn a_refused_cancellation_is_refused_again_and_leaves_the_order_placed() {
        let (mut book, k) = placed("nocancel-dress");
        for _ in 0..2 {
            let decision = decide(&mut book, &k);
            let refused = Answer::refused(StatusCode::CONFLICT, REFUSED_REASON);
            assert_eq!(decision.0, Decision::Answer(refused));
        }
        assert_eq!(book.order(&k).expect("placed").state, OrderState::Confirmed);
    }

    #[test]
    fn an_accepted_cancellation_is_reported_once_and_repeats_wait_for_it() {
        let (mut book, k) = placed("cancel-async-refuse-dress");
        let (decision, behaviour) = decide(&mut book, &k);
        assert_eq!(behaviour, "cancel-async-refuse");
        let Decision::Report(order, outcome) = decision else {
            panic!("a report to send: {decision:?}");
        };
        assert_eq!((order.order_id.as_str(), order.key), ("sim-1", k.clone()));
        assert!(matches!(outcome, CancelOutcome::Refused { .. }));
        // Asked again before the event: 202 again, and no second report.
        let again = decide(&mut book, &k);
        assert_eq!(again.0, Decision::Answer(Answer::accepted()));
        let reason = REFUSED_REASON.to_owned();
        book.set_cancellation(&k, Cancellation::Refused { reason });
        assert_eq!(status(&decide(&mut book, &k)), Some(409));
    }

    #[test]
    fn a_hanging_cancellation_cancels_and_later_ones_say_so() {
        let (mut book, k) = placed("cancel-hang-dress");
        assert_eq!(decide(&mut book, &k).0, Decision::Hang);
        assert_eq!(book.order(&k).expect("placed").state, OrderState::Cancelled);
        assert_eq!(status(&decide(&mut book, &k)), Some(200));
        assert_eq!(status(&decide(&mut book, &key("c2:acme"))), Some(404));
    }
}
