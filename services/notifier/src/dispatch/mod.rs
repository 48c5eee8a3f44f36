//! The notifier's work queue handler: turns `checkout.finished` and `notification.due` messages
//! into attempts, and each failed attempt into a scheduled retry, a park, or nothing more.
//!
//! Crash safety rests on the attempt counter (see `icon_store::notifications`): every message
//! names the attempt count it expects (`checkout.finished` expects 0), and the attempt is
//! claimed in the database *before* the receiver is called, so of two copies of one message
//! only one calls out; the other does nothing (or, while the attempt is in flight, comes back
//! after its lease to take over a crashed one). After a failed attempt the next retry is
//! published (with a confirm) *before* the attempt is recorded, and the delivery is acked last;
//! so a crash at any point leaves either the old message to be redelivered or the new one in a
//! delay tier, and never neither. The price is an occasional repeated callback after a crash,
//! always with the same `webhook-id`.
//!
//! Here: taking messages and claiming attempts; `outcome.rs`: making a claimed attempt and
//! what follows from its outcome (a retry published to a delay tier, a park, the record).

mod group;
mod outcome;

use crate::channels::{Channels, Route};
use crate::notice::Notice;
use crate::schedule::RetrySchedule;
use chrono::{DateTime, Utc};
use futures_util::FutureExt;
use icon_broker::lapin::message::Delivery;
use icon_broker::{Disposition, Handler, LazyPublisher, PublishError};
use icon_contracts::messages::{message_type, parse};
use icon_contracts::{CheckoutFinished, Envelope, Message, NotificationDue, OrderOutcome};
use icon_domain::NotificationState;
use icon_store::notifications::{self, AttemptClaim, Notification, Untried};
use icon_store::{checkout_events, checkouts, Pool, StoreError};
use std::time::Duration;

/// A due message arriving this close to its `not_before` is attempted rather than delayed again.
const EARLY_TOLERANCE: Duration = Duration::from_millis(20);

/// How long a retry that overtook the recording of its own attempt waits (the shortest tier).
const RECORDING_WAIT: Duration = Duration::from_millis(100);

#[derive(Debug, thiserror::Error)]
enum DispatchError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Publish(#[from] PublishError),
}

pub struct Dispatcher {
    pool: Pool,
    channels: Channels,
    schedule: RetrySchedule,
    publisher: LazyPublisher,
    /// The most one attempt may take on any channel (`ICON_CALLBACK_TIMEOUT`): a push may
    /// need a token grant, a send, a renewal and a second send, so the channels' own request
    /// timeouts alone do not bound it.
    attempt_limit: Duration,
    /// How long a claimed attempt may run before another copy may take it over: longer than
    /// any attempt ([`Self::attempt_limit`]) plus recording it.
    lease: Duration,
    /// Claims first attempts, for several checkouts in one transaction when they finish
    /// together.
    claims: group::GroupCommit<group::Claims>,
    /// Writes attempt records, several in one transaction when they finish together.
    records: group::GroupCommit<group::Records>,
}

/// Time to record an attempt, on top of the attempt itself, within a claim's lease.
const RECORDING_MARGIN: Duration = Duration::from_secs(5);

impl Dispatcher {
    pub fn new(
        pool: Pool,
        channels: Channels,
        schedule: RetrySchedule,
        publisher: LazyPublisher,
        attempt_limit: Duration,
    ) -> Self {
        let lease = attempt_limit + RECORDING_MARGIN;
        Self {
            claims: group::GroupCommit::spawn(
                pool.clone(),
                group::Claims {
                    channels: channels.deliverable(),
                    lease,
                },
            ),
            records: group::GroupCommit::spawn(pool.clone(), group::Records),
            pool,
            channels,
            schedule,
            publisher,
            attempt_limit,
            lease,
        }
    }

    /// How long a claimed attempt is protected from other copies.
    pub fn lease(&self) -> Duration {
        self.lease
    }

    pub async fn close(&self) {
        self.publisher.close().await;
    }

    async fn on_finished(&self, msg: Envelope<CheckoutFinished>) -> Result<(), DispatchError> {
        // One statement claims every first attempt this notifier can make and lists the rest
        // (with those of the other checkouts finishing at the same moment).
        let list = self.claims.write(msg.data.checkout_id).await?;
        let ended = msg.data.status;
        let notice = Notice::end(msg.data, ended, msg.occurred_at);
        // Only notifications nobody has attempted yet; otherwise their retry chains own them.
        // All at once, so one slow device or receiver does not hold back the others.
        let first_attempts = list.iter().filter_map(|(n, claimed)| match claimed {
            Some(claimed) => match self.channels.get(&n.channel) {
                Some(Route::Deliver(channel)) => {
                    Some(self.make(n, channel, claimed.clone(), &notice).boxed())
                }
                _ => None,
            },
            None if n.state == NotificationState::Pending && n.attempts <= 1 => {
                Some(self.attempt(n, 0, None, &notice).boxed())
            }
            None => None,
        });
        futures_util::future::join_all(first_attempts)
            .await
            .into_iter()
            .collect()
    }

