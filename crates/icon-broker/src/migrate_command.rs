//! `<service> migrate-queues`: the operator's command around [`crate::migrate::migrate`], run by
//! the worker's and the notifier's `main` instead of the service.

use crate::migrate::{migrate, MigrateError, MigrationReport};
use crate::Topology;
use lapin::ConnectionProperties;
use std::fmt;
use std::time::Duration;

/// The `migrate-queues` command of a service: connects to `amqp_url`, [`migrate`]s the
/// service's own topology (its work queue with the delay tiers that feed it), and closes.
pub async fn migrate_at(
    amqp_url: &str,
    topology: &Topology,
) -> Result<MigrationReport, MigrateError> {
    let props = ConnectionProperties::default().with_connection_name("icon-migrate-queues".into());
    let connect = tokio::time::timeout(
        Duration::from_secs(10),
        crate::connect::open(amqp_url, props),
    );
    let conn = match connect.await {
        Ok(Ok(conn)) => conn,
        Ok(Err(e)) => {
            return Err(MigrateError::Connect {
                url: crate::connect::redact(amqp_url),
                reason: e.to_string(),
            })
        }
        Err(_) => {
            return Err(MigrateError::Connect {
                url: crate::connect::redact(amqp_url),
                reason: "timed out after 10s".into(),
            })
        }
    };
    let result = migrate(&conn, topology).await;
    let _ = conn.close(200, "migrated".into()).await;
    result
}

/// `<binary> migrate-queues`, which the worker's and the notifier's `main` run instead of the
/// service: the service's settings (or exit 2 naming the bad variable), then [`migrate_at`] on
/// the AMQP URL and topology `target` derives from them, printing the report.
pub async fn command<S, E: fmt::Display>(
    binary: &str,
    settings: Result<S, E>,
    target: impl FnOnce(&S) -> (String, Topology),
) -> std::process::ExitCode {
    let settings = match settings {
        Ok(s) => s,
        Err(e) => {
            eprintln!("{binary}: {e}");
            return std::process::ExitCode::from(2);
        }
    };
    let (amqp_url, topology) = target(&settings);
    match migrate_at(&amqp_url, &topology).await {
        Ok(report) => {
            print!("{report}");
            std::process::ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("{binary} migrate-queues: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}
