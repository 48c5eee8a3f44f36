//! `POST /_sim/retailers/{retailer}/events`: an event sent to ICON on demand, as `retailer`, for
//! tests of ICON's events endpoint and for retailers' engineers comparing notes with it.
//!
//! The body names the event and, optionally, how to get it wrong:
//!
//! ```json
//! {"type": "order.shipped", "idempotency_key": "c1:acme", "order_id": "sim-…",
//!  "occurred_at": "2026-12-03T10:00:00Z", "reason": "…",
//!  "tracking": {"carrier": "DHL", "number": "123", "url": "…"},
//!  "refund": {"amount_minor": 1999, "currency": "GBP"},
//!  "copies": 2, "webhook_id": "evt_same", "timestamp_offset_secs": -600,
//!  "signature": "valid" | "forged" | "missing", "raw_body": "{not json"}
//! ```
//!
//! `type` and `idempotency_key` are required unless `raw_body` replaces the whole body.
//! `order_id` defaults to the order the simulator placed for that key, if any; `occurred_at` to
//! now; `copies` to 1 (each copy the same bytes and `webhook-id`, re-signed when sent). It is
//! sent synchronously, without retries, and answered 200 `{"webhook_id", "sent": [{"status",
//! "body", "error"}, …]}`, one entry per copy with ICON's status and answer (JSON, or text), or
//! why there was none. It changes nothing in the order book: it is a message, not a state.
//!
//! Bad input is answered 400 problem+json naming the field; a `valid` signature for a retailer
//! whose secret the simulator does not know, 409.

use crate::book::KeyId;
use crate::events::{self, EventRecord, EventSource, Outgoing, SignatureMode};
use crate::{lock, Sim};
use actix_web::http::StatusCode;
use actix_web::{web, HttpResponse};
use chrono::{DateTime, Utc};
use icon_contracts::retailer::{Refund, RetailerEvent, RetailerEventType, Tracking};
use icon_webhooks::WebhookSecret;
use serde::de::DeserializeOwned;
use serde_json::{json, Map, Value};

/// The most copies of one event a request may ask for.
pub const MAX_COPIES: u32 = 10;

/// How far `timestamp_offset_secs` may shift `webhook-timestamp`: ten years either way, plenty
/// for any replay test and far from overflowing.
const MAX_OFFSET_SECS: i64 = 10 * 365 * 24 * 3600;

/// The longest `webhook_id` accepted (Standard Webhooks ids are short; this only bounds abuse).
const MAX_WEBHOOK_ID_CHARS: usize = 256;

/// What to send: the event, or bytes of the caller's own.
#[derive(Debug)]
enum Payload {
    Event(RetailerEvent),
    Raw(String),
}

/// A request that passed the checks.
#[derive(Debug)]
struct Demand {
    payload: Payload,
    /// For the log, when a raw body names them.
    kind: Option<RetailerEventType>,
    idempotency_key: Option<String>,
    copies: u32,
    webhook_id: Option<String>,
    timestamp_offset_secs: i64,
    signature: SignatureMode,
}

/// Input that cannot be sent, and the field at fault.
#[derive(Debug)]
struct BadInput {
    field: Option<&'static str>,
    detail: String,
}

impl BadInput {
    fn field(field: &'static str, detail: impl Into<String>) -> Self {
        Self {
            field: Some(field),
            detail: detail.into(),
        }
    }
}

/// Takes `name` out of the body, `None` if absent or null.
fn take<T: DeserializeOwned>(
    fields: &mut Map<String, Value>,
    name: &'static str,
) -> Result<Option<T>, BadInput> {
    match fields.remove(name) {
        None | Some(Value::Null) => Ok(None),
        Some(value) => serde_json::from_value(value)
            .map(Some)
            .map_err(|e| BadInput::field(name, format!("{name}: {e}"))),
    }
}

