//! Handling one message on `checkout.requested`: a new checkout (`checkout.requested`) or its
//! next pass coming back from a delay tier (`checkout.due`).
//!
//! Each message claims one processing pass (see `icon_store::passes`), makes at most one call
//! per order that is due, and records the outcome with either the final transition or the next
//! pass, in one statement. Nothing here sleeps but a moment for a retailer's free slot
//! (`gate::SLOT_WAIT`): every longer wait is a delay tier.

use crate::batches::Claims;
use crate::gate::{RetailerGate, SLOT_WAIT};
use crate::retailer::signing::Signer;
use crate::retailer::RetailerClient;
use crate::settings::WorkerSettings;
use crate::{metrics, progress};
use chrono::{DateTime, Utc};
use futures_util::future::join_all;
use icon_broker::lapin::message::Delivery;
use icon_broker::{Disposition, Handler};
use icon_contracts::messages::{message_type, parse};
use icon_contracts::topology::{delay_queue_for, CHECKOUT_REQUESTED};
use icon_contracts::{CheckoutDue, CheckoutRequested, Message};
use icon_domain::CheckoutId;
use icon_outbox::Outbox;
use icon_runtime::DelayTiers;
use icon_runtime::Wait;
use icon_store::orders::Step;
use icon_store::passes::{self, Claim, Completed, Pass};
use icon_store::{Pool, StoreError};
use std::time::{Duration, Instant};
use tracing::Instrument;

/// A message arriving this close to its `not_before` is processed rather than delayed again.
const EARLY_TOLERANCE: Duration = Duration::from_millis(20);

pub struct CheckoutHandler {
    pool: Pool,
    /// Claims passes, several messages' in one statement when they arrive together.
    claims: Claims,
    retailers: RetailerClient,
    /// The retailers' secrets every call is signed with.
    signer: Signer,
    /// Takes the message a recorded pass wrote (the next pass, or `checkout.finished`).
    outbox: Outbox,
    gate: RetailerGate,
    tiers: DelayTiers,
    settings: WorkerSettings,
}

impl CheckoutHandler {
    pub fn new(
        pool: Pool,
        retailers: RetailerClient,
        outbox: Outbox,
        settings: WorkerSettings,
    ) -> Self {
        Self {
            signer: Signer::new(settings.secrets_key.clone(), pool.clone()),
            claims: Claims::spawn(pool.clone(), settings.pass_lease()),
            pool,
            retailers,
            outbox,
            gate: RetailerGate::new(settings.retailer_max_in_flight),
            tiers: settings.delay_tiers(),
            settings,
        }
    }

    /// The queue that brings a message back at `at`: the delay tier that fits, else the work
    /// queue itself (due now, or due sooner than any tier ends: the consumer then holds it for
    /// the rest, see [`Wait::Hold`]).
    fn route(&self, at: DateTime<Utc>) -> String {
        match (at - Utc::now()).to_std() {
            Ok(wait) if wait > EARLY_TOLERANCE => match self.tiers.plan(wait) {
                Wait::Tier(tier) => delay_queue_for(CHECKOUT_REQUESTED, tier),
                Wait::Hold(_) => CHECKOUT_REQUESTED.to_owned(),
            },
            _ => CHECKOUT_REQUESTED.to_owned(),
        }
    }

    /// Re-schedules a copy of the message for `at`.
    async fn later(
        &self,
        id: CheckoutId,
        after_pass: i32,
        at: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let db = self.pool.get().await?;
        passes::schedule(&db, id, after_pass, at, &self.route(at)).await
    }

    async fn process(&self, id: CheckoutId, after_pass: i32) -> Result<Disposition, StoreError> {
        // The claim's connection goes back to the pool with its answer: none is held during
        // retailer calls.
        let claim = self
            .claims
            .claim(id, after_pass)
            .instrument(tracing::info_span!("store.claim_pass", checkout_id = %id, after_pass))
            .await?;
        let pass = match claim {
            Claim::Claimed(pass) => pass,
            Claim::Missing => {
                return Ok(Disposition::Poison(format!("checkout {id} does not exist")))
            }
            Claim::Nothing(why) => {
                tracing::info!(why, "nothing to do");
                return Ok(Disposition::Ack);
            }
            // A pass that claimed before a cancellation was asked may have finished the
            // checkout without seeing it: the copy that follows it (a wake-up deferred to its
            // lease, say) reopens it.
            Claim::Final => return self.reopen(id).await,
            Claim::Busy { until } => {
                tracing::info!(%until, "a pass is in flight elsewhere; looking again after its lease");
                self.later(id, after_pass, until).await?;
                return Ok(Disposition::Ack);
            }
        };
        if pass.deliveries > self.settings.max_deliveries {
            return self.give_up(&pass).await;
        }
        match self.run_pass(&pass).await {
            Ok(()) => Ok(Disposition::Ack),
            Err(e) if e.is_unavailable() => Err(e),
            Err(e) => self.after_error(&pass, &e).await,
        }
    }

