//! The route record: everything a gateway needs to serve one cluster, and nothing more.
//!
//! Nebula writes a route when a cluster becomes reachable and publishes it; every GateKeeper
//! holds the records in memory and answers requests from them alone. Upstream credentials
//! travel sealed (see [`crate::seal`]): a route in Redis, on pub/sub or in a log line never
//! reveals a secret.

use serde::{Deserialize, Serialize};

use crate::cluster::Phase;
use crate::ids::{AccountId, ClusterId};
use crate::seal::Sealed;

/// One Qdrant node's addresses, as `host:port`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeEndpoint {
    /// The node's HTTP (REST) address.
    pub rest: String,
    /// The node's gRPC address (h2c).
    pub grpc: String,
}

/// The cluster's own upstream credentials, sealed under the platform key. The read-write
/// secret also keys the cluster's API-key signatures and the JWTs GateKeeper mints for
/// collection-scoped keys (Qdrant signs JWTs with its read-write key).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpstreamCredentials {
    pub read_write: Sealed,
    pub read_only: Sealed,
}

/// Per-cluster limits. `None` means "the gateway's configured default".
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateLimits {
    /// Sustained requests per second for one API key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_rps: Option<u32>,
    /// Requests one API key may send at once above its sustained rate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_burst: Option<u32>,
    /// Sustained requests per second for the whole cluster.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster_rps: Option<u32>,
    /// Burst above the cluster's sustained rate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster_burst: Option<u32>,
    /// Requests in flight to the cluster at once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_in_flight: Option<u32>,
}

/// What a gateway serves one cluster from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteRecord {
    pub cluster_id: ClusterId,
    pub account_id: AccountId,
    /// The canonical endpoint host, `<id>.<region>.<provider>.<tld>`.
    pub host: String,
    pub phase: Phase,
    pub nodes: Vec<NodeEndpoint>,
    pub credentials: UpstreamCredentials,
    #[serde(default)]
    pub limits: RateLimits,
    /// Taken from one platform-wide counter on every write, so it increases monotonically
    /// across all routes: a gateway ignores any record older than the one it holds.
    pub version: u64,
}

impl RouteRecord {
    /// Whether `other` should replace `self` in a gateway's table.
    pub fn is_superseded_by(&self, other: &RouteRecord) -> bool {
        other.version > self.version
    }
}
