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

/// The most hops through delay tiers a scheduled wait takes (a hold at the end not counted).
pub const MAX_HOPS: usize = 2;

/// A message back this close to its time is due: it does not wait again.
const DUE_WITHIN: Duration = Duration::from_millis(20);

impl DelayTiers {
    /// How many tiers a message waiting `wait` passes through, taking [`Self::plan`] each
    /// time it comes back early.
    pub fn hops(&self, wait: Duration) -> usize {
        let mut left = wait;
        let mut hops = 0;
        while left > DUE_WITHIN {
            match self.plan(left) {
                Wait::Tier(t) => {
                    left = left.saturating_sub(t);
                    hops += 1;
                }
                Wait::Hold(_) => break,
            }
        }
        hops
    }

    /// Every wait of one or two whole tiers: where a message can be in [`MAX_HOPS`] hops.
    fn sums(&self) -> Vec<Duration> {
        let mut sums: Vec<Duration> = self.0.clone();
        for (i, a) in self.0.iter().enumerate() {
            sums.extend(self.0[i..].iter().map(|b| *a + *b));
        }
        sums.sort();
        sums.dedup();
        sums
    }

    /// The earliest wait not shorter than `at_least` that takes at most [`MAX_HOPS`] hops:
    /// `at_least` itself when it does (and when it is longer than two of the longest tier,
    /// which no two hops make). A `Retry-After` that matches no tier is rounded up to
    /// such a wait (it says "not before"), so the retry comes when it is scheduled, in at most
    /// two hops.
    pub fn reachable_at_least(&self, at_least: Duration) -> Duration {
        if self.hops(at_least) <= MAX_HOPS {
            return at_least;
        }
        self.sums()
            .into_iter()
            .find(|s| *s >= at_least && self.hops(*s) <= MAX_HOPS)
            .unwrap_or(at_least)
    }

    /// The latest wait not longer than `at_most` that takes at most [`MAX_HOPS`] hops:
    /// `at_most` itself when it does. The last retry before a give-up deadline is brought
    /// forward to such a wait rather than arriving late through more hops.
    pub fn reachable_at_most(&self, at_most: Duration) -> Duration {
        if self.hops(at_most) <= MAX_HOPS {
            return at_most;
        }
        // A sum of tiers, then a hold shorter than the shortest tier.
        // (Held, not taken as the shortest tier: short of it by more than its slack.)
        let shortest = self.0[0];
        let hold = shortest.saturating_sub(slack(shortest) + Duration::from_millis(1));
        self.sums()
            .into_iter()
            .rev()
            .filter(|s| *s <= at_most)
            .flat_map(|s| [s + hold.min(at_most - s), s])
            .find(|w| self.hops(*w) <= MAX_HOPS)
            .unwrap_or(Duration::ZERO)
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

    #[test]
    fn every_scheduled_wait_is_made_in_at_most_two_hops_and_on_time() {
        let ms = Duration::from_millis;
        let s = |v: u64| Duration::from_secs(v);
        let default = DelayTiers::new([s(10), s(60), s(600)]);
        // The schedule's own delays: one hop each.
        for t in [s(10), s(60), s(600)] {
            assert_eq!(default.hops(t), 1);
        }
        // A Retry-After of 95 s would take 60+10+10+10 and a hold: rounded up to 120 s (60+60).
        assert_eq!(default.hops(s(95)), 4);
        assert_eq!(default.reachable_at_least(s(95)), s(120));
        assert_eq!(default.reachable_at_least(s(25)), s(25)); // 10+10 and a 5 s hold
        assert_eq!(default.reachable_at_least(s(3)), s(3)); // held
                                                            // The last wait before a deadline 9 minutes away: 60+60 and a hold would be 3 hops
                                                            // more; brought forward to the latest wait of two hops and a hold.
        let last = default.reachable_at_most(s(540));
        assert!(last <= s(540) && default.hops(last) <= MAX_HOPS, "{last:?}");
        assert_eq!(last, s(120) + ms(9499));
        // Every wait up to twice the longest tier keeps the promise (beyond that, no two hops
        // can make it: one more hop per longest tier).
        let worker = DelayTiers::new([ms(100), ms(200), ms(400), ms(800), ms(1500), ms(2000)]);
        for t in [&default, &worker] {
            let longest = *t.all().last().unwrap();
            for w in (0..4000).map(|i| longest * 2 * i / 4000) {
                let up = t.reachable_at_least(w);
                assert!(up >= w && t.hops(up) <= MAX_HOPS, "{w:?} -> {up:?}");
                let down = t.reachable_at_most(w);
                assert!(down <= w && t.hops(down) <= MAX_HOPS, "{w:?} -> {down:?}");
            }
        }
    }
}
