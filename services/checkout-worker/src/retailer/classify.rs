//! What a retailer's answer means, decided once: placing (`classify_place`) and looking up
//! (`classify_lookup`). See the parent module for the protocol.

use super::{LookupAnswer, PlaceAnswer};
use icon_domain::text::{sanitize, sanitize_opt, MAX_ORDER_ID_CHARS, MAX_REASON_CHARS};
use icon_domain::OrderStatus;
use icon_http::{Response, SendError};
use serde::Deserialize;

#[derive(Deserialize)]
struct OrderBody {
    order_id: Option<String>,
    status: Option<String>,
}

#[derive(Deserialize)]
struct Refusal {
    reason: Option<String>,
}

pub(super) fn not_placed(status: OrderStatus, reason: String) -> PlaceAnswer {
    PlaceAnswer::NotPlaced {
        status,
        reason: sanitize(&reason, MAX_REASON_CHARS),
    }
}

pub(super) fn refusal_reason(resp: &Response) -> Option<String> {
    let reason = serde_json::from_slice::<Refusal>(&resp.body).ok()?.reason;
    sanitize_opt(reason.as_deref(), MAX_REASON_CHARS)
}

pub(super) fn classify_place(result: Result<Response, SendError>) -> PlaceAnswer {
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
            let order_id = sanitize_opt(order_id.as_deref(), MAX_ORDER_ID_CHARS);
            // 202 Accepted: the retailer has it and will say later (issue 17 §2).
            if resp.status == 202 {
                PlaceAnswer::Accepted { order_id }
            } else {
                PlaceAnswer::Confirmed { order_id }
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

pub(super) fn classify_lookup(result: Result<Response, SendError>) -> LookupAnswer {
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
    use std::time::Duration;

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
        assert_eq!(
            classify_place(resp(202, r#"{"order_id":"o-9","status":"accepted"}"#)),
            PlaceAnswer::Accepted {
                order_id: Some("o-9".into())
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
