//! The retailer protocol's status lookup, `GET /orders?idempotency_key=K` and
//! `GET /{retailer}/orders?idempotency_key=K`, and the log of lookups received, `GET /lookups`.
//!
//! A lookup lets a caller that never got an answer (a timeout, a `ghost-` 502) learn whether its
//! order was placed, instead of guessing: 200 with the order if it was, 409 while a request
//! with the key is still being processed, 404 if there is no order and nothing in progress.
//!
//! The 200 shows where the order stands: `{"order_id", "status": "confirmed"}` for every
//! synchronous behaviour; for an `async-` one `accepted` until its confirmation was sent (see
//! [`crate::lifecycle`]), then `confirmed`, `shipped`, `delivered`, or `rejected` with its
//! `reason`; and `cancelled` for any order once a cancellation took effect
//! ([`crate::cancellations`]). A refused cancellation leaves the status as it was.
//!
//! A retailer path starting with `legacy-` (`GET /legacy-acme/orders?...`) answers 404 for a
//! key still in progress, as retailers that predate that rule do, so callers can prove they
//! do not take such a 404 for "not placed".

use crate::book::{KeyId, LogFilter, OrderState};
use crate::signing::{self, SignatureHeaders};
use crate::{lock, reason, Sim};
use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::collections::VecDeque;

/// How many lookups the log keeps; older ones are dropped so a long run stays bounded.
pub const MAX_RECORDED_LOOKUPS: usize = 100_000;

/// One lookup as received and answered; `GET /lookups` returns these.
#[derive(Debug, Clone, Serialize)]
pub struct LookupRecord {
    pub received_at: DateTime<Utc>,
    /// The `{retailer}` path segment, or `None` for `GET /orders`.
    pub retailer: Option<String>,
    /// `None` when the query had none (answered 400).
    pub idempotency_key: Option<String>,
    pub response_status: u16,
    /// `webhook-id`, `webhook-timestamp`, `webhook-signature` (over an empty body) and whether
    /// they verified.
    #[serde(flatten)]
    pub signature: SignatureHeaders,
}

/// Every lookup received, oldest first.
#[derive(Debug, Default)]
pub(crate) struct LookupLog(VecDeque<LookupRecord>);

impl LookupLog {
    fn push(&mut self, record: LookupRecord) {
        if self.0.len() >= MAX_RECORDED_LOOKUPS {
            self.0.pop_front();
        }
        self.0.push_back(record);
    }

    fn list(&self, filter: &LogFilter) -> Vec<LookupRecord> {
        self.0
            .iter()
            .filter(|r| filter.matches(r.retailer.as_deref(), r.idempotency_key.as_deref()))
            .cloned()
            .collect()
    }
}

/// Query of a lookup.
#[derive(Debug, Deserialize)]
pub(crate) struct LookupQuery {
    idempotency_key: Option<String>,
}

/// `GET /orders?idempotency_key=K`.
pub(crate) async fn lookup(
    sim: web::Data<Sim>,
    req: HttpRequest,
    query: web::Query<LookupQuery>,
) -> HttpResponse {
    find(&sim, None, &req, query.into_inner())
}

/// `GET /{retailer}/orders?idempotency_key=K`.
pub(crate) async fn lookup_for(
    sim: web::Data<Sim>,
    retailer: web::Path<String>,
    req: HttpRequest,
    query: web::Query<LookupQuery>,
) -> HttpResponse {
    find(&sim, Some(retailer.into_inner()), &req, query.into_inner())
}

#[tracing::instrument(name = "lookup", skip_all, fields(retailer = retailer.as_deref()))]
fn find(
    sim: &Sim,
    retailer: Option<String>,
    req: &HttpRequest,
    query: LookupQuery,
) -> HttpResponse {
    let received_at = Utc::now();
    let mut signature = SignatureHeaders::of(req);
    // A GET has no body: the signature is over `{id}.{timestamp}.` and nothing after.
    let verified = signing::check(sim, retailer.as_deref(), &mut signature, b"");
    // Trimmed like the `Idempotency-Key` header, so a key is found exactly as it was stored.
    let key = query
        .idempotency_key
        .as_deref()
        .map(str::trim)
        .filter(|k| !k.is_empty())
        .map(str::to_owned);
    let response = match (verified, &key) {
        (Err(why), _) => signing::unauthorized(why),
        (Ok(()), None) => reason(
            StatusCode::BAD_REQUEST,
            "an idempotency_key query parameter is required",
        ),
        (Ok(()), Some(key)) => {
            let id = KeyId {
                retailer: retailer.clone(),
                key: key.clone(),
            };
            let legacy = retailer
                .as_deref()
                .is_some_and(|r| r.starts_with("legacy-"));
            let book = lock(&sim.orders);
            match book.order(&id) {
                Some(order) => {
                    let mut body = serde_json::json!({
                        "order_id": order.order_id,
                        "status": order.state.as_str(),
                    });
                    if let OrderState::Rejected { reason } = order.state {
                        body["reason"] = reason.into();
                    }
                    HttpResponse::Ok().json(body)
                }
                None if book.in_progress(&id) && !legacy => reason(
                    StatusCode::CONFLICT,
                    format!("a request with Idempotency-Key {key} is still being processed"),
                ),
                None => reason(
                    StatusCode::NOT_FOUND,
                    format!("no order was placed with Idempotency-Key {key}"),
                ),
            }
        }
    };
    let status = response.status().as_u16();
    tracing::info!(
        idempotency_key = key.as_deref(),
        status,
        "order lookup answered"
    );
    lock(&sim.lookups).push(LookupRecord {
        received_at,
        retailer,
        idempotency_key: key,
        response_status: status,
        signature,
    });
    response
}

/// `GET /lookups[?idempotency_key=K][&retailer=R]`: every lookup received, oldest first.
pub(crate) async fn list(sim: web::Data<Sim>, filter: web::Query<LogFilter>) -> HttpResponse {
    HttpResponse::Ok().json(lock(&sim.lookups).list(&filter))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn full_log_drops_the_oldest() {
        let mut log = LookupLog::default();
        for n in 0..=MAX_RECORDED_LOOKUPS {
            log.push(LookupRecord {
                received_at: Utc::now(),
                retailer: None,
                idempotency_key: Some(n.to_string()),
                response_status: 404,
                signature: SignatureHeaders::default(),
            });
        }
        assert_eq!(log.0.len(), MAX_RECORDED_LOOKUPS);
        assert_eq!(log.0[0].idempotency_key.as_deref(), Some("1"));
    }
}
