//! Declaring the topology a service uses. Declarations are idempotent, so every service declares
//! what it touches at every (re)connect, and start order does not matter.
//!
//! Every queue is declared with one [`QueueType`] (`ICON_AMQP_QUEUE_TYPE`). Quorum is the
//! default because a classic queue dead-letters *at most once*: a message expiring from a delay
//! tier is dropped if the broker fails between removing it from the tier and writing it to the
//! work queue. A quorum queue with `x-dead-letter-strategy: at-least-once` keeps it until the
//! target queue confirmed it.
//!
//! A queue that already exists with the other type cannot be changed by a declaration (RabbitMQ
//! answers 406 PRECONDITION_FAILED and closes the channel). [`Topology::declare`] then keeps the
//! existing queue as it is, logs one error naming it, and carries on: a service never stops
//! working, and never deletes a queue with messages in it, because of a type mismatch. Changing
//! the type is an explicit operator step ([`crate::migrate`]).

use crate::declare::{
    declare_exchange, declare_queue, existing_type, is_precondition_failed, queue_args,
    queue_args_before_delivery_limit, DELIVERY_LIMIT,
};
use crate::queue_type::{QueueType, QUEUE_TYPE_VAR};
use icon_contracts::topology as names;
use lapin::{options::QueueBindOptions, types::FieldTable, Connection};
use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// What a queue is for, which decides its arguments.
#[derive(Debug, Clone)]
pub(crate) enum Kind {
    /// Consumed; rejected messages dead-letter into `dead`.
    Work { dead: String },
    /// Only collects messages (dead-letter and parked queues).
    Plain,
    /// No consumer; messages expire after `ttl` into `back_to`.
    Delay { ttl: Duration, back_to: String },
}

impl Kind {
    /// Where this queue dead-letters to, if anywhere.
    pub(crate) fn dead_letters_to(&self) -> Option<&str> {
        match self {
            Kind::Work { dead } => Some(dead),
            Kind::Delay { back_to, .. } => Some(back_to),
            Kind::Plain => None,
        }
    }
}

#[derive(Debug, Clone)]
pub(crate) enum Item {
    Exchange(String),
    Queue {
        name: String,
        kind: Kind,
    },
    Bind {
        queue: String,
        exchange: String,
        key: String,
    },
}

/// A list of declarations, built with the methods below and applied with [`Topology::declare`].
#[derive(Debug, Clone, Default)]
pub struct Topology {
    pub(crate) items: Vec<Item>,
    queue_type: QueueType,
    /// Queues whose type mismatch was already logged at error level, so a reconnecting consumer
    /// does not repeat it every time.
    reported: Arc<Mutex<HashSet<String>>>,
}

/// A queue that exists with arguments other than the ones asked for, and was kept as it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mismatch {
    pub queue: String,
    pub wanted: QueueType,
    /// `None`: neither type's arguments match (declared by hand, or by another program).
    pub existing: Option<QueueType>,
}

/// The outcome of [`Topology::declare`].
#[derive(Debug, Clone, Default)]
pub struct Declared {
    /// Queues kept with their existing type; empty when everything is as configured.
    pub mismatched: Vec<Mismatch>,
}

impl Topology {
    /// An empty topology whose queues will be [`QueueType::Quorum`].
    pub fn new() -> Self {
        Self::default()
    }

    /// The type of every queue in this topology (set it before or after adding queues).
    pub fn queue_type(mut self, queue_type: QueueType) -> Self {
        self.queue_type = queue_type;
        self
    }

    pub fn configured_type(&self) -> QueueType {
        self.queue_type
    }

    /// A durable direct exchange.
    pub fn exchange(mut self, name: &str) -> Self {
        self.items.push(Item::Exchange(name.to_owned()));
        self
    }

    /// A durable work queue bound to the events exchange by its own name, with its dead-letter
    /// queue `<name>.dead`: a message rejected without requeue lands there rather than vanishing.
    pub fn work_queue(mut self, name: &str) -> Self {
        let dead = names::dead_letter_queue(name);
        self = self.plain_queue(&dead);
        self.items.push(Item::Queue {
            name: name.to_owned(),
            kind: Kind::Work { dead },
        });
        self.exchange(names::EVENTS_EXCHANGE)
            .bind(name, names::EVENTS_EXCHANGE, name)
    }

    /// A durable queue with no special arguments (dead-letter and parked queues).
    pub fn plain_queue(mut self, name: &str) -> Self {
        self.items.push(Item::Queue {
            name: name.to_owned(),
            kind: Kind::Plain,
        });
        self
    }

    /// A delay tier `<back_to>.delay.<ms>ms`: a queue nobody consumes, whose messages expire
    /// after `delay` and are then dead-lettered through the default exchange straight back into
    /// `back_to`. It is also bound to the delay exchange by its own name.
    pub fn delay_tier(mut self, delay: Duration, back_to: &str) -> Self {
        let name = names::delay_queue_for(back_to, delay);
        self.items.push(Item::Queue {
            name: name.clone(),
            kind: Kind::Delay {
                ttl: delay,
                back_to: back_to.to_owned(),
            },
        });
        self.exchange(names::DELAY_EXCHANGE)
            .bind(&name, names::DELAY_EXCHANGE, &name)
    }

    pub fn bind(mut self, queue: &str, exchange: &str, key: &str) -> Self {
        self.items.push(Item::Bind {
            queue: queue.to_owned(),
            exchange: exchange.to_owned(),
            key: key.to_owned(),
        });
        self
    }

