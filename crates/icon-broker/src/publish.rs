//! Publishing with publisher confirms.
//!
//! A message counts as sent only once the broker confirmed it (it is then on disk in a durable
//! queue). A batch is written to the socket in one go and its confirms are awaited together, so
//! throughput is not capped by one round trip per message.

use crate::{CHECKOUT_ID_HEADER, DEATH_REASON_HEADER, TRACEPARENT_HEADER};
use futures_util::future::join_all;
use lapin::{
    options::{BasicPublishOptions, ConfirmSelectOptions},
    types::{AMQPValue, FieldTable},
    BasicProperties, Channel, Confirmation, Connection,
};
use std::sync::atomic::{AtomicU64, Ordering};

/// One message to publish.
#[derive(Debug, Clone)]
pub struct OutgoingMessage {
    pub exchange: String,
    pub routing_key: String,
    pub message_id: String,
    pub message_type: String,
    pub checkout_id: String,
    pub body: Vec<u8>,
    /// Why the message is being dead-lettered, if it is.
    pub death_reason: Option<String>,
    /// The W3C trace context the consumer continues (`icon_runtime::trace::outgoing_header`).
    pub traceparent: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    #[error("RabbitMQ connection or channel failed")]
    Broker(#[from] lapin::Error),
    #[error("RabbitMQ refused (nacked) message {0}")]
    Nacked(String),
    #[error("message {0} could not be routed to any queue (returned by RabbitMQ)")]
    Unroutable(String),
    #[error("RabbitMQ did not confirm within {0:?} (blocked by a resource alarm, or gone)")]
    Timeout(std::time::Duration),
}

/// How long a batch may wait for its confirms. A broker under a memory or disk alarm blocks
/// publishers; the relay must then give up and retry rather than hold its outbox rows locked.
pub const CONFIRM_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(15);

#[derive(Clone)]
pub struct Publisher {
    channel: Channel,
}

impl Publisher {
    /// Opens a channel in confirm mode on `conn`.
    pub async fn open(conn: &Connection) -> Result<Self, lapin::Error> {
        let channel = conn.create_channel().await?;
        channel
            .confirm_select(ConfirmSelectOptions::default())
            .await?;
        Ok(Self { channel })
    }

    pub fn channel(&self) -> &Channel {
        &self.channel
    }

    pub fn is_connected(&self) -> bool {
        self.channel.status().connected()
    }

    /// Publishes every message, then waits for all their confirms. Succeeds only if the broker
    /// acked and routed every one of them.
    pub async fn publish_all(&self, messages: &[OutgoingMessage]) -> Result<(), PublishError> {
        let routed = self.publish_each(messages).await?;
        match messages.iter().zip(routed).find(|(_, routed)| !routed) {
            Some((m, _)) => Err(PublishError::Unroutable(m.message_id.clone())),
            None => Ok(()),
        }
    }

    /// Publishes every message, then waits for all their confirms, and says for each one whether
    /// a queue took it (`false`: returned as unroutable, because no queue is bound for its
    /// exchange and routing key). An unroutable message is that message's problem, not the
    /// batch's or the connection's: the others were delivered. Fails as a whole only when the
    /// channel failed, the broker nacked a message, or the confirms did not come in time.
    pub async fn publish_each(
        &self,
        messages: &[OutgoingMessage],
    ) -> Result<Vec<bool>, PublishError> {
        let mut pending = Vec::with_capacity(messages.len());
        for m in messages {
            let confirm = self
                .channel
                .basic_publish(
                    m.exchange.as_str().into(),
                    m.routing_key.as_str().into(),
                    BasicPublishOptions {
                        // A message no queue takes is returned instead of silently dropped.
                        mandatory: true,
                        ..Default::default()
                    },
                    &m.body,
                    properties(m),
                )
                .await?;
            pending.push(confirm);
        }
        let results = tokio::time::timeout(CONFIRM_TIMEOUT, join_all(pending))
            .await
            .map_err(|_| PublishError::Timeout(CONFIRM_TIMEOUT))?;
        let mut routed = Vec::with_capacity(messages.len());
        for (m, result) in messages.iter().zip(results) {
            match result? {
                Confirmation::Ack(None) | Confirmation::NotRequested => routed.push(true),
                Confirmation::Ack(Some(_)) => routed.push(false),
                Confirmation::Nack(_) => return Err(PublishError::Nacked(m.message_id.clone())),
            }
        }
        Ok(routed)
    }

