//! Delivery channels. Each turns a finished checkout into one notification attempt on its own
//! medium and reports an [`Outcome`]; scheduling, retries, give-up and parking are shared and
//! live in [`crate::dispatch`].
//!
//! - [`callback`]: an HTTP POST to the partner's `callback_url`.
//! - [`push`]: FCM HTTP v1, one notification per registered device.
//! - [`email`]: SMTP, to the address in the shopper's token.
//!
//! A channel whose credentials are missing is *disabled*: its notifications are marked
//! `not_configured` rather than left pending forever or retried in vain.

pub mod callback;
pub mod email;
pub mod push;

use crate::notice::Notice;
use icon_store::notifications::{Claimed, Notification};
use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

/// A notification's target as logs and parked messages show it (README, "Logs"): a callback
/// URL's scheme, host and port, a device token shortened, an e-mail address masked. The full
/// target stays in the notification's row.
pub fn loggable_target(channel: &str, target: &str) -> String {
    match channel {
        "callback" => icon_domain::callback::loggable(target),
        "push" => match icon_domain::DeviceToken::parse(target) {
            Ok(token) => token.redacted(),
            Err(_) => format!("({} chars)", target.len()),
        },
        "email" => mask_email(target),
        _ => format!("({} chars)", target.len()),
    }
}

/// `text` (a receiver's error, a parked reason) as logs and parked messages show it: wherever
/// it repeats the whole target (an SMTP server that echoes the refused address, say), that is
/// shown as [`loggable_target`] does. ASCII case is ignored, as mail servers change it.
pub fn loggable_text(channel: &str, target: &str, text: &str) -> String {
    if target.is_empty() {
        return text.to_owned();
    }
    // ASCII lowercasing keeps every byte offset, so offsets found in the copy hold in `text`.
    let (haystack, needle) = (text.to_ascii_lowercase(), target.to_ascii_lowercase());
    let mut out = String::with_capacity(text.len());
    let mut from = 0;
    while let Some(at) = haystack[from..].find(&needle) {
        out.push_str(&text[from..from + at]);
        out.push_str(&loggable_target(channel, target));
        from += at + needle.len();
    }
    out.push_str(&text[from..]);
    out
}

/// `ana@example.com` becomes `a***@example.com`; no `@` leaves nothing but `***`.
fn mask_email(address: &str) -> String {
    match address.rsplit_once('@') {
        Some((local, domain)) => {
            let head: String = local.chars().take(1).collect();
            format!("{head}***@{domain}")
        }
        None => "***".into(),
    }
}

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
    /// Never worth trying again, and worth an operator's look: parked (410 Gone, a target the
    /// network policy refuses, a push FCM refuses for good).
    GiveUp {
        status: Option<u16>,
        error: Option<String>,
    },
    /// Never worth trying again, and nothing an operator could do: the target is gone (a device
    /// FCM no longer knows, or one unregistered since). Failed, not parked.
    Dropped { status: Option<u16>, error: String },
}

pub type Attempting<'a> = Pin<Box<dyn Future<Output = Outcome> + Send + 'a>>;

pub trait Channel: Send + Sync {
    /// The `channel` value of this channel's notification rows.
    fn name(&self) -> &'static str;
    /// Makes the attempt `claimed` holds; the claim also carries what was read with it for
    /// this channel (a callback's webhook secrets).
    fn deliver<'a>(
        &'a self,
        notification: &'a Notification,
        claimed: &'a Claimed,
        notice: &'a Notice,
    ) -> Attempting<'a>;
}

/// What this notifier does with a channel's notifications.
#[derive(Clone)]
pub enum Route {
    Deliver(Arc<dyn Channel>),
    /// Not configured here: the reason, recorded on each notification.
    Disabled(String),
}

/// The channels this notifier can deliver, by name.
#[derive(Clone, Default)]
pub struct Channels(HashMap<&'static str, Route>);

impl Channels {
    pub fn new(list: Vec<Arc<dyn Channel>>) -> Self {
        Self(
            list.into_iter()
                .map(|c| (c.name(), Route::Deliver(c)))
                .collect(),
        )
    }

    /// Adds a channel, or records why it is disabled.
    pub fn with(mut self, name: &'static str, channel: Result<Arc<dyn Channel>, String>) -> Self {
        let route = match channel {
            Ok(c) => Route::Deliver(c),
            Err(why) => Route::Disabled(why),
        };
        self.0.insert(name, route);
        self
    }

    pub fn get(&self, name: &str) -> Option<&Route> {
        self.0.get(name)
    }

    /// The names of the channels this notifier delivers (not the disabled ones).
    pub fn deliverable(&self) -> Vec<&'static str> {
        self.0
            .iter()
            .filter(|(_, route)| matches!(route, Route::Deliver(_)))
            .map(|(name, _)| *name)
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::loggable_target;

    #[test]
    fn targets_are_shown_shortened() {
        assert_eq!(
            loggable_target("email", "bounce-ana@example.com"),
            "b***@example.com"
        );
        assert_eq!(
            loggable_target("push", "abcdefghijklmnop"),
            "abcdefgh…(16 chars)"
        );
        assert!(!loggable_target("callback", "https://h.test/cb?token=s3cret").contains("s3cret"));
        assert_eq!(loggable_target("email", "nobody"), "***");
    }

    #[test]
    fn a_target_repeated_in_a_text_is_shown_shortened() {
        use super::loggable_text;
        assert_eq!(
            loggable_text(
                "email",
                "Bounce-Ana@example.com",
                "SMTP: permanent error (550): <bounce-ana@EXAMPLE.com> unknown; Bounce-Ana@example.com"
            ),
            "SMTP: permanent error (550): <B***@example.com> unknown; B***@example.com"
        );
        assert_eq!(
            loggable_text(
                "push",
                "abcdefghijklmnop",
                "token abcdefghijklmnop is not valid"
            ),
            "token abcdefgh…(16 chars) is not valid"
        );
        assert_eq!(loggable_text("push", "", "HTTP 503"), "HTTP 503");
    }
}
