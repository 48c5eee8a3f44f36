//! The retailer order protocol (`POST /orders`, `POST /{retailer}/orders`) and the log of every
//! order request received (`GET /orders`).
//!
//! The simulator behaves like a careful retailer: it checks the request at the edge, never
//! creates two orders for one `Idempotency-Key`, and answers failures with `{"reason": ...}`.
//! What it does with a valid request is chosen by SKU prefix ([`Behaviour`]), so a test or a demo
//! picks an outcome just by naming its items.

use crate::{lock, Sim};
use actix_web::http::header::{self, HeaderValue};
use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::collections::{HashMap, VecDeque};

/// How many order requests the log keeps. A benchmark can send millions; past this the oldest
/// records are dropped so memory stays bounded (idempotency is unaffected: it has its own table).
pub const MAX_RECORDED_ORDERS: usize = 100_000;

/// How long a `hang-` request is held: far beyond any sane client deadline, so in practice it
/// never answers. It does answer (503) when the simulator shuts down, so shutdown stays quick.
const HANG_FOR: std::time::Duration = std::time::Duration::from_secs(3600);

/// One line of an order, as the protocol sends it. Kept as sent (no currency list, no price
/// rules) because the simulator stands in for a third party, not for ICON's own validation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderItem {
    pub sku: String,
    pub quantity: u32,
    pub unit_price: Price,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Price {
    pub amount_minor: i64,
    pub currency: String,
}

/// The request body on the wire.
#[derive(Debug, Deserialize)]
struct OrderBody {
    checkout_id: String,
    items: Vec<OrderItem>,
}

/// A request that passed the protocol checks; nothing past [`parse`] sees an unchecked one.
#[derive(Debug)]
struct OrderRequest {
    retailer: Option<String>,
    key: String,
    checkout_id: String,
    items: Vec<OrderItem>,
}

/// What the simulator does with a valid order, chosen by the first prefix (in this order) that
/// any item's SKU starts with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Behaviour {
    /// `down-`: always 500, like a retailer in an outage.
    Down,
    /// `hang-`: never answers, so callers can prove their deadline works.
    Hang,
    /// `reject-`: 422, out of stock (a permanent refusal).
    Reject,
    /// `conflict-`: 409, the price changed (a permanent refusal).
    Conflict,
    /// `flaky-`: 503 on the first request for a key, then confirms (a transient failure).
    Flaky,
    /// `busy-`: 429 with `Retry-After: 1` on the first request for a key, then confirms.
    Busy,
    /// `slow-`: waits the configured delay, then confirms.
    Slow,
    /// Anything else: confirms at once.
    Confirm,
}

impl Behaviour {
    /// Prefixes in priority order: an order mixing `down-` and `slow-` items is down.
    pub const PREFIXES: [(&'static str, Behaviour); 7] = [
        ("down-", Behaviour::Down),
        ("hang-", Behaviour::Hang),
        ("reject-", Behaviour::Reject),
        ("conflict-", Behaviour::Conflict),
        ("flaky-", Behaviour::Flaky),
        ("busy-", Behaviour::Busy),
        ("slow-", Behaviour::Slow),
    ];

    /// The behaviour for these items, with the SKU that chose it (named in refusal reasons).
    pub fn of(items: &[OrderItem]) -> (Behaviour, Option<&str>) {
        Self::PREFIXES
            .iter()
            .find_map(|(prefix, behaviour)| {
                items
                    .iter()
                    .find(|item| item.sku.starts_with(prefix))
                    .map(|item| (*behaviour, Some(item.sku.as_str())))
            })
            .unwrap_or((Behaviour::Confirm, None))
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Behaviour::Down => "down",
            Behaviour::Hang => "hang",
            Behaviour::Reject => "reject",
            Behaviour::Conflict => "conflict",
            Behaviour::Flaky => "flaky",
            Behaviour::Busy => "busy",
            Behaviour::Slow => "slow",
            Behaviour::Confirm => "confirm",
        }
    }
}

/// One order request as received and answered; `GET /orders` returns these.
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
    pub order_id: Option<String>,
    /// The reason given with a non-2xx answer.
    pub reason: Option<String>,
}

/// Order state: the request log and, per idempotency key, what the retailer has done for it.
#[derive(Debug, Default)]
pub(crate) struct OrderBook {
    log: VecDeque<OrderRecord>,
    /// The sequence number of `log[0]`. Records are addressed by sequence number, so a request
    /// answered after its record was dropped from a full log updates nothing.
    first_seq: u64,
    /// Keyed by retailer too: one simulator acting as several retailers gives each its own key
    /// space, as separate retailers would have.
    keys: HashMap<(Option<String>, String), KeyState>,
}

