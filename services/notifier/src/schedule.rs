//! When to try a notification again.
//!
//! The schedule is a list of delays (the last repeats) bounded by a give-up deadline counted
//! from the first attempt. Waiting happens in RabbitMQ, not in this process: a retry is
//! published into a delay tier, a TTL queue that dead-letters back into the work queue. There is
//! one tier per distinct delay of the schedule; a wait that matches no tier (a receiver's
//! `Retry-After`, or the last wait before the deadline) is made of several hops, the message
//! carrying its `not_before` and re-entering the largest tier that ends within the slack of
//! [`icon_runtime::tiers::slack`] (5% or 200 ms).

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
    /// for longer (within [`MAX_RETRY_AFTER`]).
    pub fn wait_after(&self, attempt: i32, retry_after: Option<Duration>) -> Duration {
        let scheduled = self.delay_after(attempt);
        match retry_after {
            Some(r) => scheduled.max(r.min(MAX_RETRY_AFTER)),
            None => scheduled,
        }
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
