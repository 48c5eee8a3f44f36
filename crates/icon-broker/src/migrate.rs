//! Changing the type of existing queues (classic to quorum, or back), without losing a message.
//!
//! RabbitMQ cannot change a queue's type in place: the queue has to be deleted and declared
//! again. [`migrate`] does that for every queue of a [`Topology`] that exists with the other
//! type. Each service migrates its own topology (`icon-checkout-worker migrate-queues`,
//! `icon-notifier migrate-queues`, through [`crate::migrate_command::migrate_at`]): a work queue must be converted
//! together with the delay tiers that dead-letter into it, and only the service that owns them
//! knows its tiers.
//!
//! 1. Refuse if a queue to migrate has a consumer (the services must be stopped first).
//! 2. Move every message of the queue into a holding queue `<name>.migrating` of the target
//!    type: `basic.get`, publish with publisher confirms, ack the original only once confirmed.
//!    Delay tiers go first, and tiers that dead-letter into a migrated queue are emptied too,
//!    so that no message expires into a queue that is briefly missing.
//! 3. Delete the old queue only while it is empty and unused: a classic queue with `if-empty`
//!    and `if-unused` (the broker refuses otherwise, and the step is repeated); a quorum queue,
//!    which refuses those flags, is unbound from its exchanges first, then checked and deleted.
//! 4. Declare the whole topology again (the new type, and the bindings the delete removed).
//! 5. Move the messages back, then delete the empty holding queue.
//!
//! A crash or error at any point leaves every message either in its queue or in its holding
//! queue, both durable; running the migration again finishes the job (leftover holding queues
//! are emptied back). Delivery is at least once: a crash between a confirm and the ack of the
//! original leaves a copy in both places, which ICON's consumers de-duplicate.

use crate::declare::{counts, declare_queue, existing_type, is_precondition_failed, queue_args};
use crate::topology::{Item, Kind};
use crate::{QueueType, Topology};
use lapin::options::{
    BasicAckOptions, BasicGetOptions, BasicNackOptions, BasicPublishOptions, ConfirmSelectOptions,
    QueueDeleteOptions,
};
use lapin::types::FieldTable;
use lapin::{Confirmation, Connection};
use std::fmt;
use std::time::Duration;

/// How long one moved message may wait for its confirm.
const CONFIRM_TIMEOUT: Duration = Duration::from_secs(15);

/// The holding queue of `queue` during a migration.
pub fn holding_queue(queue: &str) -> String {
    format!("{queue}.migrating")
}

/// One queue that now has the configured type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Converted {
    pub queue: String,
    pub from: QueueType,
    pub to: QueueType,
}

#[derive(Debug, Clone, Default)]
pub struct MigrationReport {
    /// Queues deleted and declared again with the configured type.
    pub converted: Vec<Converted>,
    /// Messages moved back from holding queues into their (converted) queues.
    pub messages_moved: u64,
    /// Queues left alone because their arguments are neither of ICON's two sets.
    pub unknown: Vec<String>,
}

impl fmt::Display for MigrationReport {
    /// What changed, one line each, for the operator.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.converted.is_empty() {
            writeln!(f, "no queue needed converting")?;
        }
        for c in &self.converted {
            writeln!(f, "{}: {} -> {}", c.queue, c.from, c.to)?;
        }
        writeln!(
            f,
            "{} message(s) moved through holding queues and back, none lost",
            self.messages_moved
        )?;
        for q in &self.unknown {
            writeln!(
                f,
                "{q}: left alone, its arguments are not ICON's (see `rabbitmqctl list_queues name type arguments`)"
            )?;
        }
        Ok(())
    }
}

