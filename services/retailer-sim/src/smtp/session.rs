//! One SMTP conversation: greeting, `EHLO`/`HELO`, the `MAIL`, `RCPT`, `DATA` transaction,
//! `RSET`, `NOOP` and `QUIT`; anything else is 502, a command out of order 503.
//!
//! Recipients choose the outcome by prefix, as SKUs do for orders: `bounce-…` is refused for
//! good (`550`), `busy-…` is deferred (`451`) the first time that address is seen and accepted
//! after, so a client's retry of a temporary failure can be proven. Every line is bounded in
//! length and in waiting time, so a stuck or hostile client cannot pin the task or its memory.

use super::command::Command;
use super::{subject, MailRecord, Mailbox};
use chrono::Utc;
use std::io;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader};
use tokio_util::sync::CancellationToken;

/// The largest message accepted (advertised as `SIZE`); bigger ones get `552`.
pub const MAX_MESSAGE_BYTES: usize = 10 * 1024 * 1024;
/// The longest line, CRLF included: RFC 5321's limit for a text line (§4.5.3.1.6), and above
/// its 512 for a command line, which extensions may stretch.
pub const MAX_LINE_BYTES: usize = 1000;
/// How long a line (or a reply's write) may take before the conversation is closed with `421`.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// How long, and how much, a client's leftover input is read and dropped after a reply that ends
/// the conversation (see `Conn::close`).
const LINGER: Duration = Duration::from_secs(1);
const LINGER_BYTES: u64 = 64 * 1024;
/// Recipients per mail, RFC 5321's minimum a server must take (§4.5.3.1.8).
pub const MAX_RECIPIENTS: usize = 100;
/// The name the sink gives itself in replies.
const HOSTNAME: &str = "icon-retailer-sim";

/// Where the conversation stands.
#[derive(Debug, Default)]
struct State {
    greeted: bool,
    /// The open transaction: after `MAIL`, until the data or `RSET`.
    envelope: Option<Envelope>,
}

#[derive(Debug)]
struct Envelope {
    from: String,
    to: Vec<String>,
}

/// What the session does next.
enum Step {
    Reply(String),
    Data,
    Quit,
}

fn reply(text: &str) -> Step {
    Step::Reply(text.to_owned())
}

impl State {
    fn apply(&mut self, command: Command, mailbox: &Mailbox) -> Step {
        match command {
            Command::Ehlo(domain) => {
                self.greeted = true;
                self.envelope = None;
                Step::Reply(format!(
                    "250-{HOSTNAME} greets {domain}\r\n250-8BITMIME\r\n250-ENHANCEDSTATUSCODES\r\n\
                     250 SIZE {MAX_MESSAGE_BYTES}"
                ))
            }
            Command::Helo(_) => {
                self.greeted = true;
                self.envelope = None;
                Step::Reply(format!("250 {HOSTNAME}"))
            }
            Command::Mail { .. } if !self.greeted => reply("503 5.5.1 EHLO or HELO first"),
            Command::Mail { .. } if self.envelope.is_some() => {
                reply("503 5.5.1 MAIL already given; RSET first")
            }
            Command::Mail { from, .. } => {
                self.envelope = Some(Envelope { from, to: vec![] });
                reply("250 2.1.0 sender ok")
            }
            Command::Rcpt(to) => match &mut self.envelope {
                None => reply("503 5.5.1 MAIL first"),
                Some(envelope) if envelope.to.len() >= MAX_RECIPIENTS => {
                    reply("452 4.5.3 too many recipients")
                }
                Some(envelope) => {
                    let lower = to.to_ascii_lowercase();
                    if lower.starts_with("bounce-") {
                        reply("550 5.1.1 mailbox unavailable")
                    } else if lower.starts_with("busy-") && mailbox.first_deferral(&lower) {
                        reply("451 4.3.0 try again later")
                    } else {
                        envelope.to.push(to);
                        reply("250 2.1.5 recipient ok")
                    }
                }
            },
            Command::Data => match &self.envelope {
                None => reply("503 5.5.1 MAIL first"),
                Some(envelope) if envelope.to.is_empty() => reply("503 5.5.1 RCPT first"),
                Some(_) => Step::Data,
            },
            Command::Rset => {
                self.envelope = None;
                reply("250 2.0.0 reset")
            }
            Command::Noop => reply("250 2.0.0 OK"),
            Command::Quit => Step::Quit,
            Command::Bad(text) => reply(text),
            Command::Unknown => reply("502 5.5.2 command not implemented"),
        }
    }

    /// Ends the transaction with its data: recorded, or refused when too big.
    fn finish(&mut self, data: Option<Vec<u8>>, mailbox: &Mailbox) -> String {
        let Some(envelope) = self.envelope.take() else {
            return "503 5.5.1 MAIL first".to_owned();
        };
        let Some(data) = data else {
            return format!("552 5.3.4 message exceeds {MAX_MESSAGE_BYTES} bytes");
        };
        let data = String::from_utf8_lossy(&data).into_owned();
        let id = uuid::Uuid::new_v4().simple().to_string();
        let subject = subject::subject(&data);
        tracing::info!(%id, from = %envelope.from, to = ?envelope.to, subject = subject.as_deref(), "mail accepted");
        mailbox.record(MailRecord {
            id: id.clone(),
            received_at: Utc::now(),
            from: envelope.from,
            to: envelope.to,
            data,
            subject,
        });
        format!("250 2.0.0 OK queued as {id}")
    }
}

