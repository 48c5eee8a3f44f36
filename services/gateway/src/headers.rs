//! The request-head limit. actix-http refuses, with a bare 431, heads over 128 KiB or with more
//! than 96 fields; no ICON client sends more than a few hundred bytes besides its token, so
//! heads over [`MAX_HEADER_BYTES`] are refused here too, as a 431 problem document, before
//! any handler or extractor (a token parser, say) looks at them.

use crate::problem::ApiError;
use actix_web::http::{header::HeaderMap, StatusCode};

/// Most bytes of header fields (names, values and separators) one request may carry: room for
/// a large bearer token several times over.
pub const MAX_HEADER_BYTES: usize = 16 * 1024;

/// `Err` with the 431 if the header fields of a request exceed [`MAX_HEADER_BYTES`].
pub fn check(headers: &HeaderMap) -> Result<(), ApiError> {
    let size: usize = headers
        .iter()
        .map(|(name, value)| name.as_str().len() + value.len() + 4)
        .sum();
    if size > MAX_HEADER_BYTES {
        return Err(ApiError::new(
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            "headers_too_large",
            "Request header fields too large",
            format!("the header fields must total at most {MAX_HEADER_BYTES} bytes"),
        ));
    }
    Ok(())
}
