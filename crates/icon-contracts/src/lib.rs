//! The contracts the services share over RabbitMQ: message types and the broker topology.
//!
//! Services talk only through these. Every message is an [`Envelope`]: self-describing (`type`,
//! `version`), with a `message_id` consumers de-duplicate on, and the `checkout_id` it concerns,
//! which also travels as an AMQP header so a consumer's span carries it before parsing the body.
//! A breaking change to a payload means a new `version`, never an in-place edit.

pub mod messages;
pub mod retailer;
pub mod topology;

pub use messages::{
    CheckoutDue, CheckoutFinished, CheckoutRequested, Envelope, Message, NotificationDue,
    NotificationParked, OrderOutcome, ParseError,
};
