//! How a checkout's push and e-mail notifications show on its resource, and what sets the three
//! notification channels apart when one is redelivered.
//!
//! Push is one notification row per device; the resource shows one summary of them
//! ([`push_summary`], pure, so every state is tested here without a database).

use crate::problem::{lost_write, ApiError};
use chrono::{DateTime, Utc};
use icon_domain::{CheckoutId, NotificationState};
use icon_store::notifications::Notification;
use serde::Serialize;
use utoipa::ToSchema;

/// A checkout's push, summed up over its devices.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum PushState {
    /// No device was registered for the user when the checkout was submitted: nothing is sent.
    NoDevices,
    /// At least one device has not been reached yet (first attempt or retries to come).
    Pending,
    /// Every device was reached.
    Sent,
    /// Some devices were reached; the others were given up on.
    PartiallySent,
    /// No device was reached, and none will be without a redelivery.
    Failed,
    /// This deployment has no push credentials, so nothing was attempted.
    NotConfigured,
}

/// The push of a checkout's outcome to the devices the user had registered at submission.
#[derive(Debug, PartialEq, Serialize, ToSchema)]
#[schema(example = json!({
    "state": "partially_sent",
    "devices": 2,
    "sent": 1,
    "failed": 1,
    "last_error": "FCM answered 404 UNREGISTERED",
    "detail": "1 of 2 devices could not be reached; POST /cart/checkout/0193a0c4-7d2e-7cde-8f00-5a1b2c3d4e5f/push/redeliver tries them again"
}))]
pub struct PushBody {
    pub state: PushState,
    /// How many devices the outcome goes to.
    pub devices: usize,
    /// Devices the push was delivered to.
    pub sent: usize,
    /// Devices given up on (`failed`, or `not_configured` on this deployment).
    pub failed: usize,
    /// The latest error any device reported.
    pub last_error: Option<String>,
    /// What the state means for the shopper and what to do about it; absent while all is well.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

/// The e-mail of a checkout's outcome to the address in the submitting token's `email` claim
/// (not shown).
#[derive(Debug, Serialize, ToSchema)]
#[schema(example = json!({
    "state": "retrying",
    "attempts": 1,
    "last_attempt_at": "2026-11-27T10:00:05Z",
    "next_attempt_at": "2026-11-27T10:00:35Z",
    "last_error": "SMTP 451 4.7.1 try again later"
}))]
pub struct EmailBody {
    pub state: NotificationState,
    pub attempts: i32,
    pub last_attempt_at: Option<DateTime<Utc>>,
    pub next_attempt_at: Option<DateTime<Utc>>,
    pub last_error: Option<String>,
}

impl From<Notification> for EmailBody {
    fn from(n: Notification) -> Self {
        Self {
            state: n.state,
            attempts: n.attempts,
            last_attempt_at: n.last_attempt_at,
            next_attempt_at: n.next_attempt_at,
            last_error: n.last_error,
        }
    }
}

/// One device's push, as a redelivery re-queued it.
#[derive(Debug, Serialize, ToSchema)]
pub struct PushDeliveryBody {
    /// The device's registration token.
    #[schema(example = "fcm-token:APA91bHun4MxP5egoKMwt2KZFBaFUH-1RYqx")]
    pub device: String,
    pub state: NotificationState,
    pub attempts: i32,
    pub last_attempt_at: Option<DateTime<Utc>>,
    pub next_attempt_at: Option<DateTime<Utc>>,
    pub last_error: Option<String>,
}

impl From<Notification> for PushDeliveryBody {
    fn from(n: Notification) -> Self {
        Self {
            device: n.target,
            state: n.state,
            attempts: n.attempts,
            last_attempt_at: n.last_attempt_at,
            next_attempt_at: n.next_attempt_at,
            last_error: n.last_error,
        }
    }
}

/// The push summary of checkout `id` from its push rows; `None` when the checkout did not ask
/// for push.
pub fn push_summary(
    id: CheckoutId,
    push_notification: bool,
    rows: &[Notification],
) -> Option<PushBody> {
    use NotificationState::*;
    if !push_notification {
        return None;
    }
    let count = |pred: fn(NotificationState) -> bool| rows.iter().filter(|n| pred(n.state)).count();
    let devices = rows.len();
    let open = count(|s| matches!(s, Pending | Retrying));
    let sent = count(|s| s == Delivered);
    let not_configured = count(|s| s == NotConfigured);
    let failed = count(|s| s == Failed) + not_configured;
    let redeliver = format!("POST /cart/checkout/{id}/push/redeliver tries them again");
    let (state, detail) = if devices == 0 {
        (
            PushState::NoDevices,
            Some(
                "no device was registered for this user when the checkout was submitted, so \
                 nothing is pushed; register the app's token with PUT /me/devices/{token} \
                 before the next checkout"
                    .to_owned(),
            ),
        )
    } else if open > 0 {
        (PushState::Pending, None)
    } else if not_configured == devices {
        (
            PushState::NotConfigured,
            Some(format!(
                "push is not configured on this deployment, so nothing was sent; once the \
                 operator configures it, {redeliver}"
            )),
        )
    } else if sent == devices {
        (PushState::Sent, None)
    } else if sent == 0 {
        (
            PushState::Failed,
            Some(format!(
                "no device could be reached (see last_error and /attempts); {redeliver}"
            )),
        )
    } else {
        (
            PushState::PartiallySent,
            Some(format!(
                "{failed} of {devices} devices could not be reached; {redeliver}"
            )),
        )
    };
    let last_error = rows
        .iter()
        .filter(|n| n.last_error.is_some())
        .max_by_key(|n| n.updated_at)
        .and_then(|n| n.last_error.clone());
    Some(PushBody {
        state,
        devices,
        sent,
        failed,
        last_error,
        detail,
    })
}

