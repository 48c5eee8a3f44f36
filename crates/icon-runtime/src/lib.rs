//! What every ICON binary needs around its real work: a shared `main` ([`service`]), settings
//! read from the environment once ([`settings`]), logs and span export ([`telemetry`]), W3C trace
//! context carried across HTTP and the queues ([`trace`]), graceful shutdown and
//! periodic chores ([`shutdown`]), health probes ([`probe`]) and patient retries while a dependency is not reachable yet
//! ([`backoff`]), delay tiers for waiting in the broker ([`tiers`]), and the client side of TLS
//! to PostgreSQL and RabbitMQ ([`tls`]).

pub mod backoff;
pub mod probe;
pub mod service;
pub mod settings;
pub mod shutdown;
pub mod telemetry;
pub mod tiers;
pub mod tls;
pub mod trace;

pub use backoff::Backoff;
pub use settings::{Env, SettingsError};
pub use tiers::{DelayTiers, Wait};
