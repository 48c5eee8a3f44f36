//! Typed, versioned messages.

use chrono::{DateTime, Utc};
use icon_domain::{CartId, CheckoutId, CheckoutStatus, NotificationId, OrderStatus, RetailerId};
use serde::{de::DeserializeOwned, Deserialize, Serialize};
use uuid::Uuid;

/// Implemented by every payload: names its type and version on the wire.
pub trait Message: Serialize + DeserializeOwned {
    const TYPE: &'static str;
    const VERSION: u32;
    fn checkout_id(&self) -> CheckoutId;
}

/// The wire form of every message.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Envelope<T> {
    #[serde(rename = "type")]
    pub kind: String,
    pub version: u32,
    pub message_id: Uuid,
    pub checkout_id: CheckoutId,
    pub occurred_at: DateTime<Utc>,
    pub data: T,
}

impl<T: Message> Envelope<T> {
    pub fn new(data: T) -> Self {
        Self {
            kind: T::TYPE.to_owned(),
            version: T::VERSION,
            message_id: Uuid::now_v7(),
            checkout_id: data.checkout_id(),
            occurred_at: Utc::now(),
            data,
        }
    }

    pub fn to_json(&self) -> Vec<u8> {
        // Serialising plain data structs to JSON cannot fail.
        serde_json::to_vec(self).unwrap_or_default()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ParseError {
    #[error("body is not a JSON message envelope: {0}")]
    NotAnEnvelope(serde_json::Error),
    #[error("unknown message type `{0}`")]
    UnknownType(String),
    #[error("unsupported version {version} of `{kind}`")]
    UnknownVersion { kind: String, version: u32 },
    #[error("bad `{kind}` v{version} payload: {source}")]
    BadPayload {
        kind: String,
        version: u32,
        source: serde_json::Error,
    },
}

#[derive(Deserialize)]
struct Header {
    #[serde(rename = "type")]
    kind: String,
    version: u32,
}

/// Parses a body as a `T`, telling an unknown type or version apart from a malformed payload so
/// the consumer can say why it dead-lettered a message.
pub fn parse<T: Message>(body: &[u8]) -> Result<Envelope<T>, ParseError> {
    let header: Header = serde_json::from_slice(body).map_err(ParseError::NotAnEnvelope)?;
    if header.kind != T::TYPE {
        return Err(ParseError::UnknownType(header.kind));
    }
    if header.version != T::VERSION {
        return Err(ParseError::UnknownVersion {
            kind: header.kind,
            version: header.version,
        });
    }
    serde_json::from_slice(body).map_err(|source| ParseError::BadPayload {
        kind: header.kind,
        version: header.version,
        source,
    })
}

/// Peeks at a body's `type` without parsing the payload, for consumers of more than one type.
pub fn message_type(body: &[u8]) -> Result<String, ParseError> {
    serde_json::from_slice::<Header>(body)
        .map(|h| h.kind)
        .map_err(ParseError::NotAnEnvelope)
}

/// A checkout was accepted (202) and its orders must be placed. Published by the gateway's
/// outbox relay to `checkout.requested`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CheckoutRequested {
    pub checkout_id: CheckoutId,
    pub cart_id: CartId,
}

impl Message for CheckoutRequested {
    const TYPE: &'static str = "checkout.requested";
    const VERSION: u32 = 1;
    fn checkout_id(&self) -> CheckoutId {
        self.checkout_id
    }
}

/// The next processing pass of a checkout is due: a retailer retry or a status lookup. The
/// worker writes it to the outbox, addressed to one of its delay tiers, which dead-letters it
/// back into `checkout.requested` when its TTL runs out.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CheckoutDue {
    pub checkout_id: CheckoutId,
    /// The passes already made when this was scheduled. A copy that finds more is stale (another
    /// copy made the pass) and is dropped, so a duplicate never forks the chain.
    pub after_pass: i32,
    /// Not to be processed before this instant; arriving early re-enters a delay tier.
    pub not_before: DateTime<Utc>,
    /// A wake-up, not a scheduled pass: a retailer's event settled an order the checkout was
    /// waiting for (issue 17). A wake runs a pass after whichever pass is current when it
    /// arrives (a pass that started before the event was recorded may not have seen it), or
    /// waits for one in flight; a final checkout ignores it. Absent in older messages.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub wake: bool,
}