/// What reading a line gave.
enum Input {
    Line(Vec<u8>),
    /// The client closed the connection.
    Closed,
    /// The conversation must end with this reply.
    Abort(&'static str),
}

/// The connection: buffered reads, bounded in length and time.
struct Conn<'a, S> {
    io: BufReader<S>,
    shutdown: &'a CancellationToken,
}

impl<S: AsyncRead + AsyncWrite + Unpin> Conn<'_, S> {
    async fn line(&mut self) -> io::Result<Input> {
        tokio::select! {
            read = tokio::time::timeout(IDLE_TIMEOUT, read_line(&mut self.io)) => {
                read.unwrap_or(Ok(Input::Abort("421 4.4.2 idle for too long, closing")))
            }
            () = self.shutdown.cancelled() => Ok(Input::Abort("421 4.3.2 shutting down")),
        }
    }

    async fn reply(&mut self, text: &str) -> io::Result<()> {
        let out = format!("{text}\r\n");
        let write = async {
            self.io.get_mut().write_all(out.as_bytes()).await?;
            self.io.get_mut().flush().await
        };
        tokio::time::timeout(IDLE_TIMEOUT, write)
            .await
            .unwrap_or_else(|_| Err(io::ErrorKind::TimedOut.into()))
    }

    /// Sends a reply that ends the conversation and closes our side. What the client still sends
    /// is read and dropped for a moment (bounded, and cut short by shutdown): closing a socket
    /// with unread input makes the kernel send a reset, which can destroy the reply before the
    /// client reads it.
    async fn close(mut self, text: &str) -> io::Result<()> {
        self.reply(text).await?;
        self.io.get_mut().shutdown().await?;
        let mut leftover = (&mut self.io).take(LINGER_BYTES);
        let mut sink = tokio::io::sink();
        let drain = tokio::io::copy(&mut leftover, &mut sink);
        tokio::select! {
            _ = tokio::time::timeout(LINGER, drain) => {}
            () = self.shutdown.cancelled() => {}
        }
        Ok(())
    }

    /// The data after `354`, up to the `.` line, dot-stuffing undone; `None` if too big (read to
    /// the end all the same, so the conversation can go on).
    async fn data(&mut self) -> io::Result<Result<Option<Vec<u8>>, Input>> {
        let mut data = Some(Vec::new());
        loop {
            let mut line = match self.line().await? {
                Input::Line(line) => line,
                end => return Ok(Err(end)),
            };
            if line == b".\r\n" || line == b".\n" {
                return Ok(Ok(data));
            }
            if line.first() == Some(&b'.') {
                line.remove(0);
            }
            if let Some(kept) = &mut data {
                if kept.len() + line.len() > MAX_MESSAGE_BYTES {
                    data = None;
                } else {
                    kept.extend_from_slice(&line);
                }
            }
        }
    }
}

/// One line, ending in LF (kept); longer than [`MAX_LINE_BYTES`] aborts.
async fn read_line<R: AsyncBufReadExt + Unpin>(reader: &mut R) -> io::Result<Input> {
    let mut line = Vec::new();
    loop {
        let buf = reader.fill_buf().await?;
        if buf.is_empty() {
            return Ok(Input::Closed);
        }
        let (take, done) = match buf.iter().position(|&b| b == b'\n') {
            Some(at) => (at + 1, true),
            None => (buf.len(), false),
        };
        if line.len() + take > MAX_LINE_BYTES {
            return Ok(Input::Abort("500 5.5.2 line too long"));
        }
        line.extend_from_slice(&buf[..take]);
        reader.consume(take);
        if done {
            return Ok(Input::Line(line));
        }
    }
}

/// Serves one conversation until `QUIT`, the client leaves, or it must be cut short.
pub(crate) async fn serve<S: AsyncRead + AsyncWrite + Unpin>(
    stream: S,
    mailbox: &Mailbox,
    shutdown: &CancellationToken,
) -> io::Result<()> {
    let mut conn = Conn {
        io: BufReader::new(stream),
        shutdown,
    };
    conn.reply(&format!(
        "220 {HOSTNAME} ESMTP sink: mail is kept in memory, never delivered"
    ))
    .await?;
    let mut state = State::default();
    loop {
        let line = match conn.line().await? {
            Input::Line(line) => line,
            Input::Closed => return Ok(()),
            Input::Abort(text) => return conn.close(text).await,
        };
        let line = String::from_utf8_lossy(&line);
        let command = Command::parse(line.trim_end_matches(['\r', '\n']));
        match state.apply(command, mailbox) {
            Step::Reply(text) => conn.reply(&text).await?,
            Step::Quit => return conn.close("221 2.0.0 bye").await,
            Step::Data => {
                conn.reply("354 end data with <CR><LF>.<CR><LF>").await?;
                match conn.data().await? {
                    Ok(data) => {
                        let text = state.finish(data, mailbox);
                        conn.reply(&text).await?;
                    }
                    Err(Input::Abort(text)) => return conn.close(text).await,
                    Err(_) => return Ok(()),
                }
            }
        }
    }
}
