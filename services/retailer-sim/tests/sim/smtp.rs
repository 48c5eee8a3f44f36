//! The SMTP sink, spoken to over raw TCP: a mail's way in, recipient prefixes, protocol
//! errors, limits, and `GET /mail`.

use crate::helpers::{TestSim, DEADLINE};
use std::net::SocketAddr;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;

/// One SMTP conversation, as a client.
struct Client {
    reader: BufReader<OwnedReadHalf>,
    writer: OwnedWriteHalf,
}

impl Client {
    /// Connects and checks the greeting.
    async fn connect(addr: SocketAddr) -> Self {
        let stream = tokio::time::timeout(DEADLINE, TcpStream::connect(addr))
            .await
            .expect("connect in time")
            .expect("connect");
        let (reader, writer) = stream.into_split();
        let mut client = Self {
            reader: BufReader::new(reader),
            writer,
        };
        let greeting = client.reply().await;
        assert!(greeting.starts_with("220 "), "{greeting}");
        client
    }

    /// A whole reply, multi-line ones joined with `\n`; empty if the server closed.
    async fn reply(&mut self) -> String {
        let mut lines = Vec::new();
        loop {
            let mut line = String::new();
            let read = tokio::time::timeout(DEADLINE, self.reader.read_line(&mut line))
                .await
                .expect("a reply in time")
                .expect("read");
            if read == 0 {
                return lines.join("\n");
            }
            assert!(line.ends_with("\r\n"), "{line:?} must end in CRLF");
            let line = line.trim_end().to_owned();
            let last = line.as_bytes().get(3) != Some(&b'-');
            lines.push(line);
            if last {
                return lines.join("\n");
            }
        }
    }

    async fn write(&mut self, bytes: &[u8]) {
        tokio::time::timeout(DEADLINE, self.writer.write_all(bytes))
            .await
            .expect("written in time")
            .expect("write");
    }

    /// Sends a command line and returns the reply.
    async fn say(&mut self, line: &str) -> String {
        self.write(format!("{line}\r\n").as_bytes()).await;
        self.reply().await
    }

    /// Asserts the reply to `line` starts with `code`.
    async fn expect(&mut self, line: &str, code: &str) -> String {
        let reply = self.say(line).await;
        assert!(
            reply.starts_with(code),
            "{line:?} got {reply:?}, expected {code}"
        );
        reply
    }
}

#[tokio::test]
async fn a_mail_is_accepted_dot_stuffing_undone_and_listed_with_its_subject() {
    let sim = TestSim::start().await;
    let mut smtp = Client::connect(sim.smtp_addr).await;
    let ehlo = smtp.expect("EHLO notifier.test", "250").await;
    let lines: Vec<&str> = ehlo.lines().collect();
    assert!(lines.contains(&"250-8BITMIME"), "{ehlo}");
    assert!(lines.iter().any(|l| l[4..] == *"SIZE 10485760"), "{ehlo}");
    assert!(!ehlo.contains("STARTTLS"), "{ehlo}");

    smtp.expect("MAIL FROM:<icon@shop.test> BODY=8BITMIME", "250")
        .await;
    smtp.expect("RCPT TO:<ana@example.test>", "250").await;
    smtp.expect("rcpt to:<bo@example.test>", "250").await;
    smtp.expect("DATA", "354").await;
    let data = "From: ICON <icon@shop.test>\r\n\
                To: ana@example.test\r\n\
                Subject: =?UTF-8?B?Q29tbWFuZGUgcGFzc8OpZQ==?=\r\n \
                =?UTF-8?Q?_=E2=9C=93?=\r\n\
                \r\n\
                Your order is placed.\r\n\
                ..leading dot\r\n\
                ..\r\n\
                .\r\n";
    smtp.write(data.as_bytes()).await;
    let queued = smtp.reply().await;
    assert!(queued.starts_with("250 2.0.0 OK queued as "), "{queued}");
    smtp.expect("QUIT", "221").await;
    assert_eq!(smtp.reply().await, "", "closed after QUIT");

    let mail = sim.log("/mail").await;
    assert_eq!(mail.len(), 1);
    assert_eq!(mail[0]["from"], "icon@shop.test");
    assert_eq!(
        mail[0]["to"],
        serde_json::json!(["ana@example.test", "bo@example.test"])
    );
    assert_eq!(mail[0]["subject"], "Commande passée ✓");
    let body = mail[0]["data"].as_str().expect("data");
    assert!(
        body.starts_with("From: ICON <icon@shop.test>\r\n"),
        "{body}"
    );
    assert!(
        body.ends_with("Your order is placed.\r\n.leading dot\r\n.\r\n"),
        "{body:?}"
    );
    assert_eq!(queued.rsplit(' ').next(), mail[0]["id"].as_str());
    assert!(mail[0]["received_at"].is_string());
}

