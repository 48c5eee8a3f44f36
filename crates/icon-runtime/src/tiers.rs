//! Delay tiers: waiting in RabbitMQ instead of in a process.
//!
//! A tier is a TTL queue without consumers that dead-letters back into a work queue; there is
//! one per distinct delay a service schedules. A wait that matches no tier (a `Retry-After`, a
//! lease's remaining time) is made of hops: the message carries its `not_before`, enters the
//! largest tier that does not overshoot, and re-enters a tier if it comes back early. The
//! worker (retailer retries, status lookups) and the notifier (callback retries) share this.

use std::time::Duration;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DelayTiers(Vec<Duration>);

impl DelayTiers {
    /// The distinct non-zero delays of `delays`, shortest first (at least one: 1 s if none).
    pub fn new(delays: impl IntoIterator<Item = Duration>) -> Self {
        let mut t: Vec<Duration> = delays.into_iter().filter(|d| !d.is_zero()).collect();
        t.sort();
        t.dedup();
        if t.is_empty() {
            t.push(Duration::from_secs(1));
        }
        Self(t)
    }

    /// Every tier, shortest first: one queue each.
    pub fn all(&self) -> &[Duration] {
        &self.0
    }

    /// The tier for a remaining wait: the largest that does not overshoot it, or the shortest
    /// if all do.
    pub fn tier_for(&self, remaining: Duration) -> Duration {
        self.0
            .iter()
            .rev()
            .find(|t| **t <= remaining)
            .copied()
            .unwrap_or(self.0[0])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn distinct_sorted_and_hops() {
        let s = |v: u64| Duration::from_secs(v);
        let t = DelayTiers::new([s(60), s(10), s(60), s(600), Duration::ZERO]);
        assert_eq!(t.all(), &[s(10), s(60), s(600)]);
        assert_eq!(t.tier_for(s(30)), s(10));
        assert_eq!(t.tier_for(s(60)), s(60));
        assert_eq!(t.tier_for(s(5)), s(10));
        assert_eq!(t.tier_for(s(7200)), s(600));
        assert_eq!(DelayTiers::new([]).all(), &[s(1)]);
    }
}
