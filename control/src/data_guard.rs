//! What Orion asks a cluster's own nodes before it accepts a change that removes nodes: would
//! the nodes that stay hold every copy the collections keep? A shape that cannot is refused
//! with 422 and the reason, before anything is queued. When the nodes cannot be asked (down,
//! slow), the change is accepted: Nebula asks again before it moves or stops anything.

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

/// Why `cluster` cannot shrink to `keep` nodes, or `None` (also when its nodes cannot say).
pub async fn shrink_blocker(
    state: &AppState,
    cluster: &Cluster,
    keep: u32,
) -> ApiResult<Option<String>> {
    let key = keyspace::cluster(cluster.id);
    let stored: Option<String> = state
        .store
        .run(|mut c| async move { c.hget(key, "nodes").await })
        .await?;
    let Some(first) = stored
        .and_then(|json| serde_json::from_str::<Vec<NodeEndpoint>>(&json).ok())
        .and_then(|nodes| nodes.into_iter().next())
    else {
        return Ok(None);
    };
    let Some(secret) = read_write_secret(state, cluster.id).await? else {
        return Ok(None);
    };
    let api = QdrantApi::new(&secret, ASK_TIMEOUT);
    match api.shrink_blocker(&first, keep as usize).await {
        Ok(blocker) => Ok(blocker),
        Err(e) => {
            tracing::warn!(cluster = %cluster.id, error = %e,
                "cannot ask the cluster whether it can shrink; Nebula will before it acts");
            Ok(None)
        }
    }
}
