//! GateKeeper, the Pingora gateway: every client request crosses it. It serves entirely from
//! memory: routes, revocations and certificates come from Redis by snapshot and pub/sub.
//!
//! | module | job |
//! |---|---|
//! | [`config`] | flags and environment |
//! | `state` | what the gateway serves from |
//! | `route_table` | the moka route cache, versioned |
//! | `revoked` | revoked keys |
//! | `key_rules`, `credential`, `scope` | collection rules, credential swap and JWTs, Qdrant's scope rules |
//! | `limits` | GCRA rate limits per key and per cluster, in-flight cap |
//! | `answers` | every refusal: status, Qdrant JSON, gRPC status |
//! | `admission` | host → route → phase → key → scope → limits, for both paths |
//! | `h1` | the lean HTTP/1 path of the REST listener |
//! | `hop` | hop-by-hop and Connection-nominated fields, the client's credential |
//! | `proxy` | the pingora-proxy hooks, for h2 (REST over h2, gRPC) |
//! | `tls` | SNI-selected certificates and the SNI/Host check |
//! | `sync` | snapshot + pub/sub + resync |
//! | `upstream` | nodes as ready peers; their names resolved off the request path |
//! | `usage` | per-cluster request and byte counters, flushed to Redis |
//! | `admin`, `metrics` | `/metrics`, `/healthz`, `/readyz` |

pub mod config;

mod admin;
mod admission;
pub mod answers;
mod credential;
mod h1;
mod hop;
mod key_rules;
pub mod limits;
mod metrics;
mod proxy;
mod redis_link;
mod revoked;
pub mod route_table;
pub mod scope;
mod state;
mod sync;
mod tls;
pub mod upstream;
mod usage;

use std::sync::Arc;

use pingora::server::configuration::ServerConf;
use pingora::server::{RunArgs, Server, ShutdownSignal, ShutdownSignalWatch};
use pingora::services::background::background_service;

pub use config::GatekeeperConfig;

#[derive(Debug, thiserror::Error)]
pub enum GatekeeperError {
    #[error(transparent)]
    State(#[from] state::StateError),
    #[error("LYRA_REDIS_URL: {0}")]
    Redis(#[from] redis::RedisError),
    #[error("server: {0}")]
    Server(#[from] Box<pingora::Error>),
}

/// Stops the server when a future completes (for tests and for `lyra dev`).
struct OnFuture(
    tokio::sync::Mutex<Option<std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>>>,
);

#[async_trait::async_trait]
impl ShutdownSignalWatch for OnFuture {
    async fn recv(&self) -> ShutdownSignal {
        let fut = self.0.lock().await.take();
        if let Some(f) = fut {
            f.await;
        } else {
            std::future::pending::<()>().await;
        }
        ShutdownSignal::FastShutdown
    }
}

/// Runs GateKeeper on this thread until `shutdown` completes (or SIGINT/SIGTERM when `None`).
pub fn run(
    config: GatekeeperConfig,
    shutdown: Option<std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>>,
) -> Result<(), GatekeeperError> {
    // One crypto provider for every TLS config in the process: ring.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let client = redis::Client::open(config.platform.redis_url.as_str())?;
    let state = Arc::new(state::GatewayState::new(config.clone())?);

    let conf = ServerConf {
        threads: config.threads.max(1),
        upstream_keepalive_pool_size: config.upstream_pool_size.max(1),
        grace_period_seconds: Some(1),
        graceful_shutdown_timeout_seconds: Some(5),
        ..ServerConf::default()
    };
    let mut server = Server::new_with_opt_and_conf(None, conf);
    server.bootstrap();

    let mut rest = pingora::services::listening::Service::new(
        "GateKeeper REST".to_owned(),
        h1::RestApp::new(state.clone(), &server.configuration),
    );
    rest.add_tls_with_settings(
        &config.rest_listen.to_string(),
        None,
        tls::settings(state.certs.clone(), false)?,
    );
    if let Some(plain) = config.plain_listen {
        rest.add_tcp(&plain.to_string());
    }
    let mut grpc = pingora::proxy::http_proxy_service_with_name(
        &server.configuration,
        proxy::Gatekeeper {
            state: state.clone(),
            grpc: true,
        },
        "GateKeeper gRPC",
    );
    grpc.add_tls_with_settings(
        &config.grpc_listen.to_string(),
        None,
        tls::settings(state.certs.clone(), true)?,
    );

    server.add_service(background_service(
        "sync",
        sync::SyncService::new(state.clone(), client),
    ));
    server.add_service(background_service(
        "usage",
        usage::UsageFlush {
            state: state.clone(),
        },
    ));
    server.add_service(background_service(
        "admin",
        admin::AdminService {
            state: state.clone(),
            listen: config.admin_listen,
        },
    ));
    server.add_service(rest);
    server.add_service(grpc);
    tracing::info!(rest = %config.rest_listen, grpc = %config.grpc_listen, admin = %config.admin_listen, "GateKeeper listening");
    let run_args = match shutdown {
        Some(f) => RunArgs {
            shutdown_signal: Box::new(OnFuture(tokio::sync::Mutex::new(Some(f)))),
        },
        None => RunArgs::default(),
    };
    server.run(run_args);
    Ok(())
}
