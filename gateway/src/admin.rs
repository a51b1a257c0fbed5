//! The admin listener: `/metrics`, `/healthz`, `/readyz` (ready once the first sync is done).

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use async_trait::async_trait;
use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;

use crate::state::GatewayState;

pub struct AdminService {
    pub state: Arc<GatewayState>,
    pub listen: SocketAddr,
}

fn router(state: Arc<GatewayState>) -> Router {
    Router::new()
        .route(
            "/metrics",
            get(|State(s): State<Arc<GatewayState>>| async move { s.metrics.render() }),
        )
        .route("/healthz", get(|| async { "ok" }))
        .route(
            "/readyz",
            get(|State(s): State<Arc<GatewayState>>| async move {
                if s.ready.load(Ordering::Relaxed) {
                    (StatusCode::OK, "ready")
                } else {
                    (
                        StatusCode::SERVICE_UNAVAILABLE,
                        "waiting for the first sync",
                    )
                }
            }),
        )
        .with_state(state)
}

#[async_trait]
impl BackgroundService for AdminService {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let listener = match tokio::net::TcpListener::bind(self.listen).await {
            Ok(l) => l,
            Err(e) => {
                tracing::error!(addr = %self.listen, error = %e, "cannot open the admin listener");
                return;
            }
        };
        let _ = axum::serve(listener, router(self.state.clone()))
            .with_graceful_shutdown(async move {
                let _ = shutdown.changed().await;
            })
            .await;
    }
}
