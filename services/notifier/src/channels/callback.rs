//! The HTTP callback: POST the outcome to the partner's `callback_url`.
//!
//! Headers follow Standard Webhooks (<https://www.standardwebhooks.com/>): `webhook-id` (the
//! notification id, the same on every retry, so receivers can de-duplicate), `webhook-timestamp`
//! (Unix seconds of this attempt) and `webhook-signature`: `v1,<base64 HMAC-SHA256 of
//! "{id}.{timestamp}.{body}">` keyed with the checkout owner's webhook secret, so a receiver can
//! tell ICON's callbacks from forgeries and replays of old ones. During a rotation's grace the
//! header holds a second signature, with the previous secret. The signature covers the exact
//! bytes sent. Any 2xx ends it; 410 Gone stops at once; anything else is retried. Redirects are
//! not followed: a 3xx is a failed attempt.

use super::{Attempting, Channel, Outcome};
use crate::notice::Notice;
use icon_domain::{CallbackUrl, NetworkPolicy, UserId};
use icon_http::{HeaderName, HttpClient, SendError, TlsError};
use icon_store::notifications::{Claimed, Notification};
use icon_store::secrets::{SecretsKey, SigningSecrets};
use icon_store::webhook_secrets::{self, Holder};
use icon_store::{Pool, StoreError};
use serde::Serialize;
use std::time::Duration;

/// The callback body: the checkout's state (the fields every callback had before events were
/// numbered), and which event this is (issue 17 §3).
#[derive(Serialize)]
pub struct CallbackPayload<'a> {
    /// `checkout.completed`, `checkout.partially_completed`, `checkout.failed`, or the order's
    /// change: `order.shipped`, `order.delivered`, `order.cancelled`, `order.refunded`,
    /// `order.confirmed`, `order.rejected`.
    #[serde(rename = "type")]
    pub kind: &'a str,
    /// 1, 2, 3, ... per checkout; a receiver gets n+1 only after n was delivered or given up.
    pub sequence: i32,
    pub occurred_at: chrono::DateTime<chrono::Utc>,
    pub status: &'a str,
    pub cart_id: i64,
    pub source_url: &'a str,
    pub checkout_id: String,
    pub orders: &'a [icon_contracts::OrderOutcome],
    /// Why the checkout failed, when its orders do not say.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<&'a str>,
    /// For `order.*`: the order it is about, as it is now.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub order: Option<&'a icon_contracts::OrderOutcome>,
}

pub struct CallbackChannel {
    http: HttpClient,
    policy: NetworkPolicy,
    /// Opens the owners' secrets (`ICON_SECRETS_KEY`).
    key: SecretsKey,
    /// Creates an owner's secret when a callback is due before the owner ever asked for it.
    pool: Pool,
}

impl CallbackChannel {
    pub fn new(
        policy: NetworkPolicy,
        timeout: Duration,
        key: SecretsKey,
        pool: Pool,
    ) -> Result<Self, TlsError> {
        Ok(Self {
            http: HttpClient::new(Some(policy.clone()), timeout)?,
            policy,
            key,
            pool,
        })
    }

    /// The secrets to sign `claimed`'s callback with: those read with the claim, or, when the
    /// owner has none yet, a new one (the owner reads it later from `GET /webhook-secret`).
    async fn signing(&self, claimed: &Claimed) -> Result<SigningSecrets, StoreError> {
        let sealed = claimed
            .signing
            .as_ref()
            .ok_or_else(|| StoreError::Corrupt("a callback claimed without its owner".into()))?;
        if let Some(secrets) = sealed.open(&self.key)? {
            return Ok(secrets);
        }
        let owner = UserId::parse(sealed.owner.clone())
            .map_err(|e| StoreError::Corrupt(format!("a checkout's owner: {e}")))?;
        let db = self.pool.get().await?;
        let created = webhook_secrets::get_or_create(&db, &self.key, Holder::Owner(&owner)).await?;
        Ok(SigningSecrets {
            current: created.secret,
            previous: None,
        })
    }

    /// One attempt, signing included, in a span of its own: the callback's stage of a checkout's
    /// trace (what `icon-bench --stages` reads), and the parent the receiver's `traceparent` names.
    #[tracing::instrument(name = "callback", skip_all, fields(checkout_id = %n.checkout_id, attempt = claimed.attempt))]
    async fn attempt(&self, n: &Notification, claimed: &Claimed, notice: &Notice) -> Outcome {
        let event = &notice.checkout;
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
            kind: &notice.kind,
            sequence: notice.sequence,
            occurred_at: notice.occurred_at,
            status: event.status.as_str(),
            cart_id: event.cart_id.get(),
            source_url: &event.source_url,
            checkout_id: event.checkout_id.to_string(),
            orders: &event.orders,
            reason: event.reason.as_deref(),
            order: notice.order.as_ref(),
        })
        .unwrap_or_default();
        // Unsigned, a callback would be worthless to a receiver that checks: without its
        // secrets the attempt is retried (the database is back soon, or an operator fixes the
        // key), never sent bare.
        let secrets = match self.signing(claimed).await {
            Ok(s) => s,
            Err(e) => {
                return Outcome::Retry {
                    status: None,
                    error: Some(format!(
                        "cannot sign: {}",
                        icon_store::pool::source_chain(&e)
                    )),
                    retry_after: None,
                }
            }
        };
        let mut headers: Vec<_> = secrets
            .signed_headers(n.id.to_string(), chrono::Utc::now().timestamp(), &body)
            .into_iter()
            .map(|(name, value)| (HeaderName::from_static(name), value))
            .collect();
        // The checkout's trace, so the receiver can join its own spans to it.
        if let Some(traceparent) = icon_runtime::trace::outgoing_header() {
            headers.push((HeaderName::from_static("traceparent"), traceparent));
        }
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

    fn deliver<'a>(
        &'a self,
        n: &'a Notification,
        claimed: &'a Claimed,
        notice: &'a Notice,
    ) -> Attempting<'a> {
        Box::pin(self.attempt(n, claimed, notice))
    }
}
