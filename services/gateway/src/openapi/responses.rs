//! The answers every operation can give for reasons of its own kind rather than its own logic:
//! oversized headers, a refused body, a missing token, too many requests, a database outage. Added to each
//! operation here, from what the operation has (a body, a bearer requirement, path parameters),
//! so that no operation forgets one and the fuzz run can hold the server to every status.

use crate::problem::CODES;
use serde_json::{json, Map, Value};

/// One problem answer: its meaning (naming the codes it carries), the problem `code` of its
/// example, and whether it carries `Retry-After`.
struct Standard {
    status: &'static str,
    code: &'static str,
    description: &'static str,
    retry_after: bool,
}

const BODY: &[Standard] = &[
    Standard {
        status: "400",
        code: "malformed_json",
        description: "The body cannot be read as this operation's request. `malformed_json`: \
            not JSON, a field of the wrong type, or a required field missing; `unknown_field`: a \
            field the operation does not have (named in `field`), usually a typo; \
            `json_too_deep`: arrays and objects nested more than 32 levels.",
        retry_after: false,
    },
    Standard {
        status: "413",
        code: "payload_too_large",
        description: "`payload_too_large`: the body is over 64 KiB (65,536 bytes).",
        retry_after: false,
    },
    Standard {
        status: "415",
        code: "unsupported_media_type",
        description: "`unsupported_media_type`: the body is not sent as \
            `Content-Type: application/json`.",
        retry_after: false,
    },
];

/// Every operation: the limit on header fields (`headers::MAX_HEADER_BYTES`).
const ANY: Standard = Standard {
    status: "431",
    code: "headers_too_large",
    description: "`headers_too_large`: the request's header fields total more than 16 KiB.",
    retry_after: false,
};

const PATH: Standard = Standard {
    status: "404",
    code: "not_found",
    description: "`not_found`: a path parameter is not of the documented form, so nothing \
        can match it.",
    retry_after: false,
};

const AUTHENTICATED: &[Standard] = &[
    Standard {
        status: "401",
        code: "unauthorized",
        description: "`unauthorized`: no bearer token, or it is malformed, forged or expired. \
            `WWW-Authenticate: Bearer` says which; get a new token.",
        retry_after: false,
    },
    Standard {
        status: "429",
        code: "rate_limited",
        description: "`rate_limited`: too many requests for this token's subject or from this \
            address (`ICON_RATE_LIMIT`). Nothing was done; retry after `Retry-After` seconds.",
        retry_after: true,
    },
    Standard {
        status: "500",
        code: "internal",
        description: "`internal`: an unexpected error. It was logged; the body says nothing \
            more. Retrying is safe.",
        retry_after: false,
    },
    Standard {
        status: "503",
        code: "unavailable",
        description: "`unavailable`: the database is unreachable. Retry after `Retry-After` \
            seconds; `detail` says whether the request may have taken effect.",
        retry_after: true,
    },
];

/// Adds the standard answers each operation lacks; an answer an operation documents itself
/// (with codes of its own) is kept as it is.
pub(super) fn add(doc: &mut Value) {
    let Some(paths) = doc["paths"].as_object_mut() else {
        return;
    };
    for item in paths.values_mut() {
        let Some(item) = item.as_object_mut() else {
            continue;
        };
        for op in item.values_mut() {
            let has_body = op.get("requestBody").is_some();
            let has_path_params = op["parameters"]
                .as_array()
                .is_some_and(|ps| ps.iter().any(|p| p["in"] == "path"));
            let authenticated = op["security"].as_array().is_some_and(|s| !s.is_empty());
            let responses = op["responses"].as_object_mut();
            let Some(responses) = responses else { continue };
            let mut wanted: Vec<&Standard> = vec![&ANY];
            if has_body {
                wanted.extend(BODY);
            }
            if has_path_params {
                wanted.push(&PATH);
            }
            if authenticated {
                wanted.extend(AUTHENTICATED);
            }
            for s in wanted {
                if !responses.contains_key(s.status) {
                    responses.insert(s.status.to_owned(), problem(s));
                }
            }
            for (status, response) in responses.iter_mut() {
                add_problem_example(status, response);
            }
        }
    }
}

