//! What a well-formed send request is: `{"message": {...}}` with a registration `token`, a
//! `notification` with a title and a body, string-valued `data` carrying what ICON's apps need
//! (`checkout_id`, `status`, `source_url`), and optional `android`, `apns` and `webpush` blocks.
//!
//! Stricter than FCM on `data` on purpose: the simulator stands in for ICON's own apps too, and a
//! push they could not route is a bug worth a 400 in a test. A refusal names the field the way
//! Google's `BadRequest` detail does (`message.data.checkout_id`). A missing or empty token names
//! `message` ("recipient not set", as FCM says), so that only the `invalid-` prefix's answer names
//! `message.token`: that one means "drop this device", a malformed message means a bug.

use serde_json::{Map, Value};

/// The keys `message` may have: the one recipient kind ICON uses and the blocks it may send.
const MESSAGE_KEYS: [&str; 6] = [
    "token",
    "notification",
    "data",
    "android",
    "apns",
    "webpush",
];
/// `data` keys every ICON push carries.
pub const REQUIRED_DATA_KEYS: [&str; 3] = ["checkout_id", "status", "source_url"];
/// `data` keys FCM reserves for itself and refuses.
const RESERVED_DATA_KEYS: [&str; 4] = ["from", "message_type", "notification", "collapse_key"];
/// APNs' limit on `apns-collapse-id`, in bytes.
pub const MAX_APNS_COLLAPSE_ID_BYTES: usize = 64;

/// What is wrong with a message, as a `BadRequest` field violation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    pub field: String,
    pub description: String,
}

fn violation(field: impl Into<String>, description: impl Into<String>) -> Violation {
    Violation {
        field: field.into(),
        description: description.into(),
    }
}

/// The registration token of a well-formed request body, or the first thing wrong with it.
pub fn validate(body: &Value) -> Result<&str, Violation> {
    let message = body
        .get("message")
        .and_then(Value::as_object)
        .ok_or_else(|| violation("message", "the body must be {\"message\": {...}}"))?;
    if let Some(other) = body
        .as_object()
        .and_then(|b| b.keys().find(|k| *k != "message"))
    {
        return Err(violation(
            other.as_str(),
            format!("Invalid JSON payload received. Unknown name {other:?}: Cannot find field."),
        ));
    }
    if let Some(unknown) = message.keys().find(|k| !MESSAGE_KEYS.contains(&k.as_str())) {
        return Err(violation(
            format!("message.{unknown}"),
            format!(
                "Invalid JSON payload received. Unknown name {unknown:?} at 'message': Cannot \
                 find field."
            ),
        ));
    }
    let token = message
        .get("token")
        .and_then(Value::as_str)
        .filter(|t| !t.is_empty())
        .ok_or_else(|| {
            violation(
                "message",
                "Recipient of the message is not set: message.token must be a non-empty string",
            )
        })?;
    notification(message.get("notification"))?;
    data(message.get("data"))?;
    if let Some(android) = message.get("android") {
        self::android(android)?;
    }
    if let Some(apns) = message.get("apns") {
        self::apns(apns)?;
    }
    if let Some(webpush) = message.get("webpush") {
        object(webpush, "message.webpush")?;
    }
    Ok(token)
}

fn notification(value: Option<&Value>) -> Result<(), Violation> {
    let value = value.ok_or_else(|| violation("message.notification", "is required"))?;
    let notification = object(value, "message.notification")?;
    for key in ["title", "body"] {
        non_empty_string(
            notification.get(key),
            &format!("message.notification.{key}"),
        )?;
    }
    Ok(())
}

fn data(value: Option<&Value>) -> Result<(), Violation> {
    let value = value.ok_or_else(|| {
        violation(
            "message.data",
            format!("is required, with {}", REQUIRED_DATA_KEYS.join(", ")),
        )
    })?;
    let data = object(value, "message.data")?;
    for (key, value) in data {
        let field = format!("message.data.{key}");
        if !value.is_string() {
            return Err(violation(
                field,
                format!("data values must be strings, not {value}"),
            ));
        }
        let lower = key.to_ascii_lowercase();
        if RESERVED_DATA_KEYS.contains(&lower.as_str())
            || lower.starts_with("google.")
            || lower.starts_with("gcm.")
        {
            return Err(violation(field, "Invalid data payload key: it is reserved"));
        }
    }
    for key in REQUIRED_DATA_KEYS {
        non_empty_string(data.get(key), &format!("message.data.{key}"))?;
    }
    Ok(())
}

fn android(value: &Value) -> Result<(), Violation> {
    let android = object(value, "message.android")?;
    if let Some(priority) = android.get("priority") {
        // FCM documents the lower-case names and also takes the enum's own upper-case ones.
        if !matches!(
            priority.as_str(),
            Some("high" | "normal" | "HIGH" | "NORMAL")
        ) {
            return Err(violation(
                "message.android.priority",
                format!("Invalid value {priority}: expected \"high\" or \"normal\""),
            ));
        }
    }
    if let Some(key) = android.get("collapse_key") {
        if !key.is_string() {
            return Err(violation(
                "message.android.collapse_key",
                "must be a string",
            ));
        }
    }
    Ok(())
}

