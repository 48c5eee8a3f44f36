//! The retailer protocol's wire types for what a retailer sends ICON: the events it reports an
//! order's life with (`POST /retailers/{retailer_id}/events`, issue 17 §2).
//!
//! One place for both directions of the protocol: ICON's gateway parses these, the retailer
//! simulator builds them, and `docs/retailer-integration.md` documents them. Signing and
//! verifying (Standard Webhooks) is `icon_webhooks`; the requests ICON sends a retailer are
//! built by the checkout worker's `retailer` module.
//!
//! Parsing is lenient about what a retailer may add (unknown fields are ignored, so a retailer
//! can send its own extras) and strict about what ICON acts on: the gateway checks each field
//! (`type` known, `idempotency_key` and `order_id` bounded, `tracking` and `refund` well formed)
//! and answers 422 naming the field.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// The largest event body ICON reads; a larger one is answered 413 unread.
pub const MAX_EVENT_BYTES: usize = 64 * 1024;

/// How far an event's `webhook-timestamp` may be from ICON's clock, either way, before it is
/// refused (401) as a replay or a clock gone wrong: five minutes, as Standard Webhooks advises.
pub const EVENT_TOLERANCE_SECS: i64 = 300;

/// What a retailer reports about an order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum RetailerEventType {
    #[serde(rename = "order.confirmed")]
    Confirmed,
    #[serde(rename = "order.rejected")]
    Rejected,
    #[serde(rename = "order.shipped")]
    Shipped,
    #[serde(rename = "order.delivered")]
    Delivered,
    #[serde(rename = "order.cancelled")]
    Cancelled,
    #[serde(rename = "order.refunded")]
    Refunded,
}

impl RetailerEventType {
    pub const ALL: [RetailerEventType; 6] = [
        Self::Confirmed,
        Self::Rejected,
        Self::Shipped,
        Self::Delivered,
        Self::Cancelled,
        Self::Refunded,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Confirmed => "order.confirmed",
            Self::Rejected => "order.rejected",
            Self::Shipped => "order.shipped",
            Self::Delivered => "order.delivered",
            Self::Cancelled => "order.cancelled",
            Self::Refunded => "order.refunded",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|t| t.as_str() == s)
    }
}

/// A parcel's tracking, as the retailer gives it with `order.shipped`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tracking {
    pub carrier: String,
    pub number: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
}

/// Money given back, as the retailer reports it with `order.refunded`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Refund {
    pub amount_minor: i64,
    pub currency: String,
}

/// The body of `POST /retailers/{retailer_id}/events`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RetailerEvent {
    #[serde(rename = "type")]
    pub kind: RetailerEventType,
    /// The `Idempotency-Key` ICON sent with the order: how ICON finds the order.
    pub idempotency_key: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub order_id: Option<String>,
    /// When it happened at the retailer (RFC 3339). Orders events that arrive out of order.
    pub occurred_at: DateTime<Utc>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tracking: Option<Tracking>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refund: Option<Refund>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_names_round_trip() {
        for t in RetailerEventType::ALL {
            let json = serde_json::to_string(&t).unwrap();
            assert_eq!(json, format!("\"{}\"", t.as_str()));
            assert_eq!(RetailerEventType::parse(t.as_str()), Some(t));
        }
        let e: RetailerEvent = serde_json::from_str(
            r#"{"type":"order.shipped","idempotency_key":"k","occurred_at":"2026-12-03T10:00:00Z",
                "tracking":{"carrier":"DHL","number":"123"},"extra":1}"#,
        )
        .unwrap();
        assert_eq!(e.kind, RetailerEventType::Shipped);
        assert_eq!(e.tracking.unwrap().carrier, "DHL");
    }
}
