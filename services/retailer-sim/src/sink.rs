//! A callback sink (`POST /sink/{name}`, `GET /sink/{name}`): somewhere for ICON's notifier to
//! deliver callbacks in a demo or a test, and a way to read back what arrived.

use crate::{lock, reason, Sim};
use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap, VecDeque};

/// How many deliveries each sink keeps; older ones are dropped so a long run stays bounded.
pub const MAX_RECORDED_PER_SINK: usize = 10_000;

/// The request headers worth keeping: the Standard Webhooks ones (so a test can check the id,
/// timestamp and signature) and the content type.
const KEPT_HEADERS: [&str; 4] = [
    "webhook-id",
    "webhook-timestamp",
    "webhook-signature",
    "content-type",
];

/// One delivery to a sink.
#[derive(Debug, Clone, Serialize)]
pub struct SinkRecord {
    pub received_at: DateTime<Utc>,
    /// Only the kept headers (`KEPT_HEADERS`) that were present.
    pub headers: BTreeMap<&'static str, String>,
    /// The body as JSON, or as a string when it is not JSON.
    pub body: serde_json::Value,
}

/// Deliveries by sink name.
#[derive(Debug, Default)]
pub(crate) struct Sinks(HashMap<String, VecDeque<SinkRecord>>);

impl Sinks {
    fn record(&mut self, name: String, record: SinkRecord) {
        let deliveries = self.0.entry(name).or_default();
        if deliveries.len() >= MAX_RECORDED_PER_SINK {
            deliveries.pop_front();
        }
        deliveries.push_back(record);
    }

    fn list(&self, name: &str) -> Vec<SinkRecord> {
        self.0
            .get(name)
            .map(|d| d.iter().cloned().collect())
            .unwrap_or_default()
    }
}

#[derive(Debug, Deserialize)]
pub(crate) struct SinkQuery {
    /// The status to answer with instead of 200, to make the caller retry or give up.
    status: Option<String>,
}

/// `POST /sink/{name}[?status=NNN]`: records the delivery and answers 200, or `NNN`.
pub(crate) async fn deliver(
    sim: web::Data<Sim>,
    name: web::Path<String>,
    query: web::Query<SinkQuery>,
    req: HttpRequest,
    body: web::Bytes,
) -> HttpResponse {
    let status = match query.status.as_deref().map(parse_status) {
        None => StatusCode::OK,
        Some(Ok(status)) => status,
        // Refused without recording: a mistyped test URL should fail loudly, not look like a
        // delivery that was answered oddly.
        Some(Err(why)) => return reason(StatusCode::BAD_REQUEST, why),
    };
    let headers = KEPT_HEADERS
        .iter()
        .filter_map(|&h| {
            req.headers()
                .get(h)
                .map(|v| (h, String::from_utf8_lossy(v.as_bytes()).into_owned()))
        })
        .collect();
    let body = serde_json::from_slice(&body)
        .unwrap_or_else(|_| serde_json::Value::String(String::from_utf8_lossy(&body).into_owned()));
    let name = name.into_inner();
    tracing::info!(sink = %name, status = status.as_u16(), "callback received");
    lock(&sim.sinks).record(
        name,
        SinkRecord {
            received_at: Utc::now(),
            headers,
            body,
        },
    );
    HttpResponse::build(status).json(serde_json::json!({"ok": status.is_success()}))
}

/// `GET /sink/{name}`: what was delivered there, oldest first (empty for an unknown name).
pub(crate) async fn list(sim: web::Data<Sim>, name: web::Path<String>) -> HttpResponse {
    HttpResponse::Ok().json(lock(&sim.sinks).list(&name))
}

/// Statuses a sink may answer with: 1xx are not final answers and would break the exchange.
fn parse_status(s: &str) -> Result<StatusCode, String> {
    s.trim()
        .parse::<u16>()
        .ok()
        .filter(|n| (200..=599).contains(n))
        .and_then(|n| StatusCode::from_u16(n).ok())
        .ok_or_else(|| format!("status={s:?} must be a number from 200 to 599"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses() {
        assert_eq!(parse_status("503"), Ok(StatusCode::SERVICE_UNAVAILABLE));
        assert!(parse_status("101").is_err());
        assert!(parse_status("600").is_err());
        assert!(parse_status("abc").is_err());
    }
}
