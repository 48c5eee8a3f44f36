//! The FCM HTTP v1 message for one device, and what FCM's error answers mean.
//!
//! The message carries a visible notification whose title and body say the outcome in plain
//! words, and `data` with `checkout_id`, `status` and `source_url` for the app to act on. A
//! collapse key per checkout lets a device that was offline show only the latest word on it.
//! See <https://firebase.google.com/docs/reference/fcm/rest/v1/projects.messages>.

use crate::notice::Notice;
use icon_contracts::CheckoutFinished;
use icon_domain::{CheckoutStatus, OrderStatus, Platform};
use serde_json::{json, Value};

/// The request body of `messages:send` for `token` on `platform`.
pub fn build(token: &str, platform: Platform, notice: &Notice) -> Value {
    let event = &notice.checkout;
    let (title, body) = wording(notice);
    let checkout_id = event.checkout_id.to_string();
    let mut message = json!({
        "token": token,
        "notification": { "title": title, "body": body },
        "data": {
            "checkout_id": checkout_id,
            "status": event.status.as_str(),
            "source_url": event.source_url,
            "type": notice.kind,
            "sequence": notice.sequence.to_string(),
        },
    });
    if let Some(order) = &notice.order {
        message["data"]["retailer_id"] = order.retailer_id.as_str().into();
        message["data"]["order_status"] = order.status.as_str().into();
    }
    match platform {
        Platform::Android => {
            message["android"] = json!({ "priority": "high", "collapse_key": checkout_id });
        }
        Platform::Ios => {
            // 10: deliver now (a user-visible alert); the collapse id replaces an older
            // notification of the same checkout still on the lock screen.
            message["apns"] = json!({
                "headers": { "apns-priority": "10", "apns-collapse-id": checkout_id },
            });
        }
        Platform::Web => {
            message["webpush"] = json!({ "headers": { "Urgency": "high" } });
        }
    }
    json!({ "message": message })
}

/// Title and body in plain words: what happened to the order, or how the checkout ended.
pub fn wording(notice: &Notice) -> (String, String) {
    match &notice.order {
        Some(order) if notice.is_order_event() => order_wording(&notice.kind, order),
        _ => end_wording(&notice.checkout),
    }
}

/// What the event `kind` (`order.shipped`, ...) says happened to `o`. By the event, not the
/// order's state: a refund leaves a delivered order delivered.
fn order_wording(kind: &str, o: &icon_contracts::OrderOutcome) -> (String, String) {
    let from = o.retailer_id.as_str();
    let happened = icon_contracts::retailer::RetailerEventType::parse(kind)
        .map(|t| t.status())
        .unwrap_or(o.status);
    match happened {
        OrderStatus::Shipped => (
            "Your order is on its way".into(),
            match &o.tracking {
                Some(t) => format!("{from} shipped your order ({} {}).", t.carrier, t.number),
                None => format!("{from} shipped your order."),
            },
        ),
        OrderStatus::Delivered => (
            "Your order was delivered".into(),
            format!("{from} delivered your order."),
        ),
        OrderStatus::Cancelled => (
            "Your order was cancelled".into(),
            format!("{from} cancelled your order. Open the app for details."),
        ),
        OrderStatus::Refunded => (
            "Your order was refunded".into(),
            format!("{from} refunded your order. Open the app for details."),
        ),
        OrderStatus::Rejected => (
            "Your order was not placed".into(),
            format!("{from} could not place your order. Open the app for details."),
        ),
        OrderStatus::CancelRefused => (
            "Your order could not be cancelled".into(),
            format!("{from} could not cancel your order: it remains placed."),
        ),
        _ => (
            "Your order is placed".into(),
            format!("{from} confirmed your order."),
        ),
    }
}

fn end_wording(event: &CheckoutFinished) -> (String, String) {
    let total = event.orders.len();
    let confirmed = event.orders.iter().filter(|o| o.status.is_placed()).count();
    let unknown = event
        .orders
        .iter()
        .filter(|o| o.status == OrderStatus::Unknown)
        .count();
    match event.status {
        CheckoutStatus::Completed if total == 1 => (
            "Your order is placed".into(),
            "The retailer confirmed your order.".into(),
        ),
        CheckoutStatus::Completed => (
            "Your order is placed".into(),
            format!("All {total} retailers confirmed your order."),
        ),
        CheckoutStatus::PartiallyCompleted => (
            "Part of your order is placed".into(),
            format!(
                "{confirmed} of {total} retailers confirmed your order. Open the app to see \
                 the rest."
            ),
        ),
        CheckoutStatus::Cancelled => (
            "Your order is cancelled".into(),
            "Nothing of this checkout remains ordered.".into(),
        ),
        CheckoutStatus::PartiallyCancelled | CheckoutStatus::Cancelling => {
            let remaining = event
                .orders
                .iter()
                .filter(|o| o.status.may_remain_placed())
                .count();
            (
                "Part of your order could not be cancelled".into(),
                format!("{remaining} of {total} orders remain placed. Open the app to see which."),
            )
        }
        _ if unknown > 0 => (
            "We could not confirm your order".into(),
            "A retailer did not tell us whether your order was placed. Open the app for \
             details before trying again."
                .into(),
        ),
        _ => (
            "Your order was not placed".into(),
            "No retailer could place your order. Open the app to try again.".into(),
        ),
    }
}

/// What an FCM error answer says about the device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FcmError {
    /// The token is dead or was never valid: forget the device.
    DeadToken(String),
    /// Anything else, with FCM's own words.
    Other(String),
}

