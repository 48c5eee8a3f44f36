//! Probes: `/healthz` says the process serves HTTP; `/readyz` says it can do its job (database
//! and broker reachable), so a load balancer stops sending checkouts it could not queue.

use super::State;
use actix_web::HttpResponse;
use serde::Serialize;
use std::sync::atomic::Ordering;
use std::time::Duration;
use utoipa::ToSchema;

#[derive(Serialize, ToSchema)]
pub struct Health {
    #[schema(example = "ok")]
    pub status: &'static str,
}

#[derive(Serialize, ToSchema)]
pub struct Readiness {
    /// `ready` or `not_ready`.
    pub status: &'static str,
    /// `up` or `down`.
    pub database: &'static str,
    /// `up` or `down`.
    pub broker: &'static str,
}

/// Liveness.
#[utoipa::path(get, path = "/healthz", tag = "operations", responses((status = 200, body = Health)))]
pub async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(Health { status: "ok" })
}

/// Readiness: database and broker reachable.
#[utoipa::path(get, path = "/readyz", tag = "operations", responses(
    (status = 200, body = Readiness),
    (status = 503, body = Readiness, headers(("Retry-After" = u32))),
))]
pub async fn readyz(state: State) -> HttpResponse {
    let db_up = tokio::time::timeout(Duration::from_secs(2), async {
        match state.pool.get().await {
            Ok(c) => c.simple_query("SELECT 1").await.is_ok(),
            Err(_) => false,
        }
    })
    .await
    .unwrap_or(false);
    let broker_up = state.broker_ready.load(Ordering::Relaxed);
    let up = |b: bool| if b { "up" } else { "down" };
    let body = Readiness {
        status: if db_up && broker_up {
            "ready"
        } else {
            "not_ready"
        },
        database: up(db_up),
        broker: up(broker_up),
    };
    if db_up && broker_up {
        HttpResponse::Ok().json(body)
    } else {
        HttpResponse::ServiceUnavailable()
            .insert_header(("Retry-After", "5"))
            .json(body)
    }
}
