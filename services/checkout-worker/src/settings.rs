//! The checkout worker's settings, read once from the environment.

use icon_domain::NetworkPolicy;
use icon_runtime::settings::{parse_bool, parse_duration_list, parse_networks};
use icon_runtime::{Env, SettingsError};
use std::time::Duration;

#[derive(Debug, Clone)]
pub struct WorkerSettings {
    /// `ICON_DATABASE_URL`
    pub database_url: String,
    /// `ICON_AMQP_URL`
    pub amqp_url: String,
    /// `ICON_AMQP_QUEUE_TYPE`: the type of every queue this worker declares.
    pub queue_type: icon_broker::QueueType,
    /// `ICON_RETAILER_ALLOW_NETWORKS` and `ICON_RETAILER_ALLOW_HTTP`: the non-public networks
    /// a retailer's `order_url` may reach, and whether plain http is acceptable. Applied before
    /// every call, to the URL and to each address its host resolves to, so a retailer that
    /// passed the gateway's check (under another policy, or a name that now resolves inside
    /// the network) gets no request at all.
    pub retailer_policy: NetworkPolicy,
    /// `ICON_RETAILER_TIMEOUT`: one call to a retailer, body included.
    pub retailer_timeout: Duration,
    /// `ICON_RETAILER_MAX_ATTEMPTS`: order requests per order before its outcome is `unknown`
    /// and it is settled by status lookup.
    pub retailer_max_attempts: u32,
    /// `ICON_RETAILER_RETRY_BACKOFF`: wait after the first failed call; doubles each time.
    pub retailer_backoff: Duration,
    /// `ICON_RETAILER_RETRY_BACKOFF_MAX`: the longest wait between two calls, also the most a
    /// retailer's `Retry-After` may ask for. Uncapped doubling at 20 attempts adds up to days.
    pub retailer_backoff_max: Duration,
    /// `ICON_RETAILER_MAX_IN_FLIGHT`: calls one worker makes to one retailer at once. A retailer
    /// that hangs holds at most this many; its other orders wait a moment for a slot
    /// (`gate::SLOT_WAIT`), then in a delay tier, holding no prefetch slot, and other retailers'
    /// checkouts go on.
    pub retailer_max_in_flight: usize,
    /// `ICON_RETAILER_SETTLE_SCHEDULE`: waits between status lookups of an `unknown` order;
    /// the last repeats.
    pub settle_schedule: Vec<Duration>,
    /// `ICON_RETAILER_SETTLE_WITHIN`: how long lookups go on before the order stays `unknown`
    /// and the checkout finishes with what it has.
    pub settle_within: Duration,
    /// `ICON_RETAILER_CONFIRM_WITHIN`: how long an `accepted` order (the retailer answered 202)
    /// waits for the retailer's final event before ICON asks by status lookup, and then goes on
    /// asking on `ICON_RETAILER_SETTLE_SCHEDULE` for `ICON_RETAILER_SETTLE_WITHIN` before it
    /// ends `unknown`. No worker waits meanwhile: the order's state is in the database.
    pub confirm_within: Duration,
    /// `ICON_RETAILER_NOT_PLACED_AFTER`: how long after ICON's last request with a key whose
    /// answer left it in doubt (a 409, a timeout, a dropped connection) a lookup's 404 may be
    /// taken as "not placed". Before that the request may still be in progress at the
    /// retailer, and taking the 404 at its word frees the cart for a new key: a second order.
    pub not_placed_after: Duration,
    /// `ICON_WORKER_MAX_DELIVERIES`: passes over one checkout that may start and fail (an
    /// error, a crash) in a row before it ends `failed` with a reason, so nothing loops.
    pub max_deliveries: i32,
    /// `ICON_WORKER_PREFETCH`: checkouts processed at once by this process.
    pub prefetch: u16,
    /// `ICON_WORKER_STUCK_AFTER`: a checkout not final, with no pass in flight and nothing due
    /// for this long, is queued again (its message was lost or dead-lettered). Must exceed the
    /// worst case of placing one order (see [`WorkerSettings::worst_case_placement`]).
    pub stuck_after: Duration,
    /// `ICON_PROBE_ADDR`: where to serve `/healthz` and `/readyz` (e.g. `0.0.0.0:9090`); unset,
    /// no probe server.
    pub probe_addr: Option<String>,
    /// `ICON_LOG`, `ICON_LOG_FORMAT`, `ICON_OTLP_ENDPOINT`: log filter and format, span export.
    pub log: icon_runtime::telemetry::TelemetrySettings,
    /// `ICON_SECRETS_KEY`: opens the retailers' signing secrets (and seals the secret of a
    /// retailer registered before secrets existed, at its first call). The same key as the
    /// gateway's.
    pub secrets_key: icon_store::secrets::SecretsKey,
}

