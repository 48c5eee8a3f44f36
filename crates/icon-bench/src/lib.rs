//! `icon-bench`: drives checkouts through a running ICON over its public API and measures it.
//!
//! - [`args`]: the command line, parsed once into a [`args::Config`].
//! - [`api`]: the HTTP client and ICON's endpoints (tokens, retailers, carts, checkouts).
//! - [`receiver`]: the callback receiver, a keep-alive HTTP/1.1 server.
//! - [`setup`]: health checks, retailers and carts, made before any clock starts.
//! - [`drive`]: sending checkouts, the two ways of pacing, the progress line.
//! - [`run`]: a run and its measured phase: the clock, the wait for callbacks, the summary.
//! - [`backlog`]: the `backlog` scenario's phases (two measured phases around a backlog) and
//!   their comparison.
//! - [`stats`]: the accounting (percentiles, completeness, duplicates, errors, per second); pure.
//! - [`dbstats`]: commits and rows written per checkout from `pg_stat_database` (`--database-url`).
//! - [`stages`]: `--stages`: a span collector (OTLP/HTTP JSON) and each checkout's time cut
//!   into stages from its trace.
//! - [`procs`]: CPU time, peak and current RSS of ICON, PostgreSQL and RabbitMQ from `/proc`.
//! - [`report`]: the table, the JSON and the HTML report.

pub mod api;
pub mod args;
pub mod backlog;
pub mod dbstats;
pub mod drive;
pub mod procs;
pub mod receiver;
pub mod report;
pub mod run;
pub mod setup;
pub mod stages;
pub mod stats;