impl Message for CheckoutDue {
    const TYPE: &'static str = "checkout.due";
    const VERSION: u32 = 1;
    fn checkout_id(&self) -> CheckoutId {
        self.checkout_id
    }
}

/// One retailer's outcome, as the callback shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OrderOutcome {
    pub retailer_id: RetailerId,
    pub status: OrderStatus,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retailer_order_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// The parcel's tracking, once the retailer reported the order shipped.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tracking: Option<crate::retailer::Tracking>,
    /// The refunds the retailer reported, in the order they came.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub refunds: Vec<crate::retailer::Refund>,
}

/// A checkout reached its final state. Published by the worker's outbox relay to
/// `checkout.finished`; the notifier turns it into callbacks and pushes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CheckoutFinished {
    pub checkout_id: CheckoutId,
    pub cart_id: CartId,
    pub status: CheckoutStatus,
    pub source_url: String,
    pub orders: Vec<OrderOutcome>,
    /// Why the checkout failed when no retailer's answer explains it (processing failed
    /// `ICON_WORKER_MAX_DELIVERIES` times). Optional, so v1 messages without it still parse.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

impl Message for CheckoutFinished {
    const TYPE: &'static str = "checkout.finished";
    const VERSION: u32 = 1;
    fn checkout_id(&self) -> CheckoutId {
        self.checkout_id
    }
}

/// A notification's next attempt is due. The notifier publishes it into a delay tier; the tier
/// dead-letters it back to the notifier's work queue when its TTL runs out.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NotificationDue {
    pub checkout_id: CheckoutId,
    pub notification_id: NotificationId,
    /// The attempts already recorded when this was scheduled; a copy that finds more recorded is
    /// stale (another copy already made the attempt) and is dropped.
    pub after_attempt: i32,
    /// Not to be attempted before this instant; arriving early re-enters a delay tier.
    pub not_before: DateTime<Utc>,
}

impl Message for NotificationDue {
    const TYPE: &'static str = "notification.due";
    const VERSION: u32 = 1;
    fn checkout_id(&self) -> CheckoutId {
        self.checkout_id
    }
}

/// A notification ICON gave up on (retries exhausted, 410 Gone, or a refused target), parked in
/// `checkout.finished.parked` for operators.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NotificationParked {
    pub checkout_id: CheckoutId,
    pub notification_id: NotificationId,
    pub channel: String,
    pub target: String,
    pub attempts: i32,
    pub reason: String,
}

impl Message for NotificationParked {
    const TYPE: &'static str = "notification.parked";
    const VERSION: u32 = 1;
    fn checkout_id(&self) -> CheckoutId {
        self.checkout_id
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn envelope_round_trip_and_version_check() {
        let msg = Envelope::new(CheckoutRequested {
            checkout_id: CheckoutId::new(),
            cart_id: CartId::new(7),
        });
        let body = msg.to_json();
        let back: Envelope<CheckoutRequested> = parse(&body).unwrap();
        assert_eq!(back.data, msg.data);
        assert_eq!(back.message_id, msg.message_id);

        let mut v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        v["version"] = 2.into();
        let err = parse::<CheckoutRequested>(&serde_json::to_vec(&v).unwrap()).unwrap_err();
        assert!(matches!(err, ParseError::UnknownVersion { version: 2, .. }));

        assert!(matches!(
            parse::<CheckoutRequested>(b"not json"),
            Err(ParseError::NotAnEnvelope(_))
        ));
        assert!(matches!(
            parse::<CheckoutFinished>(&body),
            Err(ParseError::UnknownType(_))
        ));
    }
}
