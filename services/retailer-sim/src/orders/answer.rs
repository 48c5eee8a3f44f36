//! [`Answer`]: what an order request is answered, decided before it becomes an HTTP response.

use crate::book::{OrderState, OrderView};
use actix_web::http::header::{self, HeaderValue};
use actix_web::http::StatusCode;
use actix_web::HttpResponse;

/// The answer to one order request, before it becomes an HTTP response.
#[derive(Debug)]
pub(super) struct Answer {
    pub(super) status: StatusCode,
    /// The order placed or replayed; only a 2xx answer shows it (a `ghost-` 502 has one too, a
    /// replayed `async-reject-` 422 too).
    pub(super) order_id: Option<String>,
    /// The `status` a 2xx answer shows beside the order id: `confirmed`, or `accepted` for an
    /// `async-` order that has not reported yet, or where a replayed one stands now.
    pub(super) order_status: &'static str,
    pub(super) reason: Option<String>,
    pub(super) retry_after_secs: Option<u32>,
}

impl Answer {
    pub(super) fn confirmed(status: StatusCode, order_id: String) -> Self {
        Self {
            status,
            order_id: Some(order_id),
            order_status: OrderState::Confirmed.as_str(),
            reason: None,
            retry_after_secs: None,
        }
    }

    /// 202: the retailer has the order and reports on it later, by event.
    pub(super) fn accepted(order_id: String) -> Self {
        Self {
            order_status: OrderState::Accepted.as_str(),
            ..Self::confirmed(StatusCode::ACCEPTED, order_id)
        }
    }

    /// A repeated request for an order already placed: the order as it stands now. 200, but 202
    /// while an `async-` order is still accepted (the answer its first request got), and 422
    /// once one was rejected, which is what a caller that only knows the synchronous protocol
    /// takes for a refusal. A cancelled order is 200 with `"status": "cancelled"`: the order
    /// exists, and placing it again must not make a second one.
    pub(super) fn replay(order: OrderView) -> Self {
        match order.state {
            OrderState::Accepted => Self::accepted(order.order_id),
            OrderState::Rejected { reason } => Self {
                order_id: Some(order.order_id),
                order_status: "rejected",
                ..Self::refused(StatusCode::UNPROCESSABLE_ENTITY, reason)
            },
            state => Self {
                order_status: state.as_str(),
                ..Self::confirmed(StatusCode::OK, order.order_id)
            },
        }
    }

    pub(super) fn refused(status: StatusCode, reason: impl Into<String>) -> Self {
        Self {
            status,
            order_id: None,
            order_status: "refused",
            reason: Some(reason.into()),
            retry_after_secs: None,
        }
    }

    /// 422, as the IETF `Idempotency-Key` header draft prescribes for a key reused with a
    /// different payload: it catches a caller that rebuilds the order differently on a retry.
    pub(super) fn key_reused(key: &str) -> Self {
        Self::refused(
            StatusCode::UNPROCESSABLE_ENTITY,
            format!("Idempotency-Key {key} was already used for a different order"),
        )
    }

    /// 409, as the IETF draft prescribes while a request with the same key is being processed:
    /// not a refusal, the caller is to retry.
    pub(super) fn in_progress() -> Self {
        Self::refused(StatusCode::CONFLICT, super::IN_PROGRESS_REASON)
    }

    pub(super) fn shutting_down() -> Self {
        Self::refused(
            StatusCode::SERVICE_UNAVAILABLE,
            "simulator is shutting down",
        )
    }

    pub(super) fn into_response(self) -> HttpResponse {
        match self.order_id.filter(|_| self.status.is_success()) {
            Some(order_id) => HttpResponse::build(self.status)
                .json(serde_json::json!({"order_id": order_id, "status": self.order_status})),
            None => {
                let mut response = crate::reason(self.status, self.reason.unwrap_or_default());
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
