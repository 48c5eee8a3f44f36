//! Connecting to RabbitMQ.

use crate::tls::AmqpUrl;
use icon_runtime::Backoff;
use lapin::{Connection, ConnectionProperties};
use tokio_util::sync::CancellationToken;

/// `ICON_AMQP_URL`'s default: the local RabbitMQ of a development machine.
pub const DEFAULT_AMQP_URL: &str = "amqp://guest:guest@127.0.0.1:5672/%2f";

/// Connects, retrying with backoff and saying so in the log, until it succeeds or `shutdown`
/// fires (then `None`). `name` shows in the management UI's connection list.
pub async fn connect(url: &str, name: &str, shutdown: &CancellationToken) -> Option<Connection> {
    let mut backoff = Backoff::reconnect();
    loop {
        let props = ConnectionProperties::default().with_connection_name(name.into());
        let attempt = tokio::select! {
            _ = shutdown.cancelled() => return None,
            r = tokio::time::timeout(std::time::Duration::from_secs(10), open(url, props)) => r,
        };
        let error = match attempt {
            Ok(Ok(conn)) => {
                tracing::info!(connection = name, "connected to RabbitMQ");
                return Some(conn);
            }
            Ok(Err(e)) => e.to_string(),
            Err(_) => "timed out after 10s".to_owned(),
        };
        let delay = backoff.next_delay();
        tracing::warn!(
            connection = name,
            broker = %redact(url),
            %error,
            "RabbitMQ is not reachable yet; retrying in {delay:?}"
        );
        tokio::select! {
            _ = shutdown.cancelled() => return None,
            _ = tokio::time::sleep(delay) => {}
        }
    }
}

/// One connection attempt, through TLS for `amqps://` (see [`crate::tls`]). Services checked
/// the URL in their settings, so a parse error here is a caller's bug, reported like a failure
/// to connect.
pub async fn open(url: &str, props: ConnectionProperties) -> lapin::Result<Connection> {
    match AmqpUrl::parse(url) {
        Ok(url) => url.connect(props).await,
        Err(e) => Err(lapin::Error::from(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            format!("ICON_AMQP_URL is invalid: {e}"),
        ))),
    }
}

/// The URL without its password, for logs.
pub fn redact(url: &str) -> String {
    icon_runtime::tls::redact_url(url)
}

#[cfg(test)]
mod tests {
    #[test]
    fn redacts_password() {
        assert_eq!(
            super::redact("amqp://guest:secret@127.0.0.1:5672/%2f"),
            "amqp://guest:***@127.0.0.1:5672/%2f"
        );
        assert_eq!(super::redact("amqp://h/"), "amqp://h/");
    }
}
