//! `icon-checkout-worker`: places the orders of queued checkouts.

use icon_checkout_worker::{run, WorkerSettings};
use icon_runtime::{service, Env};
use std::process::ExitCode;

#[tokio::main]
async fn main() -> ExitCode {
    let settings = WorkerSettings::from_env(&Env::from_process());
    service::main("icon-checkout-worker", settings, |s| s.log.clone(), run).await
}
