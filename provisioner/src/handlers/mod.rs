//! Command handlers. Each is idempotent: it looks at the cluster's recorded state first and
//! does only what is still missing, so a redelivered or replayed command never makes a
//! second cluster or a second set of nodes.

mod deprovision;
mod provision;
mod resize;

use std::sync::Arc;
use std::time::Duration;

use futures_util::FutureExt;

use contract::RandomError;
use contract::cluster::Cluster;
use contract::command::{Command, CommandEnvelope};
use contract::keyscheme::InvalidSecret;
use contract::record::RecordError;
use contract::region::Driver;
use contract::resources::NodeResources;
use contract::seal::{Keyring, SealError};
use redis::aio::ConnectionManager;

use crate::drain::DrainError;
use crate::driver::{DriverError, Drivers, InfrastructureClient, NodeSpec};
use crate::lease::Lease;
use crate::secrets::Secrets;
use crate::state;

/// Why a command did not complete this time. Each variant says what failed and keeps the
/// underlying error as its source. [`HandlerError::retryable`] decides between trying again
/// later (after the last attempt the command is parked with this text as its reason) and
/// parking the command now; [`HandlerError::kind`] names the failure for metrics. The text
/// is what users read on a parked command or a failed cluster: never a secret in it.
#[derive(Debug, thiserror::Error)]
pub enum HandlerError {
    /// Another worker is acting on the cluster right now: wait, without counting an attempt.
    #[error("another worker is acting on this cluster")]
    Busy,
    #[error("redis: {0}")]
    Redis(#[from] redis::RedisError),
    /// The driver's own error says what failed and whether to retry; it adds no words here.
    #[error(transparent)]
    Driver(#[from] DriverError),
    /// Moving shards off the nodes a scale-down removes.
    #[error(transparent)]
    Drain(#[from] DrainError),
    #[error("region {provider}/{region} is not registered")]
    RegionUnknown { provider: String, region: String },
    #[error(
        "region {provider}/{region} uses the {driver} driver, which this worker does not run{}",
        driver_hint(*.driver)
    )]
    DriverNotRunning {
        provider: String,
        region: String,
        driver: Driver,
    },
    /// A record in Redis that does not parse: written by something else, or by hand.
    #[error("the stored {what} cannot be read: {source}")]
    UnreadableRecord {
        what: &'static str,
        #[source]
        source: RecordError,
    },
    #[error("the stored {what} cannot be read: {source}")]
    UnreadableJson {
        what: &'static str,
        #[source]
        source: serde_json::Error,
    },
    #[error("cannot encode {what}: {source}")]
    Encode {
        what: &'static str,
        #[source]
        source: serde_json::Error,
    },
    #[error("the cluster has no secrets: it was never provisioned")]
    NoSecrets,
    #[error("the cluster's secrets cannot be opened with this platform key: {0}")]
    Unseal(#[source] SealError),
    #[error("the cluster's stored secret is invalid: {0}")]
    InvalidSecret(#[source] InvalidSecret),
    #[error("cannot seal a secret: {0}")]
    Seal(#[source] SealError),
    #[error("cannot generate the cluster's secrets: {0}")]
    Random(#[from] RandomError),
    /// Stored with `SET NX`, then not found: someone deleted them in between.
    #[error("the cluster's secrets vanished while being stored")]
    SecretsVanished,
    /// The handler panicked; the text is the panic's message.
    #[error("the handler failed unexpectedly ({0}); retrying")]
    Panic(String),
    #[error("lost the cluster's lease (not renewed in time, or taken by another worker); retrying")]
    LeaseLost,
}

impl HandlerError {
    /// Whether to try again later rather than park the command now.
    pub fn retryable(&self) -> bool {
        match self {
            Self::Driver(e) => e.retryable(),
            Self::Drain(e) => e.retryable(),
            Self::UnreadableRecord { .. }
            | Self::UnreadableJson { .. }
            | Self::Encode { .. }
            | Self::NoSecrets
            | Self::Unseal(_)
            | Self::InvalidSecret(_) => false,
            Self::Busy
            | Self::Redis(_)
            | Self::RegionUnknown { .. }
            | Self::DriverNotRunning { .. }
            | Self::Seal(_)
            | Self::Random(_)
            | Self::SecretsVanished
            | Self::Panic(_)
            | Self::LeaseLost => true,
        }
    }

    /// A short, stable name of what failed, for metric labels.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Busy => "busy",
            Self::Redis(_) => "redis",
            Self::Driver(e) => e.kind(),
            Self::Drain(e) => e.kind(),
            Self::RegionUnknown { .. } => "region_unknown",
            Self::DriverNotRunning { .. } => "driver_not_running",
            Self::UnreadableRecord { .. } | Self::UnreadableJson { .. } => "unreadable_state",
            Self::Encode { .. } => "encode",
            Self::NoSecrets => "secrets_missing",
            Self::Unseal(_) | Self::InvalidSecret(_) | Self::Seal(_) => "seal",
            Self::Random(_) => "random",
            Self::SecretsVanished => "secrets_vanished",
            Self::Panic(_) => "panic",
            Self::LeaseLost => "lease_lost",
        }
    }
}

/// What a worker without the region's driver lacks.
fn driver_hint(driver: Driver) -> &'static str {
    match driver {
        Driver::Kubernetes => ": start Nebula with access to a Kubernetes API",
        Driver::Helm => ": start Nebula where `helm` is installed",
        Driver::Local => "",
    }
}

/// How a command ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Done,
    /// Nothing to do (already done, superseded, or the cluster is gone).
    Skipped(&'static str),
}

/// What handlers work with.
pub struct Worker {
    pub conn: ConnectionManager,
    pub keyring: Keyring,
    pub drivers: Drivers,
    /// This worker's consumer name, written into cluster leases.
    pub holder: String,
    pub lease_ttl: Duration,
    /// Clusters this worker is acting on right now.
    pub in_hand: std::sync::Mutex<std::collections::HashSet<contract::ids::ClusterId>>,
}

/// Marks a cluster as in hand in this worker until dropped.
pub(crate) struct InHand<'a> {
    worker: &'a Worker,
    cluster: contract::ids::ClusterId,
}

impl<'a> InHand<'a> {
    pub(crate) fn take(worker: &'a Worker, cluster: contract::ids::ClusterId) -> Option<Self> {
        let inserted = worker.in_hand.lock().ok()?.insert(cluster);
        // The guard is gone before a refusal is built: `then_some` would build (and drop)
        // an `InHand` while the set is still locked, and its Drop would wait for that lock
        // forever, wedging the worker thread on the first command that found its cluster busy.
        if inserted {
            Some(Self { worker, cluster })
        } else {
            None
        }
    }
}

impl Drop for InHand<'_> {
    fn drop(&mut self) {
        if let Ok(mut set) = self.worker.in_hand.lock() {
            set.remove(&self.cluster);
        }
    }
}

