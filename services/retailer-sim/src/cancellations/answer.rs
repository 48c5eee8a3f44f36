//! [`Answer`]: what a cancellation request is answered, decided before it becomes an HTTP
//! response.

use actix_web::http::header::{self, HeaderValue};
use actix_web::http::StatusCode;
use actix_web::HttpResponse;
use icon_contracts::retailer::CancellationAnswer;

/// The reason `nocancel-` refuses with, and `cancel-async-refuse-` reports.
pub const REFUSED_REASON: &str = "already shipped";

/// The reason given with a 503 while a request placing the order is still being processed.
pub const IN_PROGRESS_REASON: &str = "a request with this key is in progress; try again";

/// The answer to one cancellation request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Answer {
    pub(super) status: StatusCode,
    /// Given with every answer but the 2xx ones.
    pub(super) reason: Option<String>,
    pub(super) retry_after_secs: Option<u32>,
}

impl Answer {
    /// 200 `{"status": "cancelled"}`, for the first cancellation and every repeat.
    pub(super) fn cancelled() -> Self {
        Self {
            status: StatusCode::OK,
            reason: None,
            retry_after_secs: None,
        }
    }

    /// 202 `{"status": "accepted"}`: the outcome follows by event. A body, though the protocol
    /// needs none, so a caller parsing every 2xx as a [`CancellationAnswer`] still can.
    pub(super) fn accepted() -> Self {
        Self {
            status: StatusCode::ACCEPTED,
            ..Self::cancelled()
        }
    }

    pub(super) fn refused(status: StatusCode, reason: impl Into<String>) -> Self {
        Self {
            status,
            reason: Some(reason.into()),
            retry_after_secs: None,
        }
    }

    /// 404: the retailer has no order for the key, so there is nothing to cancel.
    pub(super) fn no_order(key: &str) -> Self {
        Self::refused(
            StatusCode::NOT_FOUND,
            format!("no order was placed with Idempotency-Key {key}"),
        )
    }

    /// 503 with `Retry-After: 1` rather than a 404 while the order may still be placed: "no
    /// order" would be a guess, and a 5xx is what ICON retries.
    pub(super) fn in_progress() -> Self {
        Self {
            retry_after_secs: Some(1),
            ..Self::refused(StatusCode::SERVICE_UNAVAILABLE, IN_PROGRESS_REASON)
        }
    }

    pub(super) fn into_response(self) -> HttpResponse {
        let status = match self.status {
            StatusCode::OK => "cancelled",
            StatusCode::ACCEPTED => "accepted",
            _ => {
                let mut response = crate::reason(self.status, self.reason.unwrap_or_default());
                if let Some(secs) = self.retry_after_secs {
                    response
                        .headers_mut()
                        .insert(header::RETRY_AFTER, HeaderValue::from(secs));
                }
                return response;
            }
        };
        HttpResponse::build(self.status).json(CancellationAnswer {
            status: status.to_owned(),
        })
    }
}
