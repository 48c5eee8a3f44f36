//! What a verified token says, and who it makes the caller: a shopper, a partner, an admin.

use super::User;
use crate::problem::ApiError;
use icon_domain::{EmailAddress, UserId};
use serde::{Deserialize, Serialize};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The scope that marks a partner's client-credentials token.
pub const PARTNER_SCOPE: &str = "partner";
/// The scope that unlocks retailer management.
pub const ADMIN_SCOPE: &str = "admin";
/// Partners' owner keys start with this, and shoppers' `sub`s may not, so a shopper whose `sub`
/// equals a partner's client id still owns nothing of the partner's.
pub const PARTNER_PREFIX: &str = "partner:";

/// The claims ICON reads. `iss`, `aud` and the signature are checked by the verifier before
/// these are looked at.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Claims {
    pub sub: String,
    pub exp: u64,
    /// Not before: refused until then (less the leeway).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nbf: Option<u64>,
    /// The granted scopes (`admin`, `partner`): RFC 8693/9068 say a space-separated string,
    /// but some providers send a JSON array, so both are read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<Scopes>,
    /// Scopes under the name Microsoft Entra ID and Okta use, string or array like `scope`. A
    /// scope in either claim counts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scp: Option<Scopes>,
    /// The shopper's e-mail address: a checkout's outcome is e-mailed there as well.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    /// RFC 9068: the OAuth client a client-credentials token was issued to; a partner is known
    /// by it (or by `sub` when absent, as providers that set `sub` to the client id do).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_id: Option<String>,
}

/// A scope claim as providers send it: `"partner admin"` or `["partner", "admin"]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Scopes {
    Spaced(String),
    List(Vec<String>),
}

impl Scopes {
    /// Whether `wanted` is one of the scopes, as a whole word (`administrator` is not `admin`).
    pub fn contains(&self, wanted: &str) -> bool {
        match self {
            Self::Spaced(s) => s.split_whitespace().any(|s| s == wanted),
            Self::List(l) => l.iter().any(|s| s == wanted),
        }
    }
}

impl Claims {
    /// A token for `sub` that expires in `ttl`, with no scope.
    pub fn new(sub: impl Into<String>, ttl: Duration) -> Self {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        Self {
            sub: sub.into(),
            exp: now + ttl.as_secs(),
            nbf: None,
            scope: None,
            scp: None,
            email: None,
            client_id: None,
        }
    }

    /// Adds `scope` to the `scope` claim (space-separated, unless it already is a list).
    pub fn with_scope(mut self, scope: &str) -> Self {
        self.scope = Some(match self.scope.take() {
            Some(Scopes::Spaced(s)) => Scopes::Spaced(format!("{s} {scope}")),
            Some(Scopes::List(mut l)) => {
                l.push(scope.to_owned());
                Scopes::List(l)
            }
            None => Scopes::Spaced(scope.to_owned()),
        });
        self
    }

    pub fn with_email(mut self, email: impl Into<String>) -> Self {
        self.email = Some(email.into());
        self
    }

    fn has_scope(&self, wanted: &str) -> bool {
        [&self.scope, &self.scp]
            .into_iter()
            .flatten()
            .any(|s| s.contains(wanted))
    }

    /// Who the caller is. A partner owns what it creates under `partner:<client id>`; a
    /// shopper under its `sub`.
    pub fn into_user(self) -> Result<User, ApiError> {
        let admin = self.has_scope(ADMIN_SCOPE);
        if self.has_scope(PARTNER_SCOPE) {
            let client = self.client_id.unwrap_or(self.sub);
            let id = UserId::parse(format!("{PARTNER_PREFIX}{client}")).map_err(|_| {
                ApiError::unauthorized("the partner's client id must be 1 to 247 characters")
            })?;
            return Ok(User {
                id,
                admin,
                partner: true,
                email: None,
            });
        }
        if self.sub.starts_with(PARTNER_PREFIX) {
            return Err(ApiError::unauthorized(
                "a shopper's `sub` cannot start with `partner:`, which names partners",
            ));
        }
        let id = UserId::parse(self.sub)
            .map_err(|_| ApiError::unauthorized("the token's `sub` must be 1 to 255 characters"))?;
        let email = self.email.and_then(|e| match EmailAddress::parse(e) {
            Ok(e) => Some(e),
            Err(why) => {
                tracing::warn!(user = %id, "ignoring the token's `email` claim: it {why}");
                None
            }
        });
        Ok(User {
            id,
            admin,
            partner: false,
            email,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claims(sub: &str) -> Claims {
        Claims::new(sub, Duration::from_secs(60))
    }

    #[test]
    fn partners_and_shoppers_never_share_an_owner_key() {
        let partner = claims("acme")
            .with_scope(PARTNER_SCOPE)
            .into_user()
            .unwrap();
        let shopper = claims("acme").into_user().unwrap();
        assert!(partner.partner && !shopper.partner);
        assert_eq!(partner.id.as_str(), "partner:acme");
        assert_eq!(shopper.id.as_str(), "acme");
        let impostor = claims("partner:acme").into_user();
        assert_eq!(impostor.unwrap_err().status.as_u16(), 401);
    }

    #[test]
    fn a_partner_is_known_by_its_client_id() {
        let mut c = claims("service-account-7f3a").with_scope(PARTNER_SCOPE);
        c.client_id = Some("globex".into());
        assert_eq!(c.into_user().unwrap().id.as_str(), "partner:globex");
    }

    #[test]
    fn scopes_are_whole_words() {
        assert!(claims("ops").with_scope("admin").into_user().unwrap().admin);
        assert!(
            !claims("ops")
                .with_scope("administrator")
                .into_user()
                .unwrap()
                .admin
        );
        let both = claims("ops").with_scope("partner").with_scope("admin");
        assert_eq!(both.scope, Some(Scopes::Spaced("partner admin".into())));
    }

    fn from_json(extra: serde_json::Value) -> Claims {
        let mut v = serde_json::json!({"sub": "ops", "exp": 4_000_000_000u64});
        v.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn scope_and_scp_are_read_as_a_string_or_a_list() {
        use serde_json::json;
        for extra in [
            json!({"scope": "openid admin"}),
            json!({"scope": ["openid", "admin"]}),
            json!({"scp": "admin"}),
            json!({"scp": ["openid", "admin"]}),
            json!({"scope": "openid", "scp": ["admin"]}),
        ] {
            assert!(
                from_json(extra.clone()).into_user().unwrap().admin,
                "{extra}"
            );
        }
        for extra in [
            json!({"scope": ["administrator"]}),
            json!({"scope": ["openid admin"]}),
            json!({"scp": "read:admin"}),
            json!({}),
        ] {
            assert!(
                !from_json(extra.clone()).into_user().unwrap().admin,
                "{extra}"
            );
        }
        let partner = from_json(json!({"scp": ["partner"]})).into_user().unwrap();
        assert!(partner.partner);
        assert!(
            serde_json::from_value::<Claims>(json!({"sub": "a", "exp": 1, "scope": 7})).is_err(),
            "a scope that is neither a string nor a list of strings is not a valid token"
        );
    }
}
