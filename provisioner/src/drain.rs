//! Taking nodes out of a Qdrant cluster without losing a point. Before a node leaves, every
//! shard replica it holds is moved to a node that stays (or dropped where a staying node
//! already has that shard, active), the transfers are awaited, and the peer is removed from
//! the Raft cluster; only then may the driver stop the process and free its storage.
//!
//! Every step is derived again from what Qdrant reports, never from a saved plan: a worker
//! that crashed anywhere in here, or a retried command, looks at the cluster and does only
//! what is still missing. Peers that leave are those in the Raft cluster that are not one of
//! the staying nodes, so a leaving node need not even answer.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use contract::route::NodeEndpoint;
use serde_json::json;

use contract::qdrant::{ApiError, QdrantApi, Replica};

/// Why the nodes could not be taken out (yet). [`DrainError::retryable`] is `false` when
/// the data cannot live on the nodes that stay; otherwise Qdrant could not be asked, or did
/// not finish in time, and trying again resumes where this attempt stopped.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DrainError {
    #[error("a cluster of {nodes} nodes cannot keep {keep}")]
    CannotKeep { nodes: usize, keep: usize },
    /// Qdrant's own account of why the staying nodes cannot hold the data.
    #[error("{reason}")]
    WouldLoseData { reason: String },
    #[error("taking nodes out of the Qdrant cluster: {0}")]
    Qdrant(#[from] ApiError),
    #[error("node {node} did not say its peer id")]
    NoPeerId { node: String },
    #[error(
        "collection `{collection}`: still waiting after {} s for {waiting_for}",
        STEP_TIMEOUT.as_secs()
    )]
    StepTimedOut {
        collection: String,
        waiting_for: String,
    },
    #[error("peers {peers:?} are still in the cluster {} s after their removal", .waited.as_secs())]
    PeersRemain { peers: Vec<u64>, waited: Duration },
}

impl DrainError {
    pub fn retryable(&self) -> bool {
        !matches!(self, Self::CannotKeep { .. } | Self::WouldLoseData { .. })
    }

    /// A short, stable name of what failed, for metric labels.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::CannotKeep { .. } | Self::WouldLoseData { .. } => "drain_refused",
            Self::Qdrant(_) | Self::NoPeerId { .. } => "qdrant_api",
            Self::StepTimedOut { .. } | Self::PeersRemain { .. } => "drain_timeout",
        }
    }
}

/// What to do next for one collection, given where its replicas are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Move the replica of `shard` from a leaving peer to a staying one.
    Move { shard: u32, from: u64, to: u64 },
    /// A staying peer already holds `shard`, active: drop the leaving copy.
    Drop { shard: u32, peer: u64 },
    /// A replica on a leaving peer has no active copy to lean on yet: wait.
    Wait,
    /// No replica is left on a leaving peer.
    Done,
}

/// The next step for a collection whose replicas are `replicas`, when `staying` stay.
/// Moves go to the staying peer holding the fewest replicas of the collection, so shards
/// spread over the nodes that remain.
pub fn next_step(replicas: &[Replica], staying: &BTreeSet<u64>) -> Step {
    let Some(leaving) = replicas.iter().find(|r| !staying.contains(&r.peer_id)) else {
        return Step::Done;
    };
    let shard = leaving.shard_id;
    let holders: BTreeSet<u64> = replicas
        .iter()
        .filter(|r| r.shard_id == shard)
        .map(|r| r.peer_id)
        .collect();
    let mut load: BTreeMap<u64, usize> = staying.iter().map(|p| (*p, 0)).collect();
    for r in replicas {
        if let Some(n) = load.get_mut(&r.peer_id) {
            *n += 1;
        }
    }
    let target = load
        .iter()
        .filter(|(peer, _)| !holders.contains(peer))
        .min_by_key(|(peer, n)| (**n, **peer))
        .map(|(peer, _)| *peer);
    match target {
        Some(to) if leaving.active => Step::Move {
            shard,
            from: leaving.peer_id,
            to,
        },
        Some(_) => Step::Wait,
        None => {
            let covered = replicas
                .iter()
                .any(|r| r.shard_id == shard && r.active && staying.contains(&r.peer_id));
            if covered {
                Step::Drop {
                    shard,
                    peer: leaving.peer_id,
                }
            } else {
                Step::Wait
            }
        }
    }
}

/// How long one transfer (or the wait for an inactive replica) may take before the command
/// is retried. The transfer goes on inside Qdrant meanwhile; the retry waits for it.
const STEP_TIMEOUT: Duration = Duration::from_secs(600);
/// How long the removal of the leaving peers may take to be committed by Raft.
const PEER_REMOVAL_TIMEOUT: Duration = Duration::from_secs(30);
const POLL: Duration = Duration::from_millis(200);

