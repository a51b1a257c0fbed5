//! ResizeDBCluster: the new shape, the new route, the surplus capacity released.

use contract::cluster::Phase;
use contract::command::ResizeDbCluster;
use redis::AsyncCommands;

use super::{HandlerError, Outcome, Worker, node_spec};
use crate::{secrets, state};

pub async fn run(w: &Worker, cmd: &ResizeDbCluster) -> Result<Outcome, HandlerError> {
    let mut conn = w.conn.clone();
    let Some(record) = state::load_cluster(&mut conn, cmd.cluster_id).await? else {
        return Ok(Outcome::Skipped("the cluster no longer exists"));
    };
    let c = &record.cluster;
    if cmd.generation != c.generation {
        return Ok(Outcome::Skipped("a newer change superseded this resize"));
    }
    if !matches!(c.phase, Phase::Scaling | Phase::FailedToUpdate) {
        return Ok(Outcome::Skipped("the cluster is not being resized"));
    }
    let driver = w.driver_for(c).await?;
    let secrets = secrets::load(&mut conn, &w.keyring, c.id)
        .await?
        .ok_or_else(|| {
            HandlerError::Permanent("the cluster has no secrets: it was never provisioned".into())
        })?;
    let config = &cmd.db_configuration;
    let spec = node_spec(c, config.num_nodes, config.node_configuration, &secrets);
    let nodes = driver.resize(&spec).await?;
    state::publish_route(&mut conn, c, nodes.clone(), secrets.sealed, Phase::Healthy).await?;
    let nodes = serde_json::to_string(&nodes)
        .map_err(|e| HandlerError::Permanent(format!("cannot encode nodes: {e}")))?;
    let _: () = conn
        .hset(contract::keyspace::cluster(c.id), "nodes", nodes)
        .await?;
    state::finish_resize(&mut conn, c.id, cmd.generation).await?;
    Ok(Outcome::Done)
}
