//! The `LISTEN` connection that wakes the relay when a transaction wrote rows due at once.

use futures_util::{stream, StreamExt};
use icon_runtime::Backoff;
use icon_store::{outbox, DatabaseUrl};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Notify;
use tokio_postgres::AsyncMessage;
use tokio_util::sync::CancellationToken;

/// Keeps a `LISTEN` connection open and turns notifications into wake-ups. After every
/// (re)connect it wakes the relay once, for anything committed while it was not listening.
/// It connects with the same TLS settings as the pool.
pub(crate) async fn listen(database_url: String, wake: Arc<Notify>, shutdown: CancellationToken) {
    let database_url = match DatabaseUrl::parse(&database_url) {
        Ok(url) => url,
        Err(e) => {
            // The pool parsed the same URL before the relay started; this is unreachable in a
            // service, and the relay still works by polling.
            tracing::error!(error = %e, "ICON_DATABASE_URL is invalid; the outbox relay polls without LISTEN");
            return;
        }
    };
    let mut backoff = Backoff::reconnect();
    while !shutdown.is_cancelled() {
        match database_url.connect().await {
            Ok((client, mut connection)) => {
                let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
                let mut messages = stream::poll_fn(move |cx| connection.poll_message(cx));
                let driver = tokio::spawn(async move {
                    while let Some(m) = messages.next().await {
                        match m {
                            Ok(AsyncMessage::Notification(_)) => {
                                let _ = tx.send(());
                            }
                            Ok(_) => {}
                            Err(_) => break,
                        }
                    }
                });
                let listening = client
                    .batch_execute(&format!("LISTEN {}", outbox::CHANNEL))
                    .await;
                if listening.is_ok() {
                    backoff = Backoff::reconnect();
                    wake.notify_one();
                    loop {
                        tokio::select! {
                            _ = shutdown.cancelled() => break,
                            got = rx.recv() => match got {
                                Some(()) => wake.notify_one(),
                                None => break,
                            }
                        }
                    }
                }
                driver.abort();
            }
            Err(e) => {
                tracing::debug!(error = %icon_store::pool::source_chain(&e), "outbox listener cannot connect; the relay polls meanwhile");
            }
        }
        sleep(backoff.next_delay(), &shutdown).await;
    }
}

async fn sleep(d: Duration, shutdown: &CancellationToken) {
    tokio::select! {
        _ = shutdown.cancelled() => {}
        _ = tokio::time::sleep(d) => {}
    }
}
