//! The events the simulator sends ICON as a retailer, `POST
//! {ICON_SIM_ICON_URL}/retailers/{retailer}/events` (issue 17 §2), and their log, `GET /events`.
//!
//! An event is signed like every request of the protocol (Standard Webhooks over the exact body
//! bytes), with the secret the simulator was told for the retailer
//! (`PUT /_sim/retailers/{retailer}/secret`): the one ICON verifies the retailer's events with.
//! Without one nothing is sent; the log says why.
//!
//! Two senders use this. An `async-` order's own events, and those ending a cancellation
//! answered 202 ([`crate::lifecycle`]), go through `report`, which behaves like a careful
//! retailer: one `webhook-id` per event, kept across retries so ICON can drop a repeat, and
//! retries with backoff while ICON cannot take the event (no answer, 5xx, 429) but not after
//! any other answer, which retrying would not change. Events a test asks for
//! ([`crate::events_api`]) are sent exactly as asked, once per copy, with `Events::send_once`.
//!
//! The log is bounded ([`MAX_RECORDED_EVENTS`]) and records each try as it happens, so a test
//! polling it sees a send being retried.

use crate::book::LogFilter;
use crate::recent::Recent;
use crate::{lock, Sim};
use actix_web::{web, HttpResponse};
use chrono::{DateTime, Utc};
use icon_contracts::retailer::{RetailerEvent, RetailerEventType};
use icon_http::{HeaderName, HttpClient, Response, SendError, Url};
use icon_runtime::Backoff;
use icon_webhooks::{SigningSecrets, WebhookSecret};
use serde::{Deserialize, Serialize};
use std::sync::Mutex;
use std::time::Duration;

/// How many events `GET /events` keeps. Fewer than orders: each holds its body and its tries.
pub const MAX_RECORDED_EVENTS: usize = 10_000;

/// How many times `report` sends an event before giving up: with [`FIRST_RETRY_DELAY`]
/// doubling, about 15 seconds of ICON being unreachable.
pub const SEND_TRIES: usize = 6;

/// The wait before the first retry; each later one doubles, up to `MAX_RETRY_DELAY`.
pub const FIRST_RETRY_DELAY: Duration = Duration::from_millis(500);

/// The longest wait between tries, a `Retry-After` from ICON included.
const MAX_RETRY_DELAY: Duration = Duration::from_secs(30);

/// How long one try may take, the answer included.
const SEND_TIMEOUT: Duration = Duration::from_secs(10);

/// How much of ICON's answer the log keeps per try (the on-demand endpoint answers all of it).
const MAX_ANSWER_CHARS: usize = 1_000;

/// The simulator's share of state for sending events.
pub(crate) struct Events {
    client: HttpClient,
    /// `ICON_SIM_ICON_URL`: the only place events go.
    icon_url: Url,
    /// `ICON_SIM_ASYNC_DELAY`: the wait before each event of an `async-` order or of a
    /// cancellation answered 202.
    pub(crate) delay: Duration,
    log: Mutex<Recent<EventRecord, MAX_RECORDED_EVENTS>>,
}

/// Who made the simulator send an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum EventSource {
    /// An `async-` order, or a cancellation answered 202, on its own schedule.
    Order,
    /// `POST /_sim/retailers/{retailer}/events`.
    Api,
}

/// How an event is signed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SignatureMode {
    /// With the retailer's secret, as ICON expects.
    #[default]
    Valid,
    /// With a random secret of its own: well formed, but ICON must refuse it.
    Forged,
    /// No `webhook-*` headers at all.
    Missing,
}