impl WorkerSettings {
    pub fn from_env(env: &Env) -> Result<Self, SettingsError> {
        let settings = Self {
            database_url: icon_store::tls::check(
                env.string("ICON_DATABASE_URL", icon_store::pool::DEFAULT_DATABASE_URL),
            )?,
            amqp_url: icon_broker::tls::check(
                env.string("ICON_AMQP_URL", icon_broker::connect::DEFAULT_AMQP_URL),
            )?,
            queue_type: icon_broker::QueueType::from_env(env)?,
            retailer_policy: NetworkPolicy::new(env.parse_with(
                "ICON_RETAILER_ALLOW_NETWORKS",
                vec![],
                parse_networks,
            )?)
            .allowing_http(env.parse_with(
                "ICON_RETAILER_ALLOW_HTTP",
                false,
                parse_bool,
            )?),
            retailer_timeout: env.duration("ICON_RETAILER_TIMEOUT", Duration::from_secs(10))?,
            retailer_max_attempts: env
                .parse_with("ICON_RETAILER_MAX_ATTEMPTS", 5, |v| whole_number(v, 1, 20))?,
            retailer_backoff: env
                .duration("ICON_RETAILER_RETRY_BACKOFF", Duration::from_millis(250))?,
            retailer_backoff_max: env
                .duration("ICON_RETAILER_RETRY_BACKOFF_MAX", Duration::from_secs(30))?,
            retailer_max_in_flight: env.parse_with("ICON_RETAILER_MAX_IN_FLIGHT", 16, |v| {
                whole_number(v, 1, 10_000)
            })? as usize,
            settle_schedule: env.parse_with(
                "ICON_RETAILER_SETTLE_SCHEDULE",
                vec![
                    Duration::from_secs(10),
                    Duration::from_secs(60),
                    Duration::from_secs(600),
                ],
                parse_duration_list,
            )?,
            settle_within: env.duration(
                "ICON_RETAILER_SETTLE_WITHIN",
                Duration::from_secs(24 * 3600),
            )?,
            confirm_within: env
                .duration("ICON_RETAILER_CONFIRM_WITHIN", Duration::from_secs(30 * 60))?,
            not_placed_after: env
                .duration("ICON_RETAILER_NOT_PLACED_AFTER", Duration::from_secs(600))?,
            max_deliveries: env.parse_with("ICON_WORKER_MAX_DELIVERIES", 5, |v| {
                whole_number(v, 1, 1000)
            })? as i32,
            prefetch: env.positive_u16("ICON_WORKER_PREFETCH", 32)?,
            stuck_after: env.duration("ICON_WORKER_STUCK_AFTER", Duration::from_secs(300))?,
            probe_addr: env.optional_addr("ICON_PROBE_ADDR")?,
            log: icon_runtime::telemetry::TelemetrySettings::from_env(env)?,
            secrets_key: icon_store::secrets::SecretsKey::from_env(env)?,
        };
        if settings.retailer_backoff_max < settings.retailer_backoff {
            return Err(SettingsError {
                var: "ICON_RETAILER_RETRY_BACKOFF_MAX",
                value: format!("{:?}", settings.retailer_backoff_max),
                reason: format!(
                    "must be at least ICON_RETAILER_RETRY_BACKOFF ({:?})",
                    settings.retailer_backoff
                ),
            });
        }
        let worst = settings.worst_case_placement();
        if worst > settings.stuck_after {
            return Err(SettingsError {
                var: "ICON_WORKER_STUCK_AFTER",
                value: format!("{:?}", settings.stuck_after),
                reason: format!(
                    "placing one order can take up to {worst:?} (ICON_RETAILER_MAX_ATTEMPTS x \
                     ICON_RETAILER_TIMEOUT plus the waits, each at most \
                     ICON_RETAILER_RETRY_BACKOFF_MAX), so a slow order would be taken for a \
                     stuck one: raise it above that or lower those"
                ),
            });
        }
        Ok(settings)
    }