impl Worker {
    /// The driver of the cluster's region.
    pub(crate) async fn driver_for(
        &self,
        cluster: &Cluster,
    ) -> Result<Arc<dyn InfrastructureClient>, HandlerError> {
        self.region_driver(cluster).await.map(|(_, driver)| driver)
    }

    /// The driver of the cluster's region, and which one it is.
    pub(crate) async fn region_driver(
        &self,
        cluster: &Cluster,
    ) -> Result<(Driver, Arc<dyn InfrastructureClient>), HandlerError> {
        let mut conn = self.conn.clone();
        let kind = state::region_driver(&mut conn, &cluster.cloud_provider, &cluster.cloud_region)
            .await?
            .ok_or_else(|| HandlerError::RegionUnknown {
                provider: cluster.cloud_provider.clone(),
                region: cluster.cloud_region.clone(),
            })?;
        self.drivers
            .get(kind)
            .cloned()
            .map(|driver| (kind, driver))
            .ok_or_else(|| HandlerError::DriverNotRunning {
                provider: cluster.cloud_provider.clone(),
                region: cluster.cloud_region.clone(),
                driver: kind,
            })
    }
}

/// What the driver gets for cluster `c` at a shape: handlers pass the shape they make, the
/// reconcile loop the one the cluster has.
pub(crate) fn node_spec(
    c: &Cluster,
    num_nodes: u32,
    resources: NodeResources,
    s: &Secrets,
) -> NodeSpec {
    NodeSpec {
        cluster_id: c.id,
        account_id: c.account_id,
        name: c.name.clone(),
        version: c.version.clone(),
        num_nodes,
        resources,
        read_write: s.read_write.clone(),
        read_only: s.read_only.clone(),
    }
}

/// Aborts a task when dropped, so it cannot outlive the scope that started it.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic".to_owned())
}

/// Runs one command while holding its cluster's lease.
pub async fn handle(worker: &Worker, envelope: &CommandEnvelope) -> Result<Outcome, HandlerError> {
    let cluster = envelope.command.cluster_id();
    let Some(_in_hand) = InHand::take(worker, cluster) else {
        return Err(HandlerError::Busy);
    };
    let mut conn = worker.conn.clone();
    let Some(lease) = Lease::acquire(&mut conn, cluster, &worker.holder, worker.lease_ttl).await?
    else {
        return Err(HandlerError::Busy);
    };
    // The lease is renewed only while the handler runs: the renewing task is aborted when
    // this scope ends however it ends (a panic included), and a lease that could not be
    // renewed stops the handler, since another worker may now act on the cluster.
    let (lost_tx, lost_rx) = tokio::sync::oneshot::channel::<()>();
    let renewing = AbortOnDrop(tokio::spawn({
        let mut conn = conn.clone();
        let (key_holder, ttl) = (worker.holder.clone(), worker.lease_ttl);
        let lease_for_renew = Lease::held(cluster, &key_holder, ttl);
        async move {
            loop {
                tokio::time::sleep(ttl / 3).await;
                if !matches!(lease_for_renew.renew(&mut conn).await, Ok(true)) {
                    tracing::warn!(%cluster, "lost the cluster lease");
                    let _ = lost_tx.send(());
                    return;
                }
            }
        }
    }));
    let work = std::panic::AssertUnwindSafe(async {
        crate::crash::panic_once("handler");
        match &envelope.command {
            Command::Provision(c) => provision::run(worker, c).await,
            Command::Resize(c) => resize::run(worker, c).await,
            Command::Deprovision(c) => deprovision::run(worker, c).await,
        }
    })
    .catch_unwind();
    let lost = async {
        if lost_rx.await.is_err() {
            // The renewing task ended without losing the lease: it never does, but a
            // dropped sender must not read as a loss.
            std::future::pending::<()>().await;
        }
    };
    let result = tokio::select! {
        done = work => done.unwrap_or_else(|panic| {
            let what = panic_message(panic.as_ref());
            tracing::error!(%cluster, panic = %what, "the command's handler panicked; it will be retried");
            Err(HandlerError::Panic(what))
        }),
        () = lost => Err(HandlerError::LeaseLost),
    };
    drop(renewing);
    if let Err(e) = lease.release(&mut conn).await {
        tracing::warn!(%cluster, error = %e, "cannot release the cluster lease; it will expire");
    }
    result
}

