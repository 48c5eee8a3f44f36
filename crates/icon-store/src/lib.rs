//! PostgreSQL: the connection pool, the schema migrations and every SQL statement ICON runs.
//!
//! SQL lives here and nowhere else, one module per aggregate:
//! - [`pool`]: connecting (waiting while PostgreSQL is not reachable yet, creating the database if
//!   it does not exist) and [`migrate`]: bringing the schema up to date, safely from many
//!   processes at once. [`tls`]: `ICON_DATABASE_URL`'s `sslmode`/`sslrootcert` and the rustls
//!   connector all connections use.
//! - [`retailers`], [`carts`], [`checkouts`]: what the gateway reads and writes.
//! - [`orders`]: one retailer order of a checkout, as shown and as the worker works on it;
//!   [`order_events`]: the retailers' events about them, and what they set in motion.
//! - [`passes`]: the worker's processing passes: claim, record, finish, give up.
//! - [`cancellations`]: recording a request to cancel a checkout's orders.
//! - [`devices`]: the shoppers' push devices.
//! - [`notifications`]: the notifier's attempts and schedule; [`checkout_events`]: the numbered
//!   events they announce (the checkout's end, then its orders' changes).
//! - [`webhook_secrets`]: the owners' webhook signing secrets, sealed at rest with the key and
//!   signatures of [`secrets`].
//! - [`idempotency`]: `Idempotency-Key`s of checkout submissions.
//! - [`sweep`]: the safety net that queues stuck work again.
//! - [`outbox`]: messages written in the same transaction as the state they announce.
//! - [`gauges`]: counts for `/metrics`, read when scraped.

pub mod cancellations;
pub mod carts;
pub mod checkout_events;
pub mod checkouts;
pub mod devices;
mod error;
pub mod gauges;
pub mod group_commit;
pub mod idempotency;
pub mod migrate;
pub mod notifications;
pub mod order_events;
pub mod orders;
pub mod outbox;
pub mod passes;
pub mod pool;
pub mod retailers;
pub mod secrets;
pub mod sweep;
pub mod tls;
pub mod webhook_secrets;

pub use deadpool_postgres::{GenericClient, Object as Conn, Pool};
pub use error::StoreError;
pub use pool::{connect, PoolSettings};
pub use tls::DatabaseUrl;
