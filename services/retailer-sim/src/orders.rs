//! The retailer order protocol's placing side: `POST /orders` and `POST /{retailer}/orders`.
//!
//! The simulator behaves like a careful retailer: it checks the request at the edge, never
//! creates two orders for one `Idempotency-Key`, answers 409 while an earlier request for the
//! key is still being processed (as the IETF `Idempotency-Key` header draft prescribes), and
//! answers failures with `{"reason": ...}`. What it does with a valid request is chosen by SKU
//! prefix ([`Behaviour`]), so a test or a demo picks an outcome just by naming its items. The
//! state it keeps per key and the request log are in [`crate::book`]; looking an order up by
//! key is in [`crate::lookup`]; what an `async-` order reports after its 202 is in
//! [`crate::lifecycle`].
//!
//! - `answer`: the answer to a request, and how it becomes a response.

mod answer;

use crate::behaviour::Behaviour;
use crate::book::{Arrival, Claim, KeyId, OrderRecord, OrderState, Placement};
use crate::signing::{self, SignatureHeaders};
use crate::{lifecycle, lock, Sim};
use actix_web::http::header;
use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use answer::Answer;
use chrono::Utc;
use serde::{Deserialize, Serialize};

/// How long a `hang-` request (or a `cancel-hang-` cancellation) is held: far beyond any sane
/// client deadline, so in practice it never answers. It does answer (503) when the simulator
/// shuts down, so shutdown stays quick.
pub(crate) const HANG_FOR: std::time::Duration = std::time::Duration::from_secs(3600);

/// What a `nul-` order id carries after `sim-<uuid>`: NUL, BEL, ESC, CR and LF, the characters
/// that break a database text column, a terminal or a log line if passed on unsanitised.
pub const NUL_ORDER_ID_TAIL: &str = "\u{0}\u{7}\u{1b}\r\nx";

/// The reason given with a 409: the request is not refused, it is to be retried later.
pub const IN_PROGRESS_REASON: &str = "a request with this Idempotency-Key is in progress";

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
    key: KeyId,
    checkout_id: String,
    items: Vec<OrderItem>,
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
    sim: &web::Data<Sim>,
    retailer: Option<String>,
    req: &HttpRequest,
    body: &[u8],
) -> HttpResponse {
    let received_at = Utc::now();
    let raw_body = String::from_utf8_lossy(body).into_owned();
    let mut signature = SignatureHeaders::of(req);
    // Before anything else: a request that does not verify has no effect at all.
    if let Err(why) = signing::check(sim, retailer.as_deref(), &mut signature, body) {
        let key = req
            .headers()
            .get("idempotency-key")
            .and_then(|v| v.to_str().ok())
            .map(|k| k.trim().to_owned());
        tracing::info!(
            idempotency_key = key.as_deref(),
            status = 401,
            "order request refused: signature"
        );
        lock(&sim.orders).push(OrderRecord {
            received_at,
            retailer,
            idempotency_key: key,
            checkout_id: None,
            items: vec![],
            response_status: Some(401),
            order_id: None,
            reason: Some("signature refused".into()),
            raw_body,
            signature,
        });
        return signing::unauthorized(why);
    }
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
                raw_body,
                signature,
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
    // Logged and checked under one lock: once the log shows the request, its key is held.
    let (seq, arrival) = {
        let mut book = lock(&sim.orders);
        let seq = book.push(OrderRecord {
            received_at,
            retailer: order.key.retailer.clone(),
            idempotency_key: Some(order.key.key.clone()),
            checkout_id: Some(order.checkout_id.clone()),
            items: order.items.clone(),
            response_status: None,
            order_id: None,
            reason: None,
            raw_body,
            signature,
        });
        let arrival = book.arrive(&order.key, &order.checkout_id, &order.items);
        (seq, arrival)
    };

    let answer = match arrival {
        Arrival::Placed(order) => Answer::replay(order),
        Arrival::KeyReused => Answer::key_reused(&order.key.key),
        Arrival::InProgress => Answer::in_progress(),
        Arrival::Claimed { attempt } => {
            let _held = Claim::of(sim, order.key.clone());
            act(sim, &order, behaviour, chosen_by, attempt).await
        }
    };

    lock(&sim.orders).answer(
        seq,
        answer.status.as_u16(),
        answer.order_id.as_deref(),
        answer.reason.as_deref(),
    );
    tracing::info!(
        checkout_id = %order.checkout_id,
        idempotency_key = %order.key.key,
        behaviour = behaviour.as_str(),
        status = answer.status.as_u16(),
        // Debug, so a `nul-` id's control characters are escaped in the log line.
        order_id = ?answer.order_id,
        "order request answered"
    );
    answer.into_response()
}

