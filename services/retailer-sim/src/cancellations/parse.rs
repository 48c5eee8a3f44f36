//! The protocol's checks on a cancellation request, made once at the edge: nothing past
//! [`parse`] sees an unchecked request.

use actix_web::http::header;
use actix_web::HttpRequest;
use icon_contracts::retailer::{cancel_key, CancellationRequest};

/// Why a request broke the protocol, with its body if that could be read, for the log.
pub(super) struct Invalid {
    pub(super) reason: String,
    pub(super) body: Option<CancellationRequest>,
}

/// Checks the protocol: a JSON [`CancellationRequest`] with an order key, and an
/// `Idempotency-Key` header (trimmed, as for orders) that is that key's [`cancel_key`].
pub(super) fn parse(
    req: &HttpRequest,
    header_key: Option<&str>,
    body: &[u8],
) -> Result<CancellationRequest, Invalid> {
    let is_json = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|mime| mime.trim().eq_ignore_ascii_case("application/json"));
    let parsed = serde_json::from_slice::<CancellationRequest>(body).map(|mut b| {
        b.idempotency_key = b.idempotency_key.trim().to_owned();
        b
    });
    let header_key = header_key.map(str::trim).filter(|k| !k.is_empty());
    let problem = match (&parsed, header_key) {
        (_, None) => Some(
            "an Idempotency-Key header (<the order's Idempotency-Key>:cancel) is required".into(),
        ),
        _ if !is_json => Some("Content-Type must be application/json".to_owned()),
        (Err(e), _) => Some(format!("the body is not a valid cancellation: {e}")),
        (Ok(b), _) if b.idempotency_key.is_empty() => Some("idempotency_key is empty".into()),
        (Ok(b), Some(header)) if header != cancel_key(&b.idempotency_key) => Some(format!(
            "the Idempotency-Key header must be {}, not {header}",
            cancel_key(&b.idempotency_key)
        )),
        (Ok(_), Some(_)) => None,
    };
    match (problem, parsed) {
        (None, Ok(body)) => Ok(body),
        (problem, parsed) => Err(Invalid {
            reason: problem.unwrap_or_else(|| "invalid cancellation request".to_owned()),
            body: parsed.ok(),
        }),
    }
}
