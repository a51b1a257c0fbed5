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

/// What a script answers when `holder` no longer holds the cluster's lease: nothing written.
const NOT_HOLDER: &str = "NOT_HOLDER";

/// The lease check every state change below makes inside its script (fencing): a worker that
/// lost the cluster's lease while its handler ran (paused past the lease, cut off from Redis)
/// writes nothing, so two workers never both change one cluster.
fn fenced(reply: &[String]) -> Result<(), HandlerError> {
    if reply.first().map(String::as_str) == Some(NOT_HOLDER) {
        Err(HandlerError::LeaseLost)
    } else {
        Ok(())
    }
}

/// Moves the cluster to `to` if it is in one of `from`; `false` if it had moved on. Only
/// while `holder` holds the cluster's lease ([`HandlerError::LeaseLost`] otherwise).
pub async fn set_phase_if(
    conn: &mut ConnectionManager,
    holder: &str,
    id: ClusterId,
    from: &[Phase],
    to: Phase,
    reason: &str,
    extra: &[(&str, String)],
) -> Result<bool, HandlerError> {
    let expected = expected_phases(from);
    let mut invocation = SET_PHASE_IF.key(keyspace::cluster(id));
    invocation
        .key(keyspace::cluster_lease(id))
        .arg(keyspace::PREFIX)
        .arg(now())
        .arg(expected.join(","))
        .arg(to.as_str())
        .arg(reason)
        .arg(holder);
    for (field, value) in extra {
        invocation.arg(*field).arg(value);
    }
    let reply: Vec<String> = invocation.invoke_async(conn).await?;
    fenced(&reply)?;
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
/// (deleted, or changed again): nothing was written, and nothing published. Only while
/// `holder` holds the cluster's lease ([`HandlerError::LeaseLost`] otherwise).
pub async fn go_live(
    conn: &mut ConnectionManager,
    holder: &str,
    cluster: &contract::cluster::Cluster,
    change: Change<'_>,
) -> Result<bool, HandlerError> {
    let (json, version, event) =
        route_for(conn, cluster, change.nodes, change.credentials, change.to).await?;
    let expected = expected_phases(change.from);
    let mut invocation = GO_LIVE.key(keyspace::cluster(cluster.id));
    invocation
        .key(keyspace::routes())
        .key(keyspace::cluster_lease(cluster.id))
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
        .arg(keyspace::EVENTS_CHANNEL)
        .arg(holder);
    for (field, value) in change.extra {
        invocation.arg(*field).arg(value);
    }
    let reply: Vec<String> = invocation.invoke_async(conn).await?;
    fenced(&reply)?;
    Ok(reply.first().map(String::as_str) == Some("SET"))
}

/// How a finished resize was recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Finished {
    Done,
    /// A newer change or a delete overtook this resize: nothing was written.
    Overtaken(String),
}

/// Records a finished resize with its nodes and HEALTHY route, in one step (see the script),
/// while `holder` holds the cluster's lease.
pub async fn finish_resize(
    conn: &mut ConnectionManager,
    holder: &str,
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
        .key(keyspace::cluster_lease(cluster.id))
        .arg(keyspace::PREFIX)
        .arg(now())
        .arg(generation)
        .arg(cluster.id.to_string())
        .arg(json)
        .arg(version)
        .arg(event)
        .arg(keyspace::EVENTS_CHANNEL)
        .arg(nodes_json)
        .arg(holder)
        .invoke_async(conn)
        .await?;
    fenced(&reply)?;
    Ok(match reply.first().map(String::as_str) {
        Some("DONE") => Finished::Done,
        _ => Finished::Overtaken(reply.join(" ")),
    })
}

/// Records a finished deprovision (see the script), while `holder` holds the lease.
pub async fn finish_deprovision(
    conn: &mut ConnectionManager,
    holder: &str,
    id: ClusterId,
) -> Result<(), HandlerError> {
    let reply: Vec<String> = FINISH_DEPROVISION
        .key(keyspace::cluster(id))
        .key(keyspace::routes())
        .key(keyspace::config_version())
        .key(keyspace::cluster_secrets(id))
        .key(keyspace::cluster_lease(id))
        .arg(keyspace::PREFIX)
        .arg(now())
        .arg(id.to_string())
        .arg(keyspace::EVENTS_CHANNEL)
        .arg(holder)
        .invoke_async(conn)
        .await?;
    fenced(&reply)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::driver::Drivers;
    use crate::lease::Lease;
    use crate::testing::Harness;
    use contract::region::Driver;

    fn creds(h: &Harness, id: ClusterId) -> UpstreamCredentials {
        let seal = |kind: contract::keyscheme::SecretKind| {
            h.worker
                .keyring
                .seal(b"Zq8vN3xR7tLp2WcY5kHm9JdF4sBg6QaE", &kind.seal_context(id))
                .unwrap()
        };
        UpstreamCredentials {
            read_write: seal(contract::keyscheme::SecretKind::ReadWrite),
            read_only: seal(contract::keyscheme::SecretKind::ReadOnly),
        }
    }

    #[tokio::test]
    async fn a_worker_that_lost_its_lease_writes_nothing() {
        let h = Harness::start(Drivers::default()).await;
        h.region(Driver::Local).await;
        let c = h.cluster(Phase::Creating, 1).await;
        let mut conn = h.conn();
        // Another worker took the lease (this one paused past its TTL).
        let _thief = Lease::acquire(&mut conn, c.id, "another-worker", h.worker.lease_ttl)
            .await
            .unwrap()
            .unwrap();
        let change = |creds| Change {
            from: &[Phase::Creating],
            generation: None,
            to: Phase::Healthy,
            reason: "",
            nodes: vec![NodeEndpoint {
                rest: "127.0.0.1:1".into(),
                grpc: "127.0.0.1:2".into(),
            }],
            credentials: creds,
            extra: &[],
        };
        let holder = h.worker.holder.clone();
        let err = go_live(&mut conn, &holder, &c, change(creds(&h, c.id)))
            .await
            .unwrap_err();
        assert!(matches!(err, HandlerError::LeaseLost), "{err}");
        let err = set_phase_if(
            &mut conn,
            &holder,
            c.id,
            &[Phase::Creating],
            Phase::NotReady,
            "x",
            &[],
        )
        .await
        .unwrap_err();
        assert!(matches!(err, HandlerError::LeaseLost), "{err}");
        let err = finish_resize(
            &mut conn,
            &holder,
            &c,
            c.generation,
            vec![],
            creds(&h, c.id),
        )
        .await
        .unwrap_err();
        assert!(matches!(err, HandlerError::LeaseLost), "{err}");
        let err = finish_deprovision(&mut conn, &holder, c.id)
            .await
            .unwrap_err();
        assert!(matches!(err, HandlerError::LeaseLost), "{err}");
        assert_eq!(
            h.cluster_field(c.id, "phase").await.as_deref(),
            Some("CREATING")
        );
        let route: Option<String> = conn
            .hget(keyspace::routes(), c.id.to_string())
            .await
            .unwrap();
        assert_eq!(route, None, "no route was published");

        // The holder itself writes.
        let thief = change(creds(&h, c.id));
        assert!(
            go_live(&mut conn, "another-worker", &c, thief)
                .await
                .unwrap()
        );
        assert_eq!(
            h.cluster_field(c.id, "phase").await.as_deref(),
            Some("HEALTHY")
        );
    }
}
