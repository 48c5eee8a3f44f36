//! Push notifications over FCM HTTP v1: one notification row per device, each its own attempt.
//!
//! The `fcm` crate cannot be used: it speaks only FCM's legacy API, which Google shut down in
//! 2024. This is a small sender on the notifier's own hyper client:
//! `POST {ICON_FCM_ENDPOINT}/v1/projects/{project_id}/messages:send` with a bearer token from
//! [`credentials`].
//!
//! What FCM's answers mean (see [`message::classify_error`]): 2xx delivered; `UNREGISTERED`
//! (404) or an `INVALID_ARGUMENT` about the token: the device is forgotten and the push dropped
//! (failed, not parked: nothing to redo); 429 and 5xx: retried through the delay tiers,
//! honouring `Retry-After`; 401: the access token is renewed and the push sent again, once;
//! anything else: given up with FCM's words recorded.

pub mod credentials;
pub mod message;

use super::{Attempting, Channel, Outcome};
use crate::metrics;
use crate::notice::Notice;
use chrono::Utc;
use credentials::{AccessToken, AccessTokens};
use icon_http::{HeaderName, HttpClient, SendError, Url};
use icon_store::notifications::{Claimed, Notification};
use icon_store::{devices, Pool};
use message::FcmError;
use std::time::Duration;

/// Google's FCM endpoint; `ICON_FCM_ENDPOINT` overrides it (the simulator, a proxy).
pub const DEFAULT_ENDPOINT: &str = "https://fcm.googleapis.com";

pub struct PushChannel {
    pool: Pool,
    http: HttpClient,
    tokens: AccessTokens,
    send_url: Url,
}

impl PushChannel {
    /// Reads the service-account file; the error says why push cannot run.
    pub fn new(
        pool: Pool,
        credentials_path: &str,
        endpoint: &str,
        timeout: Duration,
    ) -> Result<Self, String> {
        let (account, key, token_uri) = credentials::ServiceAccount::load(credentials_path)?;
        // FCM and the token endpoint are the operator's choice, not a stranger's: no network
        // policy, like the retailers' order URLs.
        let http = HttpClient::new(None, timeout).map_err(|e| e.to_string())?;
        let send_url = Url::parse(&format!(
            "{}/v1/projects/{}/messages:send",
            endpoint.trim_end_matches('/'),
            account.project_id
        ))
        .map_err(|e| format!("ICON_FCM_ENDPOINT={endpoint} is not a URL: {e}"))?;
        Ok(Self {
            pool,
            tokens: AccessTokens::new(account, key, token_uri, http.clone()),
            http,
            send_url,
        })
    }

    pub fn project_id(&self) -> &str {
        self.tokens.project_id()
    }

    async fn attempt(&self, n: &Notification, notice: &Notice) -> Outcome {
        let started = Utc::now();
        let device = {
            let db = match self.pool.get().await {
                Ok(db) => db,
                Err(e) => return retry(None, format!("PostgreSQL: {e}"), None),
            };
            match devices::for_push(&db, &n.target, n.checkout_id).await {
                Ok(d) => d,
                Err(e) => return retry(None, format!("device lookup: {e}"), None),
            }
        };
        let Some(device) = device else {
            return Outcome::Dropped {
                status: None,
                error: "the device was unregistered (or moved to another user) before the push \
                        was sent"
                    .into(),
            };
        };
        let body = serde_json::to_vec(&message::build(&n.target, device.platform, notice))
            .unwrap_or_default();
        let token = match self.tokens.get().await {
            Ok(t) => t,
            Err(e) => return retry(None, e.to_string(), None),
        };
        let mut resp = self.send(&token, &body).await;
        if matches!(&resp, Ok(r) if r.status == 401) {
            metrics::push_send("failed");
            tracing::info!("FCM refused the access token (401); renewing it once");
            match self.tokens.renew(&token).await {
                Ok(fresh) => resp = self.send(&fresh, &body).await,
                Err(e) => return retry(Some(401), e.to_string(), None),
            }
        }
        let resp = match resp {
            Ok(r) => r,
            Err(e @ (SendError::Refused(_) | SendError::Invalid(_))) => {
                // Nothing reached FCM: not a send.
                return Outcome::GiveUp {
                    status: None,
                    error: Some(e.to_string()),
                };
            }
            Err(e) => {
                metrics::push_send("failed");
                return retry(None, e.to_string(), None);
            }
        };
        if resp.is_success() {
            metrics::push_send("sent");
            return Outcome::Delivered {
                status: Some(resp.status),
            };
        }
        let status = resp.status;
        match message::classify_error(status, &resp.body) {
            FcmError::DeadToken(words) => {
                metrics::push_send("unregistered");
                self.forget(&n.target, started).await;
                Outcome::Dropped {
                    status: Some(status),
                    error: format!("{words}; the device was removed from the registry"),
                }
            }
            FcmError::Other(words) if status == 429 || status >= 500 || status == 401 => {
                metrics::push_send("failed");
                retry(Some(status), words, resp.retry_after())
            }
            FcmError::Other(words) => {
                metrics::push_send("failed");
                Outcome::GiveUp {
                    status: Some(status),
                    error: Some(words),
                }
            }
        }
    }

    async fn send(
        &self,
        token: &AccessToken,
        body: &[u8],
    ) -> Result<icon_http::Response, SendError> {
        let headers = [(
            HeaderName::from_static("authorization"),
            format!("Bearer {}", token.value),
        )];
        self.http
            .post_json(&self.send_url, &headers, body.to_vec())
            .await
    }

    /// Removes a dead token, unless it was registered again since the push started. A failure
    /// here only means FCM will say so again next time.
    async fn forget(&self, token: &str, since: chrono::DateTime<Utc>) {
        let result = match self.pool.get().await {
            Ok(db) => devices::forget_dead(&db, token, since).await,
            Err(e) => Err(e.into()),
        };
        match result {
            Ok(true) => tracing::info!("dead FCM token removed from the device registry"),
            Ok(false) => {}
            Err(e) => tracing::warn!(error = %e, "could not remove a dead FCM token"),
        }
    }
}

fn retry(status: Option<u16>, error: String, retry_after: Option<Duration>) -> Outcome {
    Outcome::Retry {
        status,
        error: Some(error),
        retry_after,
    }
}

impl Channel for PushChannel {
    fn name(&self) -> &'static str {
        "push"
    }

    fn deliver<'a>(
        &'a self,
        n: &'a Notification,
        _: &'a Claimed,
        notice: &'a Notice,
    ) -> Attempting<'a> {
        Box::pin(self.attempt(n, notice))
    }
}