#[derive(Debug, Default)]
struct KeyState {
    /// Requests seen for this key, this one included: `flaky-` and `busy-` fail only the first.
    requests: u32,
    order: Option<ConfirmedOrder>,
}

#[derive(Debug)]
struct ConfirmedOrder {
    order_id: String,
    checkout_id: String,
    items: Vec<OrderItem>,
}

/// What the retailer already did for a key.
enum Prior {
    Nothing,
    /// Confirmed, and this request is the same order: replay the answer.
    Same(String),
    /// Confirmed for a different order: the key was reused, which a careful retailer refuses.
    Different,
}

impl OrderBook {
    fn push(&mut self, record: OrderRecord) -> u64 {
        if self.log.len() >= MAX_RECORDED_ORDERS {
            self.log.pop_front();
            self.first_seq += 1;
        }
        self.log.push_back(record);
        self.first_seq + self.log.len() as u64 - 1
    }

    fn answer(&mut self, seq: u64, answer: &Answer) {
        let index = seq
            .checked_sub(self.first_seq)
            .and_then(|i| usize::try_from(i).ok());
        if let Some(record) = index.and_then(|i| self.log.get_mut(i)) {
            record.response_status = Some(answer.status.as_u16());
            record.order_id.clone_from(&answer.order_id);
            record.reason.clone_from(&answer.reason);
        }
    }

    /// Counts the request against its key and says what was already done for that key.
    fn arrive(&mut self, req: &OrderRequest) -> (u32, Prior) {
        let state = self
            .keys
            .entry((req.retailer.clone(), req.key.clone()))
            .or_default();
        state.requests += 1;
        (state.requests, prior(state, req))
    }

    /// Creates the order for this key, unless one exists. Checked and created under one lock so
    /// two identical requests racing (two `slow-` ones, say) still make a single order.
    fn confirm(&mut self, req: &OrderRequest) -> Answer {
        let state = self
            .keys
            .entry((req.retailer.clone(), req.key.clone()))
            .or_default();
        match prior(state, req) {
            Prior::Same(order_id) => Answer::confirmed(StatusCode::OK, order_id),
            Prior::Different => Answer::key_reused(&req.key),
            Prior::Nothing => {
                let order_id = format!("sim-{}", uuid::Uuid::new_v4());
                state.order = Some(ConfirmedOrder {
                    order_id: order_id.clone(),
                    checkout_id: req.checkout_id.clone(),
                    items: req.items.clone(),
                });
                Answer::confirmed(StatusCode::CREATED, order_id)
            }
        }
    }

    fn list(&self, filter: &LogFilter) -> Vec<OrderRecord> {
        self.log
            .iter()
            .filter(|r| {
                filter
                    .idempotency_key
                    .as_ref()
                    .is_none_or(|k| r.idempotency_key.as_ref() == Some(k))
                    && filter
                        .retailer
                        .as_ref()
                        .is_none_or(|x| r.retailer.as_ref() == Some(x))
            })
            .cloned()
            .collect()
    }
}

fn prior(state: &KeyState, req: &OrderRequest) -> Prior {
    match &state.order {
        None => Prior::Nothing,
        Some(o) if o.checkout_id == req.checkout_id && o.items == req.items => {
            Prior::Same(o.order_id.clone())
        }
        Some(_) => Prior::Different,
    }
}

/// The answer to one order request, before it becomes an HTTP response.
#[derive(Debug)]
struct Answer {
    status: StatusCode,
    order_id: Option<String>,
    reason: Option<String>,
    retry_after_secs: Option<u32>,
}

impl Answer {
    fn confirmed(status: StatusCode, order_id: String) -> Self {
        Self {
            status,
            order_id: Some(order_id),
            reason: None,
            retry_after_secs: None,
        }
    }

    fn refused(status: StatusCode, reason: impl Into<String>) -> Self {
        Self {
            status,
            order_id: None,
            reason: Some(reason.into()),
            retry_after_secs: None,
        }
    }

    /// 422, as the IETF `Idempotency-Key` header draft prescribes for a key reused with a
    /// different payload: it catches a caller that rebuilds the order differently on a retry.
    fn key_reused(key: &str) -> Self {
        Self::refused(
            StatusCode::UNPROCESSABLE_ENTITY,
            format!("Idempotency-Key {key} was already used for a different order"),
        )
    }

    fn shutting_down() -> Self {
        Self::refused(
            StatusCode::SERVICE_UNAVAILABLE,
            "simulator is shutting down",
        )
    }

