//! Which bearer tokens the gateway accepts, read from the environment by
//! [`crate::settings::GatewaySettings`].

use crate::settings::{Secret, SettingsProblem};
use icon_runtime::settings::MissingSetting;
use icon_runtime::{Env, SettingsError};

/// HS256 secrets shorter than this are refused at start (RFC 7518 §3.2: at least the hash size).
pub const MIN_SECRET_BYTES: usize = 32;

/// The token sources; see [`crate::auth`]. Either or both.
#[derive(Debug, Clone)]
pub struct JwtSettings {
    /// `ICON_JWT_SECRET`: HS256 key, for development and tokens minted by `icon-gateway token`.
    pub secret: Option<Secret>,
    /// `ICON_JWT_JWKS_URL` and its companions: RS256/ES256 tokens from an identity provider.
    pub jwks: Option<JwksSettings>,
}

#[derive(Debug, Clone)]
pub struct JwksSettings {
    /// `ICON_JWT_JWKS_URL`: the provider's JWK set (https, or http to a loopback host).
    pub url: url::Url,
    /// `ICON_JWT_ISSUER`: the `iss` every provider token must carry.
    pub issuer: String,
    /// `ICON_JWT_AUDIENCE`: the `aud` every provider token must include (ICON's API identifier
    /// at the provider), so a token minted for another API of the same provider is refused.
    pub audience: String,
    /// `ICON_JWT_JWKS_MIN_REFRESH`: the least time between two fetches of the key set, so a
    /// flood of tokens with unknown `kid`s cannot make ICON hammer the provider.
    pub min_refresh: std::time::Duration,
    /// `ICON_JWT_JWKS_MAX_AGE`: how long a fetched set is trusted before the next token makes
    /// ICON fetch it again; the longest a key the provider withdrew keeps working.
    pub max_age: std::time::Duration,
}

/// `ICON_JWT_JWKS_MAX_AGE`'s default.
pub const DEFAULT_JWKS_MAX_AGE: std::time::Duration = std::time::Duration::from_secs(600);

impl JwtSettings {
    pub fn from_env(env: &Env) -> Result<Self, SettingsProblem> {
        let secret = match env.raw("ICON_JWT_SECRET") {
            None => None,
            Some(s) if s.len() < MIN_SECRET_BYTES => {
                return Err(SettingsProblem::WeakSecret(s.len()))
            }
            Some(s) => Some(Secret::new(s)),
        };
        let jwks = match env.raw("ICON_JWT_JWKS_URL") {
            None => None,
            Some(v) => Some(JwksSettings {
                url: parse_jwks_url(v).map_err(|reason| SettingsError {
                    var: "ICON_JWT_JWKS_URL",
                    value: v.to_owned(),
                    reason,
                })?,
                issuer: required(
                    env,
                    "ICON_JWT_ISSUER",
                    "ICON_JWT_JWKS_URL is set, so the issuer of provider tokens must be pinned: \
                     set it to the `iss` they carry, e.g. https://login.example.com/",
                )?,
                audience: required(
                    env,
                    "ICON_JWT_AUDIENCE",
                    "ICON_JWT_JWKS_URL is set, so the audience of provider tokens must be \
                     pinned: set it to ICON's API identifier at the provider",
                )?,
                min_refresh: env.duration(
                    "ICON_JWT_JWKS_MIN_REFRESH",
                    std::time::Duration::from_secs(30),
                )?,
                max_age: env.duration("ICON_JWT_JWKS_MAX_AGE", DEFAULT_JWKS_MAX_AGE)?,
            }),
        };
        if secret.is_none() && jwks.is_none() {
            return Err(MissingSetting {
                var: "ICON_JWT_SECRET or ICON_JWT_JWKS_URL",
                reason: "the gateway needs a way to check bearer tokens: an identity provider's \
                         JWKS (with ICON_JWT_ISSUER and ICON_JWT_AUDIENCE), or for development \
                         export ICON_JWT_SECRET=$(openssl rand -hex 32)",
            }
            .into());
        }
        Ok(Self { secret, jwks })
    }
}

/// A variable that becomes required once another is set: `reason` says why.
fn required(env: &Env, var: &'static str, reason: &'static str) -> Result<String, MissingSetting> {
    match env.raw(var).map(str::trim) {
        Some(v) if !v.is_empty() => Ok(v.to_owned()),
        _ => Err(MissingSetting { var, reason }),
    }
}