/// A notification channel, as named in paths, rows and problem codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Channel {
    Callback,
    Push,
    Email,
}

impl Channel {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Callback => "callback",
            Self::Push => "push",
            Self::Email => "email",
        }
    }

    /// What a 503 says when the database went away while re-queuing on this channel.
    pub fn lost_redelivery(self) -> &'static str {
        match self {
            Self::Callback => lost_write::REDELIVERY,
            Self::Push => lost_write::PUSH_REDELIVERY,
            Self::Email => lost_write::EMAIL_REDELIVERY,
        }
    }

    /// The checkout has nothing on this channel. A 409, not a 404: the checkout exists and is
    /// the caller's, it just never asked for this channel, so "409 for anything but a failed
    /// notification" (issue 2) holds, and a client that just created the checkout is not told
    /// that it does not exist. The codes keep their names, which clients match on.
    pub fn absent(self) -> ApiError {
        match self {
            Self::Callback => ApiError::conflict(
                "callback_not_found",
                "this checkout was submitted without a callback_url",
            ),
            Self::Push => ApiError::conflict(
                "push_not_found",
                "this checkout has no push notification: it was submitted without \
                 push_notification: true, or no device was registered for you then",
            ),
            Self::Email => ApiError::conflict(
                "email_not_found",
                "this checkout has no e-mail: the token that submitted it carried no email \
                 claim",
            ),
        }
    }

    /// Nothing on this channel was given up on; `state` is that of its first notification.
    pub fn not_failed(self, state: NotificationState) -> ApiError {
        match self {
            Self::Callback => ApiError::conflict(
                "callback_not_failed",
                format!("the callback is {state}; only a failed callback can be redelivered"),
            ),
            Self::Push => ApiError::conflict(
                "push_not_failed",
                "no push of this checkout is failed or not_configured (they are pending, \
                 retrying or delivered); only those can be redelivered, so poll the checkout",
            ),
            Self::Email => ApiError::conflict(
                "email_not_failed",
                format!(
                    "the e-mail is {state}; only a failed or not_configured e-mail can be \
                     redelivered"
                ),
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Duration;
    use icon_domain::NotificationId;
    use NotificationState::*;

    fn row(state: NotificationState, error: Option<&str>, age_secs: i64) -> Notification {
        let at = Utc::now() - Duration::seconds(age_secs);
        Notification {
            id: NotificationId::new(),
            checkout_id: CheckoutId::new(),
            channel: "push".into(),
            target: "token".into(),
            state,
            attempts: 1,
            first_attempt_at: None,
            last_attempt_at: None,
            next_attempt_at: None,
            last_response_status: None,
            last_error: error.map(str::to_owned),
            created_at: at,
            sequence: 1,
            updated_at: at,
        }
    }

    fn summary(rows: &[Notification]) -> PushBody {
        push_summary(CheckoutId::new(), true, rows).unwrap()
    }

    #[test]
    fn no_push_asked_is_no_summary() {
        assert_eq!(push_summary(CheckoutId::new(), false, &[]), None);
    }

    #[test]
    fn no_rows_says_no_device_was_registered_and_how_to_register() {
        let s = summary(&[]);
        assert_eq!(s.state, PushState::NoDevices);
        assert_eq!((s.devices, s.sent, s.failed), (0, 0, 0));
        let detail = s.detail.unwrap();
        assert!(detail.contains("no device was registered"), "{detail}");
        assert!(detail.contains("PUT /me/devices/{token}"), "{detail}");
    }

    #[test]
    fn anything_open_is_pending() {
        for open in [Pending, Retrying] {
            let s = summary(&[row(Delivered, None, 5), row(open, Some("503"), 1)]);
            assert_eq!(s.state, PushState::Pending);
            assert_eq!((s.devices, s.sent, s.failed), (2, 1, 0));
            assert_eq!(s.detail, None);
        }
        let s = summary(&[row(Failed, None, 5), row(Pending, None, 1)]);
        assert_eq!(s.state, PushState::Pending);
    }

    #[test]
    fn final_states() {
        let s = summary(&[row(Delivered, None, 1), row(Delivered, None, 2)]);
        assert_eq!(
            (s.state, s.sent, s.failed, s.detail),
            (PushState::Sent, 2, 0, None)
        );

        let s = summary(&[row(NotConfigured, Some("no FCM credentials"), 1)]);
        assert_eq!(
            (s.state, s.sent, s.failed),
            (PushState::NotConfigured, 0, 1)
        );
        assert!(s
            .detail
            .unwrap()
            .contains("not configured on this deployment"));

        let s = summary(&[row(Failed, Some("gone"), 1), row(NotConfigured, None, 2)]);
        assert_eq!((s.state, s.sent, s.failed), (PushState::Failed, 0, 2));
        assert!(s.detail.unwrap().contains("/push/redeliver"));

        let s = summary(&[row(Delivered, None, 1), row(Failed, Some("gone"), 2)]);
        assert_eq!(
            (s.state, s.sent, s.failed),
            (PushState::PartiallySent, 1, 1)
        );
        assert!(s.detail.unwrap().starts_with("1 of 2 devices"));
    }

    #[test]
    fn last_error_is_from_the_most_recently_updated_row_that_has_one() {
        let s = summary(&[
            row(Failed, Some("older"), 30),
            row(Failed, Some("newest"), 10),
            row(Delivered, None, 1),
        ]);
        assert_eq!(s.last_error.as_deref(), Some("newest"));
        assert_eq!(summary(&[row(Delivered, None, 1)]).last_error, None);
    }
}
