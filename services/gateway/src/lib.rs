//! `icon-gateway`: ICON's public HTTP API (actix-web).
//!
//! - [`settings`]: the environment it reads.
//! - [`accept`]: new checkouts stored with group commit.
//! - [`startup`]: wiring: pool, outbox relay, HTTP server.
//! - [`auth`]: bearer tokens (an identity provider's JWKS, or HS256 for development), scopes,
//!   and the `User` / `Admin` extractors.
//! - [`rate_limit`]: allowances per client IP and per token subject.
//! - [`metrics`]: requests by route and status, checkouts accepted, `GET /metrics`.
//! - [`routes`]: one module per resource (`carts`, `checkouts`, `retailers`, probes, docs).
//! - [`extract`]: the JSON body extractor, which refuses hostile bodies (size, depth, unknown
//!   fields, media type) before a handler runs.
//! - [`headers`]: the limit on request header fields.
//! - [`problem`]: the one error type, rendered as RFC 9457 problem documents.
//! - [`openapi`]: the OpenAPI document generated from the code; `/docs` renders it.
//!
//! The gateway never talks to RabbitMQ on a request path: a checkout is written with its
//! `checkout.requested` message in one transaction (the outbox), and the relay publishes it.

pub mod accept;
pub mod auth;
pub mod extract;
pub mod headers;
pub mod metrics;
pub mod openapi;
pub mod problem;
pub mod rate_limit;
pub mod routes;
pub mod settings;
pub mod startup;
pub mod trace_context;

pub use settings::GatewaySettings;
pub use startup::Application;
