//! The declarations underneath [`crate::topology`] and [`crate::migrate`]: the arguments of each
//! kind of queue for each type (every option explained), and the probes that tell what exists.
//! A refused declaration closes its channel, so probes use scratch channels of their own.

use crate::queue_type::QueueType;
use crate::topology::Kind;
use lapin::{
    options::{ExchangeDeclareOptions, QueueDeclareOptions},
    protocol::{AMQPErrorKind, AMQPSoftError},
    types::{AMQPValue, FieldTable},
    Channel, Connection, ExchangeKind,
};

/// How many times a quorum work queue delivers a message before dead-lettering it into
/// `<queue>.dead`, declared rather than left to the broker: RabbitMQ 3.x has no limit by
/// default, 4.x a default of 20, which a consumer requeueing through a database outage would
/// reach in minutes. Requeues back off (`crate::consume`, up to 30 s apart), so 1,000 deliveries
/// is a consumer crashing on one message 1,000 times, or an outage of more than 8 hours; either
/// way the message waits in `.dead`, and the sweepers requeue its work from PostgreSQL.
pub const DELIVERY_LIMIT: i64 = 1000;

/// The arguments of a queue of `kind` and type `queue_type`. Every option is explicit.
pub(crate) fn queue_args(kind: &Kind, queue_type: QueueType) -> FieldTable {
    let mut args = queue_args_before_delivery_limit(kind, queue_type);
    if queue_type == QueueType::Quorum && matches!(kind, Kind::Work { .. }) {
        args.insert(
            "x-delivery-limit".into(),
            AMQPValue::LongLongInt(DELIVERY_LIMIT),
        );
    }
    args
}

/// [`queue_args`] as ICON declared them before it declared [`DELIVERY_LIMIT`]: a work queue
/// created then is kept as it is (its arguments cannot change), with a warning.
pub(crate) fn queue_args_before_delivery_limit(kind: &Kind, queue_type: QueueType) -> FieldTable {
    let mut args = FieldTable::default();
    // Always explicit, so a mismatch is detected in both directions (an existing classic queue
    // declared without the argument accepts an explicit `classic`).
    args.insert(
        "x-queue-type".into(),
        AMQPValue::LongString(queue_type.as_str().into()),
    );
    if let Kind::Delay { ttl, .. } = kind {
        args.insert(
            "x-message-ttl".into(),
            AMQPValue::LongLongInt(ttl.as_millis() as i64),
        );
    }
    if let Some(target) = kind.dead_letters_to() {
        // The default exchange routes by queue name: straight into the target queue.
        args.insert(
            "x-dead-letter-exchange".into(),
            AMQPValue::LongString("".into()),
        );
        args.insert(
            "x-dead-letter-routing-key".into(),
            AMQPValue::LongString(target.into()),
        );
        if queue_type == QueueType::Quorum {
            // The source keeps a dead-lettered message until the target queue confirmed it, so
            // a broker failure mid-hop cannot drop it.
            args.insert(
                "x-dead-letter-strategy".into(),
                AMQPValue::LongString("at-least-once".into()),
            );
            // Required by at-least-once (RabbitMQ falls back to at-most-once with the default
            // drop-head, which could discard the head). There is no length limit, so nothing
            // is refused because of it.
            args.insert(
                "x-overflow".into(),
                AMQPValue::LongString("reject-publish".into()),
            );
        }
    }
    args
}

