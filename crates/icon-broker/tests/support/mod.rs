//! A fresh RabbitMQ vhost per test on the shared local broker, deleted when dropped, and
//! `rabbitmqctl` to look at what the broker really holds (queue types and arguments). Honours
//! `ICON_TEST_AMQP_URL` and `ICON_TEST_RABBITMQCTL` like the test harness (icon-testkit), which
//! this crate cannot use (it depends on this crate).

#![allow(dead_code)]

use icon_broker::lapin::options::{BasicPublishOptions, ConfirmSelectOptions};
use icon_broker::lapin::types::{AMQPValue, FieldTable};
use icon_broker::lapin::{BasicProperties, Connection};
use serde_json::Value;
use std::process::Command;
use std::time::Duration;

fn var(name: &str, default: &str) -> String {
    std::env::var(name)
        .ok()
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| default.to_owned())
}

fn rabbitmqctl(args: &[&str]) -> std::process::Output {
    let cmd = var("ICON_TEST_RABBITMQCTL", "rabbitmqctl");
    let mut parts = cmd.split_whitespace();
    let program = parts.next().unwrap_or("rabbitmqctl");
    Command::new(program)
        .args(parts)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run `{cmd}` (set ICON_TEST_RABBITMQCTL): {e}"))
}

fn ctl(args: &[&str]) -> String {
    let out = rabbitmqctl(args);
    assert!(
        out.status.success(),
        "rabbitmqctl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

pub struct Vhost {
    pub name: String,
    pub url: String,
}

/// One queue as `rabbitmqctl list_queues` shows it.
#[derive(Debug, Clone)]
pub struct QueueInfo {
    pub name: String,
    pub kind: String,
    pub messages: u64,
    pub consumers: u64,
    /// The arguments as `rabbitmqctl` prints them (JSON).
    pub arguments: Value,
}

impl QueueInfo {
    /// A queue argument as text, if set.
    pub fn arg(&self, key: &str) -> Option<String> {
        let found = match &self.arguments {
            Value::Object(m) => m.get(key).cloned(),
            Value::Array(pairs) => pairs.iter().find_map(|p| {
                // `[key, type, value]`
                (p.get(0).and_then(Value::as_str) == Some(key))
                    .then(|| p.as_array().and_then(|a| a.last()).cloned())
                    .flatten()
            }),
            _ => None,
        }?;
        Some(match found {
            Value::String(s) => s,
            other => other.to_string(),
        })
    }
}

impl Vhost {
    pub fn create() -> Self {
        let name = format!(
            "icon_broker_test_{}",
            &uuid::Uuid::new_v4().simple().to_string()[..12]
        );
        ctl(&["-q", "add_vhost", &name]);
        ctl(&[
            "-q",
            "set_permissions",
            "-p",
            &name,
            "guest",
            ".*",
            ".*",
            ".*",
        ]);
        let base = var("ICON_TEST_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672");
        let url = format!("{}/{name}", base.trim_end_matches('/'));
        Self { name, url }
    }

    pub async fn connect(&self) -> Connection {
        Connection::connect(&self.url, Default::default())
            .await
            .expect("connect to the test vhost")
    }

    /// Every queue of this vhost, by name.
    pub fn queues(&self) -> Vec<QueueInfo> {
        let out = ctl(&[
            "-q",
            "list_queues",
            "-p",
            &self.name,
            "name",
            "type",
            "messages",
            "consumers",
            "arguments",
            "--formatter",
            "json",
        ]);
        let list: Vec<Value> = serde_json::from_str(out.trim()).expect("rabbitmqctl JSON");
        let mut queues: Vec<QueueInfo> = list
            .into_iter()
            .map(|q| QueueInfo {
                name: q["name"].as_str().unwrap_or_default().to_owned(),
                kind: q["type"].as_str().unwrap_or_default().to_owned(),
                messages: q["messages"].as_u64().unwrap_or(0),
                consumers: q["consumers"].as_u64().unwrap_or(0),
                arguments: q["arguments"].clone(),
            })
            .collect();
        queues.sort_by(|a, b| a.name.cmp(&b.name));
        queues
    }

    pub fn queue(&self, name: &str) -> Option<QueueInfo> {
        self.queues().into_iter().find(|q| q.name == name)
    }

    /// Messages in `queue` (ready and unacked), asked over AMQP: exact at once, where
    /// `rabbitmqctl`'s figures for quorum queues lag by a few seconds.
    pub async fn messages(&self, queue: &str) -> u32 {
        use icon_broker::lapin::options::QueueDeclareOptions;
        let conn = self.connect().await;
        let ch = conn.create_channel().await.expect("channel");
        let q = ch
            .queue_declare(
                queue.into(),
                QueueDeclareOptions {
                    passive: true,
                    ..Default::default()
                },
                FieldTable::default(),
            )
            .await
            .unwrap_or_else(|e| panic!("queue {queue}: {e}"));
        let _ = conn.close(200, "done".into()).await;
        q.message_count()
    }

    /// Closes every client connection to this vhost, as a broker restart would.
    pub fn close_connections(&self) {
        ctl(&["-q", "close_all_connections", "-p", &self.name, "test"]);
    }

    /// Publishes persistent messages straight into `queue` (default exchange) with confirms,
    /// each with `id` as message id and an optional header.
    pub async fn publish(&self, queue: &str, ids: &[String], header: Option<(&str, &str)>) {
        let conn = self.connect().await;
        let ch = conn.create_channel().await.expect("channel");
        ch.confirm_select(ConfirmSelectOptions::default())
            .await
            .expect("confirms");
        for id in ids {
            let mut headers = FieldTable::default();
            if let Some((k, v)) = header {
                headers.insert(k.into(), AMQPValue::LongString(v.into()));
            }
            let props = BasicProperties::default()
                .with_delivery_mode(2)
                .with_message_id(id.as_str().into())
                .with_headers(headers);
            let confirm = ch
                .basic_publish(
                    "".into(),
                    queue.into(),
                    BasicPublishOptions {
                        mandatory: true,
                        ..Default::default()
                    },
                    id.as_bytes(),
                    props,
                )
                .await
                .expect("publish")
                .await
                .expect("confirm");
            assert!(
                confirm.is_ack() && confirm.take_message().is_none(),
                "{queue} took {id}"
            );
        }
        let _ = conn.close(200, "done".into()).await;
    }

    /// Waits until `queue` holds `n` messages, or panics after `deadline`.
    pub async fn wait_for_messages(&self, queue: &str, n: u32, deadline: Duration) {
        let until = tokio::time::Instant::now() + deadline;
        loop {
            let now = self.messages(queue).await;
            if now == n {
                return;
            }
            if tokio::time::Instant::now() >= until {
                panic!(
                    "timed out after {deadline:?} waiting for {n} messages in {queue} (has {now})"
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for Vhost {
    fn drop(&mut self) {
        // Never panics (a panic while unwinding would abort the test run).
        let _ = rabbitmqctl(&["-q", "delete_vhost", &self.name]);
    }
}
