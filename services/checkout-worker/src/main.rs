//! `icon-checkout-worker`: places the orders of queued checkouts.
//! `icon-checkout-worker migrate-queues` converts its queues to `ICON_AMQP_QUEUE_TYPE`.

use icon_checkout_worker::{run, topology, WorkerSettings};
use icon_runtime::{service, Env};
use std::process::ExitCode;

#[tokio::main]
async fn main() -> ExitCode {
    let settings = WorkerSettings::from_env(&Env::from_process());
    if std::env::args().nth(1).as_deref() == Some("migrate-queues") {
        return icon_broker::migrate_command::command("icon-checkout-worker", settings, |s| {
            (s.amqp_url.clone(), topology(s))
        })
        .await;
    }
    service::main("icon-checkout-worker", settings, |s| s.log.clone(), run).await
}