fn parse(body: &[u8]) -> Result<Demand, BadInput> {
    let mut fields: Map<String, Value> = serde_json::from_slice(body).map_err(|e| BadInput {
        field: None,
        detail: format!("the body must be a JSON object: {e}"),
    })?;
    let kind: Option<RetailerEventType> = take(&mut fields, "type")?;
    let idempotency_key: Option<String> = take(&mut fields, "idempotency_key")?;
    let order_id = take(&mut fields, "order_id")?;
    let occurred_at: Option<DateTime<Utc>> = take(&mut fields, "occurred_at")?;
    let reason = take(&mut fields, "reason")?;
    let tracking: Option<Tracking> = take(&mut fields, "tracking")?;
    let refund: Option<Refund> = take(&mut fields, "refund")?;
    let copies = take(&mut fields, "copies")?.unwrap_or(1);
    let webhook_id: Option<String> = take(&mut fields, "webhook_id")?;
    let timestamp_offset_secs = take(&mut fields, "timestamp_offset_secs")?.unwrap_or(0);
    let signature = take(&mut fields, "signature")?.unwrap_or_default();
    let raw_body: Option<String> = take(&mut fields, "raw_body")?;
    if let Some(unknown) = fields.keys().next() {
        return Err(BadInput {
            field: None,
            detail: format!("unknown field {unknown:?}"),
        });
    }

    if idempotency_key
        .as_deref()
        .is_some_and(|k| k.trim().is_empty())
    {
        return Err(BadInput::field(
            "idempotency_key",
            "idempotency_key is empty",
        ));
    }
    if !(1..=MAX_COPIES).contains(&copies) {
        let detail = format!("copies must be from 1 to {MAX_COPIES}");
        return Err(BadInput::field("copies", detail));
    }
    let valid_id = |id: &str| {
        (1..=MAX_WEBHOOK_ID_CHARS).contains(&id.len()) && id.bytes().all(|b| b.is_ascii_graphic())
    };
    if webhook_id.as_deref().is_some_and(|id| !valid_id(id)) {
        let detail =
            format!("webhook_id must be 1 to {MAX_WEBHOOK_ID_CHARS} visible ASCII characters");
        return Err(BadInput::field("webhook_id", detail));
    }
    if !(-MAX_OFFSET_SECS..=MAX_OFFSET_SECS).contains(&timestamp_offset_secs) {
        let detail = format!("timestamp_offset_secs must be within ±{MAX_OFFSET_SECS}");
        return Err(BadInput::field("timestamp_offset_secs", detail));
    }

    let payload = match (raw_body, kind, &idempotency_key) {
        (Some(raw), _, _) => Payload::Raw(raw),
        (None, None, _) => {
            let detail = "type is required (order.confirmed, order.rejected, order.shipped, \
                          order.delivered, order.cancelled or order.refunded) unless raw_body \
                          is given";
            return Err(BadInput::field("type", detail));
        }
        (None, _, None) => {
            let detail = "idempotency_key is required unless raw_body is given";
            return Err(BadInput::field("idempotency_key", detail));
        }
        (None, Some(kind), Some(key)) => Payload::Event(RetailerEvent {
            kind,
            idempotency_key: key.clone(),
            order_id,
            occurred_at: occurred_at.unwrap_or_else(Utc::now),
            reason,
            tracking,
            refund,
        }),
    };
    Ok(Demand {
        payload,
        kind,
        idempotency_key,
        copies,
        webhook_id,
        timestamp_offset_secs,
        signature,
    })
}

/// An RFC 9457 problem: this endpoint is the simulator's own API, not the retailer protocol.
fn problem(status: StatusCode, title: &str, detail: String, field: Option<&str>) -> HttpResponse {
    HttpResponse::build(status)
        .content_type("application/problem+json")
        .json(json!({
            "type": "about:blank",
            "title": title,
            "status": status.as_u16(),
            "detail": detail,
            "field": field,
        }))
}

/// `POST /_sim/retailers/{retailer}/events`.
#[tracing::instrument(name = "event on demand", skip_all, fields(retailer = %retailer))]
pub(crate) async fn send(
    sim: web::Data<Sim>,
    retailer: web::Path<String>,
    body: web::Bytes,
) -> HttpResponse {
    let retailer = retailer.into_inner();
    let demand = match parse(&body) {
        Ok(demand) => demand,
        Err(bad) => {
            return problem(
                StatusCode::BAD_REQUEST,
                "Bad event request",
                bad.detail,
                bad.field,
            )
        }
    };
    let mut order_id = None;
    let body = match demand.payload {
        Payload::Raw(raw) => raw.into_bytes(),
        Payload::Event(mut event) => {
            if event.order_id.is_none() {
                event.order_id = placed_order(&sim, &retailer, &event.idempotency_key);
            }
            order_id.clone_from(&event.order_id);
            match serde_json::to_vec(&event) {
                Ok(body) => body,
                Err(e) => {
                    tracing::error!(error = %e, "an event did not serialise");
                    let detail = "the event could not be serialised".to_owned();
                    return problem(
                        StatusCode::INTERNAL_SERVER_ERROR,
                        "Internal error",
                        detail,
                        None,
                    );
                }
            }
        }
    };
    let webhook_id = demand.webhook_id.unwrap_or_else(events::new_webhook_id);
    let url = sim.events.url_for(&retailer);
    let mut record = EventRecord {
        created_at: Utc::now(),
        source: EventSource::Api,
        retailer: Some(retailer.clone()),
        url: Some(url.to_string()),
        webhook_id: webhook_id.clone(),
        kind: demand.kind,
        idempotency_key: demand.idempotency_key,
        order_id,
        signature: demand.signature,
        body: String::from_utf8_lossy(&body).into_owned(),
        tries: vec![],
        delivered: false,
        error: None,
    };
    let secret = match demand.signature {
        SignatureMode::Valid => match sim.secrets.of(&retailer) {
            Some(secret) => Some(secret),
            None => {
                let why = events::no_secret(&retailer);
                tracing::warn!(error = %why, "event not sent");
                record.url = None;
                record.error = Some(why.clone());
                sim.events.record(record);
                return problem(
                    StatusCode::CONFLICT,
                    "No signing secret",
                    why,
                    Some("signature"),
                );
            }
        },
        SignatureMode::Forged => Some(WebhookSecret::generate()),
        SignatureMode::Missing => None,
    };
    let seq = sim.events.record(record);
    let outgoing = Outgoing {
        webhook_id: webhook_id.clone(),
        body,
        secret,
        timestamp_offset_secs: demand.timestamp_offset_secs,
    };
    let mut sent = Vec::new();
    for _ in 0..demand.copies {
        let (tried, result) = sim.events.send_once(&url, &outgoing).await;
        tracing::info!(%webhook_id, status = tried.status, "event sent on demand");
        sim.events.update(seq, |r| {
            r.delivered |= tried.status.is_some_and(|s| (200..300).contains(&s));
            r.tries.push(tried);
        });
        sent.push(match result {
            Ok(answer) => json!({
                "status": answer.status,
                "body": answer_body(&answer.body),
                "error": null,
            }),
            Err(e) => json!({"status": null, "body": null, "error": e.to_string()}),
        });
    }
    HttpResponse::Ok().json(json!({"webhook_id": webhook_id, "sent": sent}))
}

