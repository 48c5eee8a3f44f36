//! Delivery channels. Each turns a finished checkout into one notification attempt on its own
//! medium and reports an [`Outcome`]; scheduling, retries, give-up and parking are shared and
//! live in [`crate::dispatch`]. A new channel (push) is a new module implementing [`Channel`]
//! and one line in [`Channels::new`].

pub mod callback;

use icon_contracts::CheckoutFinished;
use icon_store::notifications::Notification;
use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

/// What one attempt achieved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Done (e.g. a 2xx).
    Delivered { status: Option<u16> },
    /// Worth trying again later (non-2xx, timeout, connection error).
    Retry {
        status: Option<u16>,
        error: Option<String>,
        retry_after: Option<Duration>,
    },
    /// Never worth trying again (410 Gone, a target the network policy refuses).
    GiveUp {
        status: Option<u16>,
        error: Option<String>,
    },
}

pub type Attempting<'a> = Pin<Box<dyn Future<Output = Outcome> + Send + 'a>>;

pub trait Channel: Send + Sync {
    /// The `channel` value of this channel's notification rows.
    fn name(&self) -> &'static str;
    fn deliver<'a>(
        &'a self,
        notification: &'a Notification,
        event: &'a CheckoutFinished,
    ) -> Attempting<'a>;
}

/// The channels this notifier can deliver, by name.
#[derive(Clone)]
pub struct Channels(HashMap<&'static str, Arc<dyn Channel>>);

impl Channels {
    pub fn new(list: Vec<Arc<dyn Channel>>) -> Self {
        Self(list.into_iter().map(|c| (c.name(), c)).collect())
    }

    pub fn get(&self, name: &str) -> Option<&Arc<dyn Channel>> {
        self.0.get(name)
    }
}
