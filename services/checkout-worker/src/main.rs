//! `icon-checkout-worker`: places the orders of queued checkouts.

use icon_checkout_worker::{run, WorkerSettings};
use icon_runtime::{shutdown, telemetry, Env};
use std::process::ExitCode;

#[tokio::main]
async fn main() -> ExitCode {
    let settings = match WorkerSettings::from_env(&Env::from_process()) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("icon-checkout-worker: {e}");
            return ExitCode::from(2);
        }
    };
    if let Err(e) = telemetry::init(&settings.log) {
        eprintln!("icon-checkout-worker: {e}");
        return ExitCode::from(2);
    }
    let token = shutdown::CancellationToken::new();
    shutdown::cancel_on_signal(token.clone());
    match run(settings, token).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("icon-checkout-worker: {e}");
            ExitCode::FAILURE
        }
    }
}
