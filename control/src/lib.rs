//! Orion, the control API: accounts, regions and capacity, clusters, API keys, audit.
//!
//! Orion is the only public face of the control plane. It answers fast (it queues work on the
//! command stream and returns 202), honestly (phases and reasons a person can act on) and
//! safely under concurrency (capacity moves only inside the contract's Lua scripts).
//!
//! | module | job |
//! |---|---|
//! | [`config`] | flags and environment |
//! | [`api`] | the wire types, for clients |
//! | `store` | the Redis connection: deadlines, 503 instead of hanging |
//! | `auth` | operator and account tokens; tenant isolation |
//! | `problem`, `json`, `extract` | RFC 9457 errors and extractors that produce them |
//! | `idempotency` | `Idempotency-Key` replay and conflict |
//! | `audit` | the per-account audit log |
//! | `metrics` | Prometheus, on the admin listener |
//! | `renewal` | renewing regional certificates before they expire |
//! | [`reseal`] | resealing stored secrets under the current keys, at start |
//! | `routes` | one file per resource, with its OpenAPI annotations |

pub mod config;

/// The wire types of the API, for clients (the `lyra` CLI, tests): requests serialize and
/// answers deserialize with the very types Orion uses, so a client cannot drift from the server.
pub mod api {
    pub use crate::audit::AuditEntry;
    pub use crate::problem::Problem;
    pub use crate::routes::accounts::{CreateAccount, CreateToken, CreatedToken};
    pub use crate::routes::api_keys::{CreateApiKey, CreatedApiKey};
    pub use crate::routes::audit_log::MAX_LIMIT as MAX_AUDIT_LIMIT;
    pub use crate::routes::clusters::{ClusterPage, MAX_PAGE_SIZE, ResizeCluster};
    pub use crate::routes::dead_letters::{DeadLetter, Replayed};
    pub use crate::routes::regions::{PutRegion, RegionView};
    pub use crate::routes::usage::Usage;
    pub use contract::account::{Account, Role};
    pub use contract::api_key::{
        ApiKeyMetadata, ClusterAccess, CollectionAccess, CollectionRule, KeyScope,
    };
    pub use contract::cluster::{Cluster, ClusterConfiguration, ClusterSpec, Phase};
    pub use contract::resources::{Capacity, NodeResources};
}

mod audit;
mod auth;
mod data_guard;
mod extract;
mod idempotency;
mod json;
mod metrics;
mod problem;
mod renewal;
mod request_id;
pub mod reseal;
mod routes;
mod store;

use std::future::Future;
use std::ops::Deref;
use std::sync::Arc;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::StatusCode;
use axum::middleware;
use axum::response::IntoResponse;
use axum::routing::get;
use contract::host::Tld;
use contract::seal::Keyring;
use sha2::{Digest, Sha256};
use tokio::net::TcpListener;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::trace::TraceLayer;
use utoipa_scalar::{Scalar, Servable};

pub use config::OrionConfig;
use problem::Problem;
use store::Store;

/// Largest request body accepted.
pub const MAX_BODY_BYTES: usize = 64 * 1024;
/// Shortest operator token accepted.
pub const MIN_OPERATOR_TOKEN_LEN: usize = 16;

#[derive(Debug, thiserror::Error)]
pub enum OrionError {
    #[error("configuration: {0}")]
    Config(String),
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: std::net::SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("server failed: {0}")]
    Serve(#[source] std::io::Error),
    #[error("metrics: {0}")]
    Metrics(#[from] prometheus::Error),
}

pub struct Inner {
    store: Store,
    /// The CA the operator gave as files, if any.
    file_ca: Option<Arc<certs::ca::PlatformCa>>,
    cert_renew_every: std::time::Duration,
    keyring: Keyring,
    tld: Tld,
    operator_digest: [u8; 32],
    metrics: metrics::Metrics,
    idempotent_answer_max: usize,
}

/// Shared by every handler.
#[derive(Clone)]
pub struct AppState(Arc<Inner>);

impl Deref for AppState {
    type Target = Inner;

    fn deref(&self) -> &Inner {
        &self.0
    }
}

impl AppState {
    pub fn new(config: &OrionConfig) -> Result<Self, OrionError> {
        if config.operator_token.len() < MIN_OPERATOR_TOKEN_LEN {
            return Err(OrionError::Config(format!(
                "the operator token must be at least {MIN_OPERATOR_TOKEN_LEN} characters"
            )));
        }
        let keyring = config
            .platform
            .keyring()
            .map_err(|e| OrionError::Config(e.to_string()))?;
        let tld = Tld::new(&config.tld)
            .map_err(|e| OrionError::Config(format!("LYRA_TLD {:?}: {e}", config.tld)))?;
        let store = Store::new(&config.platform.redis_url, config.redis_timeout())
            .map_err(|e| OrionError::Config(format!("LYRA_REDIS_URL: {e}")))?;
        let file_ca = match (&config.ca_cert, &config.ca_key) {
            (Some(cert), Some(key)) => {
                let read = |p: &std::path::Path| {
                    std::fs::read_to_string(p)
                        .map_err(|e| OrionError::Config(format!("{}: {e}", p.display())))
                };
                let ca = certs::ca::PlatformCa::from_pem(&read(cert)?, &read(key)?)
                    .map_err(|e| OrionError::Config(format!("LYRA_CA_CERT/LYRA_CA_KEY: {e}")))?;
                Some(Arc::new(ca))
            }
            _ => None,
        };
        Ok(Self(Arc::new(Inner {
            store,
            file_ca,
            cert_renew_every: config.cert_renew_every(),
            keyring,
            tld,
            operator_digest: Sha256::digest(config.operator_token.as_bytes()).into(),
            metrics: metrics::Metrics::new()?,
            idempotent_answer_max: config.idempotent_answer_max_bytes,
        })))
    }
}

async fn not_found() -> Problem {
    Problem::not_found("route")
}

async fn method_not_allowed() -> Problem {
    Problem::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method-not-allowed",
        "Method not allowed",
        "this route does not accept that method",
    )
}