    /// The names of the queues, in declaration order.
    pub fn queue_names(&self) -> Vec<&str> {
        self.items
            .iter()
            .filter_map(|i| match i {
                Item::Queue { name, .. } => Some(name.as_str()),
                _ => None,
            })
            .collect()
    }

    /// Declares everything on a channel of its own (a refused declaration closes its channel,
    /// and the caller's channels must not go down with it), in order, and closes it.
    pub async fn declare(&self, conn: &Connection) -> Result<Declared, lapin::Error> {
        self.declare_reporting(conn, true).await
    }

    /// [`Topology::declare`]; `log` says whether mismatches are logged (the migration reports
    /// them itself).
    pub(crate) async fn declare_reporting(
        &self,
        conn: &Connection,
        log: bool,
    ) -> Result<Declared, lapin::Error> {
        let mut channel = conn.create_channel().await?;
        let mut declared = Declared::default();
        for item in &self.items {
            match item {
                Item::Exchange(name) => declare_exchange(&channel, name).await?,
                Item::Queue { name, kind } => {
                    let args = queue_args(kind, self.queue_type);
                    match declare_queue(&channel, name, args).await {
                        Ok(()) => {}
                        Err(e)
                            if is_precondition_failed(&e)
                                && self.declared_before_limit(conn, name, kind).await? =>
                        {
                            channel = conn.create_channel().await?;
                        }
                        Err(e) if is_precondition_failed(&e) => {
                            let existing = existing_type(conn, name, kind, self.queue_type).await?;
                            let mismatch = Mismatch {
                                queue: name.clone(),
                                wanted: self.queue_type,
                                existing,
                            };
                            if log {
                                self.report(&mismatch, &e);
                            }
                            declared.mismatched.push(mismatch);
                            channel = conn.create_channel().await?;
                        }
                        Err(e) => return Err(e),
                    }
                }
                Item::Bind {
                    queue,
                    exchange,
                    key,
                } => {
                    channel
                        .queue_bind(
                            queue.as_str().into(),
                            exchange.as_str().into(),
                            key.as_str().into(),
                            QueueBindOptions::default(),
                            FieldTable::default(),
                        )
                        .await?
                }
            }
        }
        let _ = channel.close(200, "declared".into()).await;
        Ok(declared)
    }

    /// Whether `name` is a quorum work queue ICON declared before it declared
    /// [`DELIVERY_LIMIT`] (probed on a scratch channel). Such a queue keeps working as it is;
    /// this warns once, with the policy that gives it the limit without re-creating it.
    async fn declared_before_limit(
        &self,
        conn: &Connection,
        name: &str,
        kind: &Kind,
    ) -> Result<bool, lapin::Error> {
        if self.queue_type != QueueType::Quorum || !matches!(kind, Kind::Work { .. }) {
            return Ok(false);
        }
        let scratch = conn.create_channel().await?;
        let args = queue_args_before_delivery_limit(kind, self.queue_type);
        match declare_queue(&scratch, name, args).await {
            Ok(()) => {
                let _ = scratch.close(200, "probed".into()).await;
                if self.first_report(&format!("{name} delivery limit")) {
                    tracing::warn!(
                        queue = %name,
                        "queue `{name}` was declared without x-delivery-limit, so the broker's \
                         default applies (none on RabbitMQ 3.x, 20 on 4.x, which a long database \
                         outage can exhaust). It keeps working as it is. To give it ICON's limit \
                         of {DELIVERY_LIMIT}: rabbitmqctl set_policy --apply-to queues \
                         icon-delivery-limit '^checkout\\.(requested|finished)$' \
                         '{{\"delivery-limit\":{DELIVERY_LIMIT}}}' (README: \"RabbitMQ versions\")"
                    );
                }
                Ok(true)
            }
            Err(e) if is_precondition_failed(&e) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// True the first time `key` is reported by this topology (mismatches are logged once).
    fn first_report(&self, key: &str) -> bool {
        self.reported
            .lock()
            .map(|mut r| r.insert(key.to_owned()))
            .unwrap_or(true)
    }

    /// Logs a mismatch at error level once per queue (and at debug level afterwards).
    fn report(&self, m: &Mismatch, refusal: &lapin::Error) {
        let first = self.first_report(&m.queue);
        let existing = m
            .existing
            .map_or("a queue with other arguments", |t| t.as_str());
        if first {
            tracing::error!(
                queue = %m.queue,
                existing,
                configured = %m.wanted,
                broker = %refusal,
                "queue `{}` already exists as {existing}, but {QUEUE_TYPE_VAR}={}; it is kept as it \
                 is and keeps working (nothing is moved or lost). To convert it, stop the \
                 worker and the notifier and run their `migrate-queues` command (README: \
                 \"Queue types and migrating from classic\"), or set \
                 {QUEUE_TYPE_VAR}={existing} to silence this",
                m.queue,
                m.wanted,
            );
        } else {
            tracing::debug!(queue = %m.queue, existing, configured = %m.wanted, "queue type mismatch (kept)");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn new_defaults_to_quorum_and_the_builder_sets_the_type() {
        assert_eq!(Topology::new().configured_type(), QueueType::Quorum);
        let t = Topology::new()
            .work_queue("w")
            .queue_type(QueueType::Classic);
        assert_eq!(t.configured_type(), QueueType::Classic);
        assert_eq!(t.queue_names(), vec!["w.dead", "w"]);
        let t = Topology::new().delay_tier(Duration::from_millis(250), "checkout.requested");
        assert_eq!(t.queue_names(), vec!["checkout.requested.delay.250ms"]);
    }
}