#[tokio::test]
async fn bounce_recipients_are_refused_and_busy_ones_deferred_once() {
    let sim = TestSim::start().await;
    let mut smtp = Client::connect(sim.smtp_addr).await;
    smtp.expect("HELO notifier.test", "250").await;
    smtp.expect("MAIL FROM:<icon@shop.test>", "250").await;
    let bounce = smtp.say("RCPT TO:<bounce-ana@example.test>").await;
    assert_eq!(bounce, "550 5.1.1 mailbox unavailable");
    let busy = smtp.say("RCPT TO:<busy-bo@example.test>").await;
    assert_eq!(busy, "451 4.3.0 try again later");
    // No recipient accepted yet: no data.
    smtp.expect("DATA", "503").await;
    smtp.expect("RCPT TO:<busy-bo@example.test>", "250").await;
    smtp.expect("DATA", "354").await;
    smtp.write(b"Subject: retried\r\n\r\nhi\r\n.\r\n").await;
    assert!(smtp.reply().await.starts_with("250 "));

    // Deferred once per address, across conversations.
    let mut again = Client::connect(sim.smtp_addr).await;
    again.expect("EHLO notifier.test", "250").await;
    again.expect("MAIL FROM:<icon@shop.test>", "250").await;
    again.expect("RCPT TO:<BUSY-bo@example.test>", "250").await;
    again.expect("RCPT TO:<busy-cy@example.test>", "451").await;

    let mail = sim.log("/mail").await;
    assert_eq!(mail.len(), 1);
    assert_eq!(mail[0]["to"], serde_json::json!(["busy-bo@example.test"]));
    assert_eq!(mail[0]["subject"], "retried");
}

#[tokio::test]
async fn commands_out_of_order_are_503_and_unknown_ones_502() {
    let sim = TestSim::start().await;
    let mut smtp = Client::connect(sim.smtp_addr).await;
    smtp.expect("MAIL FROM:<icon@shop.test>", "503").await;
    smtp.expect("NOOP", "250").await;
    smtp.expect("EHLO notifier.test", "250").await;
    smtp.expect("RCPT TO:<ana@example.test>", "503").await;
    smtp.expect("DATA", "503").await;
    smtp.expect("STARTTLS", "502").await;
    smtp.expect("AUTH PLAIN AGFiYwBkZWY=", "502").await;
    smtp.expect("VRFY ana", "502").await;
    smtp.expect("MAIL FROM:<icon@shop.test>", "250").await;
    smtp.expect("MAIL FROM:<icon@shop.test>", "503").await;
    smtp.expect("RCPT TO:<ana@example.test>", "250").await;
    smtp.expect("RSET", "250").await;
    smtp.expect("DATA", "503").await;
    smtp.expect("MAIL FROM:icon@shop.test", "501").await;
    smtp.expect("QUIT", "221").await;
    assert!(sim.log("/mail").await.is_empty());
}

#[tokio::test]
async fn oversized_mail_is_552_and_the_conversation_goes_on() {
    let sim = TestSim::start().await;
    let mut smtp = Client::connect(sim.smtp_addr).await;
    smtp.expect("EHLO notifier.test", "250").await;
    smtp.expect("MAIL FROM:<icon@shop.test> SIZE=10485761", "552")
        .await;

    smtp.expect("MAIL FROM:<icon@shop.test>", "250").await;
    smtp.expect("RCPT TO:<ana@example.test>", "250").await;
    smtp.expect("DATA", "354").await;
    let line = format!("{}\r\n", "x".repeat(998));
    let chunk = line.repeat(1024); // 1 MiB.
    for _ in 0..11 {
        smtp.write(chunk.as_bytes()).await;
    }
    smtp.write(b".\r\n").await;
    let refused = smtp.reply().await;
    assert!(refused.starts_with("552 "), "{refused}");

    smtp.expect("MAIL FROM:<icon@shop.test>", "250").await;
    smtp.expect("RCPT TO:<ana@example.test>", "250").await;
    smtp.expect("DATA", "354").await;
    smtp.write(b"Subject: small\r\n\r\nok\r\n.\r\n").await;
    assert!(smtp.reply().await.starts_with("250 "));
    let mail = sim.log("/mail").await;
    assert_eq!(mail.len(), 1);
    assert_eq!(mail[0]["subject"], "small");
}

#[tokio::test]
async fn an_overlong_line_ends_the_conversation() {
    let sim = TestSim::start().await;
    let mut smtp = Client::connect(sim.smtp_addr).await;
    let reply = smtp.say(&format!("EHLO {}", "x".repeat(2000))).await;
    assert!(reply.starts_with("500 "), "{reply}");
    assert_eq!(smtp.reply().await, "", "closed");
}

#[tokio::test]
async fn shutdown_ends_open_conversations_with_421() {
    let sim = TestSim::start().await;
    let mut smtp = Client::connect(sim.smtp_addr).await;
    smtp.expect("EHLO notifier.test", "250").await;
    sim.shutdown.cancel();
    assert!(smtp.reply().await.starts_with("421 "));
    assert_eq!(smtp.reply().await, "", "closed");
    let stopped = tokio::time::timeout(DEADLINE, sim.server).await;
    assert!(stopped.expect("stopped in time").expect("task").is_ok());
    assert!(
        TcpStream::connect(sim.smtp_addr).await.is_err(),
        "still accepting SMTP"
    );
}