pub(crate) async fn declare_exchange(channel: &Channel, name: &str) -> Result<(), lapin::Error> {
    channel
        .exchange_declare(
            name.into(),
            ExchangeKind::Direct,
            ExchangeDeclareOptions {
                // Survives a broker restart, like the queues bound to it.
                durable: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await
}

pub(crate) async fn declare_queue(
    channel: &Channel,
    name: &str,
    args: FieldTable,
) -> Result<(), lapin::Error> {
    channel
        .queue_declare(
            name.into(),
            QueueDeclareOptions {
                // Survives a broker restart; messages are published persistent. (Quorum queues
                // must be durable anyway.)
                durable: true,
                // Shared by every replica of the consuming service.
                exclusive: false,
                // A queue must outlive its consumers: work waits for a restart.
                auto_delete: false,
                ..Default::default()
            },
            args,
        )
        .await
        .map(|_| ())
}

/// Which of ICON's two argument sets the existing queue `name` has, found by declaring it with
/// the other type's arguments on a scratch channel (a declaration that matches changes nothing).
/// `None` if neither matches; the queue is then only checked to exist.
pub(crate) async fn existing_type(
    conn: &Connection,
    name: &str,
    kind: &Kind,
    wanted: QueueType,
) -> Result<Option<QueueType>, lapin::Error> {
    let other = wanted.other();
    let scratch = conn.create_channel().await?;
    match declare_queue(&scratch, name, queue_args(kind, other)).await {
        Ok(()) => {
            let _ = scratch.close(200, "probed".into()).await;
            Ok(Some(other))
        }
        Err(e) if is_precondition_failed(&e) => {
            let scratch = conn.create_channel().await?;
            scratch
                .queue_declare(
                    name.into(),
                    QueueDeclareOptions {
                        passive: true,
                        ..Default::default()
                    },
                    FieldTable::default(),
                )
                .await?;
            let _ = scratch.close(200, "probed".into()).await;
            Ok(None)
        }
        Err(e) => Err(e),
    }
}

/// RabbitMQ's 406: a declaration that contradicts what exists, or a conditional delete refused.
pub(crate) fn is_precondition_failed(e: &lapin::Error) -> bool {
    matches!(e.kind(), lapin::ErrorKind::ProtocolError(p)
        if matches!(p.kind(), AMQPErrorKind::Soft(AMQPSoftError::PRECONDITIONFAILED)))
}

/// Messages and consumers of `queue`, or `None` if it does not exist (checked on a scratch
/// channel: a passive declaration of a missing queue closes its channel).
pub(crate) async fn counts(
    conn: &Connection,
    queue: &str,
) -> Result<Option<(u32, u32)>, lapin::Error> {
    let scratch = conn.create_channel().await?;
    let passive = QueueDeclareOptions {
        passive: true,
        ..Default::default()
    };
    match scratch
        .queue_declare(queue.into(), passive, FieldTable::default())
        .await
    {
        Ok(q) => {
            let _ = scratch.close(200, "counted".into()).await;
            Ok(Some((q.message_count(), q.consumer_count())))
        }
        Err(e) if is_not_found(&e) => Ok(None),
        Err(e) => Err(e),
    }
}

fn is_not_found(e: &lapin::Error) -> bool {
    matches!(e.kind(), lapin::ErrorKind::ProtocolError(p)
        if matches!(p.kind(), AMQPErrorKind::Soft(AMQPSoftError::NOTFOUND)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn arg(t: &FieldTable, k: &str) -> Option<String> {
        t.inner().get(k).map(|v| match v {
            AMQPValue::LongString(s) => s.to_string(),
            AMQPValue::LongLongInt(n) => n.to_string(),
            other => format!("{other:?}"),
        })
    }

    #[test]
    fn quorum_queues_that_dead_letter_do_so_at_least_once() {
        let tier = Kind::Delay {
            ttl: Duration::from_secs(10),
            back_to: "work".into(),
        };
        let a = queue_args(&tier, QueueType::Quorum);
        assert_eq!(arg(&a, "x-queue-type").as_deref(), Some("quorum"));
        assert_eq!(arg(&a, "x-message-ttl").as_deref(), Some("10000"));
        assert_eq!(
            arg(&a, "x-dead-letter-routing-key").as_deref(),
            Some("work")
        );
        assert_eq!(
            arg(&a, "x-dead-letter-strategy").as_deref(),
            Some("at-least-once")
        );
        assert_eq!(arg(&a, "x-overflow").as_deref(), Some("reject-publish"));
        let work = queue_args(
            &Kind::Work {
                dead: "w.dead".into(),
            },
            QueueType::Quorum,
        );
        assert_eq!(
            arg(&work, "x-dead-letter-strategy").as_deref(),
            Some("at-least-once")
        );
        let plain = queue_args(&Kind::Plain, QueueType::Quorum);
        assert_eq!(arg(&plain, "x-queue-type").as_deref(), Some("quorum"));
        assert_eq!(arg(&plain, "x-overflow"), None);
        let classic = queue_args(&tier, QueueType::Classic);
        assert_eq!(arg(&classic, "x-queue-type").as_deref(), Some("classic"));
        assert_eq!(arg(&classic, "x-dead-letter-strategy"), None);
        assert_eq!(arg(&classic, "x-overflow"), None);
    }
}
