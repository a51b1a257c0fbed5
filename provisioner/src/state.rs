//! How Nebula reads and moves platform state in Redis. Every change that must be atomic goes
//! through one of the contract's scripts.

use std::collections::HashMap;
use std::sync::LazyLock;

use contract::cluster::Phase;
use contract::event::ChangeEvent;
use contract::ids::ClusterId;
use contract::keyspace;
use contract::record::{ClusterRecord, RegionRecord};
use contract::region::Driver;
use contract::route::{NodeEndpoint, RateLimits, RouteRecord, UpstreamCredentials};
use contract::scripts;
use jiff::Timestamp;
use redis::aio::ConnectionManager;
use redis::{AsyncCommands, Script};

use crate::handlers::HandlerError;

static GO_LIVE: LazyLock<Script> = LazyLock::new(|| Script::new(scripts::GO_LIVE));
static SET_PHASE_IF: LazyLock<Script> = LazyLock::new(|| Script::new(scripts::SET_PHASE_IF));
static FINISH_RESIZE: LazyLock<Script> = LazyLock::new(|| Script::new(scripts::FINISH_RESIZE));
static FINISH_DEPROVISION: LazyLock<Script> =
    LazyLock::new(|| Script::new(scripts::FINISH_DEPROVISION));

/// The stored names of `phases`, including `SCALING`, RESIZING's name before it had this
/// one, so a resize stored by an older Orion is still recognised.
fn expected_phases(phases: &[Phase]) -> Vec<&'static str> {
    let mut names: Vec<&str> = phases.iter().map(|p| p.as_str()).collect();
    if phases.contains(&Phase::Resizing) {
        names.push("SCALING");
    }
    names
}

fn now() -> String {
    Timestamp::now().to_string()
}

pub async fn load_cluster(
    conn: &mut ConnectionManager,
    id: ClusterId,
) -> Result<Option<ClusterRecord>, HandlerError> {
    let fields: HashMap<String, String> = conn.hgetall(keyspace::cluster(id)).await?;
    if fields.is_empty() {
        return Ok(None);
    }
    ClusterRecord::from_fields(&fields)
        .map(Some)
        .map_err(|source| HandlerError::UnreadableRecord {
            what: "cluster",
            source,
        })
}

/// The driver of a region, or `None` when the region does not exist.
pub async fn region_driver(
    conn: &mut ConnectionManager,
    provider: &str,
    region: &str,
) -> Result<Option<Driver>, HandlerError> {
    let fields: HashMap<String, String> = conn.hgetall(keyspace::region(provider, region)).await?;
    if fields.is_empty() {
        return Ok(None);
    }
    RegionRecord::from_fields(&fields)
        .map(|r| Some(r.region.driver))
        .map_err(|source| HandlerError::UnreadableRecord {
            what: "region",
            source,
        })
}

/// Moves the cluster to `to` if it is in one of `from`; `false` if it had moved on.
pub async fn set_phase_if(
    conn: &mut ConnectionManager,
    id: ClusterId,
    from: &[Phase],
    to: Phase,
    reason: &str,
    extra: &[(&str, String)],
) -> Result<bool, HandlerError> {
    let expected = expected_phases(from);
    let mut invocation = SET_PHASE_IF.key(keyspace::cluster(id));
    invocation
        .arg(keyspace::PREFIX)
        .arg(now())
        .arg(expected.join(","))
        .arg(to.as_str())
        .arg(reason);
    for (field, value) in extra {
        invocation.arg(*field).arg(value);
    }
    let reply: Vec<String> = invocation.invoke_async(conn).await?;
    Ok(reply.first().map(String::as_str) == Some("SET"))
}

/// A route for `cluster` in `phase` with a fresh version: its JSON and the event announcing it.
async fn route_for(
    conn: &mut ConnectionManager,
    cluster: &contract::cluster::Cluster,
    nodes: Vec<NodeEndpoint>,
    credentials: UpstreamCredentials,
    phase: Phase,
) -> Result<(String, u64, String), HandlerError> {
    let version: u64 = conn.incr(keyspace::config_version(), 1).await?;
    let route = RouteRecord {
        cluster_id: cluster.id,
        account_id: cluster.account_id,
        host: cluster.endpoint.clone(),
        phase,
        nodes,
        credentials,
        limits: RateLimits::default(),
        version,
    };
    let json = serde_json::to_string(&route).map_err(|source| HandlerError::Encode {
        what: "the route",
        source,
    })?;
    let event = ChangeEvent::RouteUpserted {
        route: Box::new(route),
    }
    .to_json()
    .map_err(|source| HandlerError::Encode {
        what: "the event",
        source,
    })?;
    Ok((json, version, event))
}

