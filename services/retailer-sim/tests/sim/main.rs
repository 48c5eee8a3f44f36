//! Runs the simulator through `serve` on a random loopback port, one instance per test, and
//! talks to it over real HTTP with hyper. One test binary, a module per concern.
//!
//! - `helpers`: the per-test simulator and client, and waiting on a condition.
//! - `receiver`: a stand-in for ICON's events endpoint, recording what the simulator sends.
//! - `orders`: what each SKU prefix answers, and protocol errors.
//! - `idempotency`: one order per key, replays, and 409 while a key's request is in progress.
//! - `lookup`: the status lookup by key and the lookup log.
//! - `cancellations`: cancelling orders by cancellation prefix, their events, and their log.
//! - `server`: the request log, routing, the sink, health and shutdown.
//! - `signing`: verifying ICON's signatures with a retailer's secret, and the 401.
//! - `asynchronous`: `async-` orders: 202, then signed events; lookups and replays.
//! - `events`: events on demand, without a secret, retried; the event log.
//! - `grants`: the fake FCM's OAuth2 token endpoint and its log.
//! - `push`: the fake FCM's send, token prefixes and the message log.
//! - `smtp`: the SMTP sink, over raw TCP, and `GET /mail`.

mod asynchronous;
mod cancellations;
mod events;
mod grants;
mod helpers;
mod idempotency;
mod lookup;
mod orders;
mod push;
mod receiver;
mod server;
mod signing;
mod smtp;
