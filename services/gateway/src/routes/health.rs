//! Probes: `/healthz` says the process serves HTTP; `/readyz` says it can do its job (database
//! and broker reachable), so a load balancer stops sending checkouts it could not queue.

use super::State;
use actix_web::HttpResponse;
use serde::Serialize;
use std::sync::atomic::Ordering;
use utoipa::ToSchema;

#[derive(Serialize, ToSchema)]
#[schema(example = json!({"status": "ok"}))]
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
    /// Outbox messages RabbitMQ could not route to any queue (a deleted queue), set aside and
    /// retried with backoff; `null` when the database is down. Does not make the gateway
    /// unready: checkouts are still taken and queued.
    pub outbox_unroutable: Option<i64>,
}

/// Liveness.
///
/// 200 while the process serves HTTP, whatever the state of its database or broker: a failing
/// liveness probe means "restart me", which would not fix either.
#[utoipa::path(get, path = "/healthz", tag = "operations", responses((status = 200, description = "The process serves HTTP", body = Health)))]
pub async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(Health { status: "ok" })
}

/// Readiness.
///
/// 200 when the database and the broker are reachable, so checkouts can be taken and queued;
/// otherwise 503, so a load balancer sends requests elsewhere meanwhile.
#[utoipa::path(get, path = "/readyz", tag = "operations", responses(
    (status = 200, description = "Ready: database and broker up", body = Readiness,
        example = json!({"status": "ready", "database": "up", "broker": "up", "outbox_unroutable": 0})),
    (status = 503, description = "Not ready: `database` or `broker` is `down`", body = Readiness,
        headers(("Retry-After" = u32, description = "Seconds before asking again")),
        example = json!({"status": "not_ready", "database": "up", "broker": "down", "outbox_unroutable": 0})),
))]
pub async fn readyz(state: State) -> HttpResponse {
    let unroutable = icon_store::pool::outbox_unroutable(&state.pool).await;
    let db_up = unroutable.is_some();
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
        outbox_unroutable: unroutable,
    };
    if db_up && broker_up {
        HttpResponse::Ok().json(body)
    } else {
        HttpResponse::ServiceUnavailable()
            .insert_header(("Retry-After", "5"))
            .json(body)
    }
}
