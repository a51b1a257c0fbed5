//! Liveness and readiness.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

use crate::AppState;
use crate::problem::Problem;

/// The process is up.
pub async fn healthz() -> &'static str {
    "ok"
}

/// Redis answers: Orion can do its work.
pub async fn readyz(State(state): State<AppState>) -> Response {
    match state.store.ping().await {
        Ok(()) => (StatusCode::OK, "ready").into_response(),
        Err(e) => Problem::from(e).into_response(),
    }
}
