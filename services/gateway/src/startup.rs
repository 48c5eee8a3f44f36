//! Builds the gateway from its settings: the database pool (schema migrated), the outbox relay,
//! and the HTTP server with every route. Tests call [`Application::build`] with port 0.

use crate::auth::Authenticator;
use crate::problem::ApiError;
use crate::routes::{self, docs::Docs, AppState};
use crate::settings::GatewaySettings;
use actix_web::dev::{Server, Service};
use actix_web::{error::JsonPayloadError, web, App, HttpRequest, HttpServer};
use icon_outbox::{Relay, RelaySettings};
use icon_store::PoolSettings;
use std::net::{SocketAddr, TcpListener};
use tokio_util::sync::CancellationToken;

pub use crate::extract::MAX_BODY;

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("cannot listen on ICON_HTTP_ADDR={addr}: {source}")]
    Bind {
        addr: String,
        source: std::io::Error,
    },
    #[error("cannot set up TLS for fetching ICON_JWT_JWKS_URL: {0}")]
    Tls(#[from] icon_http::TlsError),
    #[error("cannot prepare the database: {0}")]
    Store(#[from] icon_store::StoreError),
}

pub struct Application {
    address: SocketAddr,
    public_url: String,
    server: Server,
    relay: Relay,
    /// Stops the relay once the server stopped, so the last requests' messages still go out.
    relay_stop: CancellationToken,
    shutdown: CancellationToken,
}

impl Application {
    /// Connects to PostgreSQL (waiting while it is down), binds the listener and starts the
    /// relay. `None` if `shutdown` fired while waiting.
    pub async fn build(
        settings: GatewaySettings,
        shutdown: CancellationToken,
    ) -> Result<Option<Self>, StartError> {
        let auth = web::Data::new(Authenticator::new(&settings.jwt)?);
        let Some(pool) =
            icon_store::connect(&PoolSettings::new(&settings.database_url), &shutdown).await?
        else {
            return Ok(None);
        };
        let listener =
            TcpListener::bind(&settings.http_addr).map_err(|source| StartError::Bind {
                addr: settings.http_addr.clone(),
                source,
            })?;
        let address = listener.local_addr().map_err(|source| StartError::Bind {
            addr: settings.http_addr.clone(),
            source,
        })?;
        let public_url = settings.public_url.clone().unwrap_or_else(|| {
            let host = if address.ip().is_unspecified() {
                "localhost".to_owned()
            } else {
                address.ip().to_string()
            };
            format!("http://{host}:{}", address.port())
        });

        let relay_stop = CancellationToken::new();
        let relay = icon_outbox::spawn(
            pool.clone(),
            RelaySettings {
                amqp_url: settings.amqp_url.clone(),
                database_url: settings.database_url.clone(),
                name: "icon-gateway-outbox".into(),
            },
            settings.queue_type,
            relay_stop.clone(),
        );

        tokio::spawn(purge_idempotency_keys(pool.clone(), shutdown.clone()));

        let accepter = crate::accept::Accepter::spawn(pool.clone(), settings.accept);
        let state = web::Data::new(AppState {
            pool,
            accepter,
            public_url: public_url.clone(),
            callback_policy: settings.callback_policy.clone(),
            retailer_policy: settings.retailer_policy.clone(),
            broker_ready: relay.broker_ready(),
            outbox: relay.outbox(),
            max_devices_per_user: settings.max_devices_per_user,
            secrets_key: settings.secrets_key.clone(),
            webhook_secret_grace: settings.webhook_secret_grace,
        });
        let limiters = web::Data::new(crate::rate_limit::Limiters::new(settings.rate_limit));
        let docs = web::Data::new(Docs::build());
        crate::metrics::register();
        let mut server = HttpServer::new(move || {
            App::new()
                .wrap(actix_web::middleware::from_fn(crate::rate_limit::by_ip))
                .wrap(actix_web::middleware::from_fn(
                    crate::trace_context::propagate,
                ))
                .app_data(state.clone())
                .app_data(auth.clone())
                .app_data(limiters.clone())
                .app_data(docs.clone())
                .app_data(crate::extract::payload_config())
                .app_data(
                    // Only for an extractor that bypasses `extract::Json`: the same limit and
                    // problem documents.
                    web::JsonConfig::default()
                        .limit(MAX_BODY)
                        .error_handler(json_error),
                )
                .app_data(web::PathConfig::default().error_handler(|_, _| {
                    ApiError::not_found("not_found", "no such resource").into()
                }))
                .configure(routes_config)
                .default_service(web::to(not_found))
                .wrap_fn(|req, srv| {
                    let call = match crate::headers::check(req.headers()) {
                        Ok(()) => Ok(srv.call(req)),
                        Err(e) => Err(req.error_response(e)),
                    };
                    async move {
                        match call {
                            Ok(response) => Ok(response.await?.map_into_boxed_body()),
                            Err(refused) => Ok(refused),
                        }
                    }
                })
                // Outermost, so refused and rate-limited requests are counted too.
                .wrap(actix_web::middleware::from_fn(crate::metrics::record))
        });
        if let Some(n) = settings.http_workers {
            server = server.workers(n);
        }
        let server = server
            .listen(listener)
            .map_err(|source| StartError::Bind {
                addr: settings.http_addr.clone(),
                source,
            })?
            // main installs its own signal handling and cancels `shutdown`.
            .disable_signals()
            .shutdown_timeout(10)
            .run();
        tracing::info!(%address, %public_url, "gateway listening");
        Ok(Some(Self {
            address,
            public_url,
            server,
            relay,
            relay_stop,
            shutdown,
        }))
    }

    pub fn address(&self) -> SocketAddr {
        self.address
    }

    pub fn port(&self) -> u16 {
        self.address.port()
    }

    pub fn public_url(&self) -> &str {
        &self.public_url
    }

    /// Serves until `shutdown`; then stops accepting, lets in-flight requests finish (up to 10
    /// s), and stops the relay.
    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        let handle = self.server.handle();
        let shutdown = self.shutdown.clone();
        let stopper = tokio::spawn(async move {
            shutdown.cancelled().await;
            handle.stop(true).await;
        });
        let result = self.server.await;
        self.shutdown.cancel();
        let _ = stopper.await;
        self.relay_stop.cancel();
        self.relay.stopped().await;
        tracing::info!("gateway stopped");
        result
    }
}

