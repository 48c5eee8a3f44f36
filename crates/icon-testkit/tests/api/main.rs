//! API tests: the real gateway, worker and notifier against a fresh database and vhost per test,
//! with retailers and callback receivers as real HTTP servers on 127.0.0.1. One binary, so the
//! crate graph links once.

mod auth;
mod callback_guard;
mod callbacks;
mod cancellation;
mod channel_off;
mod checkout;
mod delivery;
mod devices;
mod docs_ui;
mod email;
mod errors;
mod group_commit;
mod guarantee;
mod hardening;
mod isolation;
mod limits;
mod metrics;
mod notifier_metrics;
mod order_updates;
mod probes;
mod push;
mod recording;
mod retailer_events;
mod retailer_guard;
mod retailer_signatures;
mod retry_timing;
mod second_order;
mod signatures;
mod tls;
mod tracing;
mod worker_batches;
