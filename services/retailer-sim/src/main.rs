//! `icon-retailer-sim`: reads its settings, binds `ICON_SIM_ADDR` and serves until SIGINT or
//! SIGTERM. Everything else lives in the library so tests run the same code.

use icon_retailer_sim::{serve, SimSettings};
use icon_runtime::shutdown::{cancel_on_signal, CancellationToken};
use icon_runtime::{telemetry, Env};
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
    if let Err(e) = telemetry::init(&settings.log) {
        eprintln!("icon-retailer-sim: {e}");
        return ExitCode::from(2);
    }

    let listener = match std::net::TcpListener::bind(&settings.addr) {
        Ok(listener) => listener,
        Err(e) => {
            tracing::error!(error = %e, "cannot listen on ICON_SIM_ADDR={}", settings.addr);
            return ExitCode::FAILURE;
        }
    };
    // With port 0 the kernel picks the port: log the real one so it can be used.
    match listener.local_addr() {
        Ok(addr) => tracing::info!(%addr, "retailer simulator listening"),
        Err(e) => tracing::warn!(error = %e, "retailer simulator listening; address unknown"),
    }

    let shutdown = CancellationToken::new();
    cancel_on_signal(shutdown.clone());
    let result = match serve(listener, settings, shutdown) {
        Ok(server) => server.await,
        Err(e) => Err(e),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %e, "retailer simulator failed");
            ExitCode::FAILURE
        }
    }
}
