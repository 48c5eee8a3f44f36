//! `icon-notifier`: delivers checkout outcomes to callbacks, with retries.

use icon_notifier::{run, NotifierSettings};
use icon_runtime::{shutdown, telemetry, Env};
use std::process::ExitCode;

#[tokio::main]
async fn main() -> ExitCode {
    let settings = match NotifierSettings::from_env(&Env::from_process()) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("icon-notifier: {e}");
            return ExitCode::from(2);
        }
    };
    if let Err(e) = telemetry::init(&settings.log) {
        eprintln!("icon-notifier: {e}");
        return ExitCode::from(2);
    }
    let token = shutdown::CancellationToken::new();
    shutdown::cancel_on_signal(token.clone());
    match run(settings, token).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("icon-notifier: {e}");
            ExitCode::FAILURE
        }
    }
}
