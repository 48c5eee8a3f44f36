//! What the notifier tells Prometheus (`docs/metrics.md`): each attempt by channel and outcome,
//! the time from the checkout's final status to the delivery, retries by delay tier, FCM sends,
//! attempts in flight, and (read at scrape time) the notifications parked for a redeliver.
//!
//! Labels hold channel names and fixed words only; a tier is a configured delay, so a handful.

use crate::channels::Outcome;
use chrono::{DateTime, Utc};
use icon_metrics::{AttemptLabels, ChannelLabels, OutcomeLabels, RetryLabels};
use icon_runtime::probe::Sample;
use icon_store::{gauges, Pool};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

/// Every channel a notification row can have (`callback`, `push`, `email`).
pub const CHANNELS: [&str; 3] = ["callback", "push", "email"];

/// The outcomes an attempt is counted under.
pub const ATTEMPT_OUTCOMES: [&str; 4] = ["delivered", "failed", "refused", "gone"];

/// The outcomes an FCM send is counted under.
pub const PUSH_OUTCOMES: [&str; 3] = ["sent", "unregistered", "failed"];

/// Registers the notifier's families with every fixed label set, so dashboards show zeros (and
/// `rate()` has a start) before the first notification; the retry tiers of `tiers` too.
pub fn register(tiers: &[Duration]) {
    let m = icon_metrics::notifier();
    for channel in CHANNELS {
        for outcome in ATTEMPT_OUTCOMES {
            m.attempts
                .get_or_create(&AttemptLabels { channel, outcome })
                .inc_by(0);
        }
        for tier in tiers {
            m.retries
                .get_or_create(&RetryLabels {
                    channel,
                    tier: tier_name(Some(*tier)),
                })
                .inc_by(0);
        }
        m.parked.get_or_create(&ChannelLabels { channel }).set(0);
        m.in_flight.get_or_create(&ChannelLabels { channel }).set(0);
        // Creates the histogram's series; nothing observed.
        let _ = m
            .finish_to_delivered
            .get_or_create(&ChannelLabels { channel });
    }
    for outcome in PUSH_OUTCOMES {
        m.push_sends
            .get_or_create(&OutcomeLabels { outcome })
            .inc_by(0);
    }
    icon_metrics::queues();
    icon_metrics::ready();
}

/// Reads the parked gauge from the database when `/metrics` is scraped. Every replica reports
/// the same count (aggregate with `max`).
pub fn sampler(pool: Arc<OnceLock<Pool>>) -> Sample {
    Arc::new(move || {
        let pool = pool.get().cloned();
        Box::pin(async move {
            let Some(pool) = pool else { return };
            let Ok(db) = pool.get().await else { return };
            let Ok(counts) = gauges::parked_notifications(&db).await else {
                return;
            };
            let parked = &icon_metrics::notifier().parked;
            // A channel with none parked reads 0 (not its last count).
            for channel in CHANNELS {
                let n = counts
                    .iter()
                    .find(|(c, _)| c == channel)
                    .map_or(0, |(_, n)| *n);
                parked.get_or_create(&ChannelLabels { channel }).set(n);
            }
        })
    })
}

/// The word an attempt's outcome is counted under:
/// - `delivered`: the receiver took it (a 2xx, an SMTP acceptance, an FCM 2xx);
/// - `failed`: it did not, and will be retried, or was given up for a reason that is not the
///   receiver's own word (a 4xx FCM will not take, a retry past the give-up deadline is a
///   `failed` attempt too);
/// - `refused`: ICON would not send it: the target failed the network policy at send time or is
///   not a usable URL (a give-up with no response);
/// - `gone`: the target is no more: a 410 Gone, or a device FCM no longer knows (or one
///   unregistered since).
pub fn attempt_outcome(outcome: &Outcome) -> &'static str {
    match outcome {
        Outcome::Delivered { .. } => "delivered",
        Outcome::Retry { .. } => "failed",
        Outcome::GiveUp {
            status: Some(410), ..
        } => "gone",
        Outcome::GiveUp { status: None, .. } => "refused",
        Outcome::GiveUp { .. } => "failed",
        Outcome::Dropped { .. } => "gone",
    }
}