    /// A retailer's event settled an order this checkout waits for: run a pass after the
    /// current one, so a pass that started before the event was recorded (and decided on what
    /// it saw then) is followed by one that sees it. One in flight is waited for (its lease),
    /// then followed.
    #[tracing::instrument(name = "checkout.wake", skip_all, fields(checkout_id = %id))]
    async fn wake(&self, id: CheckoutId) -> Result<Disposition, StoreError> {
        let current = {
            let db = self.pool.get().await?;
            passes::current(&db, id).await?
        };
        match current {
            passes::Current::Missing => Ok(Disposition::Ack),
            // Ended, perhaps by a pass that claimed before a cancellation was asked and did
            // not see it: reopened if a cancellation is still to be carried out.
            passes::Current::Final => self.reopen(id).await,
            passes::Current::Pass {
                pass,
                claimed_until: Some(until),
            } => {
                tracing::info!(%until, "woken while a pass is in flight; the next pass follows it");
                self.later(id, pass, until).await?;
                Ok(Disposition::Ack)
            }
            passes::Current::Pass {
                pass,
                claimed_until: None,
            } => self.process(id, pass).await,
        }
    }

    /// A final checkout with a cancellation still to carry out (asked while a pass that did not
    /// see it was in flight) is reopened, its next pass queued with it (through the outbox, so
    /// a crash right after loses nothing); any other is left as it is.
    async fn reopen(&self, id: CheckoutId) -> Result<Disposition, StoreError> {
        let db = self.pool.get().await?;
        if passes::reopen(&db, id).await? {
            tracing::info!(
                "a cancellation was asked of this ended checkout; reopened, its next pass queued"
            );
        } else {
            tracing::info!("checkout already final; nothing to do");
        }
        Ok(Disposition::Ack)
    }

    /// One call per due order (all at once), then one transaction for what they taught us.
    async fn run_pass(&self, pass: &Pass) -> Result<(), StoreError> {
        let now = Utc::now();
        let due_by = now + chrono::Duration::from_std(EARLY_TOLERANCE).unwrap_or_default();
        let busy_until = now
            + chrono::Duration::from_std(self.settings.busy_retailer_wait()).unwrap_or_default();
        let first = pass.is_first();
        // Before any call: a request is never sent unsigned, so without its secrets the pass
        // fails as a whole and is tried again.
        let due = pass
            .orders
            .iter()
            .filter(|o| o.due(due_by, first).is_some_and(|s| s != Step::Withdraw));
        let secrets = self.signer.for_orders(due).await?;
        let calls = pass.orders.iter().filter_map(|order| {
            let step = order.due(due_by, first)?;
            if step == Step::Withdraw {
                tracing::info!(retailer = %order.retailer_id, "cancelled before it was sent");
                return Some(futures_util::future::Either::Left(std::future::ready(
                    progress::cancel::withdrawn(order),
                )));
            }
            let secrets = secrets.get(&order.retailer_id)?;
            Some(futures_util::future::Either::Right(async move {
                let Some(_slot) = self.gate.enter(&order.retailer_id, SLOT_WAIT).await else {
                    tracing::info!(retailer = %order.retailer_id, "retailer has its maximum of calls in flight; postponed");
                    return progress::postponed(order, busy_until);
                };
                let started = Instant::now();
                let update = match step {
                    Step::Place => {
                        let answer = self.retailers.place(pass.checkout_id, order, secrets).await;
                        let outcome = metrics::place_outcome(&answer);
                        metrics::retailer_call(&order.retailer_id, "place", outcome, started.elapsed());
                        progress::after_place(order, answer, Utc::now(), &self.settings)
                    }
                    Step::Lookup => {
                        let answer = self.retailers.lookup(order, secrets).await;
                        let outcome = metrics::lookup_outcome(&answer);
                        metrics::retailer_call(&order.retailer_id, "lookup", outcome, started.elapsed());
                        progress::after_lookup(order, answer, Utc::now(), &self.settings)
                    }
                    Step::Cancel => {
                        let reason = progress::cancel::reason(order);
                        let answer = self.retailers.cancel(order, secrets, reason).await;
                        metrics::retailer_call(&order.retailer_id, "cancel", answer.outcome(), started.elapsed());
                        progress::cancel::after_cancel(order, answer, Utc::now(), &self.settings)
                    }
                    Step::Withdraw => progress::cancel::withdrawn(order),
                };
                tracing::info!(retailer = %order.retailer_id, ?step, status = %update.status, reason = update.reason.as_deref(), "order step");
                update
            }))
        });
        let mut updates = join_all(calls).await;
        // The `all_or_nothing` policy: an order not placed asks the others to be cancelled.
        let failure = progress::cancel::apply_policy(pass, &mut updates, Utc::now());
        if let Some(why) = &failure {
            tracing::warn!(%why, "the checkout's all_or_nothing policy failed; cancelling its other orders");
        }
        let mut db = self.pool.get().await?;
        let completed = passes::complete(&mut db, pass, &updates, failure.as_deref(), |at| {
            self.route(at)
        })
        .await?;
        drop(db);
        match completed {
            Completed::Finished {
                event,
                message,
                cancel_pending,
            } => {
                // A reopened checkout's end is a numbered event, published on commit.
                if let Some(message) = message {
                    self.outbox.publish(message);
                }
                metrics::finished(event.checkout_id, event.status);
                tracing::info!(status = %event.status, "checkout finished");
                if cancel_pending {
                    self.reopen(pass.checkout_id).await?;
                }
            }
            Completed::Next { at, message } => {
                self.outbox.publish(message);
                tracing::info!(next = %at, "orders still open; next pass scheduled")
            }
            Completed::Overtaken { message } => {
                self.outbox.publish(message);
                tracing::info!("a retailer's event changed an order during this pass; its results are dropped and the next pass is due now")
            }
            Completed::Lost => {
                tracing::warn!("this pass's lease ran out and another copy took it over; its results are dropped")
            }
        }
        Ok(())
    }

