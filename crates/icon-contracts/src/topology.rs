//! Broker topology: every exchange and queue name in one place.
//!
//! ```text
//! outbox relay --publish--> [icon.events] --checkout.requested--> (checkout.requested) --> worker
//!                                          --checkout.finished---> (checkout.finished)  --> notifier
//! notifier --retry--> [icon.notifier.delay] --tier key--> (checkout.finished.delay.<ms>ms)
//!     ... TTL expires, dead-lettered via the default exchange ... --> (checkout.finished)
//! notifier --give up--> (checkout.finished.parked)
//! worker --retry or lookup due--> (checkout.requested.delay.<ms>ms)
//!     ... TTL expires, dead-lettered via the default exchange ... --> (checkout.requested)
//! consumer --poison--> (<queue>.dead)
//! ```
//!
//! The delay tiers are plain TTL queues without consumers, one per distinct delay of the retry
//! schedule, so no broker plugin is needed.

use std::time::Duration;

/// Direct exchange every domain event is published to, routed by message type.
pub const EVENTS_EXCHANGE: &str = "icon.events";
/// The worker's work queue.
pub const CHECKOUT_REQUESTED: &str = "checkout.requested";
/// The notifier's work queue: finished checkouts and, dead-lettered from the delay tiers, due
/// notification retries.
pub const CHECKOUT_FINISHED: &str = "checkout.finished";
/// Direct exchange the notifier publishes retries to; each tier queue is bound by its own name.
pub const DELAY_EXCHANGE: &str = "icon.notifier.delay";
/// Notifications given up on: kept for operators to inspect and redeliver.
pub const PARKED: &str = "checkout.finished.parked";

/// The dead-letter queue of a work queue, for messages that cannot be processed at all.
pub fn dead_letter_queue(queue: &str) -> String {
    format!("{queue}.dead")
}

/// The notifier's delay tier queue for one delay.
pub fn delay_queue(delay: Duration) -> String {
    delay_queue_for(CHECKOUT_FINISHED, delay)
}

/// The delay tier of work queue `queue` for one delay: `<queue>.delay.<ms>ms`. The worker's
/// tiers (`checkout.requested.delay.*`) hold retailer retries and status lookups; the
/// notifier's (`checkout.finished.delay.*`) hold notification retries. Publishing straight to a
/// tier through the default exchange needs no binding.
pub fn delay_queue_for(queue: &str, delay: Duration) -> String {
    format!("{queue}.delay.{}ms", delay.as_millis())
}

/// The work queue and delay of a delay tier named by [`delay_queue_for`], if `name` is one of
/// ICON's: lets a publisher whose message to a tier came back unroutable (the tier was deleted)
/// declare that tier again without knowing the schedule of the service that chose it.
pub fn parse_delay_queue(name: &str) -> Option<(&'static str, Duration)> {
    [CHECKOUT_REQUESTED, CHECKOUT_FINISHED]
        .into_iter()
        .find_map(|queue| {
            let ms = name
                .strip_prefix(queue)?
                .strip_prefix(".delay.")?
                .strip_suffix("ms")?;
            let ms: u64 = ms.parse().ok().filter(|ms| *ms > 0)?;
            Some((queue, Duration::from_millis(ms)))
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_delay_queue_name_parses_back_to_its_queue_and_delay() {
        let d = Duration::from_millis(2500);
        assert_eq!(
            parse_delay_queue(&delay_queue_for(CHECKOUT_REQUESTED, d)),
            Some((CHECKOUT_REQUESTED, d))
        );
        assert_eq!(
            parse_delay_queue(&delay_queue(d)),
            Some((CHECKOUT_FINISHED, d))
        );
        for other in [
            "checkout.requested",
            "checkout.requested.delay.0ms",
            "checkout.requested.delay.5s",
            "elsewhere.delay.100ms",
            "checkout.finished.delay.-1ms",
        ] {
            assert_eq!(parse_delay_queue(other), None, "{other}");
        }
    }
}
