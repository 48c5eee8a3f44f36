//! The notifier's settings, read once from the environment.

use crate::schedule::RetrySchedule;
use icon_domain::NetworkPolicy;
use icon_runtime::settings::{parse_bool, parse_duration_list, parse_networks};
use icon_runtime::{Env, SettingsError};
use icon_store::secrets::SecretsKey;
use std::time::Duration;

#[derive(Debug, Clone)]
pub struct NotifierSettings {
    /// `ICON_DATABASE_URL`
    pub database_url: String,
    /// `ICON_AMQP_URL`
    pub amqp_url: String,
    /// `ICON_AMQP_QUEUE_TYPE`: the type of every queue this notifier declares.
    pub queue_type: icon_broker::QueueType,
    /// `ICON_CALLBACK_RETRY_SCHEDULE` and `ICON_CALLBACK_GIVE_UP_AFTER`.
    pub schedule: RetrySchedule,
    /// `ICON_CALLBACK_TIMEOUT`: one callback attempt, body included.
    pub callback_timeout: Duration,
    /// `ICON_CALLBACK_ALLOW_NETWORKS` and `ICON_CALLBACK_ALLOW_HTTP`: checked again at every
    /// delivery, so tightening them stops callbacks that were accepted before.
    pub callback_policy: NetworkPolicy,
    /// `ICON_SECRETS_KEY`: opens the owners' webhook secrets to sign callbacks with (the
    /// gateway's key). Required: without it no callback could be signed.
    pub secrets_key: SecretsKey,
    /// `ICON_NOTIFIER_PREFETCH`: notifications attempted at once by this process.
    pub prefetch: u16,
    /// `ICON_NOTIFIER_STUCK_AFTER`: an open notification of a finished checkout with nothing
    /// due for this long is queued again (its message was lost or dead-lettered).
    pub stuck_after: Duration,
    /// `ICON_PROBE_ADDR`: where to serve `/healthz` and `/readyz` (e.g. `0.0.0.0:9090`); unset,
    /// no probe server.
    pub probe_addr: Option<String>,
    /// Push over FCM HTTP v1.
    pub fcm: FcmSettings,
    /// E-mail over SMTP.
    pub smtp: SmtpSettings,
    /// `ICON_LOG`, `ICON_LOG_FORMAT`, `ICON_OTLP_ENDPOINT`: log filter and format, span export.
    pub log: icon_runtime::telemetry::TelemetrySettings,
}

#[derive(Debug, Clone)]
pub struct FcmSettings {
    /// `ICON_FCM_CREDENTIALS`: path of a Google service-account key file (JSON). Unset: push is
    /// disabled and pushes are recorded as `not_configured`.
    pub credentials: Option<String>,
    /// `ICON_FCM_ENDPOINT`: where FCM is (default `https://fcm.googleapis.com`).
    pub endpoint: String,
}

#[derive(Debug, Clone)]
pub struct SmtpSettings {
    /// `ICON_SMTP_URL`: `smtp://[user:password@]host[:port]` (STARTTLS where offered) or
    /// `smtps://...`. Unset: e-mail is disabled and recorded as `not_configured`.
    pub url: Option<String>,
    /// `ICON_SMTP_FROM`: the sender mailbox.
    pub from: String,
}

