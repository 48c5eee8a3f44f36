//! The gateway's settings, read once from the environment.

use icon_domain::device::DEFAULT_MAX_DEVICES_PER_USER;
use icon_domain::NetworkPolicy;
use icon_runtime::settings::{parse_bool, parse_networks, MissingSetting};
use icon_runtime::{Env, SettingsError};
use icon_store::secrets::SecretsKey;
use std::fmt;
use std::time::Duration;

/// `ICON_WEBHOOK_SECRET_GRACE`'s default: a day, time for a receiver's deploy.
pub const DEFAULT_WEBHOOK_SECRET_GRACE: Duration = Duration::from_secs(24 * 3600);

/// Every variable the gateway reads. See the README's configuration table.
#[derive(Clone)]
pub struct GatewaySettings {
    /// `ICON_DATABASE_URL`: PostgreSQL.
    pub database_url: String,
    /// `ICON_AMQP_URL`: RabbitMQ, for the outbox relay.
    pub amqp_url: String,
    /// `ICON_AMQP_QUEUE_TYPE`: `quorum` (default) or `classic`, for every queue the relay
    /// declares.
    pub queue_type: QueueType,
    /// `ICON_HTTP_ADDR`: where to listen; port 0 picks a free port.
    pub http_addr: String,
    /// `ICON_PUBLIC_URL`: base of every `resource_url`; when unset, derived from the bound
    /// address once it is known.
    pub public_url: Option<String>,
    /// Which bearer tokens are accepted: HS256 (`ICON_JWT_SECRET`), an identity provider's
    /// JWKS (`ICON_JWT_JWKS_URL`), or both. At least one: there is no default secret, since it
    /// would be a backdoor in every deployment that forgot to set one.
    pub jwt: JwtSettings,
    /// `ICON_RATE_LIMIT`: requests allowed per token subject and per client IP.
    pub rate_limit: RateLimit,
    /// `ICON_SECRETS_KEY`: seals the owners' webhook secrets at rest (the notifier's key).
    pub secrets_key: SecretsKey,
    /// `ICON_WEBHOOK_SECRET_GRACE`: after a rotation, how long callbacks are still signed with
    /// the previous secret too, so receivers can switch without dropping a callback.
    pub webhook_secret_grace: Duration,
    /// `ICON_CALLBACK_ALLOW_NETWORKS`: non-public networks callback URLs may point into;
    /// `ICON_CALLBACK_ALLOW_HTTP`: whether `http://` callback URLs are accepted (https only by
    /// default).
    pub callback_policy: NetworkPolicy,
    /// `ICON_RETAILER_ALLOW_NETWORKS`: non-public networks retailers' `order_url`s may point
    /// into (internal retailers, local runs); `ICON_RETAILER_ALLOW_HTTP`: whether `http://`
    /// order URLs are accepted. Checked when an admin registers a retailer, so a stolen admin
    /// token cannot aim the worker into the internal network; the worker checks again.
    pub retailer_policy: NetworkPolicy,
    /// `ICON_HTTP_WORKERS`: HTTP worker threads; defaults to the number of CPUs.
    pub http_workers: Option<usize>,
    /// `ICON_MAX_DEVICES_PER_USER`: push devices one user keeps registered; registering one
    /// more drops the least recently registered, so an app that registers a fresh token on
    /// every start cannot grow the registry (or the pushes per checkout) without bound.
    pub max_devices_per_user: u32,
    /// `ICON_CHECKOUT_BATCH_MAX`, `ICON_CHECKOUT_BATCHES_IN_FLIGHT`: group commit of new
    /// checkouts (`crate::accept`).
    pub accept: crate::accept::AcceptSettings,
    /// `ICON_LOG`, `ICON_LOG_FORMAT`, `ICON_OTLP_ENDPOINT`: log filter and format, span export.
    pub log: icon_runtime::telemetry::TelemetrySettings,
}

/// A count of at least one.
fn positive(v: &str) -> Result<usize, String> {
    match v.trim().parse::<usize>() {
        Ok(n) if (1..=1024).contains(&n) => Ok(n),
        _ => Err("expected a whole number from 1 to 1024, such as 8".into()),
    }
}

/// A secret that never shows in `Debug` output or logs.
#[derive(Clone)]
pub struct Secret(String);

