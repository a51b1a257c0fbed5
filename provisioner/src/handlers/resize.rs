//! ResizeDBCluster: the new shape, the new route, the surplus capacity released.
//!
//! Scaling down moves the data first: every shard replica on a leaving node goes to a node
//! that stays ([`crate::drain`]), the leaving peers leave the Raft cluster, the gateways are
//! told to stop using them, and only then does the driver stop them and free their storage.
//! Each step is re-derived from the cluster on a retry, so a crash anywhere resumes.

use std::time::Duration;

use contract::cluster::Phase;
use contract::command::ResizeDbCluster;
use contract::route::NodeEndpoint;
use redis::AsyncCommands;
use redis::aio::ConnectionManager;

use super::{HandlerError, Outcome, Worker, node_spec};
use crate::drain;
use crate::{crash, secrets, state};
use contract::qdrant::QdrantApi;

/// How long Nebula waits for one answer from a node while it moves shards.
const QDRANT_TIMEOUT: Duration = Duration::from_secs(10);

pub async fn run(w: &Worker, cmd: &ResizeDbCluster) -> Result<Outcome, HandlerError> {
    let mut conn = w.conn.clone();
    let Some(record) = state::load_cluster(&mut conn, cmd.cluster_id).await? else {
        return Ok(Outcome::Skipped("the cluster no longer exists"));
    };
    let c = &record.cluster;
    if cmd.generation != c.generation {
        return Ok(Outcome::Skipped("a newer change superseded this resize"));
    }
    if !matches!(c.phase, Phase::Resizing | Phase::FailedToUpdate) {
        return Ok(Outcome::Skipped("the cluster is not being resized"));
    }
    let driver = w.driver_for(c).await?;
    let secrets = secrets::load(&mut conn, &w.keyring, c.id)
        .await?
        .ok_or(HandlerError::NoSecrets)?;
    let config = &cmd.db_configuration;
    let keep = config.num_nodes as usize;
    let current = stored_nodes(&mut conn, c.id).await?;
    if keep < current.len() {
        let started = std::time::Instant::now();
        let api = QdrantApi::new(&secrets.read_write, QDRANT_TIMEOUT);
        let reporter = progress_reporter(conn.clone(), w.holder.clone(), c.id, keep, current.len());
        let drained = drain::drain(&api, &current, keep, |moved, total| {
            let _ = reporter.send((moved, total));
        })
        .await;
        drop(reporter);
        drained?;
        tracing::info!(cluster = %c.id, from = current.len(), to = keep,
            ms = started.elapsed().as_millis() as u64, "moved every shard off the leaving nodes");
        crash::point("after_drain");
        // The leaving nodes hold nothing now and are out of the Raft cluster: the gateways
        // stop sending to them before they stop, unless the cluster moved on meanwhile.
        let still_resizing = state::go_live(
            &mut conn,
            &w.holder,
            c,
            state::Change {
                from: &[Phase::Resizing, Phase::FailedToUpdate],
                generation: Some(cmd.generation),
                to: Phase::Resizing,
                reason: &format!(
                    "scaling down from {} to {keep} nodes: stopping the nodes that left",
                    current.len()
                ),
                nodes: current[..keep].to_vec(),
                credentials: secrets.sealed.clone(),
                extra: &[],
            },
        )
        .await?;
        if !still_resizing {
            return Ok(Outcome::Skipped(
                "the cluster changed while its shards were moved",
            ));
        }
    }
    let spec = node_spec(c, config.num_nodes, config.node_configuration, &secrets);
    let started = std::time::Instant::now();
    let nodes = driver.resize(&spec).await?;
    tracing::info!(cluster = %c.id, nodes = nodes.len(), ms = started.elapsed().as_millis() as u64,
        "the driver resized the cluster");
    crash::point("after_resize_driver");
    crash::hold("after_resize_driver").await;
    match state::finish_resize(
        &mut conn,
        &w.holder,
        c,
        cmd.generation,
        nodes,
        secrets.sealed,
    )
    .await?
    {
        state::Finished::Done => {}
        state::Finished::Overtaken(why) => {
            tracing::info!(cluster = %c.id, %why, "a newer change or a delete overtook this resize");
            return Ok(Outcome::Skipped(
                "a newer change or a delete overtook this resize",
            ));
        }
    }
    Ok(Outcome::Done)
}

/// The nodes the cluster has now, as the last provision or resize stored them.
async fn stored_nodes(
    conn: &mut ConnectionManager,
    id: contract::ids::ClusterId,
) -> Result<Vec<NodeEndpoint>, HandlerError> {
    let stored: Option<String> = conn.hget(contract::keyspace::cluster(id), "nodes").await?;
    match stored {
        None => Ok(Vec::new()),
        Some(json) => serde_json::from_str(&json).map_err(|source| HandlerError::UnreadableJson {
            what: "nodes of the cluster",
            source,
        }),
    }
}

/// Writes "moving shards: moved/total" into the cluster's reason as the drain goes, from a
/// task of its own so the drain never waits on Redis for it.
fn progress_reporter(
    mut conn: ConnectionManager,
    holder: String,
    id: contract::ids::ClusterId,
    keep: usize,
    from: usize,
) -> tokio::sync::watch::Sender<(usize, usize)> {
    let (tx, mut rx) = tokio::sync::watch::channel((0, 0));
    tokio::spawn(async move {
        while rx.changed().await.is_ok() {
            let (moved, total) = *rx.borrow_and_update();
            let reason = format!(
                "scaling down from {from} to {keep} nodes: moving shard replicas off the \
                 leaving nodes, {moved}/{total} moved"
            );
            let _ = state::set_phase_if(
                &mut conn,
                &holder,
                id,
                &[Phase::Resizing],
                Phase::Resizing,
                &reason,
                &[],
            )
            .await;
        }
    });
    tx
}