/// Every path, with the methods it has. Any other method on a known path is a 405 whose `Allow`
/// header lists them (RFC 9110), so a client learns it used the wrong method rather than a
/// wrong path; unknown paths are 404.
/// A `GET` route that answers `HEAD` too, as RFC 9110 §9.3.2 asks: the same status and headers
/// without the body (actix-web leaves the body out of a `HEAD` response). Load balancers probe
/// with `HEAD`.
fn get_or_head() -> actix_web::Route {
    web::route().guard(actix_web::guard::Any(actix_web::guard::Get()).or(actix_web::guard::Head()))
}

fn routes_config(cfg: &mut web::ServiceConfig) {
    use routes::{
        callbacks, cancellations, carts, checkout_events, checkouts, devices, docs, health,
        retailer_events, retailers, webhook_secret,
    };
    cfg.service(
        web::resource("/healthz")
            .route(get_or_head().to(health::healthz))
            .default_service(allow("GET, HEAD")),
    )
    .service(
        web::resource("/readyz")
            .route(get_or_head().to(health::readyz))
            .default_service(allow("GET, HEAD")),
    )
    .service(
        web::resource("/metrics")
            .route(get_or_head().to(crate::metrics::metrics))
            .default_service(allow("GET, HEAD")),
    )
    .service(
        web::resource("/openapi.json")
            .route(get_or_head().to(docs::openapi_json))
            .default_service(allow("GET, HEAD")),
    )
    .service(
        web::resource(["/docs", "/docs/"])
            .route(get_or_head().to(docs::docs_page))
            .default_service(allow("GET, HEAD")),
    )
    .service(
        web::resource("/docs/assets/{file}")
            .route(get_or_head().to(docs::asset))
            .default_service(allow("GET, HEAD")),
    )
    .service(
        web::resource(["/cart/checkout", "/cart/checkout/"])
            .route(web::post().to(checkouts::create_checkout))
            .default_service(allow("POST")),
    )
    .service(
        web::resource("/cart/checkout/{checkout_id}")
            .route(get_or_head().to(checkouts::get_checkout))
            .route(web::delete().to(cancellations::cancel_checkout))
            .default_service(allow("GET, HEAD, DELETE")),
    )
    .service(
        web::resource("/cart/checkout/{checkout_id}/orders/{retailer_id}")
            .route(web::delete().to(cancellations::cancel_order))
            .default_service(allow("DELETE")),
    )
    .service(
        web::resource("/cart/checkout/{checkout_id}/attempts")
            .route(get_or_head().to(callbacks::list_attempts))
            .default_service(allow("GET, HEAD")),
    )
    .service(
        web::resource("/cart/checkout/{checkout_id}/events")
            .route(get_or_head().to(checkout_events::list_events))
            .default_service(allow("GET, HEAD")),
    )
    .service(
        web::resource("/cart/checkout/{checkout_id}/callback/redeliver")
            .route(web::post().to(callbacks::redeliver_callback))
            .default_service(allow("POST")),
    )
    .service(
        web::resource("/cart/checkout/{checkout_id}/push/redeliver")
            .route(web::post().to(callbacks::redeliver_push))
            .default_service(allow("POST")),
    )
    .service(
        web::resource("/cart/checkout/{checkout_id}/email/redeliver")
            .route(web::post().to(callbacks::redeliver_email))
            .default_service(allow("POST")),
    )
    .service(
        web::resource("/me/devices")
            .route(get_or_head().to(devices::list_devices))
            .default_service(allow("GET, HEAD")),
    )
    .service(
        web::resource("/me/devices/{token}")
            .route(web::put().to(devices::put_device))
            .route(web::delete().to(devices::delete_device))
            .default_service(allow("PUT, DELETE")),
    )
    .service(
        web::resource("/webhook-secret")
            .route(get_or_head().to(webhook_secret::get_secret))
            .default_service(allow("GET, HEAD")),
    )
    .service(
        web::resource("/webhook-secret/rotate")
            .route(web::post().to(webhook_secret::rotate_secret))
            .default_service(allow("POST")),
    )
    .service(
        web::resource("/carts")
            .route(web::post().to(carts::create_cart))
            .default_service(allow("POST")),
    )
    .service(
        web::resource("/carts/{cart_id}")
            .route(get_or_head().to(carts::get_cart))
            .default_service(allow("GET, HEAD")),
    )
    .service(
        web::resource("/carts/{cart_id}/items")
            .route(web::post().to(carts::add_item))
            .default_service(allow("POST")),
    )
    .service(
        web::resource("/retailers")
            .route(get_or_head().to(retailers::list_retailers))
            .default_service(allow("GET, HEAD")),
    )
    .service(
        web::resource("/retailers/{retailer_id}")
            .route(web::put().to(retailers::put_retailer))
            .default_service(allow("PUT")),
    )
    .service(
        web::resource("/retailers/{retailer_id}/webhook-secret")
            .route(get_or_head().to(webhook_secret::get_retailer_secret))
            .default_service(allow("GET, HEAD")),
    )
    .service(
        web::resource("/retailers/{retailer_id}/webhook-secret/rotate")
            .route(web::post().to(webhook_secret::rotate_retailer_secret))
            .default_service(allow("POST")),
    )
    .service(
        web::resource("/retailers/{retailer_id}/events")
            .route(web::post().to(retailer_events::post_event))
            .default_service(allow("POST")),
    );
}