/// What the cluster looks like after a change was asked for.
pub struct Change<'a> {
    /// The phases the cluster must still be in.
    pub from: &'a [Phase],
    /// The generation it must still have (`None`: any).
    pub generation: Option<u64>,
    pub to: Phase,
    pub reason: &'a str,
    pub nodes: Vec<NodeEndpoint>,
    pub credentials: UpstreamCredentials,
    pub extra: &'a [(&'a str, String)],
}

/// Moves the cluster to `change.to` and stores and publishes its route in that phase, in one
/// step, if the cluster is still where the change expects it. `false` when it had moved on
/// (deleted, or changed again): nothing was written, and nothing published.
pub async fn go_live(
    conn: &mut ConnectionManager,
    cluster: &contract::cluster::Cluster,
    change: Change<'_>,
) -> Result<bool, HandlerError> {
    let (json, version, event) =
        route_for(conn, cluster, change.nodes, change.credentials, change.to).await?;
    let expected = expected_phases(change.from);
    let mut invocation = GO_LIVE.key(keyspace::cluster(cluster.id));
    invocation
        .key(keyspace::routes())
        .arg(keyspace::PREFIX)
        .arg(now())
        .arg(expected.join(","))
        .arg(change.generation.map(|g| g.to_string()).unwrap_or_default())
        .arg(change.to.as_str())
        .arg(change.reason)
        .arg(cluster.id.to_string())
        .arg(json)
        .arg(version)
        .arg(event)
        .arg(keyspace::EVENTS_CHANNEL);
    for (field, value) in change.extra {
        invocation.arg(*field).arg(value);
    }
    let reply: Vec<String> = invocation.invoke_async(conn).await?;
    Ok(reply.first().map(String::as_str) == Some("SET"))
}

/// How a finished resize was recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Finished {
    Done,
    /// A newer change or a delete overtook this resize: nothing was written.
    Overtaken(String),
}

/// Records a finished resize with its nodes and HEALTHY route, in one step (see the script).
pub async fn finish_resize(
    conn: &mut ConnectionManager,
    cluster: &contract::cluster::Cluster,
    generation: u64,
    nodes: Vec<NodeEndpoint>,
    credentials: UpstreamCredentials,
) -> Result<Finished, HandlerError> {
    let nodes_json = serde_json::to_string(&nodes).map_err(|source| HandlerError::Encode {
        what: "nodes",
        source,
    })?;
    let (json, version, event) =
        route_for(conn, cluster, nodes, credentials, Phase::Healthy).await?;
    let reply: Vec<String> = FINISH_RESIZE
        .key(keyspace::cluster(cluster.id))
        .key(keyspace::routes())
        .arg(keyspace::PREFIX)
        .arg(now())
        .arg(generation)
        .arg(cluster.id.to_string())
        .arg(json)
        .arg(version)
        .arg(event)
        .arg(keyspace::EVENTS_CHANNEL)
        .arg(nodes_json)
        .invoke_async(conn)
        .await?;
    Ok(match reply.first().map(String::as_str) {
        Some("DONE") => Finished::Done,
        _ => Finished::Overtaken(reply.join(" ")),
    })
}

pub async fn finish_deprovision(
    conn: &mut ConnectionManager,
    id: ClusterId,
) -> Result<(), HandlerError> {
    let _: Vec<String> = FINISH_DEPROVISION
        .key(keyspace::cluster(id))
        .key(keyspace::routes())
        .key(keyspace::config_version())
        .key(keyspace::cluster_secrets(id))
        .arg(keyspace::PREFIX)
        .arg(now())
        .arg(id.to_string())
        .arg(keyspace::EVENTS_CHANNEL)
        .invoke_async(conn)
        .await?;
    Ok(())
}
