//! DeprovisionDBCluster: everything the driver made removed, the route withdrawn, the
//! capacity released, DELETED.

use contract::cluster::Phase;
use contract::command::DeprovisionDbCluster;

use super::{HandlerError, Outcome, Worker};
use crate::state;

pub async fn run(w: &Worker, cmd: &DeprovisionDbCluster) -> Result<Outcome, HandlerError> {
    let mut conn = w.conn.clone();
    let Some(record) = state::load_cluster(&mut conn, cmd.cluster_id).await? else {
        return Ok(Outcome::Skipped("the cluster no longer exists"));
    };
    let c = &record.cluster;
    match c.phase {
        Phase::Deleted => return Ok(Outcome::Skipped("the cluster is already deleted")),
        Phase::Deleting => {}
        _ => return Ok(Outcome::Skipped("the cluster is not being deleted")),
    }
    let driver = w.driver_for(c).await?;
    driver.deprovision(c.id).await?;
    state::finish_deprovision(&mut conn, &w.holder, c.id).await?;
    Ok(Outcome::Done)
}
