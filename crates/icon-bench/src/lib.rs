//! `icon-bench`: drives checkouts through a running ICON over its public API and measures it.
//!
//! - [`args`]: the command line, parsed once into a [`args::Config`].
//! - [`api`]: the HTTP client and ICON's endpoints (tokens, retailers, carts, checkouts).
//! - [`receiver`]: the callback receiver, a keep-alive HTTP/1.1 server.
//! - [`run`]: set-up, the clock, the two ways of pacing, the wait for callbacks.
//! - [`stats`]: the accounting (percentiles, completeness, duplicates, errors, per second); pure.
//! - [`dbstats`]: commits and rows written per checkout from `pg_stat_database` (`--database-url`).
//! - [`procs`]: CPU time and peak RSS of ICON, PostgreSQL and RabbitMQ from `/proc`.
//! - [`report`]: the table, the JSON and the HTML report.

pub mod api;
pub mod args;
pub mod dbstats;
pub mod procs;
pub mod receiver;
pub mod report;
pub mod run;
pub mod stats;