/// ICON's answer as JSON, or as text when it is not; `null` when empty.
fn answer_body(body: &[u8]) -> Value {
    if body.is_empty() {
        return Value::Null;
    }
    serde_json::from_slice(body)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(body).into_owned()))
}

/// The order the simulator placed for `key` as `retailer` (`/{retailer}/orders`), or else
/// through `/orders`.
fn placed_order(sim: &Sim, retailer: &str, key: &str) -> Option<String> {
    let book = lock(&sim.orders);
    [Some(retailer.to_owned()), None]
        .into_iter()
        .find_map(|retailer| {
            book.order(&KeyId {
                retailer,
                key: key.to_owned(),
            })
        })
        .map(|order| order.order_id)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bad(body: Value) -> BadInput {
        parse(body.to_string().as_bytes()).expect_err("refused")
    }

    #[test]
    fn defaults_and_a_full_event() {
        let d = parse(br#"{"type":"order.confirmed","idempotency_key":"c1:acme"}"#).unwrap();
        assert_eq!((d.copies, d.timestamp_offset_secs), (1, 0));
        assert_eq!(d.signature, SignatureMode::Valid);
        assert!(matches!(d.payload, Payload::Event(e) if e.order_id.is_none()));

        let d = parse(
            json!({"type": "order.refunded", "idempotency_key": "k", "order_id": "o",
                "occurred_at": "2026-12-03T10:00:00Z", "refund": {"amount_minor": 5,
                "currency": "GBP"}, "copies": 3, "webhook_id": "evt_1",
                "timestamp_offset_secs": -600, "signature": "forged"})
            .to_string()
            .as_bytes(),
        )
        .unwrap();
        assert_eq!((d.copies, d.timestamp_offset_secs), (3, -600));
        assert_eq!(d.webhook_id.as_deref(), Some("evt_1"));
        assert_eq!(d.signature, SignatureMode::Forged);
        let Payload::Event(e) = d.payload else {
            panic!("an event")
        };
        assert_eq!(e.refund.map(|r| r.amount_minor), Some(5));

        let raw = parse(br#"{"raw_body":"{oops","signature":"missing"}"#).unwrap();
        assert!(matches!(raw.payload, Payload::Raw(r) if r == "{oops"));
    }

    #[test]
    fn bad_input_names_the_field() {
        for (body, field) in [
            (json!({"idempotency_key": "k"}), "type"),
            (
                json!({"type": "order.lost", "idempotency_key": "k"}),
                "type",
            ),
            (json!({"type": "order.confirmed"}), "idempotency_key"),
            (
                json!({"type": "order.confirmed", "idempotency_key": " "}),
                "idempotency_key",
            ),
            (json!({"raw_body": "x", "copies": 0}), "copies"),
            (json!({"raw_body": "x", "copies": 11}), "copies"),
            (json!({"raw_body": "x", "copies": -1}), "copies"),
            (json!({"raw_body": "x", "webhook_id": ""}), "webhook_id"),
            (json!({"raw_body": "x", "webhook_id": "a b"}), "webhook_id"),
            (
                json!({"raw_body": "x", "timestamp_offset_secs": i64::MIN}),
                "timestamp_offset_secs",
            ),
            (json!({"raw_body": "x", "signature": "sloppy"}), "signature"),
            (json!({"raw_body": 1}), "raw_body"),
            (
                json!({"raw_body": "x", "occurred_at": "yesterday"}),
                "occurred_at",
            ),
            (
                json!({"raw_body": "x", "tracking": {"carrier": "DHL"}}),
                "tracking",
            ),
            (
                json!({"raw_body": "x", "refund": {"amount_minor": "5"}}),
                "refund",
            ),
        ] {
            let refused = bad(body.clone());
            assert_eq!(refused.field, Some(field), "{body}: {}", refused.detail);
            assert!(refused.detail.contains(field), "{body}: {}", refused.detail);
        }
        let unknown = bad(json!({"raw_body": "x", "colour": "red"}));
        assert!(unknown.detail.contains("colour"), "{}", unknown.detail);
        let not_object = parse(b"[1]").expect_err("an array");
        assert!(not_object.detail.contains("JSON object"));
    }
}
