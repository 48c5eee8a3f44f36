//! The `main` every long-running ICON binary shares: settings or exit 2 with one line, logging,
//! Ctrl-C/SIGTERM to a cancellation token, run, exit code.

use crate::shutdown::{cancel_on_signal, CancellationToken};
use std::fmt::Display;
use std::future::Future;
use std::process::ExitCode;

pub async fn main<S, E, R, Fut>(
    name: &str,
    settings: Result<S, E>,
    log_filter: impl FnOnce(&S) -> String,
    run: impl FnOnce(S, CancellationToken) -> Fut,
) -> ExitCode
where
    E: Display,
    R: Display,
    Fut: Future<Output = Result<(), R>>,
{
    let settings = match settings {
        Ok(s) => s,
        Err(e) => {
            eprintln!("{name}: {e}");
            return ExitCode::from(2);
        }
    };
    if let Err(e) = crate::telemetry::init(&log_filter(&settings)) {
        eprintln!("{name}: {e}");
        return ExitCode::from(2);
    }
    let token = CancellationToken::new();
    cancel_on_signal(token.clone());
    match run(settings, token).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %e, "{name} failed");
            eprintln!("{name}: {e}");
            ExitCode::FAILURE
        }
    }
}
