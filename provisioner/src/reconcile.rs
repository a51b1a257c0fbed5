//! The control loop: every served cluster is looked at on a period, as kube-rs's reconcilers
//! do, and its phase made to say what is true. A handler acts on commands; this loop notices
//! what changed without one: a node that died or hangs, a peer that left the Raft cluster, a
//! shard replica that is not active.
//!
//! What it decides: no node ready is NOT_READY (not served: the gateways answer 503 with
//! Retry-After); some node not ready, a peer missing, or a replica not active is DEGRADED
//! (still served) with a reason that says which; all of it well is HEALTHY again. The phase
//! and the route change together ([`state::go_live`]), only from a phase this loop owns and at
//! the cluster's generation, so it never overrides a command in flight. A cluster is marked
//! worse only when two passes in a row found it so (a node restarting with the worker, or
//! one slow answer, is not an outage), and better at once. Repair is the
//! drivers' own: the local driver's supervisor restarts dead nodes, the kubelet restarts pods;
//! this loop reports until they are back.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use contract::cluster::Phase;
use contract::ids::ClusterId;
use contract::keyspace;
use contract::qdrant::QdrantApi;
use contract::route::RouteRecord;
use redis::AsyncCommands;
use tokio::sync::watch;

use crate::handlers::{HandlerError, InHand, Worker};
use crate::lease::Lease;
use crate::{secrets, state};

/// The phases this loop moves between; any other belongs to a command.
const OWNED: [Phase; 3] = [Phase::Healthy, Phase::Degraded, Phase::NotReady];

/// How long one question to a node may take.
const ASK_TIMEOUT: Duration = Duration::from_secs(2);

/// What the loop found of one cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    pub phase: Phase,
    pub reason: String,
}

/// Runs the loop every `every` until `stopping`.
pub async fn run(worker: Arc<Worker>, every: Duration, mut stopping: watch::Receiver<bool>) {
    // The first pass comes a period after start: nodes adopted at start get time to be ready.
    let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut seen = HashMap::new();
    loop {
        tokio::select! {
            _ = stopping.changed() => return,
            _ = tick.tick() => {}
        }
        if let Err(e) = once(&worker, &mut seen).await {
            tracing::warn!(error = %e, "reconcile pass failed; next one in {every:?}");
        }
    }
}

/// One pass over every served cluster. `seen` holds what the previous pass found of each.
async fn once(worker: &Worker, seen: &mut HashMap<ClusterId, Phase>) -> Result<(), HandlerError> {
    let mut conn = worker.conn.clone();
    let routes: HashMap<String, String> = conn.hgetall(keyspace::routes()).await?;
    seen.retain(|id, _| routes.contains_key(&id.to_string()));
    for json in routes.values() {
        let Ok(route) = serde_json::from_str::<RouteRecord>(json) else {
            continue;
        };
        if !OWNED.contains(&route.phase) {
            continue;
        }
        if let Err(e) = cluster(worker, &route, seen).await {
            tracing::warn!(cluster = %route.cluster_id, error = %e, "cannot reconcile the cluster");
        }
    }
    Ok(())
}

async fn cluster(
    worker: &Worker,
    route: &RouteRecord,
    seen: &mut HashMap<ClusterId, Phase>,
) -> Result<(), HandlerError> {
    let id = route.cluster_id;
    // Not while this worker's own handler acts on it, nor while another worker holds it.
    let Some(_in_hand) = InHand::take(worker, id) else {
        return Ok(());
    };
    let mut conn = worker.conn.clone();
    let Some(lease) = Lease::acquire(&mut conn, id, &worker.holder, worker.lease_ttl).await? else {
        return Ok(());
    };
    let result = judge_and_record(worker, route, seen).await;
    if let Err(e) = lease.release(&mut conn).await {
        tracing::warn!(cluster = %id, error = %e, "cannot release the cluster lease; it will expire");
    }
    result
}

