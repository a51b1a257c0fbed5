//! `InfrastructureClient`: the contract every infrastructure driver meets.
//!
//! A driver turns a cluster's desired shape into running Qdrant nodes and back. Every call is
//! idempotent: a retried or replayed command calls it again with the same spec and must find
//! and keep what the first call made, never make a second set of nodes.

pub mod helm;
pub mod kubernetes;
pub mod local;

use std::collections::HashMap;
use std::sync::Arc;

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

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DriverError {
    /// Worth retrying: the cause may go away (a node slow to start, an API server down,
    /// a binary not installed yet).
    #[error("{0}")]
    Retryable(String),
    /// Retrying cannot help with the same spec.
    #[error("{0}")]
    Permanent(String),
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