/// One attempt on `channel` ended with `outcome`; the checkout reached its final status at
/// `finished_at`.
pub fn attempt(channel: &'static str, outcome: &Outcome, finished_at: DateTime<Utc>) {
    let m = icon_metrics::notifier();
    m.attempts
        .get_or_create(&AttemptLabels {
            channel,
            outcome: attempt_outcome(outcome),
        })
        .inc();
    if matches!(outcome, Outcome::Delivered { .. }) {
        // A clock step backwards between the two hosts reads as 0, not as a negative time.
        let took = (Utc::now() - finished_at).to_std().unwrap_or_default();
        m.finish_to_delivered
            .get_or_create(&ChannelLabels { channel })
            .observe(took.as_secs_f64());
    }
}

/// A failed attempt's retry was published to the delay tier `tier` (`None`: straight back to
/// the work queue, due at once).
pub fn retry(channel: &'static str, tier: Option<Duration>) {
    icon_metrics::notifier()
        .retries
        .get_or_create(&RetryLabels {
            channel,
            tier: tier_name(tier),
        })
        .inc();
}

/// The tier's name as in its queue's (`checkout.finished.delay.<ms>ms`,
/// `icon_contracts::topology::delay_queue`): `5000ms`; `now` for no tier.
fn tier_name(tier: Option<Duration>) -> String {
    match tier {
        Some(d) => format!("{}ms", d.as_millis()),
        None => "now".into(),
    }
}

/// One FCM send answered (or failed) as `outcome` (`sent`, `unregistered`, `failed`).
pub fn push_send(outcome: &'static str) {
    icon_metrics::notifier()
        .push_sends
        .get_or_create(&OutcomeLabels { outcome })
        .inc();
}

/// An attempt under way on a channel: counted in `icon_deliveries_in_flight` from
/// [`InFlight::start`] until dropped, so a timeout, an error or a cancelled future all count it
/// out again.
pub struct InFlight(&'static str);

impl InFlight {
    pub fn start(channel: &'static str) -> Self {
        icon_metrics::notifier()
            .in_flight
            .get_or_create(&ChannelLabels { channel })
            .inc();
        Self(channel)
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        icon_metrics::notifier()
            .in_flight
            .get_or_create(&ChannelLabels { channel: self.0 })
            .dec();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outcomes_map_to_the_documented_words() {
        let delivered = Outcome::Delivered { status: Some(204) };
        let retry = Outcome::Retry {
            status: Some(500),
            error: None,
            retry_after: None,
        };
        let gone = Outcome::GiveUp {
            status: Some(410),
            error: None,
        };
        let refused = Outcome::GiveUp {
            status: None,
            error: Some("the network policy refuses 10.0.0.1".into()),
        };
        let fcm_refused = Outcome::GiveUp {
            status: Some(403),
            error: None,
        };
        let dropped = Outcome::Dropped {
            status: Some(404),
            error: "UNREGISTERED".into(),
        };
        assert_eq!(attempt_outcome(&delivered), "delivered");
        assert_eq!(attempt_outcome(&retry), "failed");
        assert_eq!(attempt_outcome(&gone), "gone");
        assert_eq!(attempt_outcome(&refused), "refused");
        assert_eq!(attempt_outcome(&fcm_refused), "failed");
        assert_eq!(attempt_outcome(&dropped), "gone");
    }

    #[test]
    fn in_flight_counts_out_when_dropped() {
        let gauge = || {
            icon_metrics::notifier()
                .in_flight
                .get_or_create(&ChannelLabels { channel: "email" })
                .get()
        };
        let before = gauge();
        {
            let _a = InFlight::start("email");
            let _b = InFlight::start("email");
            assert_eq!(gauge(), before + 2);
        }
        assert_eq!(gauge(), before);
    }

    #[test]
    fn tiers_are_named_as_their_queues() {
        assert_eq!(tier_name(Some(Duration::from_secs(5))), "5000ms");
        assert_eq!(tier_name(None), "now");
    }
}
