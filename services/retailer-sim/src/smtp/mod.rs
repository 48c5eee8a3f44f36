//! An SMTP sink: a minimal ESMTP server (RFC 5321) on a listener of its own that accepts mail
//! for any address and keeps it in memory instead of delivering it, so ICON's e-mail channel can
//! be tested and demonstrated against a real SMTP conversation. `GET /mail` serves what arrived.
//!
//! - [`session`]: one client's conversation, and the outcomes chosen by recipient prefix
//!   (`bounce-`, `busy-`).
//! - [`command`]: reading a command line.
//! - [`subject`]: reading a mail's `Subject`, RFC 2047 encoded words included.
//! - This module: `Mailbox`, the accept loop (`run`) and `GET /mail`.
//!
//! It offers no TLS (no `STARTTLS`) and no `AUTH`: it only ever listens where a test or a demo
//! put it, and a client configured for plain SMTP is what it is there to check.

pub mod command;
pub mod session;
pub mod subject;

use crate::recent::{Firsts, Recent};
use crate::{lock, Sim};
use actix_web::{web, HttpResponse};
use chrono::{DateTime, Utc};
use serde::Serialize;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

/// How many mails `GET /mail` keeps. Mails may be up to [`session::MAX_MESSAGE_BYTES`] each, so
/// this is lower than the other logs' limits.
pub const MAX_RECORDED_MAILS: usize = 1_000;
/// How many `busy-` recipients are remembered as already deferred once.
const MAX_REMEMBERED_RECIPIENTS: usize = 100_000;
/// Conversations served at once; more are turned away with a 421, so a flood of connections
/// cannot exhaust the simulator.
pub const MAX_SESSIONS: usize = 256;

/// One mail accepted; `GET /mail` returns these.
#[derive(Debug, Clone, Serialize)]
pub struct MailRecord {
    /// The id given in the `250` answer to the data, so a client's log can be matched.
    pub id: String,
    pub received_at: DateTime<Utc>,
    /// The envelope sender (`MAIL FROM`), empty for a bounce (`<>`).
    pub from: String,
    /// The envelope recipients accepted (`RCPT TO`), in order.
    pub to: Vec<String>,
    /// The message as sent, headers and body, with dot-stuffing undone (lossy UTF-8).
    pub data: String,
    /// The `Subject` header, decoded; `None` if the mail has none.
    pub subject: Option<String>,
}

/// The SMTP sink's share of the simulator state, shared by the sessions and `GET /mail`.
#[derive(Debug, Default)]
pub(crate) struct Mailbox {
    mails: Mutex<Recent<MailRecord, MAX_RECORDED_MAILS>>,
    /// `busy-` recipients that have had their one deferral.
    deferred_once: Mutex<Firsts<MAX_REMEMBERED_RECIPIENTS>>,
}

impl Mailbox {
    fn record(&self, mail: MailRecord) {
        lock(&self.mails).push(mail);
    }

    /// `true` the first time this `busy-` recipient is seen.
    fn first_deferral(&self, recipient: &str) -> bool {
        lock(&self.deferred_once).first(&recipient.to_ascii_lowercase())
    }
}

/// Accepts conversations until `shutdown`, then waits for the open ones, which end promptly
/// (each answers `421` and closes on shutdown).
pub(crate) async fn run(listener: TcpListener, mailbox: Arc<Mailbox>, shutdown: CancellationToken) {
    let mut sessions = JoinSet::new();
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            () = shutdown.cancelled() => break,
        };
        while sessions.try_join_next().is_some() {}
        match accepted {
            Ok((stream, peer)) if sessions.len() >= MAX_SESSIONS => {
                tracing::warn!(%peer, "SMTP connection refused: too many sessions");
                // Best effort and without waiting: the line fits any socket buffer, and a client
                // that is not reading loses nothing it would have used.
                let _ = stream.try_write(b"421 4.7.0 too many connections\r\n");
            }
            Ok((stream, peer)) => {
                let mailbox = Arc::clone(&mailbox);
                let shutdown = shutdown.clone();
                sessions.spawn(async move {
                    tracing::debug!(%peer, "SMTP session opened");
                    if let Err(e) = session::serve(stream, &mailbox, &shutdown).await {
                        tracing::debug!(%peer, error = %e, "SMTP session ended by an I/O error");
                    }
                });
            }
            Err(e) => {
                // Typically out of file descriptors: pause rather than spin on the error.
                tracing::warn!(error = %e, "SMTP accept failed");
                tokio::select! {
                    () = tokio::time::sleep(Duration::from_millis(100)) => {}
                    () = shutdown.cancelled() => break,
                }
            }
        }
    }
    tracing::info!("shutting down the SMTP sink");
    while sessions.join_next().await.is_some() {}
}

/// `GET /mail`: every mail accepted, oldest first.
pub(crate) async fn list(sim: web::Data<Sim>) -> HttpResponse {
    HttpResponse::Ok().json(lock(&sim.mailbox.mails).list())
}
