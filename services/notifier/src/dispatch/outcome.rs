//! Making a claimed attempt and acting on its outcome: the retry published to the delay tier
//! that fits (before the attempt is recorded), a park where operators look, and the record;
//! and ending a notification that is taken up when no attempt may be made.

use super::{DispatchError, Dispatcher, EARLY_TOLERANCE};
use crate::channels::{Channel, Outcome};
use crate::metrics;
use crate::notice::Notice;
use chrono::{DateTime, Utc};
use icon_broker::{OutgoingMessage, PublishError};
use icon_contracts::{topology, Envelope, Message, NotificationDue, NotificationParked};
use icon_domain::NotificationState;
use icon_store::notifications::{self, Claimed, Notification, RecordAttempt, Untried};
use icon_store::StoreError;
use std::sync::Arc;
use std::time::{Duration, Instant};

impl Dispatcher {
    /// Makes a claimed attempt, then schedules the retry, parks, or stops, and records it.
    pub(super) async fn make(
        &self,
        n: &Notification,
        channel: &Arc<dyn Channel>,
        claimed: Claimed,
        notice: &Notice,
    ) -> Result<(), DispatchError> {
        let started_at = Utc::now();
        let clock = Instant::now();
        let outcome = {
            let _in_flight = metrics::InFlight::start(channel.name());
            tokio::time::timeout(self.attempt_limit, channel.deliver(n, &claimed, notice))
                .await
                .unwrap_or_else(|_| Outcome::Retry {
                    status: None,
                    error: Some(format!("no outcome within {:?}", self.attempt_limit)),
                    retry_after: None,
                })
        };
        metrics::attempt(channel.name(), &outcome, notice.known_at);
        let Claimed {
            claim,
            attempt: attempt_no,
            first_attempt_at,
            ..
        } = claimed;
        let duration_ms = clock.elapsed().as_millis().min(i32::MAX as u128) as i32;
        let deadline = self.deadline(first_attempt_at);

        // `parked`: given up where operators look (the parked queue and the parked gauge); a
        // dropped push is failed too, but there is nothing to redo.
        let (status, error, new_state, next, parked) = match outcome {
            Outcome::Delivered { status } => {
                (status, None, NotificationState::Delivered, None, false)
            }
            Outcome::Dropped { status, error } => {
                (status, Some(error), NotificationState::Failed, None, false)
            }
            Outcome::GiveUp { status, error } => {
                let reason = error.clone().unwrap_or_else(|| "given up".into());
                self.park(n, attempt_no, &reason).await?;
                (status, error, NotificationState::Failed, None, true)
            }
            Outcome::Retry {
                status,
                error,
                retry_after,
            } => {
                if Utc::now() >= deadline {
                    let reason = format!(
                        "no 2xx within {:?} ({} attempts); last: {}",
                        self.schedule.give_up_after(),
                        attempt_no,
                        describe(status, error.as_deref())
                    );
                    self.park(n, attempt_no, &reason).await?;
                    (status, error, NotificationState::Failed, None, true)
                } else {
                    let now = Utc::now();
                    let wait = self.schedule.wait_after(attempt_no, retry_after);
                    let left = (deadline - now).to_std().unwrap_or_default();
                    // A wait past the deadline becomes the last retry, made before it.
                    let wait = if wait > left {
                        self.schedule.last_wait(left)
                    } else {
                        wait
                    };
                    let next =
                        now + chrono::Duration::from_std(wait).unwrap_or(chrono::Duration::MAX);
                    let due = NotificationDue {
                        checkout_id: n.checkout_id,
                        notification_id: n.id,
                        after_attempt: attempt_no,
                        not_before: next,
                    };
                    let remaining = (next - Utc::now()).to_std().unwrap_or_default();
                    let tier = self.defer(due, remaining).await?;
                    metrics::retry(channel.name(), tier);
                    (
                        status,
                        error,
                        NotificationState::Retrying,
                        Some(next),
                        false,
                    )
                }
            }
        };
        tracing::info!(
            channel = %n.channel,
            attempt = attempt_no,
            status = ?status,
            error = ?error
                .as_deref()
                .map(|e| crate::channels::loggable_text(&n.channel, &n.target, e)),
            state = %new_state,
            next_attempt_at = ?next,
            "notification attempt"
        );
        let recorded = self
            .records
            .write(RecordAttempt {
                id: n.id,
                claim,
                attempt: attempt_no,
                started_at,
                duration_ms,
                response_status: status.map(i32::from),
                error,
                new_state,
                next_attempt_at: next,
                parked,
            })
            .await?;
        if !recorded {
            tracing::info!("this attempt's lease ran out and another copy took it over");
        }
        Ok(())
    }

