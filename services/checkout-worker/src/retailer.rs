//! The retailer protocol, client side: one call per step, classified.
//!
//! An order request carries the order's `Idempotency-Key`, which belongs to the cart and the
//! retailer (see `icon_store::orders::OrderWork`), so a retry, a redelivered message or a new
//! checkout of the same cart never creates a second order at the retailer. What an answer
//! means is decided here, once:
//! - 2xx: placed. 422: rejected (not placed). Another 4xx (but 408, 409, 425, 429): not placed.
//! - 409 (a concurrent request with the same key is in progress), 408, 425, 429, 5xx, a 3xx,
//!   a timeout or a broken connection: the outcome is unsure, since the request may have
//!   arrived; it is retried, and then settled by status lookup
//!   (`GET <order_url>?idempotency_key=<key>`: 200 placed, 409 still in progress, 404 no
//!   order; a 404 is final only once no request with the key can still be in progress, see
//!   `progress::after_lookup`).

use crate::settings::WorkerSettings;
use icon_domain::text::{sanitize, sanitize_opt, MAX_ORDER_ID_CHARS, MAX_REASON_CHARS};
use icon_domain::OrderStatus;
use icon_http::{HeaderName, HttpClient, Response, SendError, TlsError, Url};
use icon_store::orders::OrderWork;
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// What an order request told us.
#[derive(Debug, Clone, PartialEq)]
pub enum PlaceAnswer {
    Confirmed {
        order_id: Option<String>,
    },
    /// The retailer said it did not place the order: `Rejected` (422) or `Failed`.
    NotPlaced {
        status: OrderStatus,
        reason: String,
    },
    /// It may or may not have placed it.
    Unsure {
        why: String,
        retry_after: Option<Duration>,
        /// A request with this key may still be in progress at the retailer (it answered 409,
        /// or the call timed out or its connection dropped), so a lookup's 404 is no proof.
        in_flight: bool,
    },
}

/// What a status lookup told us.
#[derive(Debug, Clone, PartialEq)]
pub enum LookupAnswer {
    /// An order exists for the key; `status` as the retailer reports it.
    Placed {
        order_id: Option<String>,
        status: String,
    },
    /// No order was ever placed with the key (404).
    NotPlaced,
    Unsure {
        why: String,
    },
}

#[derive(Serialize)]
struct OrderRequest<'a> {
    checkout_id: String,
    items: Vec<OrderItem<'a>>,
}

#[derive(Serialize)]
struct OrderItem<'a> {
    sku: &'a str,
    quantity: i32,
    unit_price: Price,
}

#[derive(Serialize)]
struct Price {
    amount_minor: i64,
    currency: icon_domain::Currency,
}

#[derive(Deserialize)]
struct OrderBody {
    order_id: Option<String>,
    status: Option<String>,
}

#[derive(Deserialize)]
struct Refusal {
    reason: Option<String>,
}

#[derive(Clone)]
pub struct RetailerClient {
    http: HttpClient,
}

impl RetailerClient {
    pub fn new(settings: &WorkerSettings) -> Result<Self, TlsError> {
        Ok(Self {
            // Retailers are registered by an admin, so no callback network policy applies.
            http: HttpClient::new(None, settings.retailer_timeout)?,
        })
    }

    /// Sends (or re-sends, with the same key and body) one order request.
    #[tracing::instrument(skip_all, fields(retailer = %order.retailer_id))]
    pub async fn place(&self, order: &OrderWork) -> PlaceAnswer {
        let body = serde_json::to_vec(&OrderRequest {
            // The checkout that first used this key: the same key always comes with the same
            // body, as the idempotency-key draft requires.
            checkout_id: order.key_checkout_id.to_string(),
            items: order
                .items
                .iter()
                .map(|i| OrderItem {
                    sku: &i.sku,
                    quantity: i.quantity.get(),
                    unit_price: Price {
                        amount_minor: i.unit_price.amount_minor(),
                        currency: i.unit_price.currency(),
                    },
                })
                .collect(),
        })
        .unwrap_or_default();
        let url = match Url::parse(&order.order_url) {
            Ok(u) => u,
            Err(e) => {
                return not_placed(OrderStatus::Failed, format!("order_url is not a URL: {e}"))
            }
        };
        let mut headers = vec![(
            HeaderName::from_static("idempotency-key"),
            order.idempotency_key.clone(),
        )];
        headers.extend(traceparent());
        classify_place(self.http.post_json(&url, &headers, body).await)
    }

    /// Asks the retailer what became of the order's key.
    #[tracing::instrument(skip_all, fields(retailer = %order.retailer_id))]
    pub async fn lookup(&self, order: &OrderWork) -> LookupAnswer {
        let mut url = match Url::parse(&order.order_url) {
            Ok(u) => u,
            Err(e) => {
                return LookupAnswer::Unsure {
                    why: format!("order_url is not a URL: {e}"),
                }
            }
        };
        url.query_pairs_mut()
            .append_pair("idempotency_key", &order.idempotency_key);
        let headers: Vec<_> = traceparent().into_iter().collect();
        classify_lookup(self.http.get(&url, &headers).await)
    }
}

/// The checkout's trace context for a retailer call, so the retailer's own spans join the trace.
fn traceparent() -> Option<(HeaderName, String)> {
    icon_runtime::trace::outgoing_header().map(|value| {
        (
            HeaderName::from_static(icon_runtime::trace::TRACEPARENT),
            value,
        )
    })
}

