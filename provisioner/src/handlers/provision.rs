//! ProvisionDBCluster: secrets, nodes, route, HEALTHY.

use contract::cluster::Phase;
use contract::command::ProvisionDbCluster;

use super::{HandlerError, Outcome, Worker, node_spec};
use crate::{crash, secrets, state};

pub async fn run(w: &Worker, cmd: &ProvisionDbCluster) -> Result<Outcome, HandlerError> {
    let mut conn = w.conn.clone();
    let Some(record) = state::load_cluster(&mut conn, cmd.cluster_id).await? else {
        return Ok(Outcome::Skipped("the cluster no longer exists"));
    };
    let c = &record.cluster;
    match c.phase {
        Phase::Creating | Phase::FailedToCreate => {}
        Phase::Deleting | Phase::Deleted => return Ok(Outcome::Skipped("the cluster is deleted")),
        Phase::Pending => return Ok(Outcome::Skipped("the cluster still waits for capacity")),
        Phase::Healthy
        | Phase::NotReady
        | Phase::Degraded
        | Phase::Resizing
        | Phase::FailedToUpdate => {
            return Ok(Outcome::Skipped("the cluster is already provisioned"));
        }
    }
    let driver = w.driver_for(c).await?;
    let secrets = secrets::ensure(&mut conn, &w.keyring, c.id).await?;
    let spec = node_spec(
        c,
        c.configuration.num_nodes,
        c.configuration.node_configuration,
        &secrets,
    );
    crash::point("before_driver");
    let nodes = driver.provision(&spec).await?;
    crash::point("after_driver");
    crash::hold("after_driver").await;
    let nodes_json = serde_json::to_string(&nodes).map_err(|source| HandlerError::Encode {
        what: "nodes",
        source,
    })?;
    let live = state::go_live(
        &mut conn,
        &w.holder,
        c,
        state::Change {
            from: &[Phase::Creating, Phase::FailedToCreate],
            generation: None,
            to: Phase::Healthy,
            reason: "",
            nodes,
            credentials: secrets.sealed,
            extra: &[("nodes", nodes_json)],
        },
    )
    .await?;
    if !live {
        // Deleted meanwhile: its deprovision command removes the nodes; no route was published.
        return Ok(Outcome::Skipped(
            "the cluster was deleted while it was provisioned",
        ));
    }
    crash::point("before_ack");
    Ok(Outcome::Done)
}