    /// When a notification first attempted at `first_attempt_at` is given up if not delivered.
    pub(super) fn deadline(&self, first_attempt_at: DateTime<Utc>) -> DateTime<Utc> {
        first_attempt_at
            + chrono::Duration::from_std(self.schedule.give_up_after())
                .unwrap_or(chrono::Duration::MAX)
    }

    /// Ends `n` at its take-up without an attempt (see [`Dispatcher::attempt`]), if this copy
    /// may take up the attempt after `after_attempt`; a given-up one is parked once the row
    /// says so (a stale copy parks nothing). Nothing is sent, so no attempt is recorded.
    pub(super) async fn end_untried(
        &self,
        n: &Notification,
        after_attempt: i32,
        end: Untried<'_>,
    ) -> Result<(), DispatchError> {
        let ended = {
            let db = self.pool.get().await.map_err(StoreError::from)?;
            notifications::end_untried(&db, n.id, after_attempt, end).await?
        };
        if !ended {
            tracing::info!(state = %n.state, attempts = n.attempts, "taken up by another copy meanwhile; nothing to do");
            return Ok(());
        }
        let target = crate::channels::loggable_target(&n.channel, &n.target);
        match end {
            Untried::NotConfigured(why) if n.attempts == 0 => {
                tracing::info!(channel = %n.channel, %target, reason = why, "channel not configured; nothing sent, notification is not_configured");
            }
            Untried::NotConfigured(why) => {
                tracing::warn!(channel = %n.channel, %target, attempts = n.attempts, previous_state = %n.state, reason = why,
                    "channel not configured any more; notification ended as not_configured (redeliver it once the channel is configured)");
            }
            // The row is given up already: a parked message lost to a failed publish leaves
            // the record in PostgreSQL, which is what counts (and the parked gauge reads).
            Untried::GivenUp(reason) => self.park(n, n.attempts, reason).await?,
        }
        Ok(())
    }

    /// Publishes `due` into the delay tier that fits `remaining`, or straight back into the work
    /// queue when it is due already (a lease that ran out a moment ago) or sooner than any tier
    /// ends (the consumer then holds it for the rest: [`icon_runtime::Wait::Hold`]). Returns
    /// the tier used (`None`: the work queue).
    pub(super) async fn defer(
        &self,
        due: NotificationDue,
        remaining: Duration,
    ) -> Result<Option<Duration>, PublishError> {
        let tier = match self.schedule.plan(remaining) {
            icon_runtime::Wait::Tier(tier) if remaining > EARLY_TOLERANCE => Some(tier),
            _ => None,
        };
        let (exchange, routing_key) = match tier {
            None => (String::new(), topology::CHECKOUT_FINISHED.to_owned()),
            Some(tier) => (
                topology::DELAY_EXCHANGE.to_owned(),
                topology::delay_queue(tier),
            ),
        };
        let envelope = Envelope::new(due);
        self.publisher
            .publish(OutgoingMessage {
                exchange,
                routing_key,
                message_id: envelope.message_id.to_string(),
                message_type: NotificationDue::TYPE.into(),
                checkout_id: envelope.checkout_id.to_string(),
                body: envelope.to_json(),
                death_reason: None,
                traceparent: icon_runtime::trace::outgoing_header(),
            })
            .await?;
        Ok(tier)
    }

    /// Puts a given-up notification where operators look for them.
    async fn park(
        &self,
        n: &Notification,
        attempts: i32,
        reason: &str,
    ) -> Result<(), PublishError> {
        // A callback URL may carry the receiver's secret, a device token is a credential of a
        // sort and an address is personal data: the log and the parked message (read by
        // operators) get the shortened form; the full target stays in the row.
        let target = crate::channels::loggable_target(&n.channel, &n.target);
        let reason = crate::channels::loggable_text(&n.channel, &n.target, reason);
        tracing::warn!(%target, attempts, %reason, "notification given up and parked");
        let envelope = Envelope::new(NotificationParked {
            checkout_id: n.checkout_id,
            notification_id: n.id,
            channel: n.channel.clone(),
            target: target.clone(),
            attempts,
            reason: reason.clone(),
        });
        self.publisher
            .publish(OutgoingMessage {
                exchange: String::new(),
                routing_key: topology::PARKED.into(),
                message_id: envelope.message_id.to_string(),
                message_type: NotificationParked::TYPE.into(),
                checkout_id: envelope.checkout_id.to_string(),
                body: envelope.to_json(),
                death_reason: Some(reason),
                traceparent: icon_runtime::trace::outgoing_header(),
            })
            .await
    }
}

pub(super) fn describe(status: Option<u16>, error: Option<&str>) -> String {
    match (status, error) {
        (Some(s), _) => format!("HTTP {s}"),
        (None, Some(e)) => e.to_owned(),
        (None, None) => "unknown".into(),
    }
}