/// Takes every node after the first `keep` of `nodes` out of the cluster, keeping all data on
/// the first `keep`. `progress` is told "moved/total" as replicas leave.
pub async fn drain(
    api: &QdrantApi,
    nodes: &[NodeEndpoint],
    keep: usize,
    mut progress: impl FnMut(usize, usize),
) -> Result<(), DrainError> {
    let staying_nodes =
        nodes
            .get(..keep)
            .filter(|s| !s.is_empty())
            .ok_or(DrainError::CannotKeep {
                nodes: nodes.len(),
                keep,
            })?;
    let anchor = &staying_nodes[0];
    let mut staying = BTreeSet::new();
    for node in staying_nodes {
        let info = api.cluster(node).await?;
        if info.status != "enabled" {
            // A single node without cluster mode: nothing to take out.
            return Ok(());
        }
        let id = info.peer_id.ok_or_else(|| DrainError::NoPeerId {
            node: node.rest.clone(),
        })?;
        staying.insert(id);
    }
    let leaving: Vec<u64> = api
        .cluster(anchor)
        .await?
        .peer_ids()
        .into_iter()
        .filter(|p| !staying.contains(p))
        .collect();
    if leaving.is_empty() {
        return Ok(());
    }
    if let Some(reason) = api.shrink_blocker(anchor, keep).await? {
        return Err(DrainError::WouldLoseData { reason });
    }
    let collections = api.collections(anchor).await?;
    let mut total = 0;
    for c in &collections {
        let info = api.collection_cluster(anchor, c).await?;
        total += info
            .replicas()
            .iter()
            .filter(|r| !staying.contains(&r.peer_id))
            .count();
    }
    let mut moved = 0;
    progress(moved, total);
    for c in &collections {
        let mut waiting_since = Instant::now();
        loop {
            let info = api.collection_cluster(anchor, c).await?;
            if !info.shard_transfers.is_empty() {
                let busy: Vec<String> = info
                    .shard_transfers
                    .iter()
                    .map(|t| format!("shard {} from peer {} to {}", t.shard_id, t.from, t.to))
                    .collect();
                give_up_after(waiting_since, c, &busy.join(", "))?;
                tokio::time::sleep(POLL).await;
                continue;
            }
            let op = match next_step(&info.replicas(), &staying) {
                Step::Done => break,
                Step::Wait => {
                    give_up_after(waiting_since, c, "a replica to become active")?;
                    tokio::time::sleep(POLL).await;
                    continue;
                }
                Step::Move { shard, from, to } => json!({"move_shard": {
                    "shard_id": shard, "from_peer_id": from, "to_peer_id": to}}),
                Step::Drop { shard, peer } => {
                    json!({"drop_replica": {"shard_id": shard, "peer_id": peer}})
                }
            };
            api.shard_operation(anchor, c, &op).await?;
            crate::crash::point("during_drain");
            moved += 1;
            progress(moved.min(total), total);
            waiting_since = Instant::now();
        }
    }
    for peer in leaving {
        match api.remove_peer(anchor, peer).await {
            Ok(()) => {}
            // Removed already (a retry after a crash): the peer is unknown now.
            Err(ApiError::Refused { status: 404, .. }) => {}
            Err(e) => return Err(e.into()),
        }
    }
    // Removal is a Raft operation: wait until it is committed.
    let since = Instant::now();
    loop {
        let left = api.cluster(anchor).await?.peer_ids();
        if left.iter().all(|p| staying.contains(p)) {
            return Ok(());
        }
        if since.elapsed() > PEER_REMOVAL_TIMEOUT {
            return Err(DrainError::PeersRemain {
                peers: left.into_iter().filter(|p| !staying.contains(p)).collect(),
                waited: PEER_REMOVAL_TIMEOUT,
            });
        }
        tokio::time::sleep(POLL).await;
    }
}

fn give_up_after(since: Instant, collection: &str, what: &str) -> Result<(), DrainError> {
    if since.elapsed() > STEP_TIMEOUT {
        return Err(DrainError::StepTimedOut {
            collection: collection.to_owned(),
            waiting_for: what.to_owned(),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(shard: u32, peer: u64, active: bool) -> Replica {
        Replica {
            shard_id: shard,
            peer_id: peer,
            active,
        }
    }

    fn set(peers: &[u64]) -> BTreeSet<u64> {
        peers.iter().copied().collect()
    }

    #[test]
    fn a_replica_moves_to_the_least_loaded_staying_peer_that_lacks_it() {
        // Shards 0, 1, 2 on peers 1, 2, 3; peer 3 leaves.
        let replicas = [r(0, 1, true), r(1, 2, true), r(2, 3, true)];
        assert_eq!(
            next_step(&replicas, &set(&[1, 2])),
            Step::Move {
                shard: 2,
                from: 3,
                to: 1
            }
        );
        // 3 -> 1: peers 2 and 3 leave, everything goes to peer 1 one by one.
        assert_eq!(
            next_step(&replicas, &set(&[1])),
            Step::Move {
                shard: 1,
                from: 2,
                to: 1
            }
        );
    }

    #[test]
    fn a_leaving_copy_of_a_shard_every_staying_peer_holds_is_dropped() {
        let replicas = [r(0, 1, true), r(0, 2, true), r(0, 3, true)];
        assert_eq!(
            next_step(&replicas, &set(&[1, 2])),
            Step::Drop { shard: 0, peer: 3 }
        );
    }

    #[test]
    fn nothing_is_dropped_or_moved_from_a_copy_that_is_not_active_yet() {
        // The only staying copy is still recovering: dropping the leaving one would lose data.
        let replicas = [r(0, 1, false), r(0, 2, true)];
        assert_eq!(next_step(&replicas, &set(&[1])), Step::Wait);
        // A leaving copy that is itself partial is not a source for a move.
        let replicas = [r(0, 2, false)];
        assert_eq!(next_step(&replicas, &set(&[1])), Step::Wait);
    }

    #[test]
    fn done_when_no_replica_is_on_a_leaving_peer() {
        let replicas = [r(0, 1, true), r(1, 2, true)];
        assert_eq!(next_step(&replicas, &set(&[1, 2])), Step::Done);
        assert_eq!(next_step(&[], &set(&[1])), Step::Done);
    }
}
