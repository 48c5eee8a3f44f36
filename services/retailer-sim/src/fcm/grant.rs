//! Checking a JWT bearer grant (RFC 7523) the way Google does for service accounts: signed RS256
//! with the account's private key, naming the account (`iss`), the scopes wanted (`scope`), the
//! token endpoint (`aud`), and living at most an hour. A refusal says precisely what was wrong,
//! so a broken client is quick to fix.

use crate::base64::{self, Alphabet};
use jsonwebtoken::{errors::ErrorKind, Algorithm, DecodingKey, Validation};
use serde::Deserialize;
use serde_json::Value;

/// The scope a grant must ask for to be allowed to send.
pub const MESSAGING_SCOPE: &str = "https://www.googleapis.com/auth/firebase.messaging";
/// How far in the future `iat` may be: clocks drift, and Google allows about a minute.
pub const MAX_CLOCK_SKEW_SECS: i64 = 60;
/// The longest lifetime (`exp - iat`) Google accepts for a grant.
pub const MAX_GRANT_LIFETIME_SECS: i64 = 3600;

/// Why a grant was refused, and who it claimed to come from (unverified, for the log only).
#[derive(Debug)]
pub(crate) struct Refused {
    pub(crate) reason: String,
    pub(crate) iss: Option<String>,
}

/// The claims this endpoint reads; optional so a missing one is named in the refusal.
#[derive(Debug, Deserialize)]
struct Claims {
    iss: Option<String>,
    scope: Option<String>,
    aud: Option<Audience>,
    iat: Option<i64>,
    exp: Option<i64>,
}

/// `aud` may be one string or several (RFC 7519 §4.1.3).
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum Audience {
    One(String),
    Many(Vec<String>),
}

/// Verifies a grant at time `now` (seconds since the epoch): RS256 only, the signature, then the
/// claims. Returns the verified `iss`.
pub(crate) fn verify(
    assertion: &str,
    key: &DecodingKey,
    audience: Option<&str>,
    now: i64,
) -> Result<String, Refused> {
    let segments: Vec<&str> = assertion.split('.').collect();
    let [header, payload, _signature] = segments[..] else {
        return Err(Refused {
            reason: "the assertion is not a signed JWT (header.payload.signature)".to_owned(),
            iss: None,
        });
    };
    // The header and claims are read before the signature is checked only to say what was
    // wrong and who claimed to ask; nothing unverified is trusted.
    let unverified_iss = segment_json(payload)
        .ok()
        .and_then(|claims| claims.get("iss")?.as_str().map(str::to_owned));
    let refuse = |reason: String| Refused {
        reason,
        iss: unverified_iss.clone(),
    };
    let header = segment_json(header).map_err(|e| refuse(format!("unreadable JWT header: {e}")))?;
    match header.get("alg").and_then(Value::as_str) {
        Some("RS256") => {}
        Some(alg) => return Err(refuse(format!("alg {alg} is not accepted: use RS256"))),
        None => return Err(refuse("the JWT header has no alg: use RS256".to_owned())),
    }

    let mut validation = Validation::new(Algorithm::RS256);
    // Only the signature is left to the library: every claim is checked below, so a refusal
    // names the claim and exactly what is wrong with it.
    validation.required_spec_claims.clear();
    validation.validate_exp = false;
    validation.validate_nbf = false;
    validation.validate_aud = false;
    let claims = jsonwebtoken::decode::<Claims>(assertion, key, &validation)
        .map_err(|e| match e.kind() {
            ErrorKind::InvalidSignature => {
                refuse("the signature does not match the service account's key".to_owned())
            }
            _ => refuse(format!("the assertion cannot be verified: {e}")),
        })?
        .claims;
    check_claims(claims, audience, now).map_err(refuse)
}

