//! The admin listener: `/metrics`, `/healthz`, `/readyz` (Redis reachable).

use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use redis::aio::ConnectionManager;

use crate::metrics::Metrics;

#[derive(Clone)]
struct Admin {
    metrics: Arc<Metrics>,
    conn: ConnectionManager,
}

pub fn router(metrics: Arc<Metrics>, conn: ConnectionManager) -> Router {
    Router::new()
        .route(
            "/metrics",
            get(|State(a): State<Admin>| async move { a.metrics.render() }),
        )
        .route("/healthz", get(|| async { "ok" }))
        .route(
            "/readyz",
            get(|State(a): State<Admin>| async move {
                let mut conn = a.conn.clone();
                match redis::cmd("PING").query_async::<String>(&mut conn).await {
                    Ok(_) => (StatusCode::OK, "ready"),
                    Err(_) => (StatusCode::SERVICE_UNAVAILABLE, "redis unreachable"),
                }
            }),
        )
        .with_state(Admin { metrics, conn })
}
