//! `icon-notifier`: delivers checkout outcomes to callbacks, with retries.

use icon_notifier::{run, NotifierSettings};
use icon_runtime::{service, Env};
use std::process::ExitCode;

#[tokio::main]
async fn main() -> ExitCode {
    let settings = NotifierSettings::from_env(&Env::from_process());
    service::main("icon-notifier", settings, |s| s.log.clone(), run).await
}
