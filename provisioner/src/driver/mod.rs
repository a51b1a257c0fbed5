//! `InfrastructureClient`: the contract every infrastructure driver meets.
//!
//! A driver turns a cluster's desired shape into running Qdrant nodes and back. Every call is
//! idempotent: a retried or replayed command calls it again with the same spec and must find
//! and keep what the first call made, never make a second set of nodes.

pub mod helm;
pub mod kubernetes;
pub mod local;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use contract::ids::{AccountId, ClusterId};
use contract::keyscheme::ClusterSecret;
use contract::region::Driver;
use contract::resources::NodeResources;
use contract::route::NodeEndpoint;

/// What a driver needs to build or change a cluster.
#[derive(Debug, Clone)]
pub struct NodeSpec {
    pub cluster_id: ClusterId,
    pub account_id: AccountId,
    pub name: String,
    /// The Qdrant version, e.g. `v1.18.3`.
    pub version: String,
    pub num_nodes: u32,
    pub resources: NodeResources,
    /// Qdrant's `api_key`: full access, and the key JWTs are signed with.
    pub read_write: ClusterSecret,
    /// Qdrant's `read_only_api_key`.
    pub read_only: ClusterSecret,
}

/// How a cluster's nodes are doing, as the driver sees them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Observation {
    pub desired: u32,
    pub ready: u32,
}

/// Why a driver call failed. Each variant says what failed and keeps the underlying error as
/// its source; [`DriverError::retryable`] says whether the same call may succeed later, and
/// [`DriverError::kind`] names the failure for metrics. The text is shown to users as the
/// reason of a parked command or a failed cluster: it says what to look at, never a secret.
#[derive(Debug, thiserror::Error)]
pub enum DriverError {
    /// The Kubernetes API server could not be reached, or its answer could not be read.
    #[error("kubernetes API unreachable ({what}): {source}")]
    KubernetesUnreachable {
        what: String,
        #[source]
        source: kube::Error,
    },
    /// The API server answered with an error status (forbidden, conflict, server error...).
    #[error("kubernetes API error on the {what}: {message} ({code})")]
    KubernetesApi {
        what: String,
        code: u16,
        message: String,
        #[source]
        source: kube::Error,
    },
    /// The API server refused the object itself (422): the same spec is refused again.
    #[error("kubernetes refused the {what}: {message}")]
    KubernetesInvalid {
        what: String,
        message: String,
        #[source]
        source: kube::Error,
    },
    /// A watch broke while the driver waited on an object.
    #[error("watching {what} failed: {source}")]
    KubernetesWatch {
        what: String,
        #[source]
        source: kube::runtime::wait::Error,
    },
    #[error(
        "the StatefulSet in {namespace} was not ready after {}s: see `kubectl -n {namespace} \
         describe statefulset {}`",
        .waited.as_secs(),
        kubernetes::manifests::NAME
    )]
    StatefulSetNotReady { namespace: String, waited: Duration },
    #[error(
        "namespace {namespace} was not gone after {}s: look for finalizers with `kubectl get \
         namespace {namespace} -o yaml`",
        .waited.as_secs()
    )]
    NamespaceNotGone { namespace: String, waited: Duration },
    /// Local nodes that did not answer their readiness check in time, with their logs' tails.
    #[error(
        "nodes {nodes:?} were not ready after {}s (logs under {}): {logs}",
        .waited.as_secs(),
        .log_dir.display()
    )]
    NodesNotReady {
        nodes: Vec<u32>,
        waited: Duration,
        log_dir: PathBuf,
        logs: String,
    },
    /// A program the driver runs is not installed where it looks.
    #[error("{program} was not found ({path:?}): {hint}")]
    ProgramMissing {
        program: &'static str,
        path: PathBuf,
        hint: &'static str,
        #[source]
        source: std::io::Error,
    },
    /// A file, directory, port or process operation failed.
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
    /// A blocking task of the driver panicked or was cancelled.
    #[error("{what} failed: {source}")]
    Task {
        what: &'static str,
        #[source]
        source: tokio::task::JoinError,
    },
    /// `helm` ran and failed; `stderr` is the end of what it said.
    #[error("helm {command} failed ({status}): {stderr}")]
    Helm {
        command: String,
        status: std::process::ExitStatus,
        stderr: String,
    },
    #[error("cannot encode {what}: {source}")]
    Encode {
        what: &'static str,
        #[source]
        source: serde_json::Error,
    },
    /// The driver cannot do this at all.
    #[error("{0}")]
    Unsupported(&'static str),
}

