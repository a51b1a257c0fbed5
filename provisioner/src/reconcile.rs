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
//! one slow answer, is not an outage), and better at once.
//!
//! What it repairs: what the driver made and can make again without touching data
//! ([`InfrastructureClient::repair`]), with the spec the handlers would give it. The kubernetes
//! driver applies every object it owns again, so a StatefulSet scaled by hand, a deleted
//! Service, Secret, ConfigMap, NetworkPolicy or PodDisruptionBudget comes back; the local
//! driver takes over a cluster whose stopped nodes nobody restarts (its supervisor restarts
//! those of every cluster it looks after within a second); the helm driver repairs nothing.
//! A repair runs when a pass finds drift (the driver counts other nodes than the cluster's
//! shape, or the cluster is not HEALTHY), and for a healthy cluster every [`SWEEP_EVERY`]
//! passes all the same, since some drift shows in no health check: a deleted NetworkPolicy
//! opens the nodes' API ports, a deleted PodDisruptionBudget lets a node drain take them all.
//! Not every pass: a kubernetes repair is sixteen API requests a cluster. The pods
//! themselves are the kubelet's: it restarts them, and this loop reports until they are back.
//! One drift it leaves alone: more nodes than the shape that joined the Raft cluster (scaled
//! up by hand) may hold shard replicas by now, and only a resize moves those off first.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use contract::cluster::{Cluster, Phase};
use contract::ids::ClusterId;
use contract::keyspace;
use contract::qdrant::QdrantApi;
use contract::route::RouteRecord;
use rand::Rng;
use redis::AsyncCommands;
use tokio::sync::watch;

use crate::driver::{InfrastructureClient, Observation};
use crate::handlers::{HandlerError, InHand, Worker, node_spec};
use crate::lease::Lease;
use crate::metrics::Metrics;
use crate::secrets::Secrets;
use crate::{secrets, state};

/// The phases this loop moves between; any other belongs to a command.
const OWNED: [Phase; 3] = [Phase::Healthy, Phase::Degraded, Phase::NotReady];

/// How long one question to a node may take.
const ASK_TIMEOUT: Duration = Duration::from_secs(2);

/// A healthy cluster is repaired every this many passes (some five minutes at the default
/// period), for the drift no health check shows.
pub const SWEEP_EVERY: u32 = 30;

/// What the loop remembers of a cluster from one pass to the next.
#[derive(Debug, Clone, Copy)]
struct Seen {
    /// What the last pass found.
    phase: Phase,
    /// Passes until the cluster is repaired even if it looks well.
    until_sweep: u32,
}

/// What the loop found of one cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    pub phase: Phase,
    pub reason: String,
}

/// Runs the loop every `every` until `stopping`.
pub async fn run(
    worker: Arc<Worker>,
    metrics: Arc<Metrics>,
    every: Duration,
    mut stopping: watch::Receiver<bool>,
) {
    // The first pass comes a period after start: nodes adopted at start get time to be ready.
    let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut seen = HashMap::new();
    loop {
        tokio::select! {
            _ = stopping.changed() => return,
            _ = tick.tick() => {}
        }
        if let Err(e) = once(&worker, &metrics, &mut seen).await {
            tracing::warn!(error = %e, "reconcile pass failed; next one in {every:?}");
        }
    }
}

/// One pass over every served cluster. `seen` holds what the previous pass found of each.
async fn once(
    worker: &Worker,
    metrics: &Metrics,
    seen: &mut HashMap<ClusterId, Seen>,
) -> Result<(), HandlerError> {
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
        if let Err(e) = cluster(worker, metrics, &route, seen).await {
            tracing::warn!(cluster = %route.cluster_id, error = %e, "cannot reconcile the cluster");
        }
    }
    Ok(())
}

async fn cluster(
    worker: &Worker,
    metrics: &Metrics,
    route: &RouteRecord,
    seen: &mut HashMap<ClusterId, Seen>,
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
    let result = judge_and_record(worker, metrics, route, seen).await;
    if let Err(e) = lease.release(&mut conn).await {
        tracing::warn!(cluster = %id, error = %e, "cannot release the cluster lease; it will expire");
    }
    result
}