impl NotifierSettings {
    pub fn from_env(env: &Env) -> Result<Self, SettingsError> {
        let delays = env.parse_with(
            "ICON_CALLBACK_RETRY_SCHEDULE",
            vec![
                Duration::from_secs(10),
                Duration::from_secs(60),
                Duration::from_secs(600),
            ],
            parse_duration_list,
        )?;
        let give_up_after = env.duration(
            "ICON_CALLBACK_GIVE_UP_AFTER",
            Duration::from_secs(72 * 3600),
        )?;
        Ok(Self {
            database_url: icon_store::tls::check(
                env.string("ICON_DATABASE_URL", icon_store::pool::DEFAULT_DATABASE_URL),
            )?,
            amqp_url: icon_broker::tls::check(
                env.string("ICON_AMQP_URL", icon_broker::connect::DEFAULT_AMQP_URL),
            )?,
            queue_type: icon_broker::QueueType::from_env(env)?,
            schedule: RetrySchedule::new(delays, give_up_after),
            callback_timeout: env.duration("ICON_CALLBACK_TIMEOUT", Duration::from_secs(10))?,
            callback_policy: NetworkPolicy::new(env.parse_with(
                "ICON_CALLBACK_ALLOW_NETWORKS",
                vec![],
                parse_networks,
            )?)
            .allowing_http(env.parse_with(
                "ICON_CALLBACK_ALLOW_HTTP",
                false,
                parse_bool,
            )?),
            secrets_key: SecretsKey::from_env(env)?,
            prefetch: env.positive_u16("ICON_NOTIFIER_PREFETCH", 64)?,
            stuck_after: env.duration("ICON_NOTIFIER_STUCK_AFTER", Duration::from_secs(300))?,
            probe_addr: env.optional_addr("ICON_PROBE_ADDR")?,
            fcm: FcmSettings {
                credentials: env.raw("ICON_FCM_CREDENTIALS").map(str::to_owned),
                endpoint: env.parse_with(
                    "ICON_FCM_ENDPOINT",
                    crate::channels::push::DEFAULT_ENDPOINT.to_owned(),
                    parse_base_url,
                )?,
            },
            smtp: SmtpSettings {
                url: env.parse_with("ICON_SMTP_URL", None, |v| {
                    let u = url::Url::parse(v.trim()).map_err(|e| e.to_string())?;
                    match u.scheme() {
                        "smtp" | "smtps" if u.host_str().is_some() => Ok(Some(v.trim().to_owned())),
                        _ => Err("expected smtp://host:port or smtps://host:port".into()),
                    }
                })?,
                from: env.string("ICON_SMTP_FROM", "ICON <no-reply@icon.localhost>"),
            },
            log: icon_runtime::telemetry::TelemetrySettings::from_env(env)?,
        })
    }
}

/// An `http(s)://host[:port]` base without a path, trailing `/` dropped.
fn parse_base_url(v: &str) -> Result<String, String> {
    let u = url::Url::parse(v.trim()).map_err(|e| e.to_string())?;
    if !matches!(u.scheme(), "http" | "https") || u.host_str().is_none() {
        return Err("expected a base URL such as https://fcm.googleapis.com".into());
    }
    Ok(v.trim().trim_end_matches('/').to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The minimum the notifier needs, plus `pairs`.
    fn with_key<const N: usize>(pairs: [(&str, &str); N]) -> Env {
        let mut env = Env::from_pairs(pairs);
        env.set("ICON_SECRETS_KEY", "11".repeat(32));
        env
    }

    #[test]
    fn requires_the_secrets_key() {
        let err = NotifierSettings::from_env(&Env::default())
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("ICON_SECRETS_KEY="), "{err}");
        assert!(err.contains("openssl rand -hex 32"), "{err}");
    }

    #[test]
    fn defaults() {
        let s = NotifierSettings::from_env(&with_key([])).unwrap();
        assert_eq!(s.schedule.delay_after(1), Duration::from_secs(10));
        assert_eq!(s.schedule.delay_after(3), Duration::from_secs(600));
        assert_eq!(s.schedule.delay_after(9), Duration::from_secs(600));
        assert_eq!(s.callback_timeout, Duration::from_secs(10));
        assert!(!s.callback_policy.allows_http(), "https only by default");
    }

    #[test]
    fn plain_http_is_a_switch_that_names_itself() {
        let on = with_key([("ICON_CALLBACK_ALLOW_HTTP", "true")]);
        assert!(NotifierSettings::from_env(&on)
            .unwrap()
            .callback_policy
            .allows_http());
        let bad = with_key([("ICON_CALLBACK_ALLOW_HTTP", "sometimes")]);
        let err = NotifierSettings::from_env(&bad).unwrap_err().to_string();
        assert!(err.starts_with("ICON_CALLBACK_ALLOW_HTTP="), "{err}");
    }

    #[test]
    fn channels_off_by_default_and_urls_checked() {
        let s = NotifierSettings::from_env(&with_key([])).unwrap();
        assert!(s.fcm.credentials.is_none() && s.smtp.url.is_none());
        assert_eq!(s.fcm.endpoint, "https://fcm.googleapis.com");
        for (var, bad) in [
            ("ICON_SMTP_URL", "http://mail"),
            ("ICON_FCM_ENDPOINT", "fcm"),
        ] {
            let err = NotifierSettings::from_env(&with_key([(var, bad)]))
                .unwrap_err()
                .to_string();
            assert!(err.starts_with(&format!("{var}=")), "{err}");
        }
    }

    #[test]
    fn bad_schedule_names_the_variable() {
        let err =
            NotifierSettings::from_env(&with_key([("ICON_CALLBACK_RETRY_SCHEDULE", "10s,often")]))
                .unwrap_err()
                .to_string();
        assert!(err.starts_with("ICON_CALLBACK_RETRY_SCHEDULE="), "{err}");
    }
}