    pub async fn publish(&self, message: OutgoingMessage) -> Result<(), PublishError> {
        self.publish_all(std::slice::from_ref(&message)).await
    }
}

fn properties(m: &OutgoingMessage) -> BasicProperties {
    let mut headers = FieldTable::default();
    headers.insert(
        CHECKOUT_ID_HEADER.into(),
        AMQPValue::LongString(m.checkout_id.as_str().into()),
    );
    if let Some(traceparent) = &m.traceparent {
        headers.insert(
            TRACEPARENT_HEADER.into(),
            AMQPValue::LongString(traceparent.as_str().into()),
        );
    }
    if let Some(reason) = &m.death_reason {
        headers.insert(
            DEATH_REASON_HEADER.into(),
            AMQPValue::LongString(reason.as_str().into()),
        );
    }
    BasicProperties::default()
        .with_content_type("application/json".into())
        // 2 = persistent: written to disk, so it survives a broker restart.
        .with_delivery_mode(2)
        .with_message_id(m.message_id.as_str().into())
        .with_type(m.message_type.as_str().into())
        .with_timestamp(chrono_now_secs())
        .with_headers(headers)
}

fn chrono_now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// A publisher that (re)connects on demand: used by consumers that publish as part of handling
/// a delivery (the notifier's retries). Concurrent calls share one connection and channel.
///
/// The connection is replaced only when it is actually broken, and only if it is still the one
/// the failing call used: a message that is unroutable, nacked or not confirmed in time says
/// nothing about the connection, and dropping it would fail every other publish in flight on it.
pub struct LazyPublisher {
    amqp_url: String,
    name: String,
    topology: crate::Topology,
    current: tokio::sync::Mutex<Option<Current>>,
    connections: AtomicU64,
}

/// The shared connection, numbered so a failing call replaces only the one it used.
struct Current {
    generation: u64,
    conn: Connection,
    publisher: Publisher,
    /// When this connection last declared the topology again after an unroutable message.
    redeclared: Option<std::time::Instant>,
}

impl PublishError {
    /// True when the channel or connection failed (rather than this one message): the
    /// connection is then replaced.
    pub fn is_broken_connection(&self) -> bool {
        matches!(self, PublishError::Broker(_))
    }
}

impl LazyPublisher {
    pub fn new(
        amqp_url: impl Into<String>,
        name: impl Into<String>,
        topology: crate::Topology,
    ) -> Self {
        Self {
            amqp_url: amqp_url.into(),
            name: name.into(),
            topology,
            current: tokio::sync::Mutex::new(None),
            connections: AtomicU64::new(0),
        }
    }

    /// How many connections this publisher has opened so far (1 while the first one holds).
    pub fn connections_opened(&self) -> u64 {
        self.connections.load(Ordering::Relaxed)
    }

    /// Publishes with confirms, connecting first if needed.
    pub async fn publish(&self, message: OutgoingMessage) -> Result<(), PublishError> {
        let (generation, publisher) = self.publisher().await?;
        let one = std::slice::from_ref(&message);
        let mut result = publisher.publish_all(one).await;
        if matches!(result, Err(PublishError::Unroutable(_)))
            && self.redeclare(generation, &message).await
        {
            result = publisher.publish_all(one).await;
        }
        if let Err(e) = &result {
            if e.is_broken_connection() || !publisher.is_connected() {
                self.discard(generation).await;
            }
        }
        result
    }

    /// The shared publisher, (re)connecting if there is none or it is no longer connected.
    async fn publisher(&self) -> Result<(u64, Publisher), PublishError> {
        let mut current = self.current.lock().await;
        if let Some(c) = current.as_ref() {
            if c.publisher.is_connected() {
                return Ok((c.generation, c.publisher.clone()));
            }
        }
        if let Some(old) = current.take() {
            let _ = old.conn.close(200, "replaced".into()).await;
        }
        let props =
            lapin::ConnectionProperties::default().with_connection_name(self.name.as_str().into());
        let conn =
            tokio::time::timeout(CONNECT_TIMEOUT, crate::connect::open(&self.amqp_url, props))
                .await
                .map_err(|_| PublishError::Timeout(CONNECT_TIMEOUT))??;
        self.topology.declare(&conn).await?;
        let publisher = Publisher::open(&conn).await?;
        let generation = self.connections.fetch_add(1, Ordering::Relaxed) + 1;
        *current = Some(Current {
            generation,
            conn,
            publisher: publisher.clone(),
            redeclared: None,
        });
        Ok((generation, publisher))
    }

    /// Declares the topology again on connection `generation` (if it is still the current one)
    /// after `message` came back unroutable: a queue it routes to was deleted since the
    /// connection declared it (by an operator, say). True if it was declared, so the message is
    /// worth one more try; a message still unroutable after that is its caller's to handle.
    async fn redeclare(&self, generation: u64, message: &OutgoingMessage) -> bool {
        let mut current = self.current.lock().await;
        let Some(c) = current.as_mut().filter(|c| c.generation == generation) else {
            return false;
        };
        // A burst of such messages declares once: the others just try again.
        if c.redeclared
            .is_some_and(|at| at.elapsed() < REDECLARE_AT_MOST_EVERY)
        {
            return true;
        }
        c.redeclared = Some(std::time::Instant::now());
        tracing::warn!(
            connection = %self.name,
            exchange = %message.exchange,
            routing_key = %message.routing_key,
            "a message could not be routed to any queue; declaring the topology again"
        );
        match self.topology.declare(&c.conn).await {
            Ok(_) => true,
            Err(e) => {
                tracing::warn!(connection = %self.name, error = %e, "could not declare the topology again");
                false
            }
        }
    }

    /// Drops the connection `generation` if it is still the current one (another caller may
    /// already have replaced it).
    async fn discard(&self, generation: u64) {
        let old = {
            let mut current = self.current.lock().await;
            match current.as_ref() {
                Some(c) if c.generation == generation => current.take(),
                _ => None,
            }
        };
        if let Some(old) = old {
            tracing::warn!(connection = %self.name, "publisher connection broken; the next publish reconnects");
            let _ = old.conn.close(200, "broken".into()).await;
        }
    }

    pub async fn close(&self) {
        if let Some(old) = self.current.lock().await.take() {
            let _ = old.conn.close(200, "shutdown".into()).await;
        }
    }
}

/// How often an unroutable message may make a publisher declare its topology again.
pub const REDECLARE_AT_MOST_EVERY: std::time::Duration = std::time::Duration::from_secs(1);

/// How long connecting may take before a publish gives up (and is retried by its caller).
const CONNECT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);