/// Orion's public HTTP surface: the API, its documents and the probes load balancers use.
pub fn router(state: AppState) -> Router {
    let (api, mut openapi) = routes::api().split_for_parts();
    routes::common_answers::add(&mut openapi);
    let openapi_json = openapi.to_json().unwrap_or_else(|e| {
        tracing::error!(error = %e, "cannot render the OpenAPI document");
        "{}".to_owned()
    });
    Router::new()
        .merge(api)
        // Only on the API's routes, and only on the methods they have: set here, before the
        // 405 fallback is, so that the fallback stays outside it. A request no handler takes
        // (an unknown path, a method the path does not have) is answered 404 or 405, never
        // 409 for an Idempotency-Key it happens to reuse, and claims no key.
        .route_layer(middleware::from_fn_with_state(
            state.clone(),
            idempotency::middleware,
        ))
        .route(
            "/api/v1/openapi.json",
            get(move || async move {
                (
                    [(axum::http::header::CONTENT_TYPE, "application/json")],
                    openapi_json,
                )
                    .into_response()
            }),
        )
        .merge(Scalar::with_url("/docs", openapi))
        .route("/healthz", get(routes::health::healthz))
        .route("/readyz", get(routes::health::readyz))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(middleware::from_fn_with_state(
            state.clone(),
            metrics::record,
        ))
        .layer(TraceLayer::new_for_http())
        .layer(PropagateRequestIdLayer::x_request_id())
        .layer(SetRequestIdLayer::x_request_id(MakeRequestUuid))
        // Outermost, so that the id every layer and handler sees has passed the check.
        .layer(middleware::map_request(request_id::screen))
        .with_state(state)
}

/// The admin surface, for the cluster network only: `/metrics`, `/healthz`, `/readyz`.
pub fn admin_router(state: AppState) -> Router {
    Router::new()
        .route("/metrics", get(metrics::serve))
        .route("/healthz", get(routes::health::healthz))
        .route("/readyz", get(routes::health::readyz))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .with_state(state)
}

/// Serves Orion on `listener` until `shutdown` completes.
pub async fn serve(
    state: AppState,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), OrionError> {
    let resealing = tokio::spawn(reseal::at_start(state.clone()));
    let renewing = tokio::spawn(renewal::run(state.clone(), state.cert_renew_every));
    let served = axum::serve(listener, router(state))
        .with_graceful_shutdown(shutdown)
        .await
        .map_err(OrionError::Serve);
    renewing.abort();
    resealing.abort();
    served
}

/// Serves the admin surface on `listener` until `shutdown` completes.
pub async fn serve_admin(
    state: AppState,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), OrionError> {
    axum::serve(listener, admin_router(state))
        .with_graceful_shutdown(shutdown)
        .await
        .map_err(OrionError::Serve)
}

async fn bind(addr: std::net::SocketAddr) -> Result<TcpListener, OrionError> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| OrionError::Bind { addr, source })
}

/// Binds the configured addresses and serves the API and the admin surface until `shutdown`.
pub async fn run(
    config: OrionConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), OrionError> {
    let state = AppState::new(&config)?;
    // Both are bound before either serves: a taken admin port fails the start, as it does for
    // Nebula and GateKeeper, rather than leaving an Orion nobody can scrape.
    let listener = bind(config.listen).await?;
    let admin = bind(config.admin_listen).await?;
    tracing::info!(addr = %config.listen, admin = %config.admin_listen, "Orion listening");
    let (stop, stopping) = tokio::sync::watch::channel(false);
    let until_stopped = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|stop| *stop).await;
    };
    let admin_task = tokio::spawn(serve_admin(state.clone(), admin, until_stopped(stopping)));
    let served = serve(state, listener, shutdown).await;
    let _ = stop.send(true);
    match admin_task.await {
        Ok(Err(e)) => tracing::error!(error = %e, "the admin listener failed"),
        Err(e) => tracing::error!(error = %e, "the admin listener's task failed"),
        Ok(Ok(())) => {}
    }
    served
}