#[derive(Debug, thiserror::Error)]
pub enum MigrateError {
    #[error("cannot connect to RabbitMQ at {url}: {reason}")]
    Connect { url: String, reason: String },
    #[error("RabbitMQ failed during the migration (every message is in its queue or in its `.migrating` holding queue; run the migration again): {0}")]
    Broker(#[from] lapin::Error),
    #[error("queue `{queue}` has {consumers} consumer(s): stop the services that consume it (worker, notifier), then run the migration again")]
    InUse { queue: String, consumers: u32 },
    #[error("could not move a message from `{from}` to `{to}` ({reason}); it stays in `{from}`. Run the migration again")]
    Move {
        from: String,
        to: String,
        reason: String,
    },
    #[error("queue `{queue}` could not be deleted although it was emptied (messages keep arriving? stop every publisher): run the migration again")]
    NotEmpty { queue: String },
    #[error("queue `{queue}` is still {existing} after the migration: something declared it again meanwhile (a service still running with another ICON_AMQP_QUEUE_TYPE?). Its messages are back in it; stop that service and run the migration again")]
    Redeclared { queue: String, existing: String },
}

/// Gives every queue of `topology` the topology's queue type. See the module docs.
pub async fn migrate(
    conn: &Connection,
    topology: &Topology,
) -> Result<MigrationReport, MigrateError> {
    let target = topology.configured_type();
    let queues: Vec<(&str, &Kind)> = topology
        .items
        .iter()
        .filter_map(|i| match i {
            Item::Queue { name, kind } => Some((name.as_str(), kind)),
            _ => None,
        })
        .collect();
    let is_tier = |name: &str| {
        queues
            .iter()
            .any(|(q, k)| *q == name && matches!(k, Kind::Delay { .. }))
    };
    let mut report = MigrationReport::default();
    // Declares what is missing and finds what exists with the other type.
    let before = topology.declare_reporting(conn, false).await?;
    let mut convert: Vec<(&str, QueueType)> = vec![];
    for m in &before.mismatched {
        match m.existing {
            Some(from) => convert.push((m.queue.as_str(), from)),
            None => report.unknown.push(m.queue.clone()),
        }
    }
    for (name, _) in &convert {
        let consumers = counts(conn, name).await?.map_or(0, |(_, c)| c);
        if consumers > 0 {
            return Err(MigrateError::InUse {
                queue: (*name).to_owned(),
                consumers,
            });
        }
    }
    // Queues to empty into holding queues: those converted, and the delay tiers that
    // dead-letter into one of them. Delay tiers first, so nothing expires into a gap.
    let converted = |name: &str| convert.iter().any(|(c, _)| *c == name);
    let mut hold: Vec<&str> = queues
        .iter()
        .filter(|(name, kind)| {
            converted(name) || matches!(kind, Kind::Delay { back_to, .. } if converted(back_to))
        })
        .map(|(name, _)| *name)
        .collect();
    hold.sort_by_key(|name| !is_tier(name));
    for name in &hold {
        let holding = holding_queue(name);
        declare_holding(conn, &holding, target).await?;
        move_all(conn, name, &holding).await?;
    }
    for (name, from) in &convert {
        let how = match from {
            QueueType::Classic => Delete::IfEmptyAndUnused,
            // Quorum queues refuse conditional deletes (a connection error in RabbitMQ 3.10):
            // unbind them so the exchanges stop routing to them, then check and delete.
            QueueType::Quorum => {
                unbind(conn, topology, name).await?;
                Delete::AfterCheck
            }
        };
        delete_emptied(conn, name, how).await?;
        tracing::info!(queue = name, %from, to = %target, "queue deleted; declaring it again");
        report.converted.push(Converted {
            queue: (*name).to_owned(),
            from: *from,
            to: target,
        });
    }
    let after = topology.declare_reporting(conn, false).await?;
    // Back in: work queues before the tiers that feed them; also any holding queue an
    // interrupted earlier run left behind.
    let mut restore: Vec<&str> = queues.iter().map(|(n, _)| *n).collect();
    restore.sort_by_key(|n| is_tier(n));
    for name in restore {
        let holding = holding_queue(name);
        if counts(conn, &holding).await?.is_none() {
            continue;
        }
        report.messages_moved += move_all(conn, &holding, name).await?;
        // Only this migration publishes to a holding queue.
        delete_emptied(conn, &holding, Delete::AfterCheck).await?;
    }
    if let Some(m) = after.mismatched.iter().find(|m| converted(&m.queue)) {
        return Err(MigrateError::Redeclared {
            queue: m.queue.clone(),
            existing: m.existing.map_or("other", |t| t.as_str()).to_owned(),
        });
    }
    Ok(report)
}

/// Declares a holding queue (plain, of the target type); one left by an earlier run is reused
/// whatever its type.
async fn declare_holding(
    conn: &Connection,
    name: &str,
    target: QueueType,
) -> Result<(), lapin::Error> {
    let ch = conn.create_channel().await?;
    match declare_queue(&ch, name, queue_args(&Kind::Plain, target)).await {
        Ok(()) => {
            let _ = ch.close(200, "declared".into()).await;
            Ok(())
        }
        Err(e) if is_precondition_failed(&e) => existing_type(conn, name, &Kind::Plain, target)
            .await
            .map(|_| ()),
        Err(e) => Err(e),
    }
}

/// Removes the topology's bindings of `queue`.
async fn unbind(conn: &Connection, topology: &Topology, queue: &str) -> Result<(), lapin::Error> {
    let ch = conn.create_channel().await?;
    for item in &topology.items {
        if let Item::Bind {
            queue: q,
            exchange,
            key,
        } = item
        {
            if q == queue {
                ch.queue_unbind(
                    q.as_str().into(),
                    exchange.as_str().into(),
                    key.as_str().into(),
                    FieldTable::default(),
                )
                .await?;
            }
        }
    }
    let _ = ch.close(200, "unbound".into()).await;
    Ok(())
}

/// Moves every message of `from` into `to`, one at a time: each is acked in `from` only after
/// `to` confirmed it. Returns how many moved. Uses a channel of its own: a RabbitMQ 3.10
/// channel that published to a queue before it was deleted and declared again with the other
/// type fails publishing to it.
async fn move_all(conn: &Connection, from: &str, to: &str) -> Result<u64, MigrateError> {
    let ch = conn.create_channel().await?;
    ch.confirm_select(ConfirmSelectOptions::default()).await?;
    let mut moved = 0;
    while let Some(m) = ch
        .basic_get(from.into(), BasicGetOptions { no_ack: false })
        .await?
    {
        let delivery = m.delivery;
        let confirm = ch
            .basic_publish(
                "".into(),
                to.into(),
                BasicPublishOptions {
                    // A holding or target queue that vanished must not swallow the message.
                    mandatory: true,
                    ..Default::default()
                },
                &delivery.data,
                // Headers (checkout id, death reason, x-death), persistence, id, type: as is.
                delivery.properties.clone(),
            )
            .await?;
        let outcome = match tokio::time::timeout(CONFIRM_TIMEOUT, confirm).await {
            Ok(Ok(Confirmation::Ack(None))) => Ok(()),
            Ok(Ok(Confirmation::Ack(Some(_)))) => Err(format!("`{to}` does not exist")),
            Ok(Ok(Confirmation::Nack(_))) => Err("RabbitMQ refused it".to_owned()),
            Ok(Ok(Confirmation::NotRequested)) => Err("the channel is not in confirm mode".into()),
            Ok(Err(e)) => Err(e.to_string()),
            Err(_) => Err(format!("no confirm within {CONFIRM_TIMEOUT:?}")),
        };
        if let Err(reason) = outcome {
            let _ = delivery
                .acker
                .nack(BasicNackOptions {
                    requeue: true,
                    ..Default::default()
                })
                .await;
            return Err(MigrateError::Move {
                from: from.to_owned(),
                to: to.to_owned(),
                reason,
            });
        }
        delivery.acker.ack(BasicAckOptions::default()).await?;
        moved += 1;
    }
    let _ = ch.close(200, "moved".into()).await;
    if moved > 0 {
        tracing::info!(from, to, moved, "moved messages");
    }
    Ok(moved)
}

/// How a queue is deleted once emptied.
#[derive(Clone, Copy)]
enum Delete {
    /// `if-empty` and `if-unused`: the broker refuses atomically (classic queues only).
    IfEmptyAndUnused,
    /// Checked empty and unused first, then deleted (quorum queues, which refuse conditional
    /// deletes; only for queues nothing else publishes to any more).
    AfterCheck,
}

/// Deletes `queue` only while it is empty and has no consumer; a message that arrived since
/// it was emptied is moved on first (an original queue's into its holding queue, a holding
/// queue's back into its queue), and the delete is tried again.
async fn delete_emptied(conn: &Connection, queue: &str, how: Delete) -> Result<(), MigrateError> {
    for _ in 0..5 {
        if let Delete::IfEmptyAndUnused = how {
            let ch = conn.create_channel().await?;
            let conditional = QueueDeleteOptions {
                if_unused: true,
                if_empty: true,
                nowait: false,
            };
            match ch.queue_delete(queue.into(), conditional).await {
                Ok(_) => {
                    let _ = ch.close(200, "deleted".into()).await;
                    return Ok(());
                }
                Err(e) if is_precondition_failed(&e) => {}
                Err(e) => return Err(e.into()),
            }
        }
        let Some((messages, consumers)) = counts(conn, queue).await? else {
            return Ok(());
        };
        if consumers > 0 {
            return Err(MigrateError::InUse {
                queue: queue.to_owned(),
                consumers,
            });
        }
        if messages > 0 {
            let to = match queue.strip_suffix(".migrating") {
                Some(original) => original.to_owned(),
                None => holding_queue(queue),
            };
            move_all(conn, queue, &to).await?;
        } else if let Delete::AfterCheck = how {
            let ch = conn.create_channel().await?;
            ch.queue_delete(queue.into(), QueueDeleteOptions::default())
                .await?;
            let _ = ch.close(200, "deleted".into()).await;
            return Ok(());
        }
    }
    Err(MigrateError::NotEmpty {
        queue: queue.to_owned(),
    })
}