    async fn on_due(&self, due: NotificationDue) -> Result<(), DispatchError> {
        let n = {
            let db = self.pool.get().await.map_err(StoreError::from)?;
            notifications::get(&db, due.notification_id).await?
        };
        let Some(n) = n else {
            tracing::warn!(notification = %due.notification_id, "due notification no longer exists");
            return Ok(());
        };
        if n.state.is_final() || !(due.after_attempt..=due.after_attempt + 1).contains(&n.attempts)
        {
            tracing::debug!(state = %n.state, attempts = n.attempts, expected = due.after_attempt, "stale due message dropped");
            return Ok(());
        }
        let now = Utc::now();
        if let Ok(remaining) = (due.not_before - now).to_std() {
            if remaining > EARLY_TOLERANCE {
                match self.schedule.plan(remaining) {
                    icon_runtime::Wait::Tier(_) => {
                        self.defer(due.clone(), remaining).await?;
                        return Ok(());
                    }
                    // Shorter than any tier: waiting here ends on time, a tier would not.
                    icon_runtime::Wait::Hold(rest) => tokio::time::sleep(rest).await,
                }
            }
        }
        let notice = {
            let db = self.pool.get().await.map_err(StoreError::from)?;
            load_notice(&db, &n).await?
        };
        match notice {
            Some(notice) => {
                self.attempt(&n, due.after_attempt, Some(due.not_before), &notice)
                    .await
            }
            None => {
                tracing::warn!("checkout of a due notification is not final; dropping");
                Ok(())
            }
        }
    }

    /// Takes `n` up for the attempt after `after_attempt`, scheduled for `scheduled` (`None`:
    /// a first attempt, on `checkout.finished`): the attempt and what follows from it, or, when
    /// no attempt may be made, the notification's end. The checkout became final at
    /// `finished_at`.
    ///
    /// Every take-up passes here (a scheduled retry, a sweeper's copy, a redelivery, a copy
    /// looking again after a lease), so this is where a notification that can go no further
    /// ends visibly, whatever its attempt count: `not_configured` when this notifier has no
    /// credentials for its channel, and `failed` and parked when its give-up deadline passed
    /// before the attempt was even scheduled (a sweeper's copy of a lost retry, long after).
    /// A retry scheduled within the deadline (the last one is scheduled at it) is still made,
    /// and parked by [`Self::make`] if it fails.
    async fn attempt(
        &self,
        n: &Notification,
        after_attempt: i32,
        scheduled: Option<DateTime<Utc>>,
        notice: &Notice,
    ) -> Result<(), DispatchError> {
        let channel = match self.channels.get(&n.channel) {
            Some(Route::Deliver(channel)) => channel,
            Some(Route::Disabled(why)) => {
                return self
                    .end_untried(n, after_attempt, Untried::NotConfigured(why))
                    .await;
            }
            None => {
                tracing::error!(channel = %n.channel, "no such channel in this notifier; leaving it pending");
                return Ok(());
            }
        };
        if let (Some(first), Some(scheduled)) = (n.first_attempt_at, scheduled) {
            if scheduled > self.deadline(first) + EARLY_TOLERANCE {
                let reason = format!(
                    "not delivered within {:?} ({} attempts), and no attempt was due before that; last: {}",
                    self.schedule.give_up_after(),
                    n.attempts,
                    outcome::describe(
                        n.last_response_status.and_then(|s| u16::try_from(s).ok()),
                        n.last_error.as_deref()
                    )
                );
                return self
                    .end_untried(n, after_attempt, Untried::GivenUp(&reason))
                    .await;
            }
        }
        if let Some(wait) = self.behind(n).await? {
            let due = NotificationDue {
                checkout_id: n.checkout_id,
                notification_id: n.id,
                after_attempt,
                not_before: Utc::now()
                    + chrono::Duration::from_std(wait).unwrap_or(chrono::Duration::MAX),
            };
            self.defer(due, wait).await?;
            return Ok(());
        }
        let claimed = {
            let db = self.pool.get().await.map_err(StoreError::from)?;
            notifications::claim_attempt(&db, n.id, after_attempt, self.lease).await?
        };
        let claimed = match claimed {
            AttemptClaim::Claimed(claimed) => claimed,
            AttemptClaim::Busy { until } => {
                // Another copy is calling out now. Look again once its lease is over, in case
                // it crashed; if it did not, this copy will find the attempt made and stop.
                tracing::info!(%until, "attempt in flight elsewhere; looking again after its lease");
                let due = NotificationDue {
                    checkout_id: n.checkout_id,
                    notification_id: n.id,
                    after_attempt,
                    not_before: until,
                };
                let remaining = (until - Utc::now()).to_std().unwrap_or_default();
                self.defer(due, remaining).await?;
                return Ok(());
            }
            AttemptClaim::Recording => {
                // A retry can overtake the recording of the attempt that scheduled it (a wait
                // that was due at once): it comes back after the shortest tier.
                tracing::info!(
                    "the previous attempt is still being recorded; looking again shortly"
                );
                // It keeps the time it was scheduled for: it is that attempt, not a late one.
                let due = NotificationDue {
                    checkout_id: n.checkout_id,
                    notification_id: n.id,
                    after_attempt,
                    not_before: scheduled.unwrap_or_else(Utc::now),
                };
                self.defer(due, RECORDING_WAIT).await?;
                return Ok(());
            }
            AttemptClaim::Nothing => {
                tracing::info!("another copy made this attempt; nothing to do");
                return Ok(());
            }
        };
        self.make(n, channel, claimed, notice).await
    }

