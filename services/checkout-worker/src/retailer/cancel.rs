//! The cancellation, client side (issue 18): `POST <order_url>/cancellations`, signed as every
//! request to a retailer, with `Idempotency-Key: <the order's key>:cancel`, so a repeated
//! cancellation (a retry, a redelivered pass) is the same one at the retailer.
//!
//! What an answer means, decided here once:
//! - 200 `{"status": "cancelled"}`: cancelled. (A 200 saying anything else is taken as unsure:
//!   ICON never guesses that an order was undone.)
//! - 202: the retailer decides later and reports by event (`order.cancelled` or
//!   `order.cancel_refused`).
//! - 409 `{"reason"}`: refused (already shipped, say): the order remains placed.
//! - 404: the retailer has no such order; final only once no placement with the key can still
//!   be in progress (`progress::after_cancel`).
//! - Another 4xx (but 408, 425, 429): refused, with the status in the reason, since the
//!   retailer will not do it as asked.
//! - 408, 425, 429, 5xx, 3xx, a timeout or a dropped connection: unsure, retried through the
//!   delay tiers and then settled by status lookup.

use super::classify::refusal_reason;
use super::{refused_address, signing, traceparent, RetailerClient};
use icon_contracts::retailer::{
    cancel_key, CancellationAnswer, CancellationRequest, CANCELLATIONS_PATH,
};
use icon_domain::text::{sanitize, MAX_REASON_CHARS};
use icon_http::{HeaderName, Response, SendError, Url};
use icon_store::orders::OrderWork;
use icon_store::secrets::SigningSecrets;
use std::time::Duration;

/// What a cancellation request told us.
#[derive(Debug, Clone, PartialEq)]
pub enum CancelAnswer {
    Cancelled,
    /// 202: the retailer reports its decision later.
    Accepted,
    Refused {
        reason: String,
    },
    /// 404: the retailer has no order for the key.
    NoSuchOrder,
    Unsure {
        why: String,
        retry_after: Option<Duration>,
    },
}

impl CancelAnswer {
    /// For the `icon_retailer_calls_total` metric.
    pub fn outcome(&self) -> &'static str {
        match self {
            Self::Cancelled => "cancelled",
            Self::Accepted => "accepted",
            Self::Refused { .. } => "refused",
            Self::NoSuchOrder => "not_found",
            Self::Unsure { .. } => "unsure",
        }
    }
}

impl RetailerClient {
    /// Asks the retailer to cancel `order` (or asks again, with the same key), signed with
    /// `secrets`, giving `reason`.
    #[tracing::instrument(skip_all, fields(retailer = %order.retailer_id))]
    pub async fn cancel(
        &self,
        order: &OrderWork,
        secrets: &SigningSecrets,
        reason: &str,
    ) -> CancelAnswer {
        let order_url = match self.order_url(order) {
            Ok(u) => u,
            Err(why) => {
                return CancelAnswer::Unsure {
                    why: sanitize(&format!("cancellation: {why}"), MAX_REASON_CHARS),
                    retry_after: None,
                }
            }
        };
        let url = cancellations_url(order_url.as_url());
        let body = serde_json::to_vec(&CancellationRequest {
            idempotency_key: order.idempotency_key.clone(),
            order_id: order.retailer_order_id.clone(),
            reason: reason.to_owned(),
        })
        .unwrap_or_default();
        let mut headers = vec![(
            HeaderName::from_static("idempotency-key"),
            cancel_key(&order.idempotency_key),
        )];
        headers.extend(traceparent());
        headers.extend(signing::headers(secrets, &body));
        match self.http.post_json(&url, &headers, body).await {
            Err(SendError::Refused(why)) => CancelAnswer::Unsure {
                why: sanitize(
                    &format!("cancellation: {}", refused_address(&order_url, &why)),
                    MAX_REASON_CHARS,
                ),
                retry_after: None,
            },
            result => classify_cancel(result),
        }
    }
}

