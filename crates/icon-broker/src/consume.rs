//! A supervised consumer.
//!
//! [`run_consumer`] owns its connection: it connects (waiting while the broker is down),
//! declares the topology, consumes with a bounded prefetch and manual acks, hands each delivery
//! to a [`Handler`] in its own task, and acts on the handler's [`Disposition`]. When the
//! connection drops it reconnects with backoff; unacked deliveries go back to the queue and come
//! again (handlers are idempotent). On shutdown it cancels the consumer, lets in-flight
//! deliveries finish within a grace period, and closes the connection, which hands anything
//! still unacked back to the broker. A handler that panics does not leak its delivery: it is
//! requeued once, then dead-lettered with the panic message.

use crate::{
    connect, publish::OutgoingMessage, Publisher, Topology, CHECKOUT_ID_HEADER, TRACEPARENT_HEADER,
};
use futures_util::{FutureExt, StreamExt};
use icon_contracts::topology::dead_letter_queue;
use icon_runtime::trace::{self, TraceParent};
use icon_runtime::Backoff;
use lapin::{
    message::Delivery,
    options::{
        BasicAckOptions, BasicCancelOptions, BasicConsumeOptions, BasicNackOptions,
        BasicQosOptions, QueueDeclareOptions,
    },
    types::{AMQPValue, FieldTable},
};
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

/// What to do with a delivery once handled.
#[derive(Debug)]
pub enum Disposition {
    /// Its effect is committed (or it was a duplicate): remove it from the queue.
    Ack,
    /// A transient failure (database down, ...): put it back to be tried again.
    Retry(String),
    /// It can never be processed (unparseable, unknown version): move it to the dead-letter
    /// queue with this reason, and go on.
    Poison(String),
}

pub trait Handler: Send + Sync + 'static {
    fn handle(&self, delivery: &Delivery) -> impl Future<Output = Disposition> + Send;
}

#[derive(Debug, Clone)]
pub struct ConsumerSettings {
    pub amqp_url: String,
    /// Connection name, shown in RabbitMQ's management UI.
    pub name: String,
    pub queue: String,
    /// Unacked deliveries at once; also the number of deliveries handled concurrently.
    pub prefetch: u16,
    /// How long in-flight deliveries may run after shutdown is requested.
    pub grace: Duration,
}

/// Consumes `settings.queue` until `shutdown`. `ready` is true while a consumer is attached.
pub async fn run_consumer<H: Handler>(
    settings: ConsumerSettings,
    topology: Topology,
    handler: Arc<H>,
    ready: Arc<AtomicBool>,
    shutdown: CancellationToken,
) {
    let mut backoff = Backoff::reconnect();
    while !shutdown.is_cancelled() {
        let Some(conn) = connect(&settings.amqp_url, &settings.name, &shutdown).await else {
            break;
        };
        match consume_on(&conn, &settings, &topology, &handler, &ready, &shutdown).await {
            Ok(()) => {
                backoff = Backoff::reconnect();
            }
            Err(e) => {
                tracing::warn!(queue = %settings.queue, error = %e, "consumer lost its connection; reconnecting");
            }
        }
        ready.store(false, Ordering::Relaxed);
        let _ = conn.close(200, "shutdown".into()).await;
        if shutdown.is_cancelled() {
            break;
        }
        let delay = backoff.next_delay();
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = tokio::time::sleep(delay) => {}
        }
    }
    tracing::info!(queue = %settings.queue, "consumer stopped");
}

