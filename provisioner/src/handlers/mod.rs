//! Command handlers. Each is idempotent: it looks at the cluster's recorded state first and
//! does only what is still missing, so a redelivered or replayed command never makes a
//! second cluster or a second set of nodes.

mod deprovision;
mod provision;
mod resize;

use std::sync::Arc;
use std::time::Duration;

use futures_util::FutureExt;

use contract::cluster::Cluster;
use contract::command::{Command, CommandEnvelope};
use contract::region::Driver;
use contract::resources::NodeResources;
use contract::seal::Keyring;
use redis::aio::ConnectionManager;

use crate::driver::{DriverError, Drivers, InfrastructureClient, NodeSpec};
use crate::lease::Lease;
use crate::secrets::Secrets;
use crate::state;

/// Why a command did not complete this time.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HandlerError {
    /// Try again later; after the last attempt the command is parked with this reason.
    #[error("{0}")]
    Retry(String),
    /// Another worker is acting on the cluster right now: wait, without counting an attempt.
    #[error("another worker is acting on this cluster")]
    Busy,
    /// Retrying cannot help: park the command now.
    #[error("{0}")]
    Permanent(String),
}

impl From<redis::RedisError> for HandlerError {
    fn from(e: redis::RedisError) -> Self {
        HandlerError::Retry(format!("redis: {e}"))
    }
}

impl From<DriverError> for HandlerError {
    fn from(e: DriverError) -> Self {
        match e {
            DriverError::Retryable(r) => HandlerError::Retry(r),
            DriverError::Permanent(r) => HandlerError::Permanent(r),
        }
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
        let mut conn = self.conn.clone();
        let kind = state::region_driver(&mut conn, &cluster.cloud_provider, &cluster.cloud_region)
            .await?
            .ok_or_else(|| {
                HandlerError::Retry(format!(
                    "region {}/{} is not registered",
                    cluster.cloud_provider, cluster.cloud_region
                ))
            })?;
        self.drivers.get(kind).cloned().ok_or_else(|| {
            HandlerError::Retry(format!(
                "region {}/{} uses the {kind} driver, which this worker does not run{}",
                cluster.cloud_provider,
                cluster.cloud_region,
                match kind {
                    Driver::Kubernetes => ": start Nebula with access to a Kubernetes API",
                    Driver::Helm => ": start Nebula where `helm` is installed",
                    Driver::Local => "",
                }
            ))
        })
    }
}

fn node_spec(c: &Cluster, num_nodes: u32, resources: NodeResources, s: &Secrets) -> NodeSpec {
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
            Err(HandlerError::Retry(format!("the handler failed unexpectedly ({what}); retrying")))
        }),
        () = lost => Err(HandlerError::Retry(
            "lost the cluster's lease (Redis unreachable for longer than the lease); retrying".into(),
        )),
    };
    drop(renewing);
    if let Err(e) = lease.release(&mut conn).await {
        tracing::warn!(%cluster, error = %e, "cannot release the cluster lease; it will expire");
    }
    result
}
