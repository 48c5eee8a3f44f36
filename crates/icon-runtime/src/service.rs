//! The `main` every long-running ICON binary shares: settings or exit 2 with one line, logging
//! and span export, Ctrl-C/SIGTERM to a cancellation token, run, flush spans, exit code.

use crate::shutdown::{cancel_on_signal, CancellationToken};
use crate::telemetry::TelemetrySettings;
use std::fmt::Display;
use std::future::Future;
use std::process::ExitCode;

pub async fn main<S, E, R, Fut>(
    name: &str,
    settings: Result<S, E>,
    telemetry: impl FnOnce(&S) -> TelemetrySettings,
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
    let telemetry = match crate::telemetry::init(&telemetry(&settings), name) {
        Ok(guard) => guard,
        Err(e) => {
            eprintln!("{name}: {e}");
            return ExitCode::from(2);
        }
    };
    let token = CancellationToken::new();
    cancel_on_signal(token.clone());
    let result = run(settings, token).await;
    telemetry.shutdown().await;
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %e, "{name} failed");
            eprintln!("{name}: {e}");
            ExitCode::FAILURE
        }
    }
}
