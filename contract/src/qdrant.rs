//! The parts of Qdrant's own REST API Lyra speaks to a cluster's nodes (feature `qdrant-api`):
//! the Raft peers (`/cluster`), the collections and their replication factor, where each
//! shard's replicas live (`/collections/{c}/cluster`), and the operations that move them.
//! Nebula uses it to change a cluster's shape without losing data; Orion to refuse, before it
//! accepts a change, a shape that could not hold the data. Calls go straight to a node with
//! the cluster's read-write secret, as any Qdrant admin client would.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::keyscheme::ClusterSecret;
use crate::route::NodeEndpoint;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

/// Why a call to a node did not give an answer to act on.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ApiError {
    /// The node did not answer (down, starting, or too slow).
    #[error("node {node} did not answer {path}: {reason}")]
    Unreachable {
        node: String,
        path: String,
        reason: String,
    },
    /// The node answered with an error status; `message` is Qdrant's own.
    #[error("node {node} refused {path} (HTTP {status}): {message}")]
    Refused {
        node: String,
        path: String,
        status: u16,
        message: String,
    },
    /// The answer was not the shape Qdrant gives.
    #[error("node {node} answered {path} with something unreadable: {reason}")]
    Unreadable {
        node: String,
        path: String,
        reason: String,
    },
}

/// `GET /cluster`.
#[derive(Debug, Clone, Deserialize)]
pub struct ClusterInfo {
    pub status: String,
    #[serde(default)]
    pub peer_id: Option<u64>,
    /// Peer id (as a string key) to its p2p URI.
    #[serde(default)]
    pub peers: BTreeMap<String, Value>,
}

impl ClusterInfo {
    pub fn peer_ids(&self) -> Vec<u64> {
        self.peers.keys().filter_map(|k| k.parse().ok()).collect()
    }
}

#[derive(Debug, Clone, Deserialize)]
pub struct LocalShard {
    pub shard_id: u32,
    pub state: String,
}

#[derive(Debug, Clone, Deserialize)]
pub struct RemoteShard {
    pub shard_id: u32,
    pub peer_id: u64,
    pub state: String,
}

#[derive(Debug, Clone, Deserialize)]
pub struct ShardTransfer {
    pub shard_id: u32,
    pub from: u64,
    pub to: u64,
}

/// `GET /collections/{c}/cluster`, as one node sees the collection.
#[derive(Debug, Clone, Deserialize)]
pub struct CollectionClusterInfo {
    pub peer_id: u64,
    #[serde(default)]
    pub local_shards: Vec<LocalShard>,
    #[serde(default)]
    pub remote_shards: Vec<RemoteShard>,
    #[serde(default)]
    pub shard_transfers: Vec<ShardTransfer>,
}

/// One replica of one shard: where it is and in what state (`Active`, `Partial`, ...).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Replica {
    pub shard_id: u32,
    pub peer_id: u64,
    pub active: bool,
}

impl CollectionClusterInfo {
    /// Every replica of every shard, local and remote, as this node knows them.
    pub fn replicas(&self) -> Vec<Replica> {
        let local = self.local_shards.iter().map(|s| Replica {
            shard_id: s.shard_id,
            peer_id: self.peer_id,
            active: s.state == "Active",
        });
        let remote = self.remote_shards.iter().map(|s| Replica {
            shard_id: s.shard_id,
            peer_id: s.peer_id,
            active: s.state == "Active",
        });
        local.chain(remote).collect()
    }
}

#[derive(Deserialize)]
struct Envelope<T> {
    result: T,
}

/// A client for one cluster's nodes, with its read-write secret.
pub struct QdrantApi {
    http: Client<HttpConnector, Full<Bytes>>,
    secret: String,
    timeout: Duration,
}

impl QdrantApi {
    pub fn new(secret: &ClusterSecret, timeout: Duration) -> Self {
        Self {
            http: Client::builder(TokioExecutor::new()).build_http(),
            secret: secret.expose().to_owned(),
            timeout,
        }
    }

