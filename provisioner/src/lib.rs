//! Nebula, the provisioning worker: turns commands on the Redis stream into running Qdrant
//! clusters, exactly once, whatever crashes.
//!
//! | module | job |
//! |---|---|
//! | [`config`] | flags and environment |
//! | `consumer` | the stream consumer: pending-first, blocking reads, reaper, retries, dead letters |
//! | `handlers` | provision, resize, deprovision: idempotent, one cluster at a time (`lease`) |
//! | `state`, `secrets` | reading and moving platform state; the cluster's sealed secrets |
//! | [`driver`] | `InfrastructureClient` and its drivers |
//! | `crash` | named crash points for the crash-safety tests |
//! | `admin`, `metrics` | `/metrics`, `/healthz`, `/readyz` |

pub mod config;
pub mod driver;

mod admin;
mod consumer;
mod crash;
mod drain;
mod handlers;
mod lease;
mod metrics;
mod reconcile;
mod secrets;
mod state;
#[cfg(test)]
mod testing;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use contract::cluster::Phase;
use contract::region::Driver;
use contract::seal::Keyring;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use tokio::sync::watch;

pub use config::NebulaConfig;
use driver::local::LocalDriver;
use driver::{Drivers, InfrastructureClient};

#[derive(Debug, thiserror::Error)]
pub enum NebulaError {
    #[error("configuration: {0}")]
    Config(String),
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: std::net::SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("metrics: {0}")]
    Metrics(#[from] prometheus::Error),
}

fn keyring(config: &NebulaConfig) -> Result<Keyring, NebulaError> {
    config
        .platform
        .keyring()
        .map_err(|e| NebulaError::Config(e.to_string()))
}

/// Connects to Redis, waiting (and saying so) until it answers or `shutdown` is asked for.
async fn connect(
    client: &redis::Client,
    shutdown: &mut watch::Receiver<bool>,
) -> Option<ConnectionManager> {
    let config = ConnectionManagerConfig::new()
        .set_connection_timeout(Some(Duration::from_secs(2)))
        .set_response_timeout(Some(Duration::from_secs(5)))
        .set_number_of_retries(2);
    loop {
        match ConnectionManager::new_with_config(client.clone(), config.clone()).await {
            Ok(c) => return Some(c),
            Err(e) => tracing::warn!(error = %e, "redis unreachable; retrying"),
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            _ = shutdown.changed() => return None,
        }
    }
}

/// The local driver of a configuration: nodes under `<data_dir>/nodes`.
pub fn local_driver(config: &NebulaConfig) -> Arc<LocalDriver> {
    Arc::new(LocalDriver::new(
        config.data_dir.join("nodes"),
        config.qdrant_bin.clone(),
        config.local_host,
        config.ready_timeout(),
    ))
}

/// Brings clusters whose nodes are on disk back under supervision: running nodes are adopted,
/// stopped ones started (after a worker or machine restart).
async fn adopt_local_clusters(conn: &ConnectionManager, keyring: &Keyring, local: &LocalDriver) {
    for id in local.clusters_on_disk() {
        let mut conn = conn.clone();
        let record = match state::load_cluster(&mut conn, id).await {
            Ok(Some(r)) => r,
            Ok(None) => continue,
            Err(e) => {
                tracing::warn!(cluster = %id, error = %e, "cannot read a local cluster to adopt");
                continue;
            }
        };
        let c = record.cluster;
        if matches!(c.phase, Phase::Deleting | Phase::Deleted | Phase::Pending) {
            continue;
        }
        let secrets = match secrets::load(&mut conn, keyring, id).await {
            Ok(Some(s)) => s,
            _ => continue,
        };
        let spec = handlers::node_spec(
            &c,
            c.configuration.num_nodes,
            c.configuration.node_configuration,
            &secrets,
        );
        match local.adopt(&spec).await {
            Ok(()) => tracing::info!(cluster = %id, "adopted local cluster"),
            Err(e) => tracing::warn!(cluster = %id, error = %e, "cannot adopt local cluster"),
        }
    }
}

/// Runs Nebula with the local driver until `shutdown`.
pub async fn run(
    config: NebulaConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), NebulaError> {
    let local = local_driver(&config);
    let drivers = Drivers::default().with(
        Driver::Local,
        local.clone() as Arc<dyn InfrastructureClient>,
    );
    run_with(config, drivers, Some(local), shutdown).await
}

/// Runs Nebula with the given drivers. `local`, when given, is adopted and supervised.
pub async fn run_with(
    config: NebulaConfig,
    drivers: Drivers,
    local: Option<Arc<LocalDriver>>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), NebulaError> {
    let keyring = keyring(&config)?;
    let client = redis::Client::open(config.platform.redis_url.as_str())
        .map_err(|e| NebulaError::Config(format!("LYRA_REDIS_URL: {e}")))?;
    let metrics = Arc::new(metrics::Metrics::new()?);
    let (stop, mut stopping) = watch::channel(false);
    tokio::spawn(async move {
        shutdown.await;
        let _ = stop.send(true);
    });

    let Some(conn) = connect(&client, &mut stopping).await else {
        return Ok(());
    };
    let admin = tokio::net::TcpListener::bind(config.admin_listen)
        .await
        .map_err(|source| NebulaError::Bind {
            addr: config.admin_listen,
            source,
        })?;
    tracing::info!(addr = %config.admin_listen, "Nebula admin listening");
    tokio::spawn({
        let router = admin::router(metrics.clone(), conn.clone());
        let mut stopping = stopping.clone();
        async move {
            let _ = axum::serve(admin, router)
                .with_graceful_shutdown(async move {
                    let _ = stopping.changed().await;
                })
                .await;
        }
    });

    if let Some(local) = &local {
        adopt_local_clusters(&conn, &keyring, local).await;
        tokio::spawn(driver::local::supervise(local.clone(), stopping.clone()));
    }

    let consumer_name = config.consumer_name();
    let worker = Arc::new(handlers::Worker {
        conn,
        keyring,
        drivers,
        holder: consumer_name.clone(),
        lease_ttl: config.claim_idle(),
        in_hand: Default::default(),
    });
    let settings = consumer::Settings {
        consumer: consumer_name.clone(),
        concurrency: config.concurrency,
        max_attempts: config.max_attempts.max(1),
        backoff: Duration::from_millis(config.backoff_ms),
        backoff_max: Duration::from_millis(config.backoff_max_ms),
        claim_idle: config.claim_idle(),
    };
    tokio::spawn(reconcile::run(
        worker.clone(),
        metrics.clone(),
        config.reconcile_every(),
        stopping.clone(),
    ));
    tracing::info!(consumer = %consumer_name, "Nebula consuming commands");
    let consumer = Arc::new(consumer::Consumer::new(worker, client, settings, metrics));
    consumer.run(stopping).await;
    tracing::info!("Nebula stopped");
    Ok(())
}
