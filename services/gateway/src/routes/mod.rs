//! One module per resource. Handlers parse wire DTOs into domain types, call the store, and map
//! the outcome to a response; they hold no SQL and no broker code.

pub mod callbacks;
pub mod cancellations;
pub mod carts;
pub mod channels;
pub mod checkout_events;
pub mod checkouts;
pub mod devices;
pub mod docs;
pub mod health;
pub mod orders;
pub mod retailer_events;
pub mod retailers;
pub mod webhook_secret;

use crate::problem::{ApiError, FieldError};
use actix_web::web;
use icon_domain::NetworkPolicy;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

/// What every handler can reach.
pub struct AppState {
    pub pool: icon_store::Pool,
    /// Base of every `resource_url`, without a trailing slash.
    pub public_url: String,
    pub callback_policy: NetworkPolicy,
    /// `ICON_RETAILER_ALLOW_NETWORKS`, `ICON_RETAILER_ALLOW_HTTP`: what `order_url`s may be.
    pub retailer_policy: NetworkPolicy,
    /// Set by the outbox relay while it holds a working broker channel.
    pub broker_ready: Arc<AtomicBool>,
    /// Takes the `checkout.requested` row of a new checkout straight after commit.
    pub outbox: icon_outbox::Outbox,
    /// Stores new checkouts, several per statement and commit when they come together.
    pub accepter: crate::accept::Accepter,
    /// `ICON_MAX_DEVICES_PER_USER`.
    pub max_devices_per_user: u32,
    /// `ICON_SECRETS_KEY`: seals and opens the owners' webhook secrets.
    pub secrets_key: icon_store::secrets::SecretsKey,
    /// `ICON_WEBHOOK_SECRET_GRACE`.
    pub webhook_secret_grace: std::time::Duration,
}

pub type State = web::Data<AppState>;

/// Collects field errors so a client learns about every bad field in one round trip.
#[derive(Default)]
pub(crate) struct Validation(Vec<FieldError>);

impl Validation {
    pub fn check<T, E: std::fmt::Display>(&mut self, field: &str, r: Result<T, E>) -> Option<T> {
        match r {
            Ok(v) => Some(v),
            Err(e) => {
                self.0.push(FieldError {
                    field: field.to_owned(),
                    message: e.to_string(),
                });
                None
            }
        }
    }

    pub fn push(&mut self, field: &str, message: impl Into<String>) {
        self.0.push(FieldError {
            field: field.to_owned(),
            message: message.into(),
        });
    }

    /// Checks free text for NUL: PostgreSQL refuses it in `text` columns, so without this a
    /// NUL would be a 500 rather than a 422 naming the field. True if `value` is acceptable.
    pub fn text(&mut self, field: &str, value: &str) -> bool {
        if value.contains('\0') {
            self.push(field, "must not contain a NUL character (U+0000)");
            false
        } else {
            true
        }
    }

    pub fn finish(self) -> Result<(), ApiError> {
        if self.0.is_empty() {
            return Ok(());
        }
        let detail = self
            .0
            .iter()
            .map(|e| format!("{}: {}", e.field, e.message))
            .collect::<Vec<_>>()
            .join("; ");
        Err(ApiError::unprocessable("validation_failed", detail, self.0))
    }
}