async fn judge_and_record(
    worker: &Worker,
    route: &RouteRecord,
    seen: &mut HashMap<ClusterId, Phase>,
) -> Result<(), HandlerError> {
    let mut conn = worker.conn.clone();
    let id = route.cluster_id;
    let Some(record) = state::load_cluster(&mut conn, id).await? else {
        return Ok(());
    };
    let c = record.cluster;
    if !OWNED.contains(&c.phase) {
        return Ok(());
    }
    let Some(secrets) = secrets::load(&mut conn, &worker.keyring, id).await? else {
        return Ok(());
    };
    let driver = worker.driver_for(&c).await?;
    let observed = driver.observe(id).await?;
    let api = QdrantApi::new(&secrets.read_write, ASK_TIMEOUT);
    let verdict = judge(
        observed.ready,
        c.configuration.num_nodes,
        qdrant_findings(&api, route).await,
    );
    let before = seen.insert(id, verdict.phase);
    let reason_now = c.reason.clone().unwrap_or_default();
    if verdict.phase == c.phase && verdict.reason == reason_now {
        return Ok(());
    }
    let worse = rank(verdict.phase) > rank(c.phase);
    if worse && before != Some(verdict.phase) {
        // Once is not yet an outage: the next pass decides.
        return Ok(());
    }
    tracing::info!(cluster = %id, from = %c.phase, to = %verdict.phase, reason = %verdict.reason, "the cluster's state changed");
    state::go_live(
        &mut conn,
        &c,
        state::Change {
            from: &OWNED,
            generation: Some(c.generation),
            to: verdict.phase,
            reason: &verdict.reason,
            nodes: route.nodes.clone(),
            credentials: secrets.sealed,
            extra: &[],
        },
    )
    .await?;
    Ok(())
}

/// How far from well a phase this loop owns is.
fn rank(phase: Phase) -> u8 {
    match phase {
        Phase::Degraded => 1,
        Phase::NotReady => 2,
        _ => 0,
    }
}

/// What Qdrant says of itself, asked of the first node that answers: how many peers are in
/// the Raft cluster, and which shard replicas are not active. `None` when no node answers.
pub struct Findings {
    pub peers: usize,
    pub inactive: Vec<String>,
}

async fn qdrant_findings(api: &QdrantApi, route: &RouteRecord) -> Option<Findings> {
    for node in &route.nodes {
        let Ok(info) = api.cluster(node).await else {
            continue;
        };
        // A single node without cluster mode is its own whole cluster.
        let peers = if info.status == "enabled" {
            info.peer_ids().len()
        } else {
            1
        };
        let mut inactive = Vec::new();
        if let Ok(collections) = api.collections(node).await {
            for c in collections {
                if let Ok(shards) = api.collection_cluster(node, &c).await {
                    inactive.extend(shards.replicas().iter().filter(|r| !r.active).map(|r| {
                        format!(
                            "collection `{c}`: shard {} on peer {}",
                            r.shard_id, r.peer_id
                        )
                    }));
                }
            }
        }
        return Some(Findings { peers, inactive });
    }
    None
}

/// The phase and reason for a cluster of `desired` nodes with `ready` of them ready.
pub fn judge(ready: u32, desired: u32, qdrant: Option<Findings>) -> Verdict {
    let v = |phase, reason: String| Verdict { phase, reason };
    if ready == 0 {
        return v(
            Phase::NotReady,
            format!(
                "no node of the cluster is ready (0 of {desired}); it is not served until one is"
            ),
        );
    }
    let Some(q) = qdrant else {
        return v(
            Phase::NotReady,
            format!(
                "{ready} of {desired} nodes answer their readiness check but none answers its API"
            ),
        );
    };
    let mut problems = Vec::new();
    if ready < desired {
        problems.push(format!("{ready} of {desired} nodes are ready"));
    }
    if (q.peers as u32) < desired {
        problems.push(format!(
            "{} of {desired} nodes are in the Raft cluster",
            q.peers
        ));
    }
    if !q.inactive.is_empty() {
        problems.push(format!("replicas not active: {}", q.inactive.join(", ")));
    }
    if problems.is_empty() {
        v(Phase::Healthy, String::new())
    } else {
        v(Phase::Degraded, problems.join("; "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(peers: usize, inactive: &[&str]) -> Option<Findings> {
        Some(Findings {
            peers,
            inactive: inactive.iter().map(|s| (*s).to_owned()).collect(),
        })
    }

    #[test]
    fn every_node_ready_and_every_replica_active_is_healthy() {
        assert_eq!(judge(3, 3, q(3, &[])).phase, Phase::Healthy);
        assert_eq!(judge(1, 1, q(1, &[])).reason, "");
    }

    #[test]
    fn short_of_its_shape_is_degraded_with_every_reason() {
        let v = judge(2, 3, q(2, &["collection `a`: shard 1 on peer 7"]));
        assert_eq!(v.phase, Phase::Degraded);
        assert!(v.reason.contains("2 of 3 nodes are ready"), "{}", v.reason);
        assert!(
            v.reason.contains("2 of 3 nodes are in the Raft cluster"),
            "{}",
            v.reason
        );
        assert!(v.reason.contains("shard 1 on peer 7"), "{}", v.reason);
    }

    #[test]
    fn no_node_ready_or_answering_is_not_ready() {
        assert_eq!(judge(0, 3, None).phase, Phase::NotReady);
        assert_eq!(judge(2, 3, None).phase, Phase::NotReady);
    }
}