/// One event sent or tried; `GET /events` returns these, oldest first.
#[derive(Debug, Clone, Serialize)]
pub struct EventRecord {
    pub created_at: DateTime<Utc>,
    pub source: EventSource,
    /// The retailer it was sent as; `None` when it could not be told (see
    /// [`crate::lifecycle`]).
    pub retailer: Option<String>,
    /// Where it went; `None` if nothing was sent.
    pub url: Option<String>,
    pub webhook_id: String,
    /// `None` for a raw body sent on demand without a `type`.
    #[serde(rename = "type")]
    pub kind: Option<RetailerEventType>,
    pub idempotency_key: Option<String>,
    pub order_id: Option<String>,
    pub signature: SignatureMode,
    /// The body exactly as sent (UTF-8, lossily), what `webhook-signature` signs.
    pub body: String,
    /// Every try, in order; for an event sent on demand, one per copy.
    pub tries: Vec<TryRecord>,
    /// Whether a try was answered 2xx.
    pub delivered: bool,
    /// Why it was not sent, or not delivered: no secret, given up, refused by ICON.
    pub error: Option<String>,
}

/// One try at sending an event.
#[derive(Debug, Clone, Serialize)]
pub struct TryRecord {
    pub at: DateTime<Utc>,
    /// The `webhook-timestamp` sent (each try has its own); `None` when sent unsigned.
    pub webhook_timestamp: Option<i64>,
    /// ICON's status, `None` if it did not answer.
    pub status: Option<u16>,
    /// The start of ICON's answer.
    pub answer: Option<String>,
    /// Why there was no answer (refused connection, timeout...).
    pub error: Option<String>,
}

/// An event ready to send.
pub(crate) struct Outgoing {
    pub(crate) webhook_id: String,
    pub(crate) body: Vec<u8>,
    /// What signs it; `None` sends it without `webhook-*` headers.
    pub(crate) secret: Option<WebhookSecret>,
    /// Added to the clock for `webhook-timestamp`, to send a stale or future one.
    pub(crate) timestamp_offset_secs: i64,
}

/// What one try's answer means for the next.
#[derive(Debug, PartialEq, Eq)]
enum Verdict {
    Delivered,
    /// An answer retrying cannot change (a 4xx other than 429, a 3xx).
    Refused(String),
    /// ICON could not take it now; the wait it asked for, if it did.
    Retry(Option<Duration>),
}

impl Events {
    pub(crate) fn new(icon_url: Url, delay: Duration) -> Result<Self, icon_http::TlsError> {
        Ok(Self {
            // No network policy: the only target is ICON_SIM_ICON_URL, the operator's choice.
            client: HttpClient::new(None, SEND_TIMEOUT)?,
            icon_url,
            delay,
            log: Mutex::default(),
        })
    }

    /// `{ICON_SIM_ICON_URL}/retailers/{retailer}/events`, the retailer name as one path segment
    /// (percent-encoded), after whatever path the base URL has.
    pub(crate) fn url_for(&self, retailer: &str) -> Url {
        let mut url = self.icon_url.clone();
        // Always `Ok`: the settings accept only http(s) URLs, which have a path.
        if let Ok(mut path) = url.path_segments_mut() {
            path.pop_if_empty()
                .extend(["retailers", retailer, "events"]);
        }
        url
    }

    /// Logs an event and returns the number to [`update`](Self::update) it by.
    pub(crate) fn record(&self, record: EventRecord) -> u64 {
        lock(&self.log).push(record)
    }

    /// Changes a logged event, unless it has been dropped from the log since.
    pub(crate) fn update(&self, seq: u64, change: impl FnOnce(&mut EventRecord)) {
        if let Some(record) = lock(&self.log).get_mut(seq) {
            change(record);
        }
    }

    /// Sends `event` once, signed with a fresh `webhook-timestamp`, and says how it went.
    pub(crate) async fn send_once(
        &self,
        url: &Url,
        event: &Outgoing,
    ) -> (TryRecord, Result<Response, SendError>) {
        let at = Utc::now();
        let timestamp = at.timestamp().saturating_add(event.timestamp_offset_secs);
        let headers: Vec<(HeaderName, String)> = match &event.secret {
            None => vec![],
            Some(secret) => SigningSecrets {
                current: secret.clone(),
                previous: None,
            }
            .signed_headers(event.webhook_id.clone(), timestamp, &event.body)
            .into_iter()
            .map(|(name, value)| (HeaderName::from_static(name), value))
            .collect(),
        };
        let result = self
            .client
            .post_json(url, &headers, event.body.clone())
            .await;
        let record = TryRecord {
            at,
            webhook_timestamp: event.secret.as_ref().map(|_| timestamp),
            status: result.as_ref().ok().map(|r| r.status),
            answer: result.as_ref().ok().map(|r| {
                String::from_utf8_lossy(&r.body)
                    .chars()
                    .take(MAX_ANSWER_CHARS)
                    .collect()
            }),
            error: result.as_ref().err().map(ToString::to_string),
        };
        (record, result)
    }
}