async fn judge_and_record(
    worker: &Worker,
    metrics: &Metrics,
    route: &RouteRecord,
    seen: &mut HashMap<ClusterId, Seen>,
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
    let (kind, driver) = worker.region_driver(&c).await?;
    let observed = driver.observe(id).await?;
    let api = QdrantApi::new(&secrets.read_write, ASK_TIMEOUT);
    let findings = qdrant_findings(&api, route).await;
    let peers = findings.as_ref().map(|f| f.peers);
    let verdict = judge(observed.ready, c.configuration.num_nodes, findings);
    let previous = seen.get(&id).copied();
    // A cluster first seen starts its sweep countdown at a random pass, so that the clusters
    // a worker finds at start are not all swept on the same pass.
    let mut until_sweep = previous.map_or_else(
        || rand::rng().random_range(1..=SWEEP_EVERY),
        |s| s.until_sweep.saturating_sub(1),
    );
    if should_repair(
        &observed,
        c.configuration.num_nodes,
        verdict.phase,
        until_sweep,
    ) {
        until_sweep = SWEEP_EVERY;
        if safe_to_repair(&c, &observed, peers) {
            repair(metrics, kind.as_str(), driver.as_ref(), &c, &secrets).await;
        }
    }
    seen.insert(
        id,
        Seen {
            phase: verdict.phase,
            until_sweep,
        },
    );
    let before = previous.map(|s| s.phase);
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
        &worker.holder,
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

/// Whether this pass repairs the cluster: when it found drift (the driver counts other nodes
/// than the cluster's shape, or the cluster is not well), or when its sweep is due.
fn should_repair(observed: &Observation, shape: u32, phase: Phase, until_sweep: u32) -> bool {
    observed.desired != shape || phase != Phase::Healthy || until_sweep == 0
}

/// `false` when the driver has more nodes than the cluster's shape and Qdrant counts more
/// peers than it too: nodes added by hand that joined the Raft cluster may hold shard
/// replicas by now (a collection made meanwhile spreads over every peer), and scaling back to
/// the shape would take those offline. Only a resize drains nodes before it removes them.
fn safe_to_repair(c: &Cluster, observed: &Observation, peers: Option<usize>) -> bool {
    let shape = c.configuration.num_nodes;
    let joined = peers.is_some_and(|p| p > shape as usize);
    if observed.desired > shape && joined {
        tracing::warn!(cluster = %c.id, nodes = observed.desired, shape,
            "the cluster runs more nodes than its shape and they joined it: not repairing, \
             since removing them without moving their shards off could lose data; resize the \
             cluster to keep them");
        return false;
    }
    true
}

/// Asks the driver to put back what drifted, and says what it did. A failure is logged and
/// counted, not returned: the phase is still recorded, and the next pass tries again.
async fn repair(
    metrics: &Metrics,
    driver_name: &'static str,
    driver: &dyn InfrastructureClient,
    c: &Cluster,
    secrets: &Secrets,
) {
    let spec = node_spec(
        c,
        c.configuration.num_nodes,
        c.configuration.node_configuration,
        secrets,
    );
    match driver.repair(&spec).await {
        Ok(done) => {
            for r in &done.repaired {
                tracing::info!(cluster = %c.id, driver = driver_name, object = r.object,
                    name = %r.name, "repaired: {r}");
                metrics.repaired(driver_name, r.object);
            }
        }
        Err(e) => {
            tracing::warn!(cluster = %c.id, driver = driver_name, kind = e.kind(), error = %e,
                "cannot repair the cluster; trying again on a later pass");
            metrics.repair_failed(driver_name, e.kind());
        }
    }
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
    use crate::driver::DriverError;

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

    fn observed(desired: u32, ready: u32) -> Observation {
        Observation { desired, ready }
    }

    #[test]
    fn a_repair_runs_on_drift_or_when_the_sweep_is_due_not_every_pass() {
        // Well and of its shape: left alone until its sweep.
        assert!(!should_repair(&observed(3, 3), 3, Phase::Healthy, 5));
        assert!(should_repair(&observed(3, 3), 3, Phase::Healthy, 0));
        // The driver counts another shape (a StatefulSet scaled by hand).
        assert!(should_repair(&observed(1, 1), 3, Phase::Healthy, 5));
        // Not well: maybe a deleted Service.
        assert!(should_repair(&observed(3, 3), 3, Phase::Degraded, 5));
        assert!(should_repair(&observed(3, 0), 3, Phase::NotReady, 5));
    }

    #[test]
    fn extra_nodes_that_joined_the_raft_cluster_are_not_scaled_away() {
        let c = crate::testing::cluster(Phase::Healthy, 3);
        assert!(safe_to_repair(&c, &observed(3, 3), Some(3)));
        assert!(
            safe_to_repair(&c, &observed(1, 1), Some(1)),
            "scaled down: scale up"
        );
        assert!(
            safe_to_repair(&c, &observed(5, 5), Some(3)),
            "the extra nodes never joined: they hold nothing"
        );
        assert!(!safe_to_repair(&c, &observed(5, 5), Some(5)));
    }

    /// One pass over a served cluster whose driver reports another shape than the cluster's:
    /// the driver is asked to repair with the spec a handler would give it, and what it put
    /// back is counted.
    #[tokio::test]
    async fn a_pass_that_finds_drift_asks_the_driver_to_repair_and_counts_it() {
        use crate::driver::{Drift, Drivers, Repair, Repaired};
        use crate::testing::{Harness, StubDriver, sample};
        use contract::region::Driver;
        use contract::route::NodeEndpoint;

        let mut stub = StubDriver::new(|| DriverError::Unsupported("unused"));
        // Scaled to one node by hand; the cluster has three.
        stub.observed = observed(1, 1);
        stub.repaired = Repair {
            repaired: vec![Repaired {
                object: "statefulset",
                name: "qdrant".into(),
                drift: Drift::Scaled { from: 1, to: 3 },
            }],
        };
        let stub = Arc::new(stub);
        let h = Harness::start(Drivers::default().with(Driver::Kubernetes, stub.clone())).await;
        h.region(Driver::Kubernetes).await;
        let c = h.cluster(Phase::Creating, 3).await;
        let mut conn = h.conn();
        let secrets = secrets::ensure(&mut conn, &h.worker.keyring, c.id)
            .await
            .unwrap();
        // Served, as a provision leaves it; nobody answers on the nodes' addresses.
        let nodes = vec![
            NodeEndpoint {
                rest: "127.0.0.1:1".into(),
                grpc: "127.0.0.1:1".into(),
            };
            3
        ];
        // As a provision does it: under the cluster's lease.
        let lease =
            crate::lease::Lease::acquire(&mut conn, c.id, &h.worker.holder, h.worker.lease_ttl)
                .await
                .unwrap()
                .unwrap();
        let live = state::go_live(
            &mut conn,
            &h.worker.holder,
            &c,
            state::Change {
                from: &[Phase::Creating],
                generation: None,
                to: Phase::Healthy,
                reason: "",
                nodes,
                credentials: secrets.sealed.clone(),
                extra: &[],
            },
        )
        .await
        .unwrap();
        assert!(live);
        lease.release(&mut conn).await.unwrap();

        let metrics = Metrics::new().unwrap();
        let mut seen = HashMap::new();
        once(&h.worker, &metrics, &mut seen).await.unwrap();

        let calls = stub.repair_calls.lock().unwrap().clone();
        assert_eq!(calls.len(), 1, "the driver was not asked to repair");
        assert_eq!(calls[0].cluster_id, c.id);
        assert_eq!(calls[0].num_nodes, 3, "repaired to the cluster's own shape");
        assert_eq!(calls[0].resources, c.configuration.node_configuration);
        assert_eq!(calls[0].read_write, secrets.read_write);
        let rendered = metrics.render();
        assert_eq!(
            sample(
                &rendered,
                "nebula_repairs_total",
                &[("driver", "kubernetes"), ("object", "statefulset")]
            ),
            Some(1.0),
            "{rendered}"
        );
        // The phase logic is unchanged: one bad pass is not an outage yet.
        assert_eq!(
            h.cluster_field(c.id, "phase").await.as_deref(),
            Some("HEALTHY")
        );
    }

    #[test]
    fn no_node_ready_or_answering_is_not_ready() {
        assert_eq!(judge(0, 3, None).phase, Phase::NotReady);
        assert_eq!(judge(2, 3, None).phase, Phase::NotReady);
    }
}