impl Secret {
    pub fn new(s: impl Into<String>) -> Self {
        Self(s.into())
    }
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SettingsProblem {
    #[error(transparent)]
    Invalid(#[from] SettingsError),
    #[error(transparent)]
    Missing(#[from] MissingSetting),
    /// Says the length, never the value.
    #[error(
        "ICON_JWT_SECRET is too short ({0} bytes): an HS256 secret needs at least \
         {MIN_SECRET_BYTES} bytes so it cannot be guessed offline from one token; \
         make one with `openssl rand -hex 32`"
    )]
    WeakSecret(usize),
}

use crate::auth::settings::{JwtSettings, MIN_SECRET_BYTES};
use crate::rate_limit::RateLimit;
use icon_broker::connect::DEFAULT_AMQP_URL;
use icon_broker::QueueType;
use icon_store::pool::DEFAULT_DATABASE_URL;

impl GatewaySettings {
    pub fn from_env(env: &Env) -> Result<Self, SettingsProblem> {
        let http_addr = env.parse_with("ICON_HTTP_ADDR", "127.0.0.1:8080".to_owned(), |v| {
            normalise_addr(v)
        })?;
        let public_url = match env.raw("ICON_PUBLIC_URL") {
            None => None,
            Some(v) => Some(parse_public_url(v).map_err(|reason| SettingsError {
                var: "ICON_PUBLIC_URL",
                value: v.to_owned(),
                reason,
            })?),
        };
        let jwt = JwtSettings::from_env(env)?;
        let allow = env.parse_with("ICON_CALLBACK_ALLOW_NETWORKS", vec![], parse_networks)?;
        let retailer_allow =
            env.parse_with("ICON_RETAILER_ALLOW_NETWORKS", vec![], parse_networks)?;
        Ok(Self {
            database_url: icon_store::tls::check(
                env.string("ICON_DATABASE_URL", DEFAULT_DATABASE_URL),
            )?,
            amqp_url: icon_broker::tls::check(env.string("ICON_AMQP_URL", DEFAULT_AMQP_URL))?,
            queue_type: QueueType::from_env(env)?,
            http_addr,
            public_url,
            jwt,
            rate_limit: env.parse_with(
                "ICON_RATE_LIMIT",
                RateLimit::default(),
                RateLimit::parse,
            )?,
            secrets_key: SecretsKey::from_env(env)?,
            webhook_secret_grace: env
                .duration("ICON_WEBHOOK_SECRET_GRACE", DEFAULT_WEBHOOK_SECRET_GRACE)?,
            callback_policy: NetworkPolicy::new(allow).allowing_http(env.parse_with(
                "ICON_CALLBACK_ALLOW_HTTP",
                false,
                parse_bool,
            )?),
            retailer_policy: NetworkPolicy::new(retailer_allow).allowing_http(env.parse_with(
                "ICON_RETAILER_ALLOW_HTTP",
                false,
                parse_bool,
            )?),
            http_workers: env.parse_with("ICON_HTTP_WORKERS", None, |v| {
                match v.trim().parse::<usize>() {
                    Ok(n) if (1..=256).contains(&n) => Ok(Some(n)),
                    _ => Err("expected a whole number from 1 to 256".into()),
                }
            })?,
            max_devices_per_user: env.parse_with(
                "ICON_MAX_DEVICES_PER_USER",
                DEFAULT_MAX_DEVICES_PER_USER,
                |v| match v.trim().parse::<u32>() {
                    Ok(n) if n >= 1 => Ok(n),
                    _ => Err("expected a positive whole number such as 10".into()),
                },
            )?,
            accept: crate::accept::AcceptSettings {
                max_batch: env.parse_with(
                    "ICON_CHECKOUT_BATCH_MAX",
                    crate::accept::AcceptSettings::default().max_batch,
                    positive,
                )?,
                in_flight: env.parse_with(
                    "ICON_CHECKOUT_BATCHES_IN_FLIGHT",
                    crate::accept::AcceptSettings::default().in_flight,
                    positive,
                )?,
            },
            log: icon_runtime::telemetry::TelemetrySettings::from_env(env)?,
        })
    }
}

/// Accepts `host:port`, `[v6]:port` and `:port` (all interfaces).
fn normalise_addr(v: &str) -> Result<String, String> {
    let v = v.trim();
    let full = if v.starts_with(':') {
        format!("0.0.0.0{v}")
    } else {
        v.to_owned()
    };
    full.parse::<std::net::SocketAddr>()
        .map(|_| full.clone())
        .map_err(|_| "expected host:port such as 127.0.0.1:8080, 0.0.0.0:8080 or :0".to_owned())
}

fn parse_public_url(v: &str) -> Result<String, String> {
    let url = url::Url::parse(v).map_err(|e| format!("not an absolute URL ({e})"))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err("must start with http:// or https://".into());
    }
    Ok(v.trim_end_matches('/').to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "0123456789abcdef0123456789abcdef";
    /// `pairs` plus a secrets key, which every start needs.
    fn with_key<const N: usize>(pairs: [(&str, &str); N]) -> Env {
        let mut env = Env::from_pairs(pairs);
        env.set("ICON_SECRETS_KEY", "11".repeat(32));
        env
    }

    #[test]
    fn requires_the_secrets_key_and_reads_the_grace() {
        let err = GatewaySettings::from_env(&Env::from_pairs([("ICON_JWT_SECRET", SECRET)]))
            .err()
            .unwrap()
            .to_string();
        assert!(err.starts_with("ICON_SECRETS_KEY="), "{err}");
        assert!(err.contains("openssl rand -hex 32"), "{err}");
        let s = GatewaySettings::from_env(&with_key([("ICON_JWT_SECRET", SECRET)])).unwrap();
        assert_eq!(s.webhook_secret_grace, DEFAULT_WEBHOOK_SECRET_GRACE);
        let s = GatewaySettings::from_env(&with_key([
            ("ICON_JWT_SECRET", SECRET),
            ("ICON_WEBHOOK_SECRET_GRACE", "2s"),
        ]))
        .unwrap();
        assert_eq!(s.webhook_secret_grace, Duration::from_secs(2));
        let err = GatewaySettings::from_env(&with_key([
            ("ICON_JWT_SECRET", SECRET),
            ("ICON_WEBHOOK_SECRET_GRACE", "soon"),
        ]))
        .err()
        .unwrap()
        .to_string();
        assert!(err.starts_with("ICON_WEBHOOK_SECRET_GRACE="), "{err}");
    }

    #[test]
    fn requires_a_token_source() {
        let err = GatewaySettings::from_env(&Env::default()).err().unwrap();
        assert!(
            err.to_string()
                .starts_with("ICON_JWT_SECRET or ICON_JWT_JWKS_URL must be set"),
            "{err}"
        );
    }

    #[test]
    fn bad_values_name_their_variable() {
        let env = with_key([
            ("ICON_JWT_SECRET", SECRET),
            ("ICON_CALLBACK_ALLOW_NETWORKS", "nonsense"),
        ]);
        let err = GatewaySettings::from_env(&env).err().unwrap().to_string();
        assert!(err.starts_with("ICON_CALLBACK_ALLOW_NETWORKS="), "{err}");
        let env = with_key([("ICON_JWT_SECRET", SECRET), ("ICON_HTTP_ADDR", "localhost")]);
        let err = GatewaySettings::from_env(&env).err().unwrap().to_string();
        assert!(err.starts_with("ICON_HTTP_ADDR="), "{err}");
        let env = with_key([
            ("ICON_JWT_SECRET", SECRET),
            ("ICON_AMQP_QUEUE_TYPE", "lazy"),
        ]);
        let err = GatewaySettings::from_env(&env).err().unwrap().to_string();
        assert!(
            err.starts_with("ICON_AMQP_QUEUE_TYPE=\"lazy\" is invalid"),
            "{err}"
        );
    }

    #[test]
    fn callbacks_are_https_only_unless_switched() {
        let secret = ("ICON_JWT_SECRET", "a-development-secret-of-32-bytes!");
        let s = GatewaySettings::from_env(&with_key([secret])).unwrap();
        assert!(!s.callback_policy.allows_http());
        let on = with_key([secret, ("ICON_CALLBACK_ALLOW_HTTP", "true")]);
        assert!(GatewaySettings::from_env(&on)
            .unwrap()
            .callback_policy
            .allows_http());
        let bad = with_key([secret, ("ICON_CALLBACK_ALLOW_HTTP", "on-weekdays")]);
        let err = GatewaySettings::from_env(&bad).err().unwrap().to_string();
        assert!(err.starts_with("ICON_CALLBACK_ALLOW_HTTP="), "{err}");
    }

    #[test]
    fn retailer_urls_are_public_and_https_only_unless_switched() {
        let secret = ("ICON_JWT_SECRET", SECRET);
        let s = GatewaySettings::from_env(&with_key([secret])).unwrap();
        assert!(!s.retailer_policy.allows_http());
        assert!(s.retailer_policy.allowed_networks().is_empty());
        // The callback allowances do not open retailer URLs, nor the reverse.
        let s = GatewaySettings::from_env(&with_key([
            secret,
            ("ICON_CALLBACK_ALLOW_NETWORKS", "127.0.0.0/8"),
            ("ICON_CALLBACK_ALLOW_HTTP", "true"),
        ]))
        .unwrap();
        assert!(!s.retailer_policy.allows_http());
        assert!(!s.retailer_policy.permits("127.0.0.1".parse().unwrap()));
        let s = GatewaySettings::from_env(&with_key([
            secret,
            ("ICON_RETAILER_ALLOW_NETWORKS", "127.0.0.0/8, 10.0.0.0/8"),
            ("ICON_RETAILER_ALLOW_HTTP", "true"),
        ]))
        .unwrap();
        assert!(s.retailer_policy.allows_http());
        assert!(s.retailer_policy.permits("10.1.2.3".parse().unwrap()));
        assert!(!s.callback_policy.permits("10.1.2.3".parse().unwrap()));
        for (var, bad) in [
            ("ICON_RETAILER_ALLOW_NETWORKS", "the office"),
            ("ICON_RETAILER_ALLOW_HTTP", "sometimes"),
        ] {
            let err = GatewaySettings::from_env(&with_key([secret, (var, bad)]))
                .err()
                .unwrap()
                .to_string();
            assert!(err.starts_with(&format!("{var}=")), "{err}");
        }
    }

    #[test]
    fn queue_type_defaults_to_quorum() {
        let env = with_key([("ICON_JWT_SECRET", SECRET)]);
        assert_eq!(
            GatewaySettings::from_env(&env).unwrap().queue_type,
            QueueType::Quorum
        );
        let env = with_key([
            ("ICON_JWT_SECRET", SECRET),
            ("ICON_AMQP_QUEUE_TYPE", "classic"),
        ]);
        assert_eq!(
            GatewaySettings::from_env(&env).unwrap().queue_type,
            QueueType::Classic
        );
    }

    #[test]
    fn defaults_and_port_shorthand() {
        let env = with_key([("ICON_JWT_SECRET", SECRET), ("ICON_HTTP_ADDR", ":0")]);
        let s = GatewaySettings::from_env(&env).unwrap();
        assert_eq!(s.http_addr, "0.0.0.0:0");
        assert_eq!(s.database_url, DEFAULT_DATABASE_URL);
        assert!(s.public_url.is_none());
        assert_eq!(s.max_devices_per_user, DEFAULT_MAX_DEVICES_PER_USER);
    }

    #[test]
    fn checkout_batching_defaults_and_bounds() {
        let env = with_key([("ICON_JWT_SECRET", SECRET)]);
        assert_eq!(
            GatewaySettings::from_env(&env).unwrap().accept,
            crate::accept::AcceptSettings {
                max_batch: 32,
                in_flight: 4
            }
        );
        for var in ["ICON_CHECKOUT_BATCH_MAX", "ICON_CHECKOUT_BATCHES_IN_FLIGHT"] {
            for bad in ["0", "-1", "eight", "1025"] {
                let env = with_key([("ICON_JWT_SECRET", SECRET), (var, bad)]);
                let err = GatewaySettings::from_env(&env).err().unwrap().to_string();
                assert!(err.starts_with(&format!("{var}=")), "{var}={bad}: {err}");
            }
        }
        let env = with_key([
            ("ICON_JWT_SECRET", SECRET),
            ("ICON_CHECKOUT_BATCH_MAX", "1"),
            ("ICON_CHECKOUT_BATCHES_IN_FLIGHT", " 8 "),
        ]);
        let s = GatewaySettings::from_env(&env).unwrap().accept;
        assert_eq!((s.max_batch, s.in_flight), (1, 8));
    }

    #[test]
    fn the_device_bound_is_a_positive_whole_number() {
        for bad in ["0", "-1", "ten", "1.5"] {
            let env = with_key([
                ("ICON_JWT_SECRET", SECRET),
                ("ICON_MAX_DEVICES_PER_USER", bad),
            ]);
            let err = GatewaySettings::from_env(&env).err().unwrap().to_string();
            assert!(
                err.starts_with("ICON_MAX_DEVICES_PER_USER="),
                "{bad}: {err}"
            );
        }
        let env = with_key([
            ("ICON_JWT_SECRET", SECRET),
            ("ICON_MAX_DEVICES_PER_USER", " 3 "),
        ]);
        assert_eq!(
            GatewaySettings::from_env(&env)
                .unwrap()
                .max_devices_per_user,
            3
        );
    }
}
