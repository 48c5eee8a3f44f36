//! The notifier's settings, read once from the environment.

use crate::schedule::RetrySchedule;
use icon_domain::NetworkPolicy;
use icon_runtime::settings::{parse_duration_list, parse_networks};
use icon_runtime::{Env, SettingsError};
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
    /// `ICON_CALLBACK_ALLOW_NETWORKS`
    pub callback_policy: NetworkPolicy,
    /// `ICON_NOTIFIER_PREFETCH`: notifications attempted at once by this process.
    pub prefetch: u16,
    /// `ICON_NOTIFIER_STUCK_AFTER`: an open notification of a finished checkout with nothing
    /// due for this long is queued again (its message was lost or dead-lettered).
    pub stuck_after: Duration,
    /// `ICON_PROBE_ADDR`: where to serve `/healthz` and `/readyz` (e.g. `0.0.0.0:9090`); unset,
    /// no probe server.
    pub probe_addr: Option<String>,
    /// `ICON_LOG`
    pub log: String,
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
            database_url: env.string("ICON_DATABASE_URL", icon_store::pool::DEFAULT_DATABASE_URL),
            amqp_url: env.string("ICON_AMQP_URL", icon_broker::connect::DEFAULT_AMQP_URL),
            queue_type: icon_broker::QueueType::from_env(env)?,
            schedule: RetrySchedule::new(delays, give_up_after),
            callback_timeout: env.duration("ICON_CALLBACK_TIMEOUT", Duration::from_secs(10))?,
            callback_policy: NetworkPolicy::new(env.parse_with(
                "ICON_CALLBACK_ALLOW_NETWORKS",
                vec![],
                parse_networks,
            )?),
            prefetch: env.positive_u16("ICON_NOTIFIER_PREFETCH", 64)?,
            stuck_after: env.duration("ICON_NOTIFIER_STUCK_AFTER", Duration::from_secs(300))?,
            probe_addr: env.optional_addr("ICON_PROBE_ADDR")?,
            log: env.string("ICON_LOG", "info"),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults() {
        let s = NotifierSettings::from_env(&Env::default()).unwrap();
        assert_eq!(s.schedule.delay_after(1), Duration::from_secs(10));
        assert_eq!(s.schedule.delay_after(3), Duration::from_secs(600));
        assert_eq!(s.schedule.delay_after(9), Duration::from_secs(600));
        assert_eq!(s.callback_timeout, Duration::from_secs(10));
    }

    #[test]
    fn bad_schedule_names_the_variable() {
        let env = Env::from_pairs([("ICON_CALLBACK_RETRY_SCHEDULE", "10s,often")]);
        let err = NotifierSettings::from_env(&env).unwrap_err().to_string();
        assert!(err.starts_with("ICON_CALLBACK_RETRY_SCHEDULE="), "{err}");
    }
}
