//! Playing a retailer that reports on its orders: Standard Webhooks-signed events to
//! `POST /retailers/{retailer_id}/events`, with the secret `GET /retailers/{id}/webhook-secret`
//! answers.
//!
//! Signing is done by the `standardwebhooks` crate, never by ICON's own code: a test that signed
//! with the gateway's verifier's twin would pass with both wrong in the same way. Event bodies
//! are left to each test, which spells out what it sends.

use crate::{Api, ApiReply, TestApp};
use http::Method;
use serde_json::Value;
use standardwebhooks::Webhook;

/// A fresh `webhook-id`, the retailer's name for one event (ICON de-duplicates by it).
pub fn new_webhook_id() -> String {
    format!("evt_{}", uuid::Uuid::new_v4().simple())
}

/// A `webhook-timestamp` for now: Unix seconds. ICON refuses one too far from its own clock, so
/// a test offsets this to send a replay.
pub fn unix_now() -> i64 {
    chrono::Utc::now().timestamp()
}

/// `t` as an event's `occurred_at`: RFC 3339 in UTC, to the millisecond, as retailers write it.
pub fn rfc3339(t: chrono::DateTime<chrono::Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// [`rfc3339`], `offset_secs` from now: events that happened before (or after) one another.
pub fn at(offset_secs: i64) -> String {
    rfc3339(chrono::Utc::now() + chrono::Duration::seconds(offset_secs))
}

/// The Standard Webhooks headers for `body`, signed with `secret` by the `standardwebhooks`
/// crate. As owned pairs, so a test can drop or change one to send a bad request.
pub fn signed(secret: &str, webhook_id: &str, timestamp: i64, body: &str) -> Vec<(String, String)> {
    let signature = Webhook::new(secret)
        .expect("a whsec_ secret")
        .sign(webhook_id, timestamp, body.as_bytes())
        .expect("sign");
    vec![
        ("webhook-id".into(), webhook_id.into()),
        ("webhook-timestamp".into(), timestamp.to_string()),
        ("webhook-signature".into(), signature),
    ]
}

fn borrowed(headers: &[(String, String)]) -> Vec<(&str, &str)> {
    headers
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect()
}

fn events_path(retailer: &str) -> String {
    format!("/retailers/{retailer}/events")
}

/// `POST /retailers/{retailer}/events` through `api` with exactly these headers and body: for
/// requests no careful retailer sends (unsigned, forged, signed over other bytes).
pub async fn post_event(
    api: &Api,
    retailer: &str,
    headers: &[(String, String)],
    body: String,
) -> ApiReply {
    api.send_with(
        Method::POST,
        &events_path(retailer),
        None,
        &borrowed(headers),
        Some(body),
    )
    .await
}

/// `retailer`'s current webhook secret, as the admin API answers it now: for a test that signs
/// requests of its own, or hands the secret to the simulator so that it reports by itself.
pub async fn secret_of(app: &TestApp, retailer: &str) -> String {
    fetch_secret(&app.api, &app.admin_token(), retailer).await
}

/// [`secret_of`] through any client, with `admin_token`; panics unless answered 200.
async fn fetch_secret(api: &Api, admin_token: &str, retailer: &str) -> String {
    let r = api
        .get(
            &format!("/retailers/{retailer}/webhook-secret"),
            Some(admin_token),
        )
        .await;
    assert_eq!(r.status, 200, "{r:?}");
    r.json["secret"].as_str().expect("secret").to_owned()
}

/// A retailer sending events as a careful one would: each signed with its secret, timestamped
/// at the moment it is sent (so a retry under the same `webhook-id` is signed afresh, as a
/// retailer's retry would be).
pub struct RetailerReporter {
    api: Api,
    retailer: String,
    secret: String,
}

impl RetailerReporter {
    /// `retailer` reporting to `app`, with the secret the admin API answers now.
    pub async fn new(app: &TestApp, retailer: &str) -> Self {
        Self::with_api(&app.api, &app.admin_token(), retailer).await
    }

    /// [`RetailerReporter::new`] for services that are not a [`TestApp`] (a [`crate::fleet`]).
    pub async fn with_api(api: &Api, admin_token: &str, retailer: &str) -> Self {
        Self {
            api: api.clone(),
            retailer: retailer.to_owned(),
            secret: fetch_secret(api, admin_token, retailer).await,
        }
    }

    /// The secret it signs with, for a test that signs a request of its own with it.
    pub fn secret(&self) -> &str {
        &self.secret
    }

    /// Sends `event` with a fresh `webhook-id`.
    pub async fn send(&self, event: &Value) -> ApiReply {
        self.send_as(&new_webhook_id(), event).await
    }

    /// Sends `event` as `webhook_id`.
    pub async fn send_as(&self, webhook_id: &str, event: &Value) -> ApiReply {
        self.send_raw(webhook_id, event.to_string()).await
    }

    /// Sends `body` as it is (not JSON, say) as `webhook_id`.
    pub async fn send_raw(&self, webhook_id: &str, body: String) -> ApiReply {
        let headers = signed(&self.secret, webhook_id, unix_now(), &body);
        post_event(&self.api, &self.retailer, &headers, body).await
    }

    /// [`RetailerReporter::send_raw`], but a transport error (the gateway is down) is an `Err`
    /// rather than a panic: for fault tests whose retailer retries through outages.
    pub async fn try_send_raw(&self, webhook_id: &str, body: String) -> Result<ApiReply, String> {
        let headers = signed(&self.secret, webhook_id, unix_now(), &body);
        self.api
            .try_send(
                Method::POST,
                &events_path(&self.retailer),
                None,
                &borrowed(&headers),
                Some(body),
            )
            .await
    }
}