    async fn call<T: DeserializeOwned>(
        &self,
        node: &NodeEndpoint,
        method: http::Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<T, ApiError> {
        let unreachable = |reason: String| ApiError::Unreachable {
            node: node.rest.clone(),
            path: path.to_owned(),
            reason,
        };
        let payload = body.map(|b| b.to_string()).unwrap_or_default();
        let request = http::Request::builder()
            .method(method)
            .uri(format!("http://{}{path}", node.rest))
            .header("api-key", &self.secret)
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from(payload)))
            .map_err(|e| unreachable(e.to_string()))?;
        let exchange = async {
            let response = self
                .http
                .request(request)
                .await
                .map_err(|e| unreachable(e.to_string()))?;
            let status = response.status();
            let bytes = response
                .into_body()
                .collect()
                .await
                .map_err(|e| unreachable(e.to_string()))?
                .to_bytes();
            Ok::<_, ApiError>((status, bytes))
        };
        let (status, bytes) = tokio::time::timeout(self.timeout, exchange)
            .await
            .map_err(|_| unreachable(format!("no answer within {:?}", self.timeout)))??;
        if !status.is_success() {
            // Qdrant's error shape, or its plain-text refusals.
            let message = serde_json::from_slice::<Value>(&bytes)
                .ok()
                .and_then(|v| v["status"]["error"].as_str().map(str::to_owned))
                .unwrap_or_else(|| String::from_utf8_lossy(&bytes).chars().take(300).collect());
            return Err(ApiError::Refused {
                node: node.rest.clone(),
                path: path.to_owned(),
                status: status.as_u16(),
                message,
            });
        }
        serde_json::from_slice::<Envelope<T>>(&bytes)
            .map(|e| e.result)
            .map_err(|e| ApiError::Unreadable {
                node: node.rest.clone(),
                path: path.to_owned(),
                reason: e.to_string(),
            })
    }

    pub async fn cluster(&self, node: &NodeEndpoint) -> Result<ClusterInfo, ApiError> {
        self.call(node, http::Method::GET, "/cluster", None).await
    }

    pub async fn collections(&self, node: &NodeEndpoint) -> Result<Vec<String>, ApiError> {
        #[derive(Deserialize)]
        struct Named {
            name: String,
        }
        #[derive(Deserialize)]
        struct List {
            collections: Vec<Named>,
        }
        let list: List = self
            .call(node, http::Method::GET, "/collections", None)
            .await?;
        Ok(list.collections.into_iter().map(|c| c.name).collect())
    }

    /// The collection's `replication_factor` (1 when Qdrant does not say).
    pub async fn replication_factor(
        &self,
        node: &NodeEndpoint,
        collection: &str,
    ) -> Result<u64, ApiError> {
        let info: Value = self
            .call(
                node,
                http::Method::GET,
                &format!("/collections/{}", encode(collection)),
                None,
            )
            .await?;
        Ok(info["config"]["params"]["replication_factor"]
            .as_u64()
            .unwrap_or(1))
    }

    /// Why a cluster cannot shrink to `keep` nodes without losing a copy its collections
    /// keep: the first collection whose replication factor needs more nodes, in words a
    /// person can act on. `None` when every collection fits.
    pub async fn shrink_blocker(
        &self,
        node: &NodeEndpoint,
        keep: usize,
    ) -> Result<Option<String>, ApiError> {
        for c in self.collections(node).await? {
            let factor = self.replication_factor(node, &c).await?;
            if factor > keep as u64 {
                return Ok(Some(format!(
                    "collection `{c}` keeps {factor} copies of each shard, which {keep} node(s) \
                     cannot hold: lower its replication_factor first (PATCH /collections/{c} \
                     with {{\"params\": {{\"replication_factor\": {keep}}}}}), or keep at \
                     least {factor} nodes"
                )));
            }
        }
        Ok(None)
    }

    /// Bytes of vectors and payloads in the shard replicas this node holds, as Qdrant's own
    /// telemetry counts them (`/telemetry?details_level=3`, per local shard). Indexes, the WAL
    /// and snapshots come on top, so this is the least the node's disk holds.
    pub async fn local_data_bytes(&self, node: &NodeEndpoint) -> Result<u64, ApiError> {
        let telemetry: Value = self
            .call(node, http::Method::GET, "/telemetry?details_level=3", None)
            .await?;
        Ok(local_data_bytes_of(&telemetry))
    }

    pub async fn collection_cluster(
        &self,
        node: &NodeEndpoint,
        collection: &str,
    ) -> Result<CollectionClusterInfo, ApiError> {
        self.call(
            node,
            http::Method::GET,
            &format!("/collections/{}/cluster", encode(collection)),
            None,
        )
        .await
    }

    /// A `POST /collections/{c}/cluster` operation (`move_shard`, `drop_replica`, ...).
    pub async fn shard_operation(
        &self,
        node: &NodeEndpoint,
        collection: &str,
        operation: &Value,
    ) -> Result<(), ApiError> {
        let _: Value = self
            .call(
                node,
                http::Method::POST,
                &format!("/collections/{}/cluster", encode(collection)),
                Some(operation),
            )
            .await?;
        Ok(())
    }

    /// Removes a peer from the Raft cluster. Qdrant refuses while the peer holds shards.
    pub async fn remove_peer(&self, node: &NodeEndpoint, peer: u64) -> Result<(), ApiError> {
        let _: Value = self
            .call(
                node,
                http::Method::DELETE,
                &format!("/cluster/peer/{peer}"),
                None,
            )
            .await?;
        Ok(())
    }
}

