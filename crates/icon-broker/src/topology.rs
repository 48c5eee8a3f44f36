//! Declaring the topology a service uses. Declarations are idempotent, so every service declares
//! what it touches at every (re)connect, and start order does not matter.

use icon_contracts::topology as names;
use lapin::{
    options::{ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions},
    types::{AMQPValue, FieldTable},
    Channel, ExchangeKind,
};
use std::time::Duration;

#[derive(Debug, Clone)]
enum Item {
    Exchange(String),
    Queue {
        name: String,
        args: FieldTable,
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
    items: Vec<Item>,
}

impl Topology {
    pub fn new() -> Self {
        Self::default()
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
        let mut args = FieldTable::default();
        args.insert(
            "x-dead-letter-exchange".into(),
            AMQPValue::LongString("".into()),
        );
        args.insert(
            "x-dead-letter-routing-key".into(),
            AMQPValue::LongString(dead.as_str().into()),
        );
        self.items.push(Item::Queue {
            name: name.to_owned(),
            args,
        });
        self.exchange(names::EVENTS_EXCHANGE)
            .bind(name, names::EVENTS_EXCHANGE, name)
    }

    /// A durable queue with no special arguments (dead-letter and parked queues).
    pub fn plain_queue(mut self, name: &str) -> Self {
        self.items.push(Item::Queue {
            name: name.to_owned(),
            args: FieldTable::default(),
        });
        self
    }

    /// A delay tier: a queue nobody consumes, whose messages expire after `delay` and are then
    /// dead-lettered through the default exchange straight back into `back_to`.
    pub fn delay_tier(mut self, delay: Duration, back_to: &str) -> Self {
        let name = names::delay_queue(delay);
        let mut args = FieldTable::default();
        args.insert(
            "x-message-ttl".into(),
            AMQPValue::LongLongInt(delay.as_millis() as i64),
        );
        args.insert(
            "x-dead-letter-exchange".into(),
            AMQPValue::LongString("".into()),
        );
        args.insert(
            "x-dead-letter-routing-key".into(),
            AMQPValue::LongString(back_to.into()),
        );
        self.items.push(Item::Queue {
            name: name.clone(),
            args,
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

    /// Declares everything on `channel`, in order.
    pub async fn declare(&self, channel: &Channel) -> Result<(), lapin::Error> {
        for item in &self.items {
            match item {
                Item::Exchange(name) => {
                    channel
                        .exchange_declare(
                            name.as_str().into(),
                            ExchangeKind::Direct,
                            ExchangeDeclareOptions {
                                // Survives a broker restart, like the queues bound to it.
                                durable: true,
                                ..Default::default()
                            },
                            FieldTable::default(),
                        )
                        .await?
                }
                Item::Queue { name, args } => {
                    channel
                        .queue_declare(
                            name.as_str().into(),
                            QueueDeclareOptions {
                                // Survives a broker restart; messages are published persistent.
                                durable: true,
                                // Shared by every replica of the consuming service.
                                exclusive: false,
                                // A queue must outlive its consumers: work waits for a restart.
                                auto_delete: false,
                                ..Default::default()
                            },
                            args.clone(),
                        )
                        .await
                        .map(|_| ())?
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
        Ok(())
    }
}
