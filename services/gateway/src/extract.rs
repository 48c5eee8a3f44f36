//! The JSON body extractor every handler uses instead of `actix_web::web::Json`, so that hostile
//! bodies are refused with a problem document that says what to fix, before any handler runs:
//!
//! - not `application/json` (or `…+json`): 415 `unsupported_media_type`;
//! - over [`MAX_BODY`] bytes: 413 `payload_too_large`, judged on `Content-Length` before a byte
//!   is read, and on the bytes read otherwise (chunked bodies);
//! - nested deeper than [`MAX_DEPTH`]: 400 `json_too_deep`, found by a scan of the bytes before
//!   the parser recurses, so depth costs a linear scan and never the stack;
//! - a field the DTO does not have (DTOs are `#[serde(deny_unknown_fields)]`): 400
//!   `unknown_field`, naming it in `field`, so a typo such as `callbak_url` is not silently
//!   ignored;
//! - anything else serde refuses: 400 `malformed_json`.

use crate::problem::ApiError;
use actix_web::http::{header, StatusCode};
use actix_web::{dev::Payload, mime, web, FromRequest, HttpRequest};
use serde::de::DeserializeOwned;
use std::future::Future;
use std::pin::Pin;

/// Largest request body accepted. Every request DTO fits in a few KiB; the margin is for long
/// URLs.
pub const MAX_BODY: usize = 64 * 1024;

/// Deepest nesting of arrays and objects accepted. The deepest DTO is 2 levels
/// (`unit_price.currency`); 32 leaves room for clients that wrap, and refuses the thousands of
/// levels that attack recursive parsers.
pub const MAX_DEPTH: usize = 32;

/// A JSON request body, checked as described in the module docs.
#[derive(Debug)]
pub struct Json<T>(pub T);

impl<T> std::ops::Deref for Json<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.0
    }
}

impl<T: DeserializeOwned + 'static> FromRequest for Json<T> {
    type Error = ApiError;
    type Future = Pin<Box<dyn Future<Output = Result<Self, ApiError>>>>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let checked = check_headers(req);
        let bytes = web::Bytes::from_request(req, payload);
        Box::pin(async move {
            checked?;
            let bytes = bytes.await.map_err(|e| {
                if e.as_response_error().status_code() == StatusCode::PAYLOAD_TOO_LARGE {
                    too_large()
                } else {
                    ApiError::bad_request("malformed_json", "the body could not be read")
                }
            })?;
            parse(&bytes).map(Json)
        })
    }
}

/// `PayloadConfig` for the app: the limit [`Json`] reads bodies with.
pub fn payload_config() -> web::PayloadConfig {
    web::PayloadConfig::new(MAX_BODY)
}

fn check_headers(req: &HttpRequest) -> Result<(), ApiError> {
    let is_json = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<mime::Mime>().ok())
        .is_some_and(|m| {
            m.type_() == mime::APPLICATION
                && (m.subtype() == mime::JSON || m.suffix() == Some(mime::JSON))
        });
    if !is_json {
        return Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            "Unsupported media type",
            "send the body as JSON with `Content-Type: application/json`",
        ));
    }
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > MAX_BODY as u64) {
        return Err(too_large());
    }
    Ok(())
}

fn too_large() -> ApiError {
    ApiError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        "payload_too_large",
        "Payload too large",
        format!("the body must be at most {MAX_BODY} bytes"),
    )
}

/// Parses a body already known to be within [`MAX_BODY`].
pub(crate) fn parse<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    if nesting_depth(bytes) > MAX_DEPTH {
        return Err(ApiError::bad_request(
            "json_too_deep",
            format!("arrays and objects may nest at most {MAX_DEPTH} levels deep"),
        ));
    }
    serde_json::from_slice(bytes).map_err(|e| match unknown_field(&e.to_string()) {
        Some(field) => ApiError::bad_request(
            "unknown_field",
            format!("unknown field `{field}`; see the request schema on /docs for the fields"),
        )
        .with("field", field),
        None => ApiError::bad_request("malformed_json", e.to_string()),
    })
}

/// The field serde's `deny_unknown_fields` named, from its message ("unknown field `x`,
/// expected …"): serde_json keeps no structured form of it.
fn unknown_field(message: &str) -> Option<String> {
    let rest = message.strip_prefix("unknown field `")?;
    let end = rest.find('`')?;
    Some(rest[..end].to_owned())
}

/// The deepest nesting of `[` and `{` outside strings. Linear, no allocation, and correct for
/// any bytes (malformed JSON is left for the parser to name).
fn nesting_depth(bytes: &[u8]) -> usize {
    let (mut depth, mut deepest) = (0usize, 0usize);
    let (mut in_string, mut escaped) = (false, false);
    for &b in bytes {
        if in_string {
            match b {
                _ if escaped => escaped = false,
                b'\\' => escaped = true,
                b'"' => in_string = false,
                _ => {}
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'[' | b'{' => {
                depth += 1;
                deepest = deepest.max(depth);
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    deepest
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn depth_ignores_brackets_in_strings() {
        assert_eq!(
            nesting_depth(br#"{"a": "[[[{{{\"[[", "b": [1, {"c": 2}]}"#),
            3
        );
        assert_eq!(nesting_depth(b"42"), 0);
        assert_eq!(nesting_depth(&[b'['; 10_000]), 10_000);
    }

    #[test]
    fn deep_bodies_are_refused_before_parsing() {
        let deep = format!("{}{}", "[".repeat(MAX_DEPTH + 1), "]".repeat(MAX_DEPTH + 1));
        let e = parse::<serde_json::Value>(deep.as_bytes()).unwrap_err();
        assert_eq!(e.code, "json_too_deep");
        let ok = format!("{}{}", "[".repeat(MAX_DEPTH), "]".repeat(MAX_DEPTH));
        assert!(parse::<serde_json::Value>(ok.as_bytes()).is_ok());
    }

    #[test]
    fn unknown_fields_are_named() {
        #[derive(serde::Deserialize, Debug)]
        #[serde(deny_unknown_fields)]
        #[allow(dead_code)]
        struct Dto {
            callback_url: String,
        }
        let e = parse::<Dto>(br#"{"callbak_url": "x"}"#).unwrap_err();
        assert_eq!(e.code, "unknown_field");
        assert_eq!(e.extra["field"], "callbak_url");
        assert!(e.detail.contains("callbak_url"));
    }
}
