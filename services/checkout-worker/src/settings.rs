//! The checkout worker's settings, read once from the environment.

use icon_runtime::{Env, SettingsError};
use std::time::Duration;

#[derive(Debug, Clone)]
pub struct WorkerSettings {
    /// `ICON_DATABASE_URL`
    pub database_url: String,
    /// `ICON_AMQP_URL`
    pub amqp_url: String,
    /// `ICON_RETAILER_TIMEOUT`: one call to a retailer, body included.
    pub retailer_timeout: Duration,
    /// `ICON_RETAILER_MAX_ATTEMPTS`: calls per retailer order before it is `failed`.
    pub retailer_max_attempts: u32,
    /// `ICON_RETAILER_RETRY_BACKOFF`: wait after the first failed call; doubles each time.
    pub retailer_backoff: Duration,
    /// `ICON_WORKER_PREFETCH`: checkouts processed at once by this process.
    pub prefetch: u16,
    /// `ICON_WORKER_STUCK_AFTER`: a checkout `queued` or `processing` this long without
    /// progress is queued again (its worker died and its message was lost or dead-lettered).
    /// Must exceed the longest legitimate processing time (attempts x timeout + backoff).
    pub stuck_after: Duration,
    /// `ICON_PROBE_ADDR`: where to serve `/healthz` and `/readyz` (e.g. `0.0.0.0:9090`); unset,
    /// no probe server.
    pub probe_addr: Option<String>,
    /// `ICON_LOG`
    pub log: String,
}

impl WorkerSettings {
    pub fn from_env(env: &Env) -> Result<Self, SettingsError> {
        Ok(Self {
            database_url: env.string("ICON_DATABASE_URL", icon_store::pool::DEFAULT_DATABASE_URL),
            amqp_url: env.string("ICON_AMQP_URL", icon_broker::connect::DEFAULT_AMQP_URL),
            retailer_timeout: env.duration("ICON_RETAILER_TIMEOUT", Duration::from_secs(10))?,
            retailer_max_attempts: env.parse_with("ICON_RETAILER_MAX_ATTEMPTS", 5, |v| match v
                .trim()
                .parse::<u32>()
            {
                Ok(n) if (1..=20).contains(&n) => Ok(n),
                _ => Err("expected a whole number from 1 to 20".into()),
            })?,
            retailer_backoff: env
                .duration("ICON_RETAILER_RETRY_BACKOFF", Duration::from_millis(250))?,
            prefetch: env.positive_u16("ICON_WORKER_PREFETCH", 32)?,
            stuck_after: env.duration("ICON_WORKER_STUCK_AFTER", Duration::from_secs(300))?,
            probe_addr: env.optional_addr("ICON_PROBE_ADDR")?,
            log: env.string("ICON_LOG", "info"),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_errors() {
        let s = WorkerSettings::from_env(&Env::default()).unwrap();
        assert_eq!(s.retailer_max_attempts, 5);
        assert_eq!(s.prefetch, 32);
        let err = WorkerSettings::from_env(&Env::from_pairs([("ICON_WORKER_PREFETCH", "0")]))
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("ICON_WORKER_PREFETCH="), "{err}");
    }
}
