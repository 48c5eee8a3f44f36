//! What is made through the public API before any clock starts: the health checks, the
//! retailers, and every cart a run will check out.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Instant;

use http::{Method, StatusCode};
use serde_json::json;
use tokio_util::sync::CancellationToken;

use crate::api::Api;
use crate::args::Config;
use crate::drive;
use crate::run::RunError;

/// Carts are made this many at a time: enough to keep the gateway busy, few enough not to
/// stand for the load being measured.
const SETUP_CONCURRENCY: usize = 16;

/// Both ends answer before anything is created, so a wrong URL fails fast and clearly.
pub async fn preflight(api: &Api, cfg: &Config) -> Result<(), RunError> {
    for (what, url) in [
        ("gateway", format!("{}/readyz", cfg.gateway)),
        ("simulator", format!("{}/healthz", cfg.sim)),
    ] {
        match api.call(Method::GET, &url, None, None).await {
            Ok(r) if r.status.is_success() => {}
            Ok(r) => {
                return Err(RunError::Setup(format!(
                    "{what} at {url} answered {}: {}",
                    r.status,
                    r.excerpt()
                )))
            }
            Err(e) => return Err(RunError::Setup(format!("{what} unreachable: {e}"))),
        }
    }
    Ok(())
}

pub async fn register_retailers(
    api: &Api,
    cfg: &Config,
    admin: &str,
    retailers: &[String],
) -> Result<(), RunError> {
    for r in retailers {
        let body = json!({"name": r, "order_url": format!("{}/{r}/orders", cfg.sim_from_icon)});
        let reply = api
            .call(
                Method::PUT,
                &format!("/retailers/{r}"),
                Some(admin),
                Some(&body),
            )
            .await
            .map_err(|e| RunError::Setup(e.to_string()))?;
        if !reply.status.is_success() {
            return Err(RunError::Setup(format!(
                "PUT /retailers/{r} answered {}: {} (is --jwt-secret ICON's ICON_JWT_SECRET?)",
                reply.status,
                reply.excerpt()
            )));
        }
    }
    Ok(())
}

/// `n` carts, each with one item from every retailer, with a progress line every second.
pub async fn make_carts(
    api: &Api,
    token: &str,
    retailers: &[String],
    n: u64,
) -> Result<Vec<i64>, RunError> {
    let next = Arc::new(AtomicUsize::new(0));
    let made = Arc::new(AtomicUsize::new(0));
    let stop = CancellationToken::new();
    let started = Instant::now();
    let progress = {
        let made = made.clone();
        drive::ticker(stop.clone(), move || {
            cart_progress(made.load(Ordering::Relaxed) as u64, n, started.elapsed())
        })
    };
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..SETUP_CONCURRENCY {
        let (api, token, retailers) = (api.clone(), token.to_string(), retailers.to_vec());
        let (next, made) = (next.clone(), made.clone());
        tasks.spawn(async move {
            let mut carts = Vec::new();
            while (next.fetch_add(1, Ordering::Relaxed) as u64) < n {
                carts.push(make_cart(&api, &token, &retailers).await?);
                made.fetch_add(1, Ordering::Relaxed);
            }
            Ok::<_, RunError>(carts)
        });
    }
    let mut carts = Vec::with_capacity(n as usize);
    let mut outcome = Ok(());
    while let Some(joined) = tasks.join_next().await {
        match joined {
            Ok(Ok(c)) => carts.extend(c),
            // The first failure ends the set-up; dropping `tasks` aborts the other carts.
            Ok(Err(e)) => outcome = Err(e),
            Err(e) => outcome = Err(RunError::Setup(format!("cart task: {e}"))),
        }
        if outcome.is_err() {
            break;
        }
    }
    stop.cancel();
    let _ = progress.await;
    outcome.map(|()| carts)
}

/// `setup: carts 1200/4000 (300/s, about 9 s left)`.
pub fn cart_progress(made: u64, n: u64, elapsed: std::time::Duration) -> String {
    let rate = made as f64 / elapsed.as_secs_f64().max(0.001);
    let left = if made == 0 {
        String::new()
    } else {
        format!(", about {:.0} s left", n.saturating_sub(made) as f64 / rate)
    };
    format!("setup: carts {made}/{n} ({rate:.0}/s{left})")
}

async fn make_cart(api: &Api, token: &str, retailers: &[String]) -> Result<i64, RunError> {
    let setup = |e: String| RunError::Setup(e);
    let reply = api
        .call(Method::POST, "/carts", Some(token), None)
        .await
        .map_err(|e| setup(e.to_string()))?;
    let cart_id = match (reply.status, reply.json()) {
        (StatusCode::CREATED, Some(v)) => v.get("cart_id").and_then(|c| c.as_i64()),
        _ => None,
    }
    .ok_or_else(|| {
        setup(format!(
            "POST /carts answered {}: {}",
            reply.status,
            reply.excerpt()
        ))
    })?;
    for (i, r) in retailers.iter().enumerate() {
        let item = json!({
            "retailer_id": r, "sku": format!("bench-sku-{i}"), "quantity": 1,
            "unit_price": {"amount_minor": 100, "currency": "GBP"}
        });
        let path = format!("/carts/{cart_id}/items");
        let reply = api
            .call(Method::POST, &path, Some(token), Some(&item))
            .await
            .map_err(|e| setup(e.to_string()))?;
        if reply.status != StatusCode::CREATED {
            return Err(setup(format!(
                "POST {path} answered {}: {}",
                reply.status,
                reply.excerpt()
            )));
        }
    }
    Ok(cart_id)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn cart_progress_says_the_rate_and_what_is_left() {
        assert_eq!(
            cart_progress(1200, 4000, Duration::from_secs(4)),
            "setup: carts 1200/4000 (300/s, about 9 s left)"
        );
        assert_eq!(
            cart_progress(0, 10, Duration::from_secs(1)),
            "setup: carts 0/10 (0/s)"
        );
    }
}