/// The key set decides whose tokens are trusted, so it must not travel in clear text, except
/// to a provider on the same machine (tests, a local development provider).
fn parse_jwks_url(v: &str) -> Result<url::Url, String> {
    let url = url::Url::parse(v.trim()).map_err(|e| format!("not an absolute URL ({e})"))?;
    let loopback = match url.host() {
        Some(url::Host::Domain(d)) => d == "localhost",
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        None => false,
    };
    match url.scheme() {
        "https" => Ok(url),
        "http" if loopback => Ok(url),
        _ => Err("must be an https:// URL (http:// only to a loopback host)".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "0123456789abcdef0123456789abcdef";

    fn parse(pairs: &[(&str, &str)]) -> Result<JwtSettings, String> {
        JwtSettings::from_env(&Env::from_pairs(pairs.iter().copied())).map_err(|e| e.to_string())
    }

    #[test]
    fn a_short_secret_is_refused_without_showing_it() {
        let err = parse(&[("ICON_JWT_SECRET", "hunter2-but-longer")]).unwrap_err();
        assert!(
            err.starts_with("ICON_JWT_SECRET is too short (18 bytes)"),
            "{err}"
        );
        assert!(err.contains("openssl rand -hex 32"), "{err}");
        assert!(!err.contains("hunter2"), "{err}");
        assert!(parse(&[("ICON_JWT_SECRET", SECRET)])
            .unwrap()
            .secret
            .is_some());
    }

    #[test]
    fn jwks_needs_issuer_and_audience() {
        let url = ("ICON_JWT_JWKS_URL", "https://idp.example/jwks.json");
        let err = parse(&[url]).unwrap_err();
        assert!(err.starts_with("ICON_JWT_ISSUER must be set"), "{err}");
        let err = parse(&[url, ("ICON_JWT_ISSUER", "https://idp.example/")]).unwrap_err();
        assert!(err.starts_with("ICON_JWT_AUDIENCE must be set"), "{err}");
        let s = parse(&[
            url,
            ("ICON_JWT_ISSUER", "https://idp.example/"),
            ("ICON_JWT_AUDIENCE", "icon"),
        ])
        .unwrap();
        assert!(s.secret.is_none());
        let jwks = s.jwks.unwrap();
        assert_eq!(jwks.min_refresh, std::time::Duration::from_secs(30));
        assert_eq!(jwks.max_age, DEFAULT_JWKS_MAX_AGE);
        assert_eq!(jwks.audience, "icon");
    }

    #[test]
    fn the_key_set_max_age_is_a_duration() {
        let with = |age: &str| {
            parse(&[
                ("ICON_JWT_JWKS_URL", "https://idp.example/jwks"),
                ("ICON_JWT_ISSUER", "i"),
                ("ICON_JWT_AUDIENCE", "a"),
                ("ICON_JWT_JWKS_MAX_AGE", age),
            ])
        };
        let s = with("90s").unwrap();
        assert_eq!(s.jwks.unwrap().max_age, std::time::Duration::from_secs(90));
        let err = with("a while").unwrap_err();
        assert!(err.starts_with("ICON_JWT_JWKS_MAX_AGE="), "{err}");
    }

    #[test]
    fn the_key_set_travels_over_https_unless_on_this_machine() {
        let with = |url: &str| {
            parse(&[
                ("ICON_JWT_JWKS_URL", url),
                ("ICON_JWT_ISSUER", "i"),
                ("ICON_JWT_AUDIENCE", "a"),
                ("ICON_JWT_JWKS_MIN_REFRESH", "5s"),
            ])
        };
        let err = with("http://idp.example/jwks").unwrap_err();
        assert!(err.starts_with("ICON_JWT_JWKS_URL="), "{err}");
        assert!(with("http://127.0.0.1:9/jwks").is_ok());
        assert!(with("http://localhost:9/jwks").is_ok());
        let s = with("https://idp.example/jwks").unwrap();
        assert_eq!(
            s.jwks.unwrap().min_refresh,
            std::time::Duration::from_secs(5)
        );
    }

    #[test]
    fn both_sources_may_be_configured() {
        let s = parse(&[
            ("ICON_JWT_SECRET", SECRET),
            ("ICON_JWT_JWKS_URL", "https://idp.example/jwks"),
            ("ICON_JWT_ISSUER", "i"),
            ("ICON_JWT_AUDIENCE", "a"),
        ])
        .unwrap();
        assert!(s.secret.is_some() && s.jwks.is_some());
    }
}
