//! What Orion asks a cluster's own nodes before it accepts a change that removes nodes: would
//! the nodes that stay hold every copy the collections keep, and would the data fit on their
//! disks? A shape that cannot is refused with 422 and the reason, before anything is queued.
//! When the nodes cannot be asked (down, slow), the change is accepted: Nebula asks again
//! about the copies before it moves or stops anything.
//!
//! The data's size is what Qdrant's telemetry counts on each node (vectors and payloads of
//! its shard replicas); indexes and the WAL come on top, so the kept nodes must hold it
//! within [`contract::qdrant::SHRINK_DISK_SHARE`] of their disk.

use std::time::Duration;

use contract::cluster::Cluster;
use contract::keyspace;
use contract::qdrant::QdrantApi;
use contract::route::NodeEndpoint;
use redis::AsyncCommands;

use crate::AppState;
use crate::problem::ApiResult;
use crate::routes::api_keys::read_write_secret;

/// How long a request waits for the cluster's answer.
const ASK_TIMEOUT: Duration = Duration::from_secs(3);

/// Why `cluster` cannot shrink to `keep` nodes of `disk_gib` GiB, or `None` (also when its
/// nodes cannot say).
pub async fn shrink_blocker(
    state: &AppState,
    cluster: &Cluster,
    keep: u32,
    disk_gib: u32,
) -> ApiResult<Option<String>> {
    let key = keyspace::cluster(cluster.id);
    let stored: Option<String> = state
        .store
        .run(|mut c| async move { c.hget(key, "nodes").await })
        .await?;
    let nodes = stored
        .and_then(|json| serde_json::from_str::<Vec<NodeEndpoint>>(&json).ok())
        .unwrap_or_default();
    let Some(first) = nodes.first() else {
        return Ok(None);
    };
    let Some(secret) = read_write_secret(state, cluster.id).await? else {
        return Ok(None);
    };
    let api = QdrantApi::new(&secret, ASK_TIMEOUT);
    match api.shrink_blocker(first, keep as usize).await {
        Ok(Some(blocker)) => return Ok(Some(blocker)),
        Ok(None) => {}
        Err(e) => {
            tracing::warn!(cluster = %cluster.id, error = %e,
                "cannot ask the cluster whether it can shrink; Nebula will before it acts");
            return Ok(None);
        }
    }
    let mut data_bytes = 0u64;
    for node in &nodes {
        match api.local_data_bytes(node).await {
            Ok(bytes) => data_bytes = data_bytes.saturating_add(bytes),
            Err(e) => {
                tracing::warn!(cluster = %cluster.id, node = %node.rest, error = %e,
                    "cannot ask a node how much data it holds; the shrink is not checked for disk");
                return Ok(None);
            }
        }
    }
    Ok(contract::qdrant::disk_blocker(data_bytes, keep, disk_gib))
}