fn not_placed(status: OrderStatus, reason: String) -> PlaceAnswer {
    PlaceAnswer::NotPlaced {
        status,
        reason: sanitize(&reason, MAX_REASON_CHARS),
    }
}

fn refusal_reason(resp: &Response) -> Option<String> {
    let reason = serde_json::from_slice::<Refusal>(&resp.body).ok()?.reason;
    sanitize_opt(reason.as_deref(), MAX_REASON_CHARS)
}

fn classify_place(result: Result<Response, SendError>) -> PlaceAnswer {
    let resp = match result {
        Ok(r) => r,
        // Nothing was sent: the order cannot have been placed.
        Err(e @ (SendError::Refused(_) | SendError::Invalid(_))) => {
            return not_placed(OrderStatus::Failed, e.to_string())
        }
        // A timeout or a dropped connection: the request may have arrived and still be running.
        Err(e) => {
            return PlaceAnswer::Unsure {
                why: sanitize(&e.to_string(), MAX_REASON_CHARS),
                retry_after: None,
                in_flight: true,
            }
        }
    };
    match resp.status {
        200..=299 => {
            let order_id = serde_json::from_slice::<OrderBody>(&resp.body)
                .ok()
                .and_then(|c| c.order_id);
            PlaceAnswer::Confirmed {
                order_id: sanitize_opt(order_id.as_deref(), MAX_ORDER_ID_CHARS),
            }
        }
        422 => not_placed(
            OrderStatus::Rejected,
            refusal_reason(&resp).unwrap_or_else(|| "rejected by the retailer (422)".into()),
        ),
        408 | 409 | 425 | 429 => PlaceAnswer::Unsure {
            why: match resp.status {
                409 => "retailer answered 409: a request with the same key is in progress".into(),
                s => format!("retailer answered {s}"),
            },
            retry_after: resp.retry_after(),
            in_flight: resp.status == 409,
        },
        400..=499 => not_placed(
            OrderStatus::Failed,
            format!(
                "retailer answered {}, which retrying cannot fix: {}",
                resp.status,
                refusal_reason(&resp).unwrap_or_else(|| "no reason given".into())
            ),
        ),
        status => PlaceAnswer::Unsure {
            why: format!("retailer answered {status}"),
            retry_after: resp.retry_after(),
            in_flight: false,
        },
    }
}

fn classify_lookup(result: Result<Response, SendError>) -> LookupAnswer {
    match result {
        Ok(resp) if resp.is_success() => {
            let body = serde_json::from_slice::<OrderBody>(&resp.body).ok();
            LookupAnswer::Placed {
                order_id: sanitize_opt(
                    body.as_ref().and_then(|b| b.order_id.as_deref()),
                    MAX_ORDER_ID_CHARS,
                ),
                status: sanitize(
                    body.as_ref()
                        .and_then(|b| b.status.as_deref())
                        .unwrap_or("confirmed"),
                    64,
                ),
            }
        }
        Ok(resp) if resp.status == 404 => LookupAnswer::NotPlaced,
        // The protocol's answer for a key whose placement is still in progress.
        Ok(resp) if resp.status == 409 => LookupAnswer::Unsure {
            why: "status lookup answered 409: a request with this key is still in progress".into(),
        },
        Ok(resp) => LookupAnswer::Unsure {
            why: format!("status lookup answered {}", resp.status),
        },
        Err(e) => LookupAnswer::Unsure {
            why: sanitize(&format!("status lookup failed: {e}"), MAX_REASON_CHARS),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use icon_http::HeaderMap;

    fn resp(status: u16, body: &str) -> Result<Response, SendError> {
        Ok(Response {
            status,
            headers: HeaderMap::new(),
            body: body.to_owned().into(),
            elapsed: Duration::ZERO,
        })
    }

    #[test]
    fn answers_are_classified_once() {
        assert_eq!(
            classify_place(resp(201, r#"{"order_id":"a\u0000b"}"#)),
            PlaceAnswer::Confirmed {
                order_id: Some("a b".into())
            }
        );
        assert!(matches!(
            classify_place(resp(422, r#"{"reason":"out of stock"}"#)),
            PlaceAnswer::NotPlaced { status: OrderStatus::Rejected, reason } if reason == "out of stock"
        ));
        assert!(matches!(
            classify_place(resp(404, "")),
            PlaceAnswer::NotPlaced {
                status: OrderStatus::Failed,
                ..
            }
        ));
        for unsure in [409, 429, 500, 503, 302] {
            assert!(
                matches!(classify_place(resp(unsure, "")), PlaceAnswer::Unsure { .. }),
                "{unsure}"
            );
        }
        assert!(matches!(
            classify_place(Err(SendError::Timeout(Duration::from_secs(1)))),
            PlaceAnswer::Unsure { .. }
        ));
        assert_eq!(classify_lookup(resp(404, "")), LookupAnswer::NotPlaced);
        assert_eq!(
            classify_lookup(resp(200, r#"{"order_id":"x","status":"confirmed"}"#)),
            LookupAnswer::Placed {
                order_id: Some("x".into()),
                status: "confirmed".into()
            }
        );
        assert!(matches!(
            classify_lookup(resp(500, "")),
            LookupAnswer::Unsure { .. }
        ));
    }
}
