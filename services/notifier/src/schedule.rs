//! When to try a notification again.
//!
//! The schedule is a list of delays (the last repeats) bounded by a give-up deadline counted
//! from the first attempt. Waiting happens in RabbitMQ, not in this process: a retry is
//! published into a delay tier, a TTL queue that dead-letters back into the work queue. There is
//! one tier per distinct delay of the schedule, so each of its delays is one hop. A wait that
//! matches no tier (a receiver's `Retry-After`, or the last wait before the deadline) is moved
//! to the nearest wait the tiers make in two hops and a short hold in the consumer (later for a
//! `Retry-After`, which says "not before"; earlier for the deadline), so every retry comes
//! within the slack of [`icon_runtime::tiers::slack`] (5% or 200 ms) of its scheduled time.

use std::time::Duration;

/// A receiver's `Retry-After` is honoured up to this long; beyond it the schedule's own delays
/// apply, so a misconfigured receiver cannot push a notification past any reasonable window.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(3600);

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetrySchedule {
    delays: Vec<Duration>,
    give_up_after: Duration,
}

impl RetrySchedule {
    /// `delays` must not be empty (settings parsing guarantees it).
    pub fn new(delays: Vec<Duration>, give_up_after: Duration) -> Self {
        let delays = if delays.is_empty() {
            vec![Duration::from_secs(10)]
        } else {
            delays
        };
        Self {
            delays,
            give_up_after,
        }
    }

    pub fn give_up_after(&self) -> Duration {
        self.give_up_after
    }

    /// The wait after the `attempt`-th failed attempt (1-based); the last delay repeats.
    pub fn delay_after(&self, attempt: i32) -> Duration {
        let i = (attempt.max(1) as usize - 1).min(self.delays.len() - 1);
        self.delays[i]
    }

    /// The wait after a failed attempt, stretched by the receiver's `Retry-After` if it asked
    /// for longer (within [`MAX_RETRY_AFTER`]), and then to the earliest wait the delay tiers
    /// make in two hops ([`icon_runtime::DelayTiers::reachable_at_least`]): a `Retry-After`
    /// says "not before", and the retry then comes when it is scheduled.
    pub fn wait_after(&self, attempt: i32, retry_after: Option<Duration>) -> Duration {
        let scheduled = self.delay_after(attempt);
        match retry_after {
            Some(r) if r.min(MAX_RETRY_AFTER) > scheduled => self
                .delay_tiers()
                .reachable_at_least(r.min(MAX_RETRY_AFTER)),
            _ => scheduled,
        }
    }

    /// The wait for a last retry before a give-up deadline `left` away: the latest the tiers
    /// make in two hops ([`icon_runtime::DelayTiers::reachable_at_most`]).
    pub fn last_wait(&self, left: Duration) -> Duration {
        self.delay_tiers().reachable_at_most(left)
    }

    /// The distinct delays, shortest first: one delay tier queue each.
    pub fn tiers(&self) -> Vec<Duration> {
        self.delay_tiers().all().to_vec()
    }

    /// The tier for a remaining wait (see [`icon_runtime::DelayTiers::tier_for`]).
    pub fn tier_for(&self, remaining: Duration) -> Duration {
        self.delay_tiers().tier_for(remaining)
    }

    /// How to wait `remaining` (see [`icon_runtime::DelayTiers::plan`]).
    pub fn plan(&self, remaining: Duration) -> icon_runtime::Wait {
        self.delay_tiers().plan(remaining)
    }

    fn delay_tiers(&self) -> icon_runtime::DelayTiers {
        icon_runtime::DelayTiers::new(self.delays.iter().copied())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(secs: &[u64]) -> RetrySchedule {
        RetrySchedule::new(
            secs.iter().map(|s| Duration::from_secs(*s)).collect(),
            Duration::from_secs(3600),
        )
    }

    #[test]
    fn last_delay_repeats() {
        let sch = s(&[10, 60, 600]);
        assert_eq!(sch.delay_after(1), Duration::from_secs(10));
        assert_eq!(sch.delay_after(2), Duration::from_secs(60));
        assert_eq!(sch.delay_after(3), Duration::from_secs(600));
        assert_eq!(sch.delay_after(30), Duration::from_secs(600));
    }

    #[test]
    fn retry_after_stretches_within_bounds() {
        let sch = s(&[10]);
        assert_eq!(
            sch.wait_after(1, Some(Duration::from_secs(30))),
            Duration::from_secs(30)
        );
        assert_eq!(
            sch.wait_after(1, Some(Duration::from_secs(1))),
            Duration::from_secs(10)
        );
        assert_eq!(
            sch.wait_after(1, Some(Duration::from_secs(99_999))),
            MAX_RETRY_AFTER
        );
    }

    #[test]
    fn a_retry_after_or_a_deadline_between_tiers_moves_to_a_wait_of_two_hops() {
        let secs = Duration::from_secs;
        let sch = s(&[10, 60, 600]);
        // 95 s is 60+10+10+10 and a hold: the retry comes at 120 s (60+60), not before 95 s.
        assert_eq!(sch.wait_after(1, Some(secs(95))), secs(120));
        assert_eq!(sch.wait_after(2, Some(secs(70))), secs(70));
        // A deadline 9 minutes away: the last retry two hops and a hold before it.
        let last = sch.last_wait(secs(540));
        assert!(last <= secs(540), "{last:?}");
        assert!(sch.delay_tiers().hops(last) <= icon_runtime::tiers::MAX_HOPS);
    }

    #[test]
    fn tiers_and_hops() {
        let sch = s(&[60, 10, 60, 600]);
        assert_eq!(
            sch.tiers(),
            vec![
                Duration::from_secs(10),
                Duration::from_secs(60),
                Duration::from_secs(600)
            ]
        );
        assert_eq!(
            sch.tier_for(Duration::from_secs(30)),
            Duration::from_secs(10)
        );
        assert_eq!(
            sch.tier_for(Duration::from_secs(60)),
            Duration::from_secs(60)
        );
        assert_eq!(
            sch.tier_for(Duration::from_secs(5)),
            Duration::from_secs(10)
        );
        assert_eq!(
            sch.tier_for(Duration::from_secs(7200)),
            Duration::from_secs(600)
        );
    }
}