/// Gives a problem answer an operation documents itself, without an example, one for the
/// first code its description names (descriptions start with "`code`: ..."), or else for the
/// code its status usually carries.
fn add_problem_example(status: &str, response: &mut Value) {
    // `get`, not indexing: indexing a `Value` mutably inserts what it does not find.
    let Some(media) = response
        .get("content")
        .and_then(|c| c.get("application/problem+json"))
    else {
        return;
    };
    if media.get("example").is_some() {
        return;
    }
    let description = response["description"].as_str().unwrap_or("");
    let status: u16 = status.parse().unwrap_or(500);
    let usual = usual_code(status);
    let Some((code, what)) = description
        .split('`')
        .skip(1)
        .step_by(2)
        .chain(usual)
        .find_map(|word| CODES.iter().find(|(c, _, _)| *c == word))
        .map(|(c, _, what)| (*c, *what))
    else {
        return;
    };
    response["content"]["application/problem+json"]["example"] = json!({
        "type": format!("/docs#problem-{code}"),
        "title": title(status),
        "status": status,
        "detail": what,
        "code": code,
    });
}

/// A problem answer with an example body.
fn problem(s: &Standard) -> Value {
    let status: u16 = s.status.parse().unwrap_or(500);
    let mut response = json!({
        "description": s.description,
        "content": {"application/problem+json": {
            "schema": {"$ref": "#/components/schemas/Problem"},
            "example": {
                "type": format!("/docs#problem-{}", s.code),
                "title": title(status),
                "status": status,
                "detail": detail(s.code),
                "code": s.code,
            },
        }},
    });
    let mut headers = Map::new();
    if s.retry_after {
        headers.insert(
            "Retry-After".into(),
            json!({
                "description": "Seconds to wait before retrying",
                "required": true,
                "schema": {"type": "integer", "minimum": 0},
            }),
        );
    }
    if status == 401 {
        headers.insert(
            "WWW-Authenticate".into(),
            json!({
                "description": "`Bearer realm=\"icon\", error=\"invalid_token\"`",
                "required": true,
                "schema": {"type": "string"},
            }),
        );
    }
    if !headers.is_empty() {
        response["headers"] = Value::Object(headers);
    }
    response
}

/// The code an answer with this status carries unless it says otherwise.
fn usual_code(status: u16) -> Option<&'static str> {
    Some(match status {
        400 => "malformed_json",
        401 => "unauthorized",
        403 => "forbidden",
        404 => "not_found",
        413 => "payload_too_large",
        415 => "unsupported_media_type",
        422 => "validation_failed",
        429 => "rate_limited",
        431 => "headers_too_large",
        500 => "internal",
        503 => "unavailable",
        _ => return None,
    })
}

fn title(status: u16) -> &'static str {
    match status {
        400 => "The request is malformed",
        401 => "A valid bearer token is required",
        403 => "The token lacks the required scope",
        404 => "Not found",
        409 => "Conflict with the current state",
        422 => "The request cannot be processed",
        413 => "Payload too large",
        415 => "Unsupported media type",
        431 => "Request header fields too large",
        429 => "Too many requests",
        503 => "Temporarily unavailable",
        _ => "Internal error",
    }
}

fn detail(code: &str) -> &'static str {
    match code {
        "malformed_json" => "missing field `cart_id` at line 1 column 2",
        "payload_too_large" => "the body must be at most 65536 bytes",
        "unsupported_media_type" => "send the body as JSON with `Content-Type: application/json`",
        "not_found" => "no such resource",
        "headers_too_large" => "the header fields must total at most 16384 bytes",
        "unauthorized" => "the token has expired; get a new one",
        "rate_limited" => "too many requests; retry after 2 seconds",
        "unavailable" => {
            "ICON cannot reach its database right now. Nothing was changed; retry \
            after the number of seconds in Retry-After."
        }
        _ => {
            "Something went wrong on our side. Nothing is guaranteed to have changed; retrying \
            is safe."
        }
    }
}