async fn consume_on<H: Handler>(
    conn: &lapin::Connection,
    settings: &ConsumerSettings,
    topology: &Topology,
    handler: &Arc<H>,
    ready: &AtomicBool,
    shutdown: &CancellationToken,
) -> Result<(), lapin::Error> {
    topology.declare(conn).await?;
    let channel = conn.create_channel().await?;
    // Bounded prefetch: never more unacked deliveries than we handle at once.
    channel
        .basic_qos(settings.prefetch, BasicQosOptions::default())
        .await?;
    // Poison messages are re-published to the dead-letter queue with their reason.
    let dead_letters = Publisher::open(conn).await?;
    let tag = format!("{}-{}", settings.name, uuid::Uuid::new_v4().simple());
    let mut consumer = channel
        .basic_consume(
            settings.queue.as_str().into(),
            tag.as_str().into(),
            BasicConsumeOptions {
                // Manual acks: a delivery is removed only once its effect is committed.
                no_ack: false,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await?;
    ready.store(true, Ordering::Relaxed);
    tracing::info!(queue = %settings.queue, prefetch = settings.prefetch, "consuming");

    let mut in_flight = JoinSet::new();
    let mut depth = tokio::time::interval(QUEUE_DEPTH_EVERY);
    let outcome = loop {
        tokio::select! {
            _ = depth.tick() => {
                tokio::spawn(sample_depth(channel.clone(), settings.queue.clone()));
            }
            _ = shutdown.cancelled() => {
                let _ = channel.basic_cancel(tag.as_str().into(), BasicCancelOptions::default()).await;
                break Ok(());
            }
            Some(joined) = in_flight.join_next(), if !in_flight.is_empty() => {
                // Handler panics are caught in the task; this is a panic while settling.
                if let Err(e) = joined {
                    if e.is_panic() {
                        tracing::error!(queue = %settings.queue, error = %e, "a delivery task panicked; its delivery returns to the queue when the channel closes");
                    }
                }
            }
            next = consumer.next() => match next {
                Some(Ok(delivery)) => {
                    let handler = handler.clone();
                    let dead_letters = dead_letters.clone();
                    let queue = settings.queue.clone();
                    let context = TraceParent::from_header_or_new(
                        header(&delivery, TRACEPARENT_HEADER).as_deref(),
                    );
                    let span = delivery_span(&queue, &delivery, &context);
                    let shutdown = shutdown.clone();
                    in_flight.spawn(trace::scope(context, async move {
                        // Boxed: a handler's future can be large (the notifier's is ~14 KB),
                        // and inline it would be copied at every move of the task's future
                        // on the way into the runtime; boxed, it is built once, in place.
                        let disposition =
                            Box::pin(handle_guarded(handler.as_ref(), &delivery)).await;
                        settle(delivery, disposition, &queue, &dead_letters, &shutdown).await;
                    }.instrument(span)));
                }
                Some(Err(e)) => break Err(e),
                None => break Err(lapin::Error::from(lapin::ErrorKind::InvalidChannelState(
                    lapin::ChannelState::Closed, "consumer ended"))),
            }
        }
    };
    // Let what is in flight finish (or give up after the grace period: unacked work returns to
    // the queue when the connection closes).
    let drain = async { while in_flight.join_next().await.is_some() {} };
    if tokio::time::timeout(settings.grace, drain).await.is_err() {
        tracing::warn!(queue = %settings.queue, "in-flight deliveries did not finish within {:?}; they go back to the queue", settings.grace);
        in_flight.abort_all();
    }
    // Channels first, so the connection closes cleanly.
    let _ = channel.close(200, "shutdown".into()).await;
    let _ = dead_letters.channel().close(200, "shutdown".into()).await;
    outcome
}

/// How often a consumer reads its queue's depth for `icon_queue_messages`.
const QUEUE_DEPTH_EVERY: Duration = Duration::from_secs(10);

/// Reads the number of messages ready in `queue` (a passive declare) into the gauge that
/// dashboards, alerts and autoscalers read; a failed read leaves the last value.
async fn sample_depth(channel: lapin::Channel, queue: String) {
    let declared = channel
        .queue_declare(
            queue.as_str().into(),
            QueueDeclareOptions {
                passive: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await;
    if let Ok(q) = declared {
        icon_metrics::queues()
            .get_or_create(&icon_metrics::QueueLabels { queue })
            .set(i64::from(q.message_count()));
    }
}

/// Runs the handler, turning a panic into a disposition: a panicking handler would otherwise
/// drop its delivery unacked, and every such delivery holds one prefetch slot until the channel
/// closes, silently shrinking the consumer. The first panic puts the message back (the cause may
/// be transient); a message that was already delivered before and panics again goes to the
/// dead-letter queue with the panic message, so it cannot loop.
async fn handle_guarded<H: Handler>(handler: &H, delivery: &Delivery) -> Disposition {
    match AssertUnwindSafe(handler.handle(delivery))
        .catch_unwind()
        .await
    {
        Ok(disposition) => disposition,
        Err(panic) => {
            let reason = panic_message(panic.as_ref());
            if delivery.redelivered {
                tracing::error!(%reason, "handler panicked on a redelivered message; dead-lettering it");
                Disposition::Poison(format!("the handler panicked twice: {reason}"))
            } else {
                tracing::error!(%reason, "handler panicked; the message goes back to the queue once");
                Disposition::Retry(format!("the handler panicked: {reason}"))
            }
        }
    }
}

/// The text a panic was raised with (`panic!("...")` carries a `&str` or a `String`).
fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic without a message".to_owned())
}

/// A string header of the delivery.
fn header(d: &Delivery, name: &str) -> Option<String> {
    d.properties
        .headers()
        .as_ref()
        .and_then(|h| h.inner().get(name))
        .and_then(|v| match v {
            AMQPValue::LongString(s) => Some(s.to_string()),
            AMQPValue::ShortString(s) => Some(s.to_string()),
            _ => None,
        })
}

/// The span every line about the delivery is logged in: it names the checkout and the trace,
/// and, when spans are exported, continues the publisher's trace.
fn delivery_span(queue: &str, d: &Delivery, context: &TraceParent) -> tracing::Span {
    let message_id = d
        .properties
        .message_id()
        .as_ref()
        .map(|m| m.to_string())
        .unwrap_or_default();
    let span = tracing::info_span!(
        "message",
        queue,
        message_id,
        checkout_id = header(d, CHECKOUT_ID_HEADER).unwrap_or_default(),
        trace_id = %context.trace_id_hex(),
        redelivered = d.redelivered
    );
    icon_runtime::telemetry::set_remote_parent(&span, context);
    span
}

/// How often the message was delivered before this delivery: a quorum queue counts it in
/// `x-delivery-count`; a classic queue only says whether it was delivered before.
fn deliveries_before(d: &Delivery) -> u32 {
    let counted = d
        .properties
        .headers()
        .as_ref()
        .and_then(|h| h.inner().get("x-delivery-count").cloned())
        .and_then(|v| match v {
            AMQPValue::LongLongInt(n) => u32::try_from(n).ok(),
            AMQPValue::LongInt(n) => u32::try_from(n).ok(),
            AMQPValue::ShortInt(n) => u32::try_from(n).ok(),
            AMQPValue::LongUInt(n) => Some(n),
            AMQPValue::ShortShortUInt(n) => Some(n.into()),
            AMQPValue::ShortUInt(n) => Some(n.into()),
            _ => None,
        });
    counted.unwrap_or(u32::from(d.redelivered))
}

/// The first requeue waits this long, each later one twice as long, up to [`REQUEUE_PAUSE_MAX`].
pub const REQUEUE_PAUSE_MIN: Duration = Duration::from_millis(500);
/// The longest wait before a message goes back: with [`crate::DELIVERY_LIMIT`] deliveries, an
/// outage must last over 8 hours to dead-letter a message.
pub const REQUEUE_PAUSE_MAX: Duration = Duration::from_secs(30);

/// How long to hold a delivery that failed transiently before handing it back, given how often
/// it was delivered before: 0.5 s, 1 s, 2 s, ... up to 30 s.
fn requeue_pause(deliveries_before: u32) -> Duration {
    REQUEUE_PAUSE_MIN
        .saturating_mul(1 << deliveries_before.min(10))
        .min(REQUEUE_PAUSE_MAX)
}

/// Acts on `disposition`. A requeue's pause ends early on `shutdown`: the message goes back at
/// once rather than holding the service past its grace period.
async fn settle(
    delivery: Delivery,
    disposition: Disposition,
    queue: &str,
    dead: &Publisher,
    shutdown: &CancellationToken,
) {
    let result = match disposition {
        Disposition::Ack => delivery.acker.ack(BasicAckOptions::default()).await,
        Disposition::Retry(reason) => {
            let pause = requeue_pause(deliveries_before(&delivery));
            tracing::warn!(%reason, ?pause, "transient failure; the message goes back to the queue");
            // A pause that grows with each delivery, so an outage becomes neither a hot
            // redelivery loop nor a fast march through the queue's delivery limit.
            tokio::select! {
                _ = tokio::time::sleep(pause) => {}
                _ = shutdown.cancelled() => {}
            }
            delivery
                .acker
                .nack(BasicNackOptions {
                    requeue: true,
                    ..Default::default()
                })
                .await
        }
        Disposition::Poison(reason) => {
            tracing::error!(%reason, "poison message moved to the dead-letter queue");
            let message = OutgoingMessage {
                exchange: String::new(),
                routing_key: dead_letter_queue(queue),
                message_id: delivery
                    .properties
                    .message_id()
                    .as_ref()
                    .map(|m| m.to_string())
                    .unwrap_or_default(),
                message_type: delivery
                    .properties
                    .kind()
                    .as_ref()
                    .map(|m| m.to_string())
                    .unwrap_or_default(),
                checkout_id: String::new(),
                body: delivery.data.clone(),
                death_reason: Some(reason),
                traceparent: header(&delivery, TRACEPARENT_HEADER),
            };
            match dead.publish(message).await {
                Ok(()) => delivery.acker.ack(BasicAckOptions::default()).await,
                // Could not park it: reject without requeue so the queue's own dead-letter
                // exchange takes it (no reason header then, but no redelivery loop either).
                Err(e) => {
                    tracing::error!(error = %e, "could not publish to the dead-letter queue");
                    delivery
                        .acker
                        .nack(BasicNackOptions {
                            requeue: false,
                            ..Default::default()
                        })
                        .await
                }
            }
        }
    };
    if let Err(e) = result {
        tracing::warn!(error = %e, "could not settle the delivery; the broker will redeliver it");
    }
}

#[cfg(test)]
mod tests {
    use super::requeue_pause;
    use std::time::Duration;

    #[test]
    fn requeues_back_off_from_half_a_second_to_thirty() {
        let ms = Duration::from_millis;
        assert_eq!(requeue_pause(0), ms(500));
        assert_eq!(requeue_pause(1), ms(1000));
        assert_eq!(requeue_pause(5), ms(16_000));
        assert_eq!(requeue_pause(6), ms(30_000));
        assert_eq!(requeue_pause(u32::MAX), ms(30_000));
        // Twenty deliveries (RabbitMQ 4's default limit) take minutes, not 10 s.
        let twenty: Duration = (0..20).map(requeue_pause).sum();
        assert!(twenty > Duration::from_secs(7 * 60), "{twenty:?}");
    }
}