    /// A pass failed for a reason that is not an outage (bad data, a bug): try the pass again
    /// after a wait, counting it, rather than dead-lettering the message.
    async fn after_error(&self, pass: &Pass, e: &StoreError) -> Result<Disposition, StoreError> {
        let error = icon_store::pool::source_chain(e);
        tracing::error!(%error, deliveries = pass.deliveries, max = self.settings.max_deliveries, "pass failed; it will be tried again");
        let retry_at = Utc::now()
            + chrono::Duration::from_std(self.settings.retry_wait(pass.deliveries, None))
                .unwrap_or_default();
        let mut db = self.pool.get().await?;
        match passes::release_after_error(&mut db, pass, &error, retry_at, |at| self.route(at))
            .await
        {
            Ok(_) => Ok(Disposition::Ack),
            Err(e) if e.is_unavailable() => Err(e),
            // Even the release fails: the sweeper picks the checkout up once the lease is over.
            Err(e2) => Ok(Disposition::Poison(format!(
                "{error}; releasing the pass failed too: {}",
                icon_store::pool::source_chain(&e2)
            ))),
        }
    }

    /// The loop always closes: after too many failed passes the checkout ends `failed`.
    async fn give_up(&self, pass: &Pass) -> Result<Disposition, StoreError> {
        let reason = format!(
            "processing failed {} times in a row; last error: {}",
            pass.deliveries - 1,
            pass.last_error
                .as_deref()
                .unwrap_or("the worker stopped in the middle of a pass")
        );
        tracing::error!(%reason, "giving up on the checkout");
        let mut db = self.pool.get().await?;
        if let Some(event) = passes::give_up(&mut db, pass, &reason).await? {
            metrics::finished(event.checkout_id, event.status);
        }
        Ok(Disposition::Ack)
    }
}

impl Handler for CheckoutHandler {
    async fn handle(&self, delivery: &Delivery) -> Disposition {
        let (id, after_pass) = match message_type(&delivery.data).as_deref() {
            Ok(CheckoutRequested::TYPE) => match parse::<CheckoutRequested>(&delivery.data) {
                Ok(m) => (m.data.checkout_id, 0),
                Err(e) => return Disposition::Poison(e.to_string()),
            },
            Ok(CheckoutDue::TYPE) => match parse::<CheckoutDue>(&delivery.data) {
                Ok(m) if m.data.wake => {
                    return match self.wake(m.data.checkout_id).await {
                        Ok(d) => d,
                        Err(e) if e.is_unavailable() => {
                            Disposition::Retry(icon_store::pool::source_chain(&e))
                        }
                        Err(e) => Disposition::Poison(icon_store::pool::source_chain(&e)),
                    };
                }
                Ok(m) => {
                    let due = m.data;
                    let early = (due.not_before - Utc::now()).to_std().ok();
                    match early
                        .filter(|e| *e > EARLY_TOLERANCE)
                        .map(|e| self.tiers.plan(e))
                    {
                        Some(Wait::Tier(_)) => {
                            return match self
                                .later(due.checkout_id, due.after_pass, due.not_before)
                                .await
                            {
                                Ok(()) => Disposition::Ack,
                                Err(e) => Disposition::Retry(icon_store::pool::source_chain(&e)),
                            };
                        }
                        // Shorter than any tier: waiting here ends on time, a tier would not.
                        Some(Wait::Hold(rest)) => tokio::time::sleep(rest).await,
                        None => {}
                    }
                    (due.checkout_id, due.after_pass)
                }
                Err(e) => return Disposition::Poison(e.to_string()),
            },
            Ok(other) => return Disposition::Poison(format!("unknown message type `{other}`")),
            Err(e) => return Disposition::Poison(e.to_string()),
        };
        match self.process(id, after_pass).await {
            Ok(d) => d,
            Err(e) if e.is_unavailable() => Disposition::Retry(icon_store::pool::source_chain(&e)),
            Err(e) => Disposition::Poison(icon_store::pool::source_chain(&e)),
        }
    }
}