    /// In order per checkout at each receiver: `n` (a later event) waits while the receiver's
    /// previous event is neither delivered nor given up. How long to wait before looking again:
    /// until that one's next attempt is due (a moment after it), else a second.
    async fn behind(&self, n: &Notification) -> Result<Option<Duration>, StoreError> {
        if n.sequence <= 1 {
            return Ok(None);
        }
        let previous = {
            let db = self.pool.get().await?;
            notifications::predecessor(&db, n).await?
        };
        let Some(previous) = previous.filter(|p| !p.state.is_final()) else {
            return Ok(None);
        };
        let wait = previous
            .next_attempt_at
            .and_then(|at| (at - Utc::now()).to_std().ok())
            .map(|w| w + WAIT_BEHIND_MARGIN)
            .unwrap_or(WAIT_BEHIND)
            .max(WAIT_BEHIND_MARGIN);
        tracing::info!(
            sequence = n.sequence,
            previous = previous.sequence,
            state = %previous.state,
            ?wait,
            "the receiver's previous event is not delivered yet; this one waits"
        );
        Ok(Some(wait))
    }
}

/// How long an event waits behind a previous one with no next attempt scheduled (in flight, or
/// not yet attempted) before looking again.
const WAIT_BEHIND: Duration = Duration::from_secs(1);
/// After the previous event's next attempt is due: time for it to be made and recorded.
const WAIT_BEHIND_MARGIN: Duration = Duration::from_millis(200);

/// Rebuilds what `n` announces from the database, for retries and later events: the
/// checkout's state now, and event `n.sequence` (1: the checkout's end, at its last change, as
/// a final checkout is not changed again; later: as recorded). `None` if the checkout is not
/// final (or the event is missing).
async fn load_notice(
    db: &impl icon_store::GenericClient,
    n: &Notification,
) -> Result<Option<Notice>, StoreError> {
    // A checkout that ended once has its events, though a cancellation may have reopened it
    // since: event 1 is that first end, the state sent is the checkout's as it is now.
    let Some(c) = checkouts::get(db, n.checkout_id, None).await? else {
        return Ok(None);
    };
    let Some((first_status, finished_at)) = c.first_end else {
        return Ok(None);
    };
    let checkout = CheckoutFinished {
        checkout_id: c.id,
        cart_id: c.cart_id,
        status: c.status,
        source_url: c.resource_url,
        orders: c.orders.into_iter().map(OrderOutcome::from).collect(),
        reason: c.reason,
    };
    if n.sequence <= 1 {
        return Ok(Some(Notice::end(checkout, first_status, finished_at)));
    }
    Ok(checkout_events::get(db, n.checkout_id, n.sequence)
        .await?
        .map(|e| Notice::later(checkout, e)))
}

impl Handler for Dispatcher {
    async fn handle(&self, delivery: &Delivery) -> Disposition {
        let result = match message_type(&delivery.data).as_deref() {
            Ok(CheckoutFinished::TYPE) => match parse::<CheckoutFinished>(&delivery.data) {
                Ok(m) => self.on_finished(m).await,
                Err(e) => return Disposition::Poison(e.to_string()),
            },
            Ok(NotificationDue::TYPE) => match parse::<NotificationDue>(&delivery.data) {
                Ok(m) => self.on_due(m.data).await,
                Err(e) => return Disposition::Poison(e.to_string()),
            },
            Ok(other) => return Disposition::Poison(format!("unknown message type `{other}`")),
            Err(e) => return Disposition::Poison(e.to_string()),
        };
        match result {
            Ok(()) => Disposition::Ack,
            Err(DispatchError::Publish(e)) => Disposition::Retry(e.to_string()),
            Err(DispatchError::Store(e)) if e.is_unavailable() => {
                Disposition::Retry(icon_store::pool::source_chain(&e))
            }
            Err(DispatchError::Store(e)) => Disposition::Poison(icon_store::pool::source_chain(&e)),
        }
    }
}
