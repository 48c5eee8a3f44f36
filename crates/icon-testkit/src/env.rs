//! A fresh PostgreSQL database and RabbitMQ vhost for one test, removed when dropped.

use std::process::Command;
use std::time::Duration;

pub struct TestEnv {
    pub name: String,
    pub database_url: String,
    pub amqp_url: String,
    admin_url: String,
}

fn var(name: &str, default: &str) -> String {
    std::env::var(name)
        .ok()
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| default.to_owned())
}

/// Runs `rabbitmqctl` (or `ICON_TEST_RABBITMQCTL`) and returns its output, whatever happened.
fn try_rabbitmqctl(args: &[&str]) -> std::io::Result<std::process::Output> {
    let cmd = var("ICON_TEST_RABBITMQCTL", "rabbitmqctl");
    let mut parts = cmd.split_whitespace();
    let program = parts.next().unwrap_or("rabbitmqctl");
    Command::new(program).args(parts).args(args).output()
}

fn rabbitmqctl(args: &[&str]) {
    let cmd = var("ICON_TEST_RABBITMQCTL", "rabbitmqctl");
    let out = try_rabbitmqctl(args)
        .unwrap_or_else(|e| panic!("cannot run `{cmd}` (set ICON_TEST_RABBITMQCTL): {e}"));
    assert!(
        out.status.success(),
        "`{cmd} {}` failed: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
}

impl TestEnv {
    pub async fn create() -> Self {
        let name = format!(
            "icon_test_{}",
            &uuid::Uuid::new_v4().simple().to_string()[..12]
        );
        let admin_url = var(
            "ICON_TEST_DATABASE_URL",
            "postgres://postgres@127.0.0.1:5432/postgres",
        );
        let (client, conn) = tokio_postgres::connect(&admin_url, tokio_postgres::NoTls)
            .await
            .unwrap_or_else(|e| panic!("cannot reach PostgreSQL at {admin_url}: {e}"));
        tokio::spawn(conn);
        client
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .await
            .expect("create test database");
        let database_url = replace_db(&admin_url, &name);

        let name_for_ctl = name.clone();
        tokio::task::spawn_blocking(move || {
            rabbitmqctl(&["-q", "add_vhost", &name_for_ctl]);
            rabbitmqctl(&[
                "-q",
                "set_permissions",
                "-p",
                &name_for_ctl,
                "guest",
                ".*",
                ".*",
                ".*",
            ]);
        })
        .await
        .expect("vhost");
        let amqp_base = var("ICON_TEST_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672");
        let amqp_url = format!("{}/{name}", amqp_base.trim_end_matches('/'));
        Self {
            name,
            database_url,
            amqp_url,
            admin_url,
        }
    }

    /// A direct connection to this test's database, for assertions on stored state.
    pub async fn db(&self) -> tokio_postgres::Client {
        let (client, conn) = tokio_postgres::connect(&self.database_url, tokio_postgres::NoTls)
            .await
            .expect("connect test db");
        tokio::spawn(conn);
        client
    }

    /// Counts rows of `table` (a fixed name from the test, never user input).
    pub async fn count(&self, table: &str) -> i64 {
        self.db()
            .await
            .query_one(&format!("SELECT count(*) FROM {table}"), &[])
            .await
            .expect("count")
            .get(0)
    }

    /// A connection pool on this test's database (schema migrated), for calling the store
    /// directly.
    pub async fn pool(&self) -> icon_store::Pool {
        icon_store::connect(
            &icon_store::PoolSettings::new(&self.database_url),
            &tokio_util::sync::CancellationToken::new(),
        )
        .await
        .expect("connect to the test database")
        .expect("not cancelled")
    }

    /// Waits until the outbox is empty: every message published and its row deleted (the
    /// relays delete published rows in batches, `icon_outbox::CLEANUP_EVERY`).
    pub async fn outbox_drained(&self) {
        crate::eventually("the outbox to drain", Duration::from_secs(10), || async {
            (self.count("outbox").await == 0).then_some(())
        })
        .await;
    }

    /// A connection to this test's vhost.
    pub async fn amqp(&self) -> icon_broker::lapin::Connection {
        icon_broker::lapin::Connection::connect(
            &self.amqp_url,
            icon_broker::lapin::ConnectionProperties::default(),
        )
        .await
        .expect("connect test vhost")
    }

    /// Takes every message currently in `queue` (acking them) and returns their bodies.
    pub async fn drain_queue(&self, queue: &str) -> Vec<serde_json::Value> {
        self.drain_queue_raw(queue)
            .await
            .into_iter()
            .map(|(body, _)| serde_json::from_slice(&body).unwrap_or(serde_json::Value::Null))
            .collect()
    }

    /// Publishes `body` straight into `queue` (persistent), as an operator or a bug could.
    pub async fn publish_raw(&self, queue: &str, body: &[u8]) {
        use icon_broker::lapin::options::{BasicPublishOptions, ConfirmSelectOptions};
        let conn = self.amqp().await;
        let ch = conn.create_channel().await.expect("channel");
        ch.confirm_select(ConfirmSelectOptions::default())
            .await
            .expect("confirms");
        ch.basic_publish(
            "".into(),
            queue.into(),
            BasicPublishOptions::default(),
            body,
            icon_broker::lapin::BasicProperties::default().with_delivery_mode(2),
        )
        .await
        .expect("publish")
        .await
        .expect("confirm");
        let _ = conn.close(200, "done".into()).await;
    }

    /// Messages ready in `queue`.
    pub async fn queue_len(&self, queue: &str) -> u32 {
        use icon_broker::lapin::options::QueueDeclareOptions;
        let conn = self.amqp().await;
        let ch = conn.create_channel().await.expect("channel");
        let q = ch
            .queue_declare(
                queue.into(),
                QueueDeclareOptions {
                    passive: true,
                    ..Default::default()
                },
                Default::default(),
            )
            .await
            .expect("queue exists");
        let _ = conn.close(200, "done".into()).await;
        q.message_count()
    }

    /// The names of the queues in this test's vhost (`rabbitmqctl list_queues`).
    pub async fn queue_names(&self) -> Vec<String> {
        let vhost = self.name.clone();
        let out = tokio::task::spawn_blocking(move || {
            try_rabbitmqctl(&[
                "-q",
                "list_queues",
                "-p",
                &vhost,
                "--no-table-headers",
                "name",
            ])
        })
        .await
        .expect("rabbitmqctl task")
        .expect("run rabbitmqctl list_queues (set ICON_TEST_RABBITMQCTL)");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(|l| l.trim().to_owned())
            .filter(|l| !l.is_empty())
            .collect()
    }

    /// Sets a RabbitMQ policy on this test's vhost (`rabbitmqctl set_policy`), as an operator
    /// or a broker's defaults could: `definition` is its JSON, `apply_to` e.g. `queues`.
    pub async fn set_policy(&self, name: &str, pattern: &str, definition: &str, apply_to: &str) {
        let args: Vec<String> = [
            "-q",
            "set_policy",
            "-p",
            &self.name,
            "--apply-to",
            apply_to,
            name,
            pattern,
            definition,
        ]
        .iter()
        .map(|a| (*a).to_owned())
        .collect();
        tokio::task::spawn_blocking(move || {
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            rabbitmqctl(&args)
        })
        .await
        .expect("rabbitmqctl task");
    }

    /// Deletes `queue` and the messages in it, as an operator could.
    pub async fn delete_queue(&self, queue: &str) {
        let conn = self.amqp().await;
        let ch = conn.create_channel().await.expect("channel");
        ch.queue_delete(queue.into(), Default::default())
            .await
            .expect("queue.delete");
        let _ = conn.close(200, "done".into()).await;
    }

    /// Takes every message in `queue` (acking them): bodies and the `x-icon-death-reason` header.
    pub async fn drain_queue_raw(&self, queue: &str) -> Vec<(Vec<u8>, Option<String>)> {
        use icon_broker::lapin::options::{BasicAckOptions, BasicGetOptions};
        let conn = self.amqp().await;
        let ch = conn.create_channel().await.expect("channel");
        let mut out = vec![];
        while let Some(m) = ch
            .basic_get(queue.into(), BasicGetOptions::default())
            .await
            .expect("basic.get")
        {
            let reason = m
                .delivery
                .properties
                .headers()
                .as_ref()
                .and_then(|h| h.inner().get(icon_broker::DEATH_REASON_HEADER).cloned())
                .map(|v| match v {
                    icon_broker::lapin::types::AMQPValue::LongString(s) => s.to_string(),
                    other => format!("{other:?}"),
                });
            out.push((m.delivery.data.clone(), reason));
            m.delivery
                .acker
                .ack(BasicAckOptions::default())
                .await
                .expect("ack");
        }
        let _ = conn.close(200, "done".into()).await;
        out
    }
}

fn replace_db(url: &str, db: &str) -> String {
    match url.rfind('/') {
        Some(i) if i > url.find("://").map(|p| p + 2).unwrap_or(0) => {
            let (base, rest) = url.split_at(i);
            let query = rest.find('?').map(|q| &rest[q..]).unwrap_or("");
            format!("{base}/{db}{query}")
        }
        _ => format!("{url}/{db}"),
    }
}

impl Drop for TestEnv {
    fn drop(&mut self) {
        let name = self.name.clone();
        let admin_url = self.admin_url.clone();
        // Drop runs outside async context guarantees: use a plain thread with its own runtime.
        // Nothing here may panic (a panic while unwinding aborts the test run): both clean-ups
        // are attempted whatever the other did.
        let _ = std::thread::spawn(move || {
            let _ = try_rabbitmqctl(&["-q", "delete_vhost", &name]);
            if let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                rt.block_on(async {
                    if let Ok((client, conn)) =
                        tokio_postgres::connect(&admin_url, tokio_postgres::NoTls).await
                    {
                        tokio::spawn(conn);
                        let _ = client
                            .batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                            .await;
                    }
                });
            }
        })
        .join();
    }
}
