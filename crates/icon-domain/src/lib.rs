//! ICON's domain types: values that cannot hold invalid state.
//!
//! Every HTTP handler and every message consumer converts its wire DTOs into these types once, at
//! the edge, so nothing further in holds an unchecked `String`.
//!
//! - [`ids`]: identifiers (`CheckoutId`, `CartId`, `RetailerId`, `UserId`).
//! - [`money`]: `Money` in minor units with an ISO 4217 `Currency`, and `Quantity`.
//! - [`status`]: the life cycle of a checkout, an order and a notification.
//! - [`callback`]: `CallbackUrl`, a URL that passed the network policy, and that policy.
//! - [`device`]: push targets (`DeviceToken`, `Platform`) and a shopper's `EmailAddress`.
//! - [`text`]: third-party text made safe to store (no NUL or control characters, bounded).

pub mod callback;
pub mod device;
pub mod ids;
pub mod money;
pub mod status;
pub mod text;

pub use callback::{CallbackUrl, CallbackUrlError, NetworkPolicy};
pub use device::{DeviceError, DeviceToken, EmailAddress, Platform};
pub use ids::{CartId, CheckoutId, IdError, NotificationId, RetailerId, UserId};
pub use money::{Currency, Money, MoneyError, Quantity};
pub use status::{CheckoutPolicy, CheckoutStatus, NotificationState, OrderStatus, UnknownStatus};