/// Reads FCM's error body (`{"error": {"status", "message", "details": [...]}}`).
pub fn classify_error(status: u16, body: &[u8]) -> FcmError {
    let v: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    let err = &v["error"];
    let message = err["message"].as_str().unwrap_or("").to_owned();
    let grpc = err["status"].as_str().unwrap_or("");
    let details = err["details"].as_array().cloned().unwrap_or_default();
    let code = details
        .iter()
        .find_map(|d| d["errorCode"].as_str())
        .unwrap_or("");
    let about_token = details.iter().any(|d| {
        d["fieldViolations"]
            .as_array()
            .is_some_and(|f| f.iter().any(|f| f["field"] == "message.token"))
    }) || message.to_ascii_lowercase().contains("registration token");
    let words = match (code, grpc, message.as_str()) {
        ("", "", "") => format!("FCM answered {status}"),
        (code, grpc, m) => format!(
            "FCM answered {status} {}: {m}",
            if code.is_empty() { grpc } else { code }
        ),
    };
    let unregistered = code == "UNREGISTERED" || (status == 404 && grpc == "NOT_FOUND");
    let bad_token =
        status == 400 && (grpc == "INVALID_ARGUMENT" || code == "INVALID_ARGUMENT") && about_token;
    if unregistered || bad_token {
        FcmError::DeadToken(words)
    } else {
        FcmError::Other(words)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use icon_contracts::OrderOutcome;
    use icon_domain::{CartId, CheckoutId, RetailerId};

    fn event(status: CheckoutStatus, orders: &[OrderStatus]) -> CheckoutFinished {
        CheckoutFinished {
            checkout_id: CheckoutId::new(),
            cart_id: CartId::new(1),
            status,
            source_url: "http://icon/cart/checkout/x".into(),
            orders: orders
                .iter()
                .enumerate()
                .map(|(i, s)| OrderOutcome {
                    retailer_id: RetailerId::parse(format!("r{i}")).unwrap(),
                    status: *s,
                    retailer_order_id: None,
                    reason: None,
                    tracking: None,
                    refunds: vec![],
                })
                .collect(),
            reason: None,
        }
    }

    fn notice(status: CheckoutStatus, orders: &[OrderStatus]) -> Notice {
        Notice::end(event(status, orders), status, chrono::Utc::now())
    }

    #[test]
    fn android_and_ios_and_web() {
        let e = notice(CheckoutStatus::Completed, &[OrderStatus::Confirmed]);
        let id = e.checkout.checkout_id.to_string();
        let a = build("tok", Platform::Android, &e);
        assert_eq!(a["message"]["android"]["priority"], "high");
        assert_eq!(a["message"]["android"]["collapse_key"], id.as_str());
        assert_eq!(a["message"]["data"]["checkout_id"], id.as_str());
        assert_eq!(a["message"]["data"]["status"], "completed");
        assert!(a["message"].get("apns").is_none());
        let i = build("tok", Platform::Ios, &e);
        assert_eq!(i["message"]["apns"]["headers"]["apns-priority"], "10");
        assert_eq!(
            i["message"]["apns"]["headers"]["apns-collapse-id"],
            id.as_str()
        );
        let w = build("tok", Platform::Web, &e);
        assert_eq!(w["message"]["webpush"]["headers"]["Urgency"], "high");
        assert_eq!(w["message"]["token"], "tok");
    }

    #[test]
    fn plain_words() {
        let (t, b) = wording(&notice(
            CheckoutStatus::PartiallyCompleted,
            &[
                OrderStatus::Confirmed,
                OrderStatus::Rejected,
                OrderStatus::Confirmed,
            ],
        ));
        assert_eq!(t, "Part of your order is placed");
        assert!(b.starts_with("2 of 3 retailers"), "{b}");
        let (t, _) = wording(&notice(CheckoutStatus::Failed, &[OrderStatus::Unknown]));
        assert_eq!(t, "We could not confirm your order");
        let (t, _) = wording(&notice(CheckoutStatus::Failed, &[OrderStatus::Rejected]));
        assert_eq!(t, "Your order was not placed");
        // A later event says what happened to the order.
        let mut shipped = notice(CheckoutStatus::Completed, &[OrderStatus::Shipped]);
        shipped.sequence = 2;
        shipped.kind = "order.shipped".into();
        shipped.order = Some(shipped.checkout.orders[0].clone());
        assert_eq!(wording(&shipped).0, "Your order is on its way");
        let m = build("tok", Platform::Android, &shipped);
        assert_eq!(m["message"]["data"]["type"], "order.shipped");
        assert_eq!(m["message"]["data"]["sequence"], "2");
    }

    #[test]
    fn dead_tokens() {
        let unregistered = br#"{"error":{"code":404,"message":"Requested entity was not found.","status":"NOT_FOUND","details":[{"@type":"type.googleapis.com/google.firebase.fcm.v1.FcmError","errorCode":"UNREGISTERED"}]}}"#;
        assert!(matches!(
            classify_error(404, unregistered),
            FcmError::DeadToken(_)
        ));
        let invalid = br#"{"error":{"code":400,"message":"The registration token is not a valid FCM registration token","status":"INVALID_ARGUMENT","details":[{"@type":"type.googleapis.com/google.rpc.BadRequest","fieldViolations":[{"field":"message.token"}]}]}}"#;
        assert!(matches!(
            classify_error(400, invalid),
            FcmError::DeadToken(_)
        ));
        let other = br#"{"error":{"code":400,"message":"Invalid value at 'message.data'","status":"INVALID_ARGUMENT"}}"#;
        assert_eq!(
            classify_error(400, other),
            FcmError::Other(
                "FCM answered 400 INVALID_ARGUMENT: Invalid value at 'message.data'".into()
            )
        );
        assert_eq!(
            classify_error(403, b"not json"),
            FcmError::Other("FCM answered 403".into())
        );
    }
}