    fn into_response(self) -> HttpResponse {
        match (self.order_id, self.reason) {
            (Some(order_id), _) => HttpResponse::build(self.status)
                .json(serde_json::json!({"order_id": order_id, "status": "confirmed"})),
            (None, reason) => {
                let mut response = crate::reason(self.status, reason.unwrap_or_default());
                if let Some(secs) = self.retry_after_secs {
                    response
                        .headers_mut()
                        .insert(header::RETRY_AFTER, HeaderValue::from(secs));
                }
                response
            }
        }
    }
}

/// `POST /orders`.
pub(crate) async fn create(
    sim: web::Data<Sim>,
    req: HttpRequest,
    body: web::Bytes,
) -> HttpResponse {
    place(&sim, None, &req, &body).await
}

/// `POST /{retailer}/orders`.
pub(crate) async fn create_for(
    sim: web::Data<Sim>,
    retailer: web::Path<String>,
    req: HttpRequest,
    body: web::Bytes,
) -> HttpResponse {
    place(&sim, Some(retailer.into_inner()), &req, &body).await
}

#[tracing::instrument(name = "order", skip_all, fields(retailer = retailer.as_deref()))]
async fn place(
    sim: &Sim,
    retailer: Option<String>,
    req: &HttpRequest,
    body: &[u8],
) -> HttpResponse {
    let received_at = Utc::now();
    let order = match parse(retailer.clone(), req, body) {
        Ok(order) => order,
        Err(invalid) => {
            let answer = Answer::refused(StatusCode::BAD_REQUEST, invalid.reason);
            let record = OrderRecord {
                received_at,
                retailer,
                idempotency_key: invalid.key,
                checkout_id: invalid.body.as_ref().map(|b| b.checkout_id.clone()),
                items: invalid.body.map(|b| b.items).unwrap_or_default(),
                response_status: Some(answer.status.as_u16()),
                order_id: None,
                reason: answer.reason.clone(),
            };
            tracing::info!(
                checkout_id = record.checkout_id.as_deref(),
                idempotency_key = record.idempotency_key.as_deref(),
                behaviour = "invalid",
                status = answer.status.as_u16(),
                reason = answer.reason.as_deref(),
                "order request refused"
            );
            lock(&sim.orders).push(record);
            return answer.into_response();
        }
    };

    let (behaviour, chosen_by) = Behaviour::of(&order.items);
    let (seq, request_no, prior) = {
        let mut book = lock(&sim.orders);
        let seq = book.push(OrderRecord {
            received_at,
            retailer: order.retailer.clone(),
            idempotency_key: Some(order.key.clone()),
            checkout_id: Some(order.checkout_id.clone()),
            items: order.items.clone(),
            response_status: None,
            order_id: None,
            reason: None,
        });
        let (request_no, prior) = book.arrive(&order);
        (seq, request_no, prior)
    };

    let answer = match prior {
        // A retailer looks the key up before anything else: a confirmed order is replayed
        // whatever its SKUs would do now.
        Prior::Same(order_id) => Answer::confirmed(StatusCode::OK, order_id),
        Prior::Different => Answer::key_reused(&order.key),
        Prior::Nothing => act(sim, &order, behaviour, chosen_by, request_no).await,
    };

    lock(&sim.orders).answer(seq, &answer);
    tracing::info!(
        checkout_id = %order.checkout_id,
        idempotency_key = %order.key,
        behaviour = behaviour.as_str(),
        status = answer.status.as_u16(),
        order_id = answer.order_id.as_deref(),
        "order request answered"
    );
    answer.into_response()
}

/// Carries out `behaviour` for an order that has no confirmation yet.
async fn act(
    sim: &Sim,
    order: &OrderRequest,
    behaviour: Behaviour,
    chosen_by: Option<&str>,
    request_no: u32,
) -> Answer {
    let sku = chosen_by.unwrap_or_default();
    match behaviour {
        Behaviour::Down => Answer::refused(StatusCode::INTERNAL_SERVER_ERROR, "simulated outage"),
        Behaviour::Hang => {
            tracing::info!(checkout_id = %order.checkout_id, "hang- SKU: holding the request");
            if wait_unless_shutdown(sim, HANG_FOR).await {
                Answer::refused(StatusCode::GATEWAY_TIMEOUT, "simulated hang ended")
            } else {
                Answer::shutting_down()
            }
        }
        Behaviour::Reject => Answer::refused(
            StatusCode::UNPROCESSABLE_ENTITY,
            format!("{sku} is out of stock"),
        ),
        Behaviour::Conflict => {
            Answer::refused(StatusCode::CONFLICT, format!("{sku} price changed"))
        }
        Behaviour::Flaky if request_no == 1 => Answer::refused(
            StatusCode::SERVICE_UNAVAILABLE,
            "simulated transient failure",
        ),
        Behaviour::Busy if request_no == 1 => Answer {
            retry_after_secs: Some(1),
            ..Answer::refused(StatusCode::TOO_MANY_REQUESTS, "simulated rate limit")
        },
        Behaviour::Slow => {
            if wait_unless_shutdown(sim, sim.slow_delay).await {
                lock(&sim.orders).confirm(order)
            } else {
                Answer::shutting_down()
            }
        }
        Behaviour::Flaky | Behaviour::Busy | Behaviour::Confirm => lock(&sim.orders).confirm(order),
    }
}

