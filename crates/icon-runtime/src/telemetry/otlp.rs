//! Span export over OTLP/HTTP with JSON bodies, batched.
//!
//! The OpenTelemetry batch processor exports from a thread of its own; the requests themselves
//! run on the service's tokio runtime through the workspace's hyper and rustls (ring), so no
//! second HTTP stack (reqwest) or gRPC stack (tonic) comes in.

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use hyper_util::rt::TokioExecutor;
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_http::{HttpClient, HttpError, Request, Response};
use opentelemetry_otlp::{Protocol, WithExportConfig, WithHttpConfig};
use opentelemetry_sdk::trace::SdkTracerProvider;
use opentelemetry_sdk::Resource;
use std::time::Duration;
use tracing_subscriber::registry::LookupSpan;

/// The most one export may take; the batch is dropped after that (spans are best effort).
const EXPORT_TIMEOUT: Duration = Duration::from_secs(10);
/// A collector's answer is a few bytes; more is not read.
const MAX_RESPONSE: usize = 64 * 1024;

pub(super) struct Export {
    provider: SdkTracerProvider,
    service: String,
}

impl Export {
    /// Starts the batch exporter posting to `<endpoint>/v1/traces`. Needs the tokio runtime.
    pub(super) fn start(endpoint: &str, service: &str) -> Result<Self, String> {
        let runtime = tokio::runtime::Handle::try_current()
            .map_err(|_| "span export needs the tokio runtime".to_owned())?;
        let client = OtlpClient::new(runtime)?;
        let exporter = opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .with_protocol(Protocol::HttpJson)
            .with_endpoint(format!("{endpoint}/v1/traces"))
            .with_timeout(EXPORT_TIMEOUT)
            .with_http_client(client)
            .build()
            .map_err(|e| format!("cannot set up span export: {e}"))?;
        let provider = SdkTracerProvider::builder()
            .with_batch_exporter(exporter)
            .with_resource(
                Resource::builder()
                    .with_service_name(service.to_owned())
                    .build(),
            )
            .build();
        Ok(Self {
            provider,
            service: service.to_owned(),
        })
    }

    pub(super) fn layer<S>(&self) -> impl tracing_subscriber::Layer<S>
    where
        S: tracing::Subscriber + for<'a> LookupSpan<'a>,
    {
        tracing_opentelemetry::layer().with_tracer(self.provider.tracer(self.service.clone()))
    }

    /// Flushes and stops the exporter. The SDK blocks while it flushes, and the flush needs the
    /// runtime, so it runs on a blocking thread.
    pub(super) async fn shutdown(self) {
        let provider = self.provider;
        let _ = tokio::task::spawn_blocking(move || {
            if let Err(e) = provider.shutdown() {
                eprintln!("span export did not flush: {e}");
            }
        })
        .await;
    }
}

/// OTLP's HTTP client trait on hyper: HTTP/1.1, `https` through rustls with the public roots.
#[derive(Clone)]
struct OtlpClient {
    client: Client<HttpsConnector<HttpConnector>, Full<Bytes>>,
    /// The service's runtime: the batch processor calls from its own thread, outside it.
    runtime: tokio::runtime::Handle,
}

impl std::fmt::Debug for OtlpClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("OtlpClient")
    }
}

impl OtlpClient {
    fn new(runtime: tokio::runtime::Handle) -> Result<Self, String> {
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        http.set_connect_timeout(Some(EXPORT_TIMEOUT));
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_provider_and_webpki_roots(rustls::crypto::ring::default_provider())
            .map_err(|e| format!("cannot set up TLS for span export: {e}"))?
            .https_or_http()
            .enable_http1()
            .wrap_connector(http);
        Ok(Self {
            client: Client::builder(TokioExecutor::new()).build(https),
            runtime,
        })
    }
}

#[async_trait::async_trait]
impl HttpClient for OtlpClient {
    async fn send_bytes(&self, request: Request<Bytes>) -> Result<Response<Bytes>, HttpError> {
        let client = self.client.clone();
        let (parts, body) = request.into_parts();
        let request = http::Request::from_parts(parts, Full::new(body));
        self.runtime
            .spawn(async move {
                let response = tokio::time::timeout(EXPORT_TIMEOUT, client.request(request))
                    .await
                    .map_err(|_| "the collector did not answer in time")??;
                let (parts, body) = response.into_parts();
                let body = Limited::new(body, MAX_RESPONSE).collect().await?.to_bytes();
                Ok::<_, HttpError>(Response::from_parts(parts, body))
            })
            .await?
    }
}
