//! Logs and spans.
//!
//! Logs: one line per event on stderr, filtered by `ICON_LOG` (an `EnvFilter` directive such as
//! `info` or `icon_notifier=debug,info`), as text or, with `ICON_LOG_FORMAT=json`, one JSON
//! object per line whose `span` and `spans` carry the fields of the spans it happened in, so every
//! line about a checkout names its `checkout_id` (the consumer's delivery span and the handlers'
//! spans record it).
//!
//! Spans: exported over OTLP/HTTP when `ICON_OTLP_ENDPOINT` is set ([`otlp`]). Their trace ids
//! are the W3C trace ids carried by [`crate::trace`], so a collector shows one trace per request
//! across the gateway, the worker and the notifier.

mod otlp;

use crate::settings::{Env, SettingsError};
use crate::trace::TraceParent;
use opentelemetry::trace::{SpanContext, SpanId, TraceContextExt, TraceFlags, TraceId, TraceState};
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

pub const LOG_VAR: &str = "ICON_LOG";
pub const LOG_FORMAT_VAR: &str = "ICON_LOG_FORMAT";
pub const OTLP_ENDPOINT_VAR: &str = "ICON_OTLP_ENDPOINT";

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LogFormat {
    /// For people: one readable line per event.
    #[default]
    Text,
    /// For log pipelines: one JSON object per line.
    Json,
}

/// What every service reads about logs and spans; part of each service's settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TelemetrySettings {
    /// `ICON_LOG`: the filter directive, checked when the settings are read.
    pub filter: String,
    /// `ICON_LOG_FORMAT`: `text` (default) or `json`.
    pub format: LogFormat,
    /// `ICON_OTLP_ENDPOINT`: the collector's OTLP/HTTP base URL (`/v1/traces` is appended);
    /// unset means spans are not exported.
    pub otlp_endpoint: Option<String>,
}

impl Default for TelemetrySettings {
    fn default() -> Self {
        Self {
            filter: "info".into(),
            format: LogFormat::Text,
            otlp_endpoint: None,
        }
    }
}

impl TelemetrySettings {
    pub fn from_env(env: &Env) -> Result<Self, SettingsError> {
        let filter = env.parse_with(LOG_VAR, "info".to_owned(), |v| {
            EnvFilter::try_new(v).map(|_| v.to_owned()).map_err(|e| {
                format!("expected a filter such as `info` or `icon_notifier=debug,info`: {e}")
            })
        })?;
        let format = env.parse_with(LOG_FORMAT_VAR, LogFormat::Text, |v| {
            match v.trim().to_ascii_lowercase().as_str() {
                "text" => Ok(LogFormat::Text),
                "json" => Ok(LogFormat::Json),
                _ => Err("expected `text` or `json`".into()),
            }
        })?;
        let otlp_endpoint = env.parse_with(OTLP_ENDPOINT_VAR, None, |v| {
            let v = v.trim().trim_end_matches('/');
            match v.parse::<http::Uri>() {
                Ok(uri)
                    if matches!(uri.scheme_str(), Some("http" | "https"))
                        && uri.host().is_some() =>
                {
                    Ok(Some(v.to_owned()))
                }
                _ => Err(
                    "expected the collector's OTLP/HTTP URL such as http://otel-collector:4318"
                        .into(),
                ),
            }
        })?;
        Ok(Self {
            filter,
            format,
            otlp_endpoint,
        })
    }
}

/// Flushes exported spans when dropped or shut down; hold it until `main` returns.
#[must_use = "dropping the guard stops span export"]
pub struct TelemetryGuard {
    exporter: Option<otlp::Export>,
}

impl TelemetryGuard {
    /// Exports what is still buffered (bounded by the exporter's timeout). Call before exit.
    pub async fn shutdown(mut self) {
        if let Some(export) = self.exporter.take() {
            export.shutdown().await;
        }
    }
}

/// Installs the global subscriber. Call once, from `main` (inside the tokio runtime, which
/// carries the exporter's requests); tests leave logging off unless they set it up themselves.
pub fn init(settings: &TelemetrySettings, service: &str) -> Result<TelemetryGuard, String> {
    let filter = EnvFilter::try_new(&settings.filter)
        .map_err(|e| format!("{LOG_VAR}={:?} is invalid: {e}", settings.filter))?;
    let fmt = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_target(true);
    let fmt = match settings.format {
        // Colour only on a terminal: container and CI logs stay plain text.
        LogFormat::Text => fmt
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .boxed(),
        // `span` is the innermost span's fields, `spans` every enclosing span's: a line logged
        // in a handler's span still carries the delivery span's `checkout_id`.
        LogFormat::Json => fmt
            .json()
            .with_current_span(true)
            .with_span_list(true)
            .flatten_event(false)
            .boxed(),
    };
    let (otel, exporter) = match &settings.otlp_endpoint {
        None => (None, None),
        Some(endpoint) => {
            let export = otlp::Export::start(endpoint, service)
                .map_err(|e| format!("{OTLP_ENDPOINT_VAR}={endpoint:?}: {e}"))?;
            (Some(export.layer()), Some(export))
        }
    };
    tracing_subscriber::registry()
        .with(filter)
        .with(fmt)
        .with(otel)
        .try_init()
        .map_err(|e| e.to_string())?;
    Ok(TelemetryGuard { exporter })
}

/// Makes `context` (received from upstream) the parent of `span`, so its exported trace id is
/// the propagated one. Without an exporter this does nothing.
pub fn set_remote_parent(span: &tracing::Span, context: &TraceParent) {
    let remote = SpanContext::new(
        TraceId::from_bytes(context.trace_id()),
        SpanId::from_bytes(context.span_id()),
        TraceFlags::new(context.flags()),
        true,
        TraceState::default(),
    );
    let _ = span.set_parent(opentelemetry::Context::new().with_remote_span_context(remote));
}

/// The id of the current exported span, if spans are exported: what a child context names as
/// its parent.
pub(crate) fn current_span_id() -> Option<[u8; 8]> {
    let context = tracing::Span::current().context();
    let span = context.span();
    let span_context = span.span_context();
    span_context
        .is_valid()
        .then(|| span_context.span_id().to_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_format_and_endpoint_and_names_the_variable() {
        let s = TelemetrySettings::from_env(&Env::default()).unwrap();
        assert_eq!(s, TelemetrySettings::default());
        let s = TelemetrySettings::from_env(&Env::from_pairs([
            ("ICON_LOG_FORMAT", "json"),
            ("ICON_OTLP_ENDPOINT", "http://otel-collector:4318/"),
        ]))
        .unwrap();
        assert_eq!(s.format, LogFormat::Json);
        assert_eq!(
            s.otlp_endpoint.as_deref(),
            Some("http://otel-collector:4318")
        );
        for (var, value) in [
            ("ICON_LOG_FORMAT", "yaml"),
            ("ICON_OTLP_ENDPOINT", "otel-collector:4318"),
            ("ICON_LOG", "=="),
        ] {
            let e = TelemetrySettings::from_env(&Env::from_pairs([(var, value)])).unwrap_err();
            assert_eq!(e.var, var);
        }
    }
}