/// The fallback of a path whose methods are `methods` (an `Allow` header value).
fn allow(methods: &'static str) -> actix_web::Route {
    web::to(move |req: HttpRequest| async move {
        Err::<actix_web::HttpResponse, _>(ApiError::method_not_allowed(
            req.method().as_str(),
            methods,
        ))
    })
}

async fn not_found(req: HttpRequest) -> Result<actix_web::HttpResponse, ApiError> {
    Err(ApiError::not_found(
        "not_found",
        format!("no route for {} {}", req.method(), req.path()),
    ))
}

fn json_error(err: JsonPayloadError, _req: &HttpRequest) -> actix_web::Error {
    let problem = match &err {
        JsonPayloadError::ContentType => ApiError::new(
            actix_web::http::StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            "Unsupported media type",
            "send the body as JSON with `Content-Type: application/json`",
        ),
        JsonPayloadError::Overflow { .. } | JsonPayloadError::OverflowKnownLength { .. } => {
            ApiError::new(
                actix_web::http::StatusCode::PAYLOAD_TOO_LARGE,
                "payload_too_large",
                "Payload too large",
                format!("the body must be at most {MAX_BODY} bytes"),
            )
        }
        JsonPayloadError::Deserialize(e) => ApiError::bad_request("malformed_json", e.to_string()),
        other => ApiError::bad_request("malformed_json", other.to_string()),
    };
    problem.into()
}

/// Deletes expired idempotency keys once an hour.
async fn purge_idempotency_keys(pool: icon_store::Pool, shutdown: CancellationToken) {
    icon_runtime::shutdown::every(std::time::Duration::from_secs(3600), shutdown, || async {
        let purged = match pool.get().await {
            Ok(db) => icon_store::idempotency::purge(&db).await,
            Err(e) => Err(e.into()),
        };
        match purged {
            Ok(0) => {}
            Ok(n) => tracing::info!(count = n, "purged expired idempotency keys"),
            Err(e) => tracing::warn!(error = %e, "cannot purge idempotency keys; will retry"),
        }
    })
    .await
}