/// Carries out `behaviour` for an order that has no confirmation yet, while holding its key.
async fn act(
    sim: &web::Data<Sim>,
    order: &OrderRequest,
    behaviour: Behaviour,
    chosen_by: Option<&str>,
    attempt: u32,
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
        Behaviour::Conflict if attempt == 1 => Answer::in_progress(),
        Behaviour::Flaky if attempt == 1 => Answer::refused(
            StatusCode::SERVICE_UNAVAILABLE,
            "simulated transient failure",
        ),
        Behaviour::Busy if attempt == 1 => Answer {
            retry_after_secs: Some(1),
            ..Answer::refused(StatusCode::TOO_MANY_REQUESTS, "simulated rate limit")
        },
        Behaviour::Async
        | Behaviour::AsyncReject
        | Behaviour::AsyncShip
        | Behaviour::AsyncSilent => accept(sim, order, behaviour, sku),
        Behaviour::Ghost => {
            let placed = confirm(sim, order, behaviour);
            if placed.status.is_success() {
                Answer {
                    status: StatusCode::BAD_GATEWAY,
                    reason: Some("simulated lost response".to_owned()),
                    ..placed
                }
            } else {
                placed
            }
        }
        Behaviour::Slow => {
            if wait_unless_shutdown(sim, sim.slow_delay).await {
                confirm(sim, order, behaviour)
            } else {
                Answer::shutting_down()
            }
        }
        Behaviour::Conflict
        | Behaviour::Flaky
        | Behaviour::Busy
        | Behaviour::Nul
        | Behaviour::Confirm => confirm(sim, order, behaviour),
    }
}

/// Places the order: 201 with a new id, or the one already placed for the key replayed.
fn confirm(sim: &Sim, order: &OrderRequest, behaviour: Behaviour) -> Answer {
    let placed = lock(&sim.orders).place(
        &order.key,
        &order.checkout_id,
        &order.items,
        OrderState::Confirmed,
        || {
            let order_id = new_order_id();
            match behaviour {
                Behaviour::Nul => order_id + NUL_ORDER_ID_TAIL,
                _ => order_id,
            }
        },
    );
    match placed {
        Placement::Created(order_id) => Answer::confirmed(StatusCode::CREATED, order_id),
        Placement::Existing(order) => Answer::replay(order),
        Placement::KeyReused => Answer::key_reused(&order.key.key),
    }
}

/// Takes the order for an `async-` SKU: 202 accepted, and its events start on their own
/// (those of the order's first request only: a replay finds the order and starts nothing).
fn accept(sim: &web::Data<Sim>, order: &OrderRequest, behaviour: Behaviour, sku: &str) -> Answer {
    let placed = lock(&sim.orders).place(
        &order.key,
        &order.checkout_id,
        &order.items,
        OrderState::Accepted,
        new_order_id,
    );
    match placed {
        Placement::Created(order_id) => {
            lifecycle::start(
                sim,
                lifecycle::Order {
                    key: order.key.clone(),
                    checkout_id: order.checkout_id.clone(),
                    order_id: order_id.clone(),
                },
                behaviour,
                sku,
            );
            Answer::accepted(order_id)
        }
        Placement::Existing(order) => Answer::replay(order),
        Placement::KeyReused => Answer::key_reused(&order.key.key),
    }
}

fn new_order_id() -> String {
    format!("sim-{}", uuid::Uuid::new_v4())
}

/// Sleeps for `delay`; `false` if shutdown started first, so a held request does not keep the
/// server's graceful stop waiting.
pub(crate) async fn wait_unless_shutdown(sim: &Sim, delay: std::time::Duration) -> bool {
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
            key: KeyId { retailer, key },
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