    /// The wait after the `attempt`-th failed call (1-based): the backoff doubled per attempt,
    /// stretched by the retailer's `Retry-After`, never more than the cap.
    pub fn retry_wait(&self, attempt: i32, retry_after: Option<Duration>) -> Duration {
        let doublings = (attempt.max(1) - 1).min(30) as u32;
        let backoff = self
            .retailer_backoff
            .saturating_mul(1u32 << doublings)
            .min(self.retailer_backoff_max);
        match retry_after {
            // "Not before": the earliest wait the tiers make in two hops (see
            // `icon_runtime::DelayTiers::reachable_at_least`), so the retry comes when scheduled.
            Some(r) if r.min(self.retailer_backoff_max) > backoff => self
                .delay_tiers()
                .reachable_at_least(r.min(self.retailer_backoff_max)),
            _ => backoff,
        }
    }

    /// The longest placing one order can legitimately take: every attempt timing out, and
    /// every wait between them at the cap.
    pub fn worst_case_placement(&self) -> Duration {
        let n = self.retailer_max_attempts;
        self.retailer_timeout.saturating_mul(n) + self.retailer_backoff_max.saturating_mul(n - 1)
    }

    /// The wait before the status lookup after `lookups` earlier ones; the last delay repeats.
    pub fn settle_wait(&self, lookups: i32) -> Duration {
        let i = (lookups.max(0) as usize).min(self.settle_schedule.len().saturating_sub(1));
        self.settle_schedule
            .get(i)
            .copied()
            .unwrap_or(Duration::from_secs(10))
    }

    /// How long a pass may run before another copy may take it over: one call per order (all
    /// at once, each within the timeout) and recording the result.
    pub fn pass_lease(&self) -> Duration {
        self.retailer_timeout + Duration::from_secs(5)
    }

    /// How long an order waits when its retailer already has
    /// [`retailer_max_in_flight`](Self::retailer_max_in_flight) calls out: about when one of
    /// them will have ended.
    pub fn busy_retailer_wait(&self) -> Duration {
        (self.retailer_timeout / 2).clamp(Duration::from_millis(100), Duration::from_secs(5))
    }

    /// Every delay this worker schedules, for its delay tiers.
    pub fn delay_tiers(&self) -> icon_runtime::DelayTiers {
        let retries = (1..self.retailer_max_attempts as i32).map(|n| self.retry_wait(n, None));
        icon_runtime::DelayTiers::new(
            retries
                .chain(self.settle_schedule.iter().copied())
                .chain([self.busy_retailer_wait(), self.retailer_backoff_max]),
        )
    }
}

fn whole_number(v: &str, min: u32, max: u32) -> Result<u32, String> {
    match v.trim().parse::<u32>() {
        Ok(n) if (min..=max).contains(&n) => Ok(n),
        _ => Err(format!("expected a whole number from {min} to {max}")),
    }
}

