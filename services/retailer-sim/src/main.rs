//! `icon-retailer-sim`: reads its settings, binds `ICON_SIM_ADDR` (and `ICON_SIM_SMTP_ADDR` for
//! the SMTP sink, unless `off`) and serves until SIGINT or SIGTERM. Everything else lives in the
//! library so tests run the same code.

use icon_retailer_sim::{serve, Listeners, SimSettings};
use icon_runtime::shutdown::{cancel_on_signal, CancellationToken};
use icon_runtime::{telemetry, Env};
use std::net::TcpListener;
use std::process::ExitCode;

#[tokio::main]
async fn main() -> ExitCode {
    let settings = match SimSettings::from_env(&Env::from_process()) {
        Ok(settings) => settings,
        Err(e) => {
            eprintln!("icon-retailer-sim: {e}");
            return ExitCode::from(2);
        }
    };
    let telemetry = match telemetry::init(&settings.log, "icon-retailer-sim") {
        Ok(guard) => guard,
        Err(e) => {
            eprintln!("icon-retailer-sim: {e}");
            return ExitCode::from(2);
        }
    };

    let Some(http) = bind(&settings.addr, "ICON_SIM_ADDR", "retailer simulator") else {
        return ExitCode::FAILURE;
    };
    let smtp = match &settings.smtp_addr {
        None => None,
        Some(addr) => match bind(addr, "ICON_SIM_SMTP_ADDR", "SMTP sink") {
            Some(listener) => Some(listener),
            None => return ExitCode::FAILURE,
        },
    };
    tracing::info!(public_key = ?settings.fcm_public_key, "fake FCM checks grants");

    let shutdown = CancellationToken::new();
    cancel_on_signal(shutdown.clone());
    let result = match serve(Listeners { http, smtp }, settings, shutdown) {
        Ok(server) => server.await,
        Err(e) => Err(e),
    };
    if let Err(e) = &result {
        tracing::error!(error = %e, "retailer simulator failed");
    }
    telemetry.shutdown().await;
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(_) => ExitCode::FAILURE,
    }
}

/// Binds `addr` (the value of `var`) and logs the real address: with port 0 the kernel picks the
/// port, and that is the one to use.
fn bind(addr: &str, var: &str, what: &str) -> Option<TcpListener> {
    let listener = match TcpListener::bind(addr) {
        Ok(listener) => listener,
        Err(e) => {
            tracing::error!(error = %e, "cannot listen on {var}={addr}");
            return None;
        }
    };
    match listener.local_addr() {
        Ok(addr) => tracing::info!(%addr, "{what} listening"),
        Err(e) => tracing::warn!(error = %e, "{what} listening; address unknown"),
    }
    Some(listener)
}