/// A new `webhook-id`: time-ordered, so ids sort as the events were made.
pub(crate) fn new_webhook_id() -> String {
    format!("evt_{}", uuid::Uuid::now_v7().simple())
}

/// Why an event signed with `retailer`'s secret cannot be sent.
pub(crate) fn no_secret(retailer: &str) -> String {
    format!(
        "no signing secret for retailer {retailer}: PUT /_sim/retailers/{retailer}/secret first"
    )
}

fn verdict(result: &Result<Response, SendError>) -> Verdict {
    match result {
        Ok(r) if r.is_success() => Verdict::Delivered,
        Ok(r) if r.status == 429 || r.status >= 500 => Verdict::Retry(r.retry_after()),
        Ok(r) => Verdict::Refused(format!(
            "ICON answered {}, which retrying cannot change",
            r.status
        )),
        Err(SendError::Invalid(e)) => Verdict::Refused(format!("cannot be sent: {e}")),
        Err(_) => Verdict::Retry(None),
    }
}

/// Sends an event an order made happen, as `retailer` (or why it could not be told), and
/// returns once ICON took it, refused it, the tries ran out, or the simulator shuts down.
/// `sent` runs once the event has been sent the first time (whatever the answer) or found
/// unsendable, and is logged so.
#[tracing::instrument(name = "event", skip_all, fields(
    event = event.kind.as_str(),
    idempotency_key = %event.idempotency_key,
    retailer = tracing::field::Empty,
    webhook_id = tracing::field::Empty,
))]
pub(crate) async fn report(
    sim: &Sim,
    retailer: Result<&str, String>,
    event: &RetailerEvent,
    sent: impl FnOnce(),
) {
    let webhook_id = new_webhook_id();
    let span = tracing::Span::current();
    span.record("webhook_id", webhook_id.as_str());
    let body = serde_json::to_vec(event);
    let mut record = EventRecord {
        created_at: Utc::now(),
        source: EventSource::Order,
        retailer: retailer.as_ref().ok().map(|r| (*r).to_owned()),
        url: None,
        webhook_id: webhook_id.clone(),
        kind: Some(event.kind),
        idempotency_key: Some(event.idempotency_key.clone()),
        order_id: event.order_id.clone(),
        signature: SignatureMode::Valid,
        body: body
            .as_deref()
            .map(String::from_utf8_lossy)
            .unwrap_or_default()
            .into_owned(),
        tries: vec![],
        delivered: false,
        error: None,
    };
    let ready = retailer.and_then(|retailer| {
        span.record("retailer", retailer);
        let secret = sim
            .secrets
            .of(retailer)
            .ok_or_else(|| no_secret(retailer))?;
        let body = body.map_err(|e| format!("the event does not serialise: {e}"))?;
        Ok((sim.events.url_for(retailer), secret, body))
    });
    let (url, secret, body) = match ready {
        Ok(ready) => ready,
        Err(why) => {
            tracing::warn!(error = %why, "event not sent");
            record.error = Some(why);
            sim.events.record(record);
            sent();
            return;
        }
    };
    record.url = Some(url.to_string());
    let seq = sim.events.record(record);
    let outgoing = Outgoing {
        webhook_id,
        body,
        secret: Some(secret),
        timestamp_offset_secs: 0,
    };
    let mut backoff = Backoff::new(FIRST_RETRY_DELAY, MAX_RETRY_DELAY);
    let mut sent = Some(sent);
    for attempt in 1..=SEND_TRIES {
        let (tried, result) = sim.events.send_once(&url, &outgoing).await;
        let status = tried.status;
        sim.events.update(seq, |r| r.tries.push(tried));
        if let Some(sent) = sent.take() {
            sent();
        }
        let wait = match verdict(&result) {
            Verdict::Delivered => {
                tracing::info!(status, attempt, "event delivered");
                sim.events.update(seq, |r| r.delivered = true);
                return;
            }
            Verdict::Refused(why) => {
                tracing::warn!(status, attempt, error = %why, "event refused");
                sim.events.update(seq, |r| r.error = Some(why));
                return;
            }
            Verdict::Retry(asked) => {
                let backoff = backoff.next_delay();
                asked
                    .map_or(backoff, |a| a.max(backoff))
                    .min(MAX_RETRY_DELAY)
            }
        };
        if attempt == SEND_TRIES {
            break;
        }
        tracing::info!(status, attempt, ?wait, "event not taken; retrying");
        tokio::select! {
            () = tokio::time::sleep(wait) => {}
            () = sim.shutdown.cancelled() => {
                let why = "the simulator shut down before the event was delivered";
                sim.events.update(seq, |r| r.error = Some(why.to_owned()));
                return;
            }
        }
    }
    let why = format!("gave up after {SEND_TRIES} tries");
    tracing::warn!(error = %why, "event not delivered");
    sim.events.update(seq, |r| r.error = Some(why));
}