fn apns(value: &Value) -> Result<(), Violation> {
    let apns = object(value, "message.apns")?;
    if let Some(headers) = apns.get("headers") {
        let headers = object(headers, "message.apns.headers")?;
        for (name, value) in headers {
            let field = format!("message.apns.headers.{name}");
            let value = value
                .as_str()
                .ok_or_else(|| violation(&field, "APNs header values must be strings"))?;
            match name.as_str() {
                "apns-priority" if !matches!(value, "5" | "10") => {
                    return Err(violation(field, "apns-priority must be \"5\" or \"10\""))
                }
                "apns-collapse-id" if value.len() > MAX_APNS_COLLAPSE_ID_BYTES => {
                    return Err(violation(
                        field,
                        format!(
                            "apns-collapse-id is {} bytes; APNs allows at most \
                             {MAX_APNS_COLLAPSE_ID_BYTES}",
                            value.len()
                        ),
                    ))
                }
                _ => {}
            }
        }
    }
    if let Some(payload) = apns.get("payload") {
        object(payload, "message.apns.payload")?;
    }
    Ok(())
}

fn object<'v>(value: &'v Value, field: &str) -> Result<&'v Map<String, Value>, Violation> {
    value
        .as_object()
        .ok_or_else(|| violation(field, format!("must be an object, not {value}")))
}

fn non_empty_string(value: Option<&Value>, field: &str) -> Result<(), Violation> {
    match value.and_then(Value::as_str) {
        Some(s) if !s.trim().is_empty() => Ok(()),
        _ => Err(violation(
            field,
            "is required and must be a non-empty string",
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn message(edit: impl FnOnce(&mut Value)) -> Value {
        let mut body = json!({"message": {
            "token": "device-1",
            "notification": {"title": "Order placed", "body": "Your checkout completed"},
            "data": {"checkout_id": "c1", "status": "completed", "source_url": "https://shop/c1"},
            "android": {"priority": "high", "collapse_key": "c1"},
            "apns": {"headers": {"apns-priority": "10", "apns-collapse-id": "c1"}, "payload": {"aps": {}}},
            "webpush": {"headers": {"Urgency": "high"}},
        }});
        edit(&mut body["message"]);
        body
    }

    fn field_of(body: &Value) -> String {
        validate(body).expect_err("malformed").field
    }

    #[test]
    fn a_full_message_and_a_minimal_one_pass() {
        assert_eq!(validate(&message(|_| {})), Ok("device-1"));
        let minimal = message(|m| {
            for key in ["android", "apns", "webpush"] {
                m.as_object_mut().expect("object").remove(key);
            }
        });
        assert_eq!(validate(&minimal), Ok("device-1"));
    }

    #[test]
    fn each_malformed_part_is_named() {
        let long_id = "x".repeat(65);
        type Edit = Box<dyn FnOnce(&mut Value)>;
        let cases: Vec<(&str, Edit)> = vec![
            ("message", Box::new(|m| m["token"] = json!(""))),
            ("message", Box::new(|m| m["token"] = json!(7))),
            ("message.topic", Box::new(|m| m["topic"] = json!("news"))),
            (
                "message.notification",
                Box::new(|m| m["notification"] = json!("hi")),
            ),
            (
                "message.notification.title",
                Box::new(|m| m["notification"]["title"] = json!("")),
            ),
            (
                "message.notification.body",
                Box::new(|m| m["notification"]["body"] = Value::Null),
            ),
            (
                "message.data.status",
                Box::new(|m| m["data"]["status"] = json!(3)),
            ),
            (
                "message.data.source_url",
                Box::new(|m| {
                    m["data"]
                        .as_object_mut()
                        .expect("data")
                        .remove("source_url");
                }),
            ),
            (
                "message.data.google.x",
                Box::new(|m| m["data"]["google.x"] = json!("y")),
            ),
            (
                "message.android.priority",
                Box::new(|m| m["android"]["priority"] = json!("urgent")),
            ),
            (
                "message.apns.headers.apns-priority",
                Box::new(|m| m["apns"]["headers"]["apns-priority"] = json!("7")),
            ),
            (
                "message.apns.headers.apns-collapse-id",
                Box::new(move |m| m["apns"]["headers"]["apns-collapse-id"] = json!(long_id)),
            ),
            (
                "message.apns.payload",
                Box::new(|m| m["apns"]["payload"] = json!([])),
            ),
            ("message.webpush", Box::new(|m| m["webpush"] = json!(1))),
        ];
        for (field, edit) in cases {
            assert_eq!(field_of(&message(edit)), field);
        }
        assert_eq!(field_of(&json!({"msg": {}})), "message");
        assert_eq!(
            field_of(&json!({"message": {}, "validate_only": true})),
            "validate_only"
        );
    }
}