/// A collection name as one path segment.
fn encode(name: &str) -> String {
    percent_encoding::utf8_percent_encode(name, percent_encoding::NON_ALPHANUMERIC).to_string()
}

/// The sum of `vectors_size_bytes` and `payloads_size_bytes` over the local shards of a
/// telemetry answer (its `result`).
pub fn local_data_bytes_of(telemetry: &Value) -> u64 {
    let field = |v: &Value, name: &str| v[name].as_u64().unwrap_or(0);
    telemetry["collections"]["collections"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|c| c["shards"].as_array().into_iter().flatten())
        .map(|shard| {
            let local = &shard["local"];
            field(local, "vectors_size_bytes") + field(local, "payloads_size_bytes")
        })
        .sum()
}

/// The share of the disk the data may fill on the nodes that stay: the rest is for indexes,
/// the WAL, optimizer copies and the writes that follow.
pub const SHRINK_DISK_SHARE: f64 = 0.8;

/// Why `data_bytes` (every node's vectors and payloads, replicas included) cannot live on
/// `keep` nodes of `disk_gib` GiB each, or `None` when it fits within [`SHRINK_DISK_SHARE`].
pub fn disk_blocker(data_bytes: u64, keep: u32, disk_gib: u32) -> Option<String> {
    const GIB: f64 = (1u64 << 30) as f64;
    let room = f64::from(keep) * f64::from(disk_gib) * GIB * SHRINK_DISK_SHARE;
    // Counting bytes: f64 is exact far beyond any disk.
    #[allow(clippy::cast_precision_loss)]
    let data = data_bytes as f64;
    (data > room).then(|| {
        format!(
            "the collections hold {:.1} GiB of vectors and payloads, more than {keep} node(s) of \
             {disk_gib} GiB can keep with room for indexes and the WAL ({:.0}% of their disk): \
             keep more nodes, give each more disk, or delete data first",
            data / GIB,
            SHRINK_DISK_SHARE * 100.0
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_data_is_read_from_real_qdrants_telemetry_shape() {
        // Trimmed from Qdrant 1.18.3's `/telemetry?details_level=3`: one collection of 2,000
        // 128-d points, one local shard, and a remote shard that counts nothing here.
        let telemetry: Value = serde_json::from_str(
            r#"{"id": "x", "collections": {"number_of_collections": 1, "collections": [
                {"id": "c", "shards": [
                    {"id": 0, "key": null, "local": {"variant_name": "local shard",
                     "status": "green", "vectors_size_bytes": 1024000,
                     "payloads_size_bytes": 2048, "num_points": 2000}, "remote": []},
                    {"id": 1, "key": null, "local": null, "remote": [{"shard_id": 1}]}
                ], "transfers": []}]}}"#,
        )
        .unwrap_or_default();
        assert_eq!(local_data_bytes_of(&telemetry), 1_026_048);
        assert_eq!(local_data_bytes_of(&Value::Null), 0);
    }

    #[test]
    fn a_shrink_is_refused_only_when_the_data_cannot_fit_the_nodes_left() {
        let gib = 1u64 << 30;
        assert_eq!(disk_blocker(0, 1, 1), None);
        // 80% of 2 x 10 GiB is 16 GiB.
        assert_eq!(disk_blocker(16 * gib, 2, 10), None);
        let refused = disk_blocker(16 * gib + 1, 2, 10).unwrap_or_default();
        assert!(
            refused.contains("16.0 GiB") && refused.contains("2 node(s) of 10 GiB"),
            "{refused}"
        );
        assert!(disk_blocker(17 * gib, 3, 10).is_none());
    }
}