/// `GET /events[?idempotency_key=K][&retailer=R]`: every event sent or tried, oldest first.
pub(crate) async fn list(sim: web::Data<Sim>, filter: web::Query<LogFilter>) -> HttpResponse {
    let log = lock(&sim.events.log);
    let records: Vec<&EventRecord> = log
        .iter()
        .filter(|r| filter.matches(r.retailer.as_deref(), r.idempotency_key.as_deref()))
        .collect();
    HttpResponse::Ok().json(records)
}

#[cfg(test)]
mod tests {
    use super::*;
    use icon_http::HeaderMap;

    fn answer(status: u16, retry_after: Option<&str>) -> Result<Response, SendError> {
        let mut headers = HeaderMap::new();
        if let Some(secs) = retry_after {
            headers.insert("retry-after", secs.parse().expect("a header value"));
        }
        Ok(Response {
            status,
            headers,
            body: Default::default(),
            elapsed: Duration::ZERO,
        })
    }

    #[test]
    fn retries_only_what_retrying_can_change() {
        assert_eq!(verdict(&answer(200, None)), Verdict::Delivered);
        assert_eq!(verdict(&answer(202, None)), Verdict::Delivered);
        assert_eq!(verdict(&answer(503, None)), Verdict::Retry(None));
        assert_eq!(
            verdict(&answer(429, Some("3"))),
            Verdict::Retry(Some(Duration::from_secs(3)))
        );
        for refused in [301, 400, 401, 404, 409, 413, 422] {
            assert!(
                matches!(verdict(&answer(refused, None)), Verdict::Refused(_)),
                "{refused}"
            );
        }
        let down = Err(SendError::Connect("connection refused".into()));
        assert_eq!(verdict(&down), Verdict::Retry(None));
        let bad = Err(SendError::Invalid("header".into()));
        assert!(matches!(verdict(&bad), Verdict::Refused(_)));
    }

    #[test]
    fn event_urls_append_to_the_base_path_and_encode_the_retailer() {
        let events = |base: &str| {
            Events::new(Url::parse(base).expect("a URL"), Duration::ZERO).expect("a client")
        };
        let root = events("http://127.0.0.1:8080");
        assert_eq!(
            root.url_for("acme").as_str(),
            "http://127.0.0.1:8080/retailers/acme/events"
        );
        let prefixed = events("https://icon.example/api/");
        assert_eq!(
            prefixed.url_for("a b/c").as_str(),
            "https://icon.example/api/retailers/a%20b%2Fc/events"
        );
    }
}