fn check_claims(claims: Claims, audience: Option<&str>, now: i64) -> Result<String, String> {
    let iss = claims
        .iss
        .filter(|iss| !iss.trim().is_empty())
        .ok_or("iss is missing or empty: it must name the service account")?;
    let scopes = claims.scope.unwrap_or_default();
    if !scopes.split_whitespace().any(|s| s == MESSAGING_SCOPE) {
        return Err(format!(
            "scope {scopes:?} does not include {MESSAGING_SCOPE}"
        ));
    }
    let audience = audience.ok_or("the request has no Host header, so aud cannot be checked")?;
    let aud_ok = match &claims.aud {
        Some(Audience::One(aud)) => aud == audience,
        Some(Audience::Many(auds)) => auds.iter().any(|aud| aud == audience),
        None => false,
    };
    if !aud_ok {
        let aud = match claims.aud {
            Some(Audience::One(aud)) => aud,
            Some(Audience::Many(auds)) => auds.join(" "),
            None => "(missing)".to_owned(),
        };
        return Err(format!("aud {aud} is not this token endpoint, {audience}"));
    }
    let iat = claims.iat.ok_or("iat is missing")?;
    if iat > now + MAX_CLOCK_SKEW_SECS {
        return Err(format!(
            "iat is {}s in the future; at most {MAX_CLOCK_SKEW_SECS}s of clock skew is allowed",
            iat - now
        ));
    }
    let exp = claims.exp.ok_or("exp is missing")?;
    if exp <= now {
        return Err(format!(
            "the assertion expired {}s ago (exp {exp})",
            now - exp
        ));
    }
    if exp <= iat {
        return Err(format!("exp {exp} is not after iat {iat}"));
    }
    if exp - iat > MAX_GRANT_LIFETIME_SECS {
        return Err(format!(
            "exp - iat is {}s; at most {MAX_GRANT_LIFETIME_SECS}s is allowed",
            exp - iat
        ));
    }
    Ok(iss)
}

/// A JWT segment: base64url-encoded JSON.
fn segment_json(segment: &str) -> Result<Value, String> {
    let bytes = base64::decode(segment, Alphabet::UrlSafe)?;
    serde_json::from_slice(&bytes).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const AUD: &str = "http://127.0.0.1:8090/oauth2/token";
    const NOW: i64 = 1_700_000_000;

    fn claims(edit: impl FnOnce(&mut Value)) -> Result<String, String> {
        let mut value = json!({
            "iss": "sa@icon-demo.iam.gserviceaccount.com",
            "scope": format!("openid {MESSAGING_SCOPE}"),
            "aud": AUD,
            "iat": NOW,
            "exp": NOW + 3600,
        });
        edit(&mut value);
        let claims: Claims = serde_json::from_value(value).expect("claims");
        check_claims(claims, Some(AUD), NOW)
    }

    #[test]
    fn valid_claims_give_the_issuer() {
        assert_eq!(
            claims(|_| {}).as_deref(),
            Ok("sa@icon-demo.iam.gserviceaccount.com")
        );
        assert!(claims(|c| c["aud"] = json!(["x", AUD])).is_ok());
        assert!(claims(|c| c["iat"] = json!(NOW + 60)).is_ok());
    }

    #[test]
    fn each_bad_claim_is_named() {
        type Edit = fn(&mut Value);
        let cases: [(&str, Edit); 9] = [
            ("iss is missing", |c| c["iss"] = json!("")),
            ("does not include", |c| {
                c["scope"] = json!("https://www.googleapis.com/auth/cloud-platform")
            }),
            ("does not include", |c| c["scope"] = Value::Null),
            ("is not this token endpoint", |c| {
                c["aud"] = json!("https://oauth2.googleapis.com/token")
            }),
            ("iat is 61s in the future", |c| c["iat"] = json!(NOW + 61)),
            ("expired 0s ago", |c| c["exp"] = json!(NOW)),
            ("exp - iat is 3601s", |c| c["iat"] = json!(NOW - 1)),
            ("is not after iat", |c| {
                c["iat"] = json!(NOW + 50);
                c["exp"] = json!(NOW + 40);
            }),
            ("exp is missing", |c| c["exp"] = Value::Null),
        ];
        for (want, edit) in cases {
            let err = claims(edit).expect_err(want);
            assert!(err.contains(want), "{err:?} should contain {want:?}");
        }
    }

    #[test]
    fn alg_other_than_rs256_is_refused_before_any_key_is_used() {
        let key = crate::fcm::FcmPublicKey::demo();
        // base64url of {"alg":"none"}, {"alg":"HS256"} and {"iss":"me"}.
        let headers = [
            ("none", "eyJhbGciOiJub25lIn0"),
            ("HS256", "eyJhbGciOiJIUzI1NiJ9"),
        ];
        for (alg, header) in headers {
            let jwt = format!("{header}.eyJpc3MiOiJtZSJ9.");
            let refusal = verify(&jwt, key.decoding_key(), Some(AUD), NOW).expect_err(alg);
            assert_eq!(
                refusal.reason,
                format!("alg {alg} is not accepted: use RS256")
            );
            assert_eq!(refusal.iss.as_deref(), Some("me"));
        }
        let refusal = verify("abc", key.decoding_key(), Some(AUD), NOW).expect_err("not a JWT");
        assert!(refusal.reason.contains("not a signed JWT"));
    }
}
