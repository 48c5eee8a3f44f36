//! RabbitMQ plumbing shared by the services, on lapin.
//!
//! - [`connect`]: connecting, waiting with backoff while the broker is not reachable; [`tls`]:
//!   `amqps://` URLs, on rustls with `ring`.
//! - [`queue_type`]: quorum (the default) or classic queues, `ICON_AMQP_QUEUE_TYPE`.
//! - [`topology`]: declaring exchanges and queues, idempotently, with every option explained; an
//!   existing queue of the other type is kept, not broken.
//! - [`migrate`]: the operator's step that changes the type of existing queues without losing a
//!   message; [`migrate_command`]: the `migrate-queues` command around it.
//! - [`publish`]: a publisher-confirms channel that pipelines a batch and awaits every confirm.
//! - [`consume`]: a supervised consumer: bounded prefetch, manual acks, poison messages (and
//!   handlers that panic twice) to a dead-letter queue with the reason, reconnects after a
//!   broker restart, graceful shutdown.

pub mod connect;
pub mod consume;
mod declare;
pub mod migrate;
pub mod migrate_command;
pub mod publish;
pub mod queue_type;
pub mod tls;
pub mod topology;

pub use connect::connect;
pub use consume::{run_consumer, ConsumerSettings, Disposition, Handler};
pub use declare::DELIVERY_LIMIT;
pub use lapin;
pub use publish::{
    LazyPublisher, OutgoingMessage, PublishError, Publisher, REDECLARE_AT_MOST_EVERY,
};
pub use queue_type::{ParseQueueTypeError, QueueType, QUEUE_TYPE_VAR};
pub use tls::AmqpUrl;
pub use topology::{Declared, Mismatch, Topology};

/// The AMQP header that carries the checkout id, so every consumer's span has it before the body
/// is even parsed.
pub const CHECKOUT_ID_HEADER: &str = "checkout_id";
/// The header a dead-lettered message carries: why it could not be processed.
pub const DEATH_REASON_HEADER: &str = "x-icon-death-reason";
/// The W3C trace context of the message (see `icon_runtime::trace`).
pub const TRACEPARENT_HEADER: &str = icon_runtime::trace::TRACEPARENT;