#[cfg(test)]
mod tests {
    use std::error::Error as _;

    use contract::qdrant::ApiError;

    use super::*;

    fn io(what: &str) -> DriverError {
        DriverError::Io {
            what: what.into(),
            source: std::io::Error::other("disk full"),
        }
    }

    #[test]
    fn each_error_knows_its_kind_and_whether_to_retry() {
        let cases: [(HandlerError, &str, bool); 9] = [
            (HandlerError::Busy, "busy", true),
            (
                HandlerError::from(redis::RedisError::from(std::io::Error::other("refused"))),
                "redis",
                true,
            ),
            (HandlerError::from(io("cannot save")), "io", true),
            (
                HandlerError::from(DriverError::Unsupported("no")),
                "unsupported",
                false,
            ),
            (
                HandlerError::from(DrainError::WouldLoseData {
                    reason: "collection `a` has one replica".into(),
                }),
                "drain_refused",
                false,
            ),
            (
                HandlerError::from(DrainError::from(ApiError::Unreachable {
                    node: "n1".into(),
                    path: "/cluster".into(),
                    reason: "timed out".into(),
                })),
                "qdrant_api",
                true,
            ),
            (HandlerError::Panic("boom".into()), "panic", true),
            (HandlerError::LeaseLost, "lease_lost", true),
            (HandlerError::NoSecrets, "secrets_missing", false),
        ];
        for (e, kind, retryable) in cases {
            assert_eq!(e.kind(), kind, "{e}");
            assert_eq!(e.retryable(), retryable, "{e}");
        }
    }

    #[test]
    fn a_wrapped_error_keeps_its_cause_as_the_source() {
        // The driver adds no words of its own: its cause is the handler error's source.
        let e = HandlerError::from(io("cannot save the node's state"));
        assert_eq!(e.to_string(), "cannot save the node's state: disk full");
        let source = e.source().expect("a source");
        assert_eq!(source.to_string(), "disk full");
        assert!(source.downcast_ref::<std::io::Error>().is_some());

        let e = HandlerError::from(redis::RedisError::from(std::io::Error::other("refused")));
        assert!(e.to_string().starts_with("redis: "), "{e}");
        assert!(e.source().unwrap().is::<redis::RedisError>());

        let e = HandlerError::from(DrainError::from(ApiError::Refused {
            node: "n1".into(),
            path: "/cluster/peer/7".into(),
            status: 500,
            message: "raft busy".into(),
        }));
        assert!(e.to_string().contains("raft busy"), "{e}");
        assert!(e.source().unwrap().is::<ApiError>());

        let e = HandlerError::UnreadableJson {
            what: "nodes of the cluster",
            source: serde_json::from_str::<u32>("x").unwrap_err(),
        };
        assert!(e.source().unwrap().is::<serde_json::Error>());
        assert!(!e.retryable());
    }

    #[test]
    fn reasons_read_as_before() {
        let unknown = HandlerError::RegionUnknown {
            provider: "aws".into(),
            region: "eu-west-1".into(),
        };
        assert_eq!(
            unknown.to_string(),
            "region aws/eu-west-1 is not registered"
        );
        let missing = HandlerError::DriverNotRunning {
            provider: "aws".into(),
            region: "eu-west-1".into(),
            driver: Driver::Kubernetes,
        };
        assert_eq!(
            missing.to_string(),
            "region aws/eu-west-1 uses the kubernetes driver, which this worker does not run: \
             start Nebula with access to a Kubernetes API"
        );
        let timeout = DriverError::StatefulSetNotReady {
            namespace: "lyra-x".into(),
            waited: Duration::from_secs(120),
        };
        assert_eq!(
            timeout.to_string(),
            "the StatefulSet in lyra-x was not ready after 120s: see `kubectl -n lyra-x \
             describe statefulset qdrant`"
        );
        assert_eq!(
            HandlerError::from(timeout).kind(),
            "driver_timeout",
            "a driver's kind is the handler error's"
        );
    }
}