impl DriverError {
    /// Whether the same call may succeed later (a node slow to start, an API server down, a
    /// binary not installed yet). `false`: retrying cannot help with the same spec.
    pub fn retryable(&self) -> bool {
        !matches!(
            self,
            Self::KubernetesInvalid { .. } | Self::Encode { .. } | Self::Unsupported(_)
        )
    }

    /// A short, stable name of what failed, for metric labels.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::KubernetesUnreachable { .. } => "kubernetes_unreachable",
            Self::KubernetesApi { .. } => "kubernetes_api",
            Self::KubernetesInvalid { .. } => "kubernetes_invalid",
            Self::KubernetesWatch { .. } => "kubernetes_watch",
            Self::StatefulSetNotReady { .. }
            | Self::NamespaceNotGone { .. }
            | Self::NodesNotReady { .. } => "driver_timeout",
            Self::ProgramMissing { .. } => "program_missing",
            Self::Io { .. } => "io",
            Self::Task { .. } => "driver_task",
            Self::Helm { .. } => "helm",
            Self::Encode { .. } => "encode",
            Self::Unsupported(_) => "unsupported",
        }
    }
}

/// What [`InfrastructureClient::repair`] found drifted and put back; empty when nothing had.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Repair {
    pub repaired: Vec<Repaired>,
}

impl Repair {
    pub fn is_empty(&self) -> bool {
        self.repaired.is_empty()
    }
}

/// One object a repair put back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Repaired {
    /// What sort of object, in lower case (`statefulset`, `service`, `secret`, `node`...):
    /// one of a few fixed names, since it is a metric label.
    pub object: &'static str,
    /// Which one (`qdrant-headless`, `node-2`).
    pub name: String,
    pub drift: Drift,
}

/// How an object had drifted from what the driver made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Drift {
    /// It was gone, and is made again.
    Missing,
    /// Something else changed what the driver set, and it is set back.
    Changed,
    /// Scaled by hand to `from` replicas, and set back to the cluster's `to`.
    Scaled { from: u32, to: u32 },
    /// A node whose process was not running and that nothing was restarting: started again.
    Stopped,
}

impl std::fmt::Display for Repaired {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (object, name) = (self.object, &self.name);
        match self.drift {
            Drift::Missing => write!(f, "{object} {name} was missing"),
            Drift::Changed => write!(f, "{object} {name} had been changed"),
            Drift::Scaled { from, to } => {
                write!(f, "{object} {name} had been scaled to {from} (wants {to})")
            }
            Drift::Stopped => write!(f, "{object} {name} was not running"),
        }
    }
}

#[async_trait]
pub trait InfrastructureClient: Send + Sync {
    /// Makes the cluster exist with `spec.num_nodes` ready nodes; returns their addresses.
    async fn provision(&self, spec: &NodeSpec) -> Result<Vec<NodeEndpoint>, DriverError>;

    /// Changes the cluster to `spec.num_nodes` nodes of `spec.resources`; returns the
    /// addresses of the nodes it now has, all ready.
    async fn resize(&self, spec: &NodeSpec) -> Result<Vec<NodeEndpoint>, DriverError>;

    /// Removes everything the driver made for the cluster. Done when it returns.
    async fn deprovision(&self, cluster: ClusterId) -> Result<(), DriverError>;

    /// How many of the cluster's nodes are ready.
    async fn observe(&self, cluster: ClusterId) -> Result<Observation, DriverError>;

    /// Re-establishes what the driver made for the cluster's current shape (`spec`) where it
    /// drifted (an object deleted or changed behind the driver's back, a node nobody
    /// restarts), without touching data, and says what it put back. The reconcile loop calls
    /// it under the cluster's lease; it must not wait for readiness. By default a driver has
    /// nothing it can repair.
    async fn repair(&self, _spec: &NodeSpec) -> Result<Repair, DriverError> {
        Ok(Repair::default())
    }
}

/// The drivers this worker runs, by the name regions use.
#[derive(Clone, Default)]
pub struct Drivers {
    by_kind: HashMap<Driver, Arc<dyn InfrastructureClient>>,
}

impl Drivers {
    pub fn with(mut self, kind: Driver, driver: Arc<dyn InfrastructureClient>) -> Self {
        self.by_kind.insert(kind, driver);
        self
    }

    pub fn get(&self, kind: Driver) -> Option<&Arc<dyn InfrastructureClient>> {
        self.by_kind.get(&kind)
    }
}
