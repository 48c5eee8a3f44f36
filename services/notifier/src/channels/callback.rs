//! The HTTP callback: POST the outcome to the partner's `callback_url`.
//!
//! Headers follow the Standard Webhooks convention: `webhook-id` (the notification id, the same
//! on every retry, so receivers can de-duplicate) and `webhook-timestamp` (Unix seconds of this
//! attempt). Any 2xx ends it; 410 Gone stops at once; anything else is retried. Redirects are
//! not followed: a 3xx is a failed attempt.

use super::{Attempting, Channel, Outcome};
use icon_contracts::CheckoutFinished;
use icon_domain::{CallbackUrl, NetworkPolicy};
use icon_http::{HeaderName, HttpClient, SendError, TlsError};
use icon_store::notifications::Notification;
use serde::Serialize;
use std::time::Duration;

/// The callback body.
#[derive(Serialize)]
pub struct CallbackPayload<'a> {
    pub status: &'a str,
    pub cart_id: i64,
    pub source_url: &'a str,
    pub checkout_id: String,
    pub orders: &'a [icon_contracts::OrderOutcome],
    /// Why the checkout failed, when its orders do not say.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<&'a str>,
}

pub struct CallbackChannel {
    http: HttpClient,
    policy: NetworkPolicy,
}

impl CallbackChannel {
    pub fn new(policy: NetworkPolicy, timeout: Duration) -> Result<Self, TlsError> {
        Ok(Self {
            http: HttpClient::new(Some(policy.clone()), timeout)?,
            policy,
        })
    }

    async fn attempt(&self, n: &Notification, event: &CheckoutFinished) -> Outcome {
        // Checked again at send time: the policy may have been tightened since the checkout
        // was accepted.
        let url = match CallbackUrl::recheck(&n.target, &self.policy) {
            Ok(u) => u,
            Err(e) => {
                return Outcome::GiveUp {
                    status: None,
                    error: Some(e.to_string()),
                }
            }
        };
        let body = serde_json::to_vec(&CallbackPayload {
            status: event.status.as_str(),
            cart_id: event.cart_id.get(),
            source_url: &event.source_url,
            checkout_id: event.checkout_id.to_string(),
            orders: &event.orders,
            reason: event.reason.as_deref(),
        })
        .unwrap_or_default();
        let timestamp = chrono::Utc::now().timestamp().to_string();
        let headers = [
            (HeaderName::from_static("webhook-id"), n.id.to_string()),
            (HeaderName::from_static("webhook-timestamp"), timestamp),
        ];
        match self.http.post_json(url.as_url(), &headers, body).await {
            Ok(resp) if resp.is_success() => Outcome::Delivered {
                status: Some(resp.status),
            },
            Ok(resp) if resp.status == 410 => Outcome::GiveUp {
                status: Some(410),
                error: Some("the receiver answered 410 Gone".into()),
            },
            Ok(resp) => Outcome::Retry {
                status: Some(resp.status),
                error: None,
                retry_after: matches!(resp.status, 429 | 503)
                    .then(|| resp.retry_after())
                    .flatten(),
            },
            Err(e @ (SendError::Refused(_) | SendError::Invalid(_))) => Outcome::GiveUp {
                status: None,
                error: Some(e.to_string()),
            },
            Err(e) => Outcome::Retry {
                status: None,
                error: Some(e.to_string()),
                retry_after: None,
            },
        }
    }
}

impl Channel for CallbackChannel {
    fn name(&self) -> &'static str {
        "callback"
    }

    fn deliver<'a>(&'a self, n: &'a Notification, event: &'a CheckoutFinished) -> Attempting<'a> {
        Box::pin(self.attempt(n, event))
    }
}