/// Sleeps for `delay`; `false` if shutdown started first, so a held request does not keep the
/// server's graceful stop waiting.
async fn wait_unless_shutdown(sim: &Sim, delay: std::time::Duration) -> bool {
    tokio::select! {
        () = tokio::time::sleep(delay) => true,
        () = sim.shutdown.cancelled() => false,
    }
}

/// Why a request broke the protocol, with what could still be read from it for the log.
struct Invalid {
    reason: String,
    key: Option<String>,
    body: Option<OrderBody>,
}

/// Checks the protocol: an `Idempotency-Key`, a JSON content type, a well-formed body with at
/// least one item of positive quantity.
fn parse(
    retailer: Option<String>,
    req: &HttpRequest,
    body: &[u8],
) -> Result<OrderRequest, Invalid> {
    let key = req
        .headers()
        .get("idempotency-key")
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|k| !k.is_empty())
        .map(str::to_owned);
    let is_json = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|mime| mime.trim().eq_ignore_ascii_case("application/json"));
    let parsed = serde_json::from_slice::<OrderBody>(body);

    let problem = if key.is_none() {
        Some("an Idempotency-Key header (<checkout_id>:<retailer_id>) is required".to_owned())
    } else if !is_json {
        Some("Content-Type must be application/json".to_owned())
    } else {
        match &parsed {
            Err(e) => Some(format!("the body is not a valid order: {e}")),
            Ok(b) if b.checkout_id.trim().is_empty() => Some("checkout_id is empty".to_owned()),
            Ok(b) if b.items.is_empty() => Some("an order needs at least one item".to_owned()),
            Ok(b) => b
                .items
                .iter()
                .find(|i| i.quantity == 0 || i.sku.is_empty())
                .map(|i| format!("item {:?} needs a SKU and a quantity of at least 1", i.sku)),
        }
    };
    match (problem, key, parsed) {
        (None, Some(key), Ok(body)) => Ok(OrderRequest {
            retailer,
            key,
            checkout_id: body.checkout_id,
            items: body.items,
        }),
        (problem, key, parsed) => Err(Invalid {
            reason: problem.unwrap_or_else(|| "invalid order request".to_owned()),
            key,
            body: parsed.ok(),
        }),
    }
}

/// Query of `GET /orders`.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct LogFilter {
    idempotency_key: Option<String>,
    retailer: Option<String>,
}

/// `GET /orders[?idempotency_key=K][&retailer=R]`: every order request received, oldest first.
pub(crate) async fn list(sim: web::Data<Sim>, filter: web::Query<LogFilter>) -> HttpResponse {
    let records = lock(&sim.orders).list(&filter);
    HttpResponse::Ok().json(records)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(sku: &str) -> OrderItem {
        OrderItem {
            sku: sku.to_owned(),
            quantity: 1,
            unit_price: Price {
                amount_minor: 100,
                currency: "GBP".to_owned(),
            },
        }
    }

    #[test]
    fn behaviour_follows_prefix_priority_not_item_order() {
        let items = [item("slow-a"), item("reject-b"), item("down-c")];
        assert_eq!(Behaviour::of(&items), (Behaviour::Down, Some("down-c")));
        let items = [item("plain"), item("busy-x"), item("flaky-y")];
        assert_eq!(Behaviour::of(&items), (Behaviour::Flaky, Some("flaky-y")));
        assert_eq!(Behaviour::of(&[item("dress")]), (Behaviour::Confirm, None));
        // A prefix must lead the SKU.
        assert_eq!(Behaviour::of(&[item("x-down-1")]).0, Behaviour::Confirm);
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
        };
        let first = book.push(record.clone());
        for _ in 0..MAX_RECORDED_ORDERS {
            book.push(record.clone());
        }
        assert_eq!(book.log.len(), MAX_RECORDED_ORDERS);
        book.answer(first, &Answer::shutting_down());
        assert!(book.log.iter().all(|r| r.response_status.is_none()));
        let last = first + MAX_RECORDED_ORDERS as u64;
        book.answer(last, &Answer::shutting_down());
        assert_eq!(book.log.back().and_then(|r| r.response_status), Some(503));
    }
}