/// `<order_url>/cancellations`, the order URL's query kept.
fn cancellations_url(order_url: &Url) -> Url {
    let mut url = order_url.clone();
    let path = format!("{}{CANCELLATIONS_PATH}", url.path().trim_end_matches('/'));
    url.set_path(&path);
    url
}

fn classify_cancel(result: Result<Response, SendError>) -> CancelAnswer {
    let resp = match result {
        Ok(r) => r,
        Err(e) => {
            return CancelAnswer::Unsure {
                why: sanitize(&format!("cancellation: {e}"), MAX_REASON_CHARS),
                retry_after: None,
            }
        }
    };
    let unsure = |why: String| CancelAnswer::Unsure {
        why: sanitize(&why, MAX_REASON_CHARS),
        retry_after: resp.retry_after(),
    };
    match resp.status {
        200 => match serde_json::from_slice::<CancellationAnswer>(&resp.body) {
            Ok(a) if a.status == "cancelled" || a.status == "canceled" => CancelAnswer::Cancelled,
            Ok(a) => unsure(format!(
                "the retailer answered the cancellation 200 with status `{}`, not `cancelled`",
                sanitize(&a.status, 64)
            )),
            Err(_) => unsure(
                "the retailer answered the cancellation 200 without {\"status\": \"cancelled\"}"
                    .into(),
            ),
        },
        202 => CancelAnswer::Accepted,
        404 => CancelAnswer::NoSuchOrder,
        409 => CancelAnswer::Refused {
            reason: refusal_reason(&resp)
                .unwrap_or_else(|| "the retailer refused to cancel the order (409)".into()),
        },
        408 | 425 | 429 => unsure(format!("cancellation answered {}", resp.status)),
        s @ 400..=499 => CancelAnswer::Refused {
            reason: sanitize(
                &format!(
                    "the retailer refused the cancellation ({s}: {})",
                    refusal_reason(&resp).unwrap_or_else(|| "no reason given".into())
                ),
                MAX_REASON_CHARS,
            ),
        },
        s => unsure(format!("cancellation answered {s}")),
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
    fn cancellation_answers_are_classified_once() {
        assert_eq!(
            classify_cancel(resp(200, r#"{"status":"cancelled"}"#)),
            CancelAnswer::Cancelled
        );
        assert!(matches!(
            classify_cancel(resp(200, r#"{"status":"confirmed"}"#)),
            CancelAnswer::Unsure { .. }
        ));
        assert!(matches!(
            classify_cancel(resp(200, "")),
            CancelAnswer::Unsure { .. }
        ));
        assert_eq!(classify_cancel(resp(202, "")), CancelAnswer::Accepted);
        assert_eq!(
            classify_cancel(resp(409, r#"{"reason":"already shipped"}"#)),
            CancelAnswer::Refused {
                reason: "already shipped".into()
            }
        );
        assert_eq!(classify_cancel(resp(404, "")), CancelAnswer::NoSuchOrder);
        assert!(matches!(
            classify_cancel(resp(400, r#"{"reason":"bad key"}"#)),
            CancelAnswer::Refused { reason } if reason.contains("400") && reason.contains("bad key")
        ));
        for s in [408, 429, 500, 502, 503, 302] {
            assert!(
                matches!(classify_cancel(resp(s, "")), CancelAnswer::Unsure { .. }),
                "{s}"
            );
        }
        assert!(matches!(
            classify_cancel(Err(SendError::Timeout(Duration::from_secs(1)))),
            CancelAnswer::Unsure { .. }
        ));
    }

    #[test]
    fn the_url_is_under_the_order_url() {
        let u = |s: &str| cancellations_url(&Url::parse(s).unwrap()).to_string();
        assert_eq!(
            u("http://127.0.0.1:1/acme/orders"),
            "http://127.0.0.1:1/acme/orders/cancellations"
        );
        assert_eq!(
            u("http://127.0.0.1:1/orders/?x=1"),
            "http://127.0.0.1:1/orders/cancellations?x=1"
        );
    }
}
