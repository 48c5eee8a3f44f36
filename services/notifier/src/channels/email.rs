//! E-mail: the outcome, the orders and the resource link, to the address the shopper's token
//! carried at checkout, over SMTP (`ICON_SMTP_URL`) with lettre on the workspace's rustls.
//!
//! `smtp://host[:port]` upgrades with STARTTLS when the server offers it (`?tls=required` to
//! insist); `smtps://` is TLS from the first byte. The `Message-ID` is derived from the
//! notification id, the same on every retry, so a mail client shows a repeat after a crash as
//! one message. A permanent SMTP refusal (5xx) is given up and parked; anything else retried.

use super::{Attempting, Channel, Outcome};
use crate::notice::Notice;
use icon_contracts::{CheckoutFinished, OrderOutcome};
use icon_domain::CheckoutStatus;
use icon_store::notifications::{Claimed, Notification};
use lettre::message::{Mailbox, MultiPart};
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use std::time::Duration;

pub struct EmailChannel {
    mailer: AsyncSmtpTransport<Tokio1Executor>,
    from: Mailbox,
}

impl EmailChannel {
    /// `url` is `ICON_SMTP_URL`, `from` is `ICON_SMTP_FROM`; the error names what is wrong.
    pub fn new(url: &str, from: &str, timeout: Duration) -> Result<Self, String> {
        let from: Mailbox = from
            .parse()
            .map_err(|e| format!("ICON_SMTP_FROM={from} is not a mailbox: {e}"))?;
        let mailer = AsyncSmtpTransport::<Tokio1Executor>::from_url(&with_starttls(url)?)
            .map_err(|e| format!("ICON_SMTP_URL: {e}"))?
            .timeout(Some(timeout))
            .build();
        Ok(Self { mailer, from })
    }

    async fn attempt(&self, n: &Notification, notice: &Notice) -> Outcome {
        let to: Mailbox = match n.target.parse() {
            Ok(to) => to,
            Err(e) => {
                return Outcome::GiveUp {
                    status: None,
                    error: Some(format!("not an e-mail address: {e}")),
                }
            }
        };
        let (subject, text, html) = compose(notice);
        let message = Message::builder()
            .from(self.from.clone())
            .to(to)
            .subject(subject)
            .message_id(Some(format!("<{}@icon.checkout>", n.id)))
            .date_now()
            .multipart(MultiPart::alternative_plain_html(text, html));
        let message = match message {
            Ok(m) => m,
            Err(e) => {
                return Outcome::GiveUp {
                    status: None,
                    error: Some(format!("cannot build the e-mail: {e}")),
                }
            }
        };
        match self.mailer.send(message).await {
            Ok(resp) => Outcome::Delivered {
                status: resp.code().to_string().parse().ok(),
            },
            Err(e) => {
                let status = e.status().and_then(|c| c.to_string().parse().ok());
                let error = Some(format!("SMTP: {e}"));
                if e.is_permanent() {
                    Outcome::GiveUp { status, error }
                } else {
                    Outcome::Retry {
                        status,
                        error,
                        retry_after: None,
                    }
                }
            }
        }
    }
}

/// Adds `tls=opportunistic` to a plain `smtp://` URL that does not choose, so STARTTLS is used
/// wherever the server offers it.
fn with_starttls(url: &str) -> Result<String, String> {
    let mut parsed =
        url::Url::parse(url).map_err(|e| format!("ICON_SMTP_URL is not a URL: {e}"))?;
    match parsed.scheme() {
        "smtps" => {}
        "smtp" if parsed.query_pairs().any(|(k, _)| k == "tls") => {}
        "smtp" => {
            parsed.query_pairs_mut().append_pair("tls", "opportunistic");
        }
        other => {
            return Err(format!(
                "ICON_SMTP_URL must be smtp:// or smtps://, not {other}://"
            ))
        }
    }
    Ok(parsed.to_string())
}

/// Subject, text part and HTML part.
pub fn compose(notice: &Notice) -> (String, String, String) {
    let event = &notice.checkout;
    let (headline, line) = super::push::message::wording(notice);
    let subject = format!("{headline} (checkout {})", short(event));
    let outcome = match event.status {
        CheckoutStatus::Completed => "completed: every retailer confirmed your order",
        CheckoutStatus::PartiallyCompleted => "partially completed: some retailers confirmed",
        CheckoutStatus::Cancelled => "been cancelled: nothing of it remains ordered",
        CheckoutStatus::PartiallyCancelled | CheckoutStatus::Cancelling => {
            "been partially cancelled: some orders remain placed"
        }
        _ => "failed: no order was confirmed",
    };
    // An order's change says what changed; the checkout's end, how it ended.
    let opening = if notice.is_order_event() {
        line
    } else {
        format!("Your checkout of cart {} has {outcome}.", event.cart_id)
    };
    let mut text = format!("{opening}\n\nOrders:\n");
    let mut rows = String::new();
    for o in &event.orders {
        text.push_str(&format!("  - {}\n", order_line(o)));
        rows.push_str(&format!("<li>{}</li>", escape(&order_line(o))));
    }
    if let Some(reason) = &event.reason {
        text.push_str(&format!("\nWhy: {reason}\n"));
    }
    text.push_str(&format!(
        "\nDetails: {}\n\nCheckout {}\n",
        event.source_url, event.checkout_id
    ));
    let reason = event
        .reason
        .as_deref()
        .map(|r| format!("<p>Why: {}</p>", escape(r)))
        .unwrap_or_default();
    let html = format!(
        "<!DOCTYPE html><html><body><h1>{}</h1><p>{}</p>\
         <h2>Orders</h2><ul>{rows}</ul>{reason}<p><a href=\"{}\">See the details</a></p>\
         <p style=\"color:#666\">Checkout {}</p></body></html>",
        escape(&headline),
        escape(&opening),
        escape(&event.source_url),
        event.checkout_id
    );
    (subject, text, html)
}

fn order_line(o: &OrderOutcome) -> String {
    let mut line = format!("{}: {}", o.retailer_id, o.status);
    if let Some(id) = &o.retailer_order_id {
        line.push_str(&format!(" (order {id})"));
    }
    if let Some(t) = &o.tracking {
        line.push_str(&format!(" - {} tracking {}", t.carrier, t.number));
    }
    if let Some(reason) = &o.reason {
        line.push_str(&format!(" - {reason}"));
    }
    line
}

fn short(event: &CheckoutFinished) -> String {
    event.checkout_id.to_string().chars().take(8).collect()
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

impl Channel for EmailChannel {
    fn name(&self) -> &'static str {
        "email"
    }

    fn deliver<'a>(
        &'a self,
        n: &'a Notification,
        _: &'a Claimed,
        notice: &'a Notice,
    ) -> Attempting<'a> {
        Box::pin(self.attempt(n, notice))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn starttls_unless_chosen() {
        assert_eq!(
            with_starttls("smtp://mail.example.com:587").unwrap(),
            "smtp://mail.example.com:587?tls=opportunistic"
        );
        assert_eq!(
            with_starttls("smtp://m:25?tls=required").unwrap(),
            "smtp://m:25?tls=required"
        );
        assert_eq!(with_starttls("smtps://u:p@m").unwrap(), "smtps://u:p@m");
        assert!(with_starttls("http://m").unwrap_err().contains("smtp://"));
    }

    #[test]
    fn html_is_escaped() {
        assert_eq!(escape("<b>&\""), "&lt;b&gt;&amp;&quot;");
    }
}