/// `pairs` and a secrets key, which every start needs: the environment of a unit test.
#[cfg(test)]
pub(crate) fn test_env<K: Into<String>, V: Into<String>>(
    pairs: impl IntoIterator<Item = (K, V)>,
) -> Env {
    let mut env = Env::from_pairs(pairs);
    env.set("ICON_SECRETS_KEY", "11".repeat(32));
    env
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requires_the_secrets_key() {
        let err = WorkerSettings::from_env(&Env::default())
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("ICON_SECRETS_KEY="), "{err}");
    }

    #[test]
    fn defaults_and_errors() {
        let s = WorkerSettings::from_env(&test_env::<&str, &str>([])).unwrap();
        assert_eq!(s.retailer_max_attempts, 5);
        assert_eq!(s.prefetch, 32);
        assert_eq!(s.max_deliveries, 5);
        assert_eq!(s.settle_within, Duration::from_secs(86_400));
        assert_eq!(s.settle_wait(0), Duration::from_secs(10));
        assert_eq!(s.settle_wait(7), Duration::from_secs(600));
        let err = WorkerSettings::from_env(&test_env([("ICON_WORKER_PREFETCH", "0")]))
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("ICON_WORKER_PREFETCH="), "{err}");
    }

    #[test]
    fn retailers_are_public_and_https_only_unless_allowed() {
        let s = WorkerSettings::from_env(&test_env::<&str, &str>([])).unwrap();
        assert!(!s.retailer_policy.allows_http());
        assert!(!s.retailer_policy.permits("127.0.0.1".parse().unwrap()));
        let s = WorkerSettings::from_env(&test_env([
            ("ICON_RETAILER_ALLOW_NETWORKS", "127.0.0.0/8,::1/128"),
            ("ICON_RETAILER_ALLOW_HTTP", "true"),
        ]))
        .unwrap();
        assert!(s.retailer_policy.allows_http());
        assert!(s.retailer_policy.permits("::1".parse().unwrap()));
        for (var, bad) in [
            ("ICON_RETAILER_ALLOW_NETWORKS", "10.0.0.0/33"),
            ("ICON_RETAILER_ALLOW_HTTP", "yes please"),
        ] {
            let err = WorkerSettings::from_env(&test_env([(var, bad)]))
                .unwrap_err()
                .to_string();
            assert!(err.starts_with(&format!("{var}=")), "{err}");
        }
    }

    #[test]
    fn backoff_is_capped_and_retry_after_bounded() {
        let s = WorkerSettings::from_env(&test_env([
            ("ICON_RETAILER_MAX_ATTEMPTS", "20"),
            ("ICON_WORKER_STUCK_AFTER", "1h"),
        ]))
        .unwrap();
        assert_eq!(s.retry_wait(1, None), Duration::from_millis(250));
        assert_eq!(s.retry_wait(3, None), Duration::from_secs(1));
        assert_eq!(s.retry_wait(19, None), Duration::from_secs(30));
        assert_eq!(
            s.retry_wait(1, Some(Duration::from_secs(5))),
            Duration::from_secs(5)
        );
        assert_eq!(
            s.retry_wait(1, Some(Duration::from_secs(3600))),
            Duration::from_secs(30)
        );
        // 20 x 10 s + 19 x 30 s: 12 min 50 s, not the 36 hours of uncapped doubling.
        assert_eq!(s.worst_case_placement(), Duration::from_secs(770));
    }

    #[test]
    fn refuses_a_stuck_threshold_below_the_worst_case() {
        let err = WorkerSettings::from_env(&test_env([
            ("ICON_RETAILER_MAX_ATTEMPTS", "20"),
            ("ICON_WORKER_STUCK_AFTER", "5m"),
        ]))
        .unwrap_err()
        .to_string();
        assert!(err.starts_with("ICON_WORKER_STUCK_AFTER="), "{err}");
        assert!(err.contains("770s"), "{err}");
    }
}
