//! Logging: one line per event on stderr, filtered by `ICON_LOG` (an `EnvFilter` directive such
//! as `info` or `icon_notifier=debug,info`).

use tracing_subscriber::EnvFilter;

/// Installs the global subscriber. Call once, from `main`; tests leave logging off unless they
/// set it up themselves.
pub fn init(filter: &str) -> Result<(), String> {
    let filter =
        EnvFilter::try_new(filter).map_err(|e| format!("ICON_LOG={filter:?} is invalid: {e}"))?;
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        // Colour only on a terminal: container and CI logs stay plain text.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_target(true)
        .try_init()
        .map_err(|e| e.to_string())
}
