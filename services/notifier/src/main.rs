//! `icon-notifier`: delivers checkout outcomes to callbacks, with retries.
//! `icon-notifier migrate-queues` converts its queues to `ICON_AMQP_QUEUE_TYPE`.

use icon_notifier::{run, topology, NotifierSettings};
use icon_runtime::{service, Env};
use std::process::ExitCode;

#[tokio::main]
async fn main() -> ExitCode {
    let settings = NotifierSettings::from_env(&Env::from_process());
    if std::env::args().nth(1).as_deref() == Some("migrate-queues") {
        return icon_broker::migrate_command::command("icon-notifier", settings, |s| {
            (s.amqp_url.clone(), topology(s))
        })
        .await;
    }
    service::main("icon-notifier", settings, |s| s.log.clone(), run).await
}
