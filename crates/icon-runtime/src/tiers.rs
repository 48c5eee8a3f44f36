//! Delay tiers: waiting in RabbitMQ instead of in a process.
//!
//! A tier is a TTL queue without consumers that dead-letters back into a work queue; there is
//! one per distinct delay a service schedules. A wait that matches no tier (a `Retry-After`, a
//! lease's remaining time) is made of hops: the message carries its `not_before`, enters the
//! largest tier that overshoots by no more than [`slack`], and re-enters a tier if it comes
//! back early. The worker (retailer retries, status lookups) and the notifier (callback retries) share this.

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

    /// The tier for a remaining wait: the largest that overshoots it by no more than
    /// [`slack`], or the shortest if all do.
    ///
    /// The slack matters because the remaining wait is measured a moment after the target time
    /// was set: a 7 s retry has 6.99 s left by the time it is published, and "the largest tier
    /// not above it" would pick the 3 s tier and hop three times (arriving 2 s late); with the
    /// slack it takes the 7 s tier once and arrives a few milliseconds late.
    pub fn tier_for(&self, remaining: Duration) -> Duration {
        let limit = remaining + slack(remaining);
        self.0
            .iter()
            .rev()
            .find(|t| **t <= limit)
            .copied()
            .unwrap_or(self.0[0])
    }
}

/// How to spend a remaining wait (see [`DelayTiers::plan`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wait {
    /// In this delay tier (the message may come back early, and waits again).
    Tier(Duration),
    /// In the process, holding the delivery: what is left is shorter than every tier, and
    /// taking the shortest would overshoot by more than [`slack`]. Never longer than the
    /// shortest tier.
    Hold(Duration),
}

impl DelayTiers {
    /// How to wait `remaining`: in [`Self::tier_for`]'s tier, unless even the shortest tier
    /// would end more than [`slack`] late; then the rest is held in the process. So a
    /// remainder shorter than the shortest tier (a `Retry-After` of 5 s with tiers of 3 s and
    /// 7 s leaves 2 s after the 3 s tier) ends on time instead of a whole tier late.
    pub fn plan(&self, remaining: Duration) -> Wait {
        let tier = self.tier_for(remaining);
        if tier <= remaining + slack(remaining) {
            Wait::Tier(tier)
        } else {
            Wait::Hold(remaining)
        }
    }
}

/// How late a wait may end: 5% of it or 200 ms, whichever is larger.
pub fn slack(wait: Duration) -> Duration {
    (wait / 20).max(Duration::from_millis(200))
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

    #[test]
    fn a_wait_measured_a_moment_late_still_takes_its_own_tier() {
        let ms = Duration::from_millis;
        let t = DelayTiers::new([ms(3000), ms(7000)]);
        // 7 s set, a few ms gone before publishing: the 7 s tier, not 3 s and more hops.
        assert_eq!(t.tier_for(ms(6990)), ms(7000));
        assert_eq!(t.tier_for(ms(2995)), ms(3000));
        // Beyond the slack the tier below is still the right first hop.
        assert_eq!(t.tier_for(ms(6000)), ms(3000));
        // Ten minutes with the default tiers: one hop, not fifteen.
        let d = DelayTiers::new([ms(10_000), ms(60_000), ms(600_000)]);
        assert_eq!(d.tier_for(ms(599_950)), ms(600_000));
        // A retailer retry due in 1.5 s (a 1.5 s tier among 250 ms doublings).
        let w = DelayTiers::new([ms(250), ms(500), ms(1000), ms(1500), ms(2000)]);
        assert_eq!(w.tier_for(ms(1499)), ms(1500));
        assert_eq!(slack(ms(1000)), ms(200));
        assert_eq!(slack(ms(600_000)), ms(30_000));
    }

    #[test]
    fn a_remainder_shorter_than_every_tier_is_held_not_overshot() {
        let ms = Duration::from_millis;
        let t = DelayTiers::new([ms(3000), ms(7000)]);
        // Retry-After 5 s: the 3 s tier, then 2 s held (the 3 s tier again would be 1 s late).
        assert_eq!(t.plan(ms(5000)), Wait::Tier(ms(3000)));
        assert_eq!(t.plan(ms(2000)), Wait::Hold(ms(2000)));
        // Within the slack the tier is still taken.
        assert_eq!(t.plan(ms(2850)), Wait::Tier(ms(3000)));
        assert_eq!(t.plan(ms(6990)), Wait::Tier(ms(7000)));
    }
}
