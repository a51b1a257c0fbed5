//! Regions, their capacity and their node limits. Registering capacity allocates waiting
//! claims in order.

use std::collections::HashMap;

use axum::Json;
use axum::extract::State;
use contract::keyspace;
use contract::node_limits::{NodeLimits, NodeLimitsSpec};
use contract::record::{self, RegionRecord};
use contract::region::{Driver, Region, RegionId};
use contract::resources::{Capacity, limits};
use jiff::Timestamp;
use redis::AsyncCommands;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::AppState;
use crate::auth::Principal;
use crate::extract::ApiPath;
use crate::json::ApiJson;
use crate::problem::{ApiResult, Problem};
use crate::store::{StoreError, lua, reply_status};

#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PutRegion {
    pub driver: Driver,
    /// Totals for the whole region (cpu in millicores, memory in MiB, disk in GiB).
    pub capacity: Capacity,
    /// Bounds on one node (cpu in millicores, memory in MiB, disk in GiB) and on the nodes of
    /// one cluster, checked when clusters are created or resized. Every bound left out takes
    /// its default (cpu 100..=64000, memory 128..=524288, disk 1..=16384, nodes 1..=100): a
    /// PUT describes the whole region, so bounds set before and not sent again are reset.
    /// Each bound must lie within the absolute limits (cpu 10..=1000000, memory
    /// 64..=33554432, disk 1..=1048576, nodes 1..=100).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_limits: Option<NodeLimitsSpec>,
}

#[derive(Debug, Deserialize)]
pub struct RegionPath {
    pub provider: String,
    pub region: String,
}

/// A region with what it holds.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct RegionView {
    pub provider: String,
    pub region: String,
    pub driver: Driver,
    /// What the region can hold when empty.
    pub capacity: Capacity,
    pub allocated: Capacity,
    pub free: Capacity,
    /// Clusters waiting for capacity here.
    pub waiting: u64,
    /// The bounds new and resized clusters must fit, defaults filled in.
    pub node_limits: NodeLimits,
}

pub async fn load(
    state: &AppState,
    provider: &str,
    region: &str,
) -> Result<Option<RegionView>, StoreError> {
    let key = keyspace::region(provider, region);
    let waiting_key = keyspace::region_waiting(provider, region);
    let (fields, waiting): (HashMap<String, String>, u64) = state
        .store
        .run(|mut c| async move {
            redis::pipe()
                .hgetall(key)
                .llen(waiting_key)
                .query_async(&mut c)
                .await
        })
        .await?;
    if fields.is_empty() {
        return Ok(None);
    }
    let record = RegionRecord::from_fields(&fields)?;
    Ok(Some(RegionView {
        free: record.free(),
        provider: record.region.provider,
        region: record.region.region,
        driver: record.region.driver,
        capacity: record.region.capacity,
        allocated: record.allocated,
        waiting,
        node_limits: record.region.node_limits,
    }))
}

/// A region's node limits as stored: decoded to check a request against, and the stored text
/// itself, which the cluster scripts compare to make sure they did not change in between.
pub struct StoredLimits {
    pub limits: NodeLimits,
    /// The `node_limits` field exactly as read; empty for a region stored before limits
    /// existed (which has the defaults).
    pub raw: String,
}

/// The node limits of a region, or `None` when the region does not exist.
pub async fn node_limits(
    state: &AppState,
    provider: &str,
    region: &str,
) -> Result<Option<StoredLimits>, StoreError> {
    let key = keyspace::region(provider, region);
    let (exists, raw): (bool, Option<String>) = state
        .store
        .run(|mut c| async move {
            redis::pipe()
                .exists(&key)
                .hget(&key, record::NODE_LIMITS)
                .query_async(&mut c)
                .await
        })
        .await?;
    if !exists {
        return Ok(None);
    }
    Ok(Some(StoredLimits {
        limits: record::node_limits(raw.as_deref())?,
        raw: raw.unwrap_or_default(),
    }))
}

#[utoipa::path(put, path = "/api/v1/regions/{provider}/{region}", tag = "regions",
    params(
        ("provider" = String, Path, min_length = 1, max_length = 63, pattern = r"^[a-z0-9]([a-z0-9-]*[a-z0-9])?$",
            description = "a DNS label: 1 to 63 of `[a-z0-9-]`, no `-` at either end"),
        ("region" = String, Path, min_length = 1, max_length = 63, pattern = r"^[a-z0-9]([a-z0-9-]*[a-z0-9])?$",
            description = "a DNS label, like the provider")),
    request_body = PutRegion,
    responses((status = 200, body = RegionView), (status = 403, body = Problem, description = "an account token: regions are the operator's"),
        (status = 409, body = Problem, description = "the new totals are below what is already allocated"),
        (status = 422, body = Problem, description = "a bad driver, total or node limit; nothing is changed")),
    security(("bearer" = [])))]
pub async fn put_region(
    State(state): State<AppState>,
    who: Principal,
    ApiPath(path): ApiPath<RegionPath>,
    ApiJson(body): ApiJson<PutRegion>,
) -> ApiResult<Json<RegionView>> {
    who.require_operator()?;
    let id = RegionId::new(&path.provider, &path.region).map_err(Problem::validation)?;
    let c = body.capacity;
    let mut v = contract::validation::Validator::new();
    for (dim, value) in [
        ("nodes", c.nodes),
        ("cpu", c.cpu),
        ("memory", c.memory),
        ("disk", c.disk),
    ] {
        v.range(
            &format!("capacity.{dim}"),
            value,
            0,
            limits::CAPACITY_TOTAL,
            "",
        );
    }
    let node_limits = body
        .node_limits
        .unwrap_or_default()
        .resolve_into(&mut v, "node_limits");
    v.finish().map_err(Problem::validation)?;
    let limits_json = serde_json::to_string(&node_limits).map_err(StoreError::from)?;
    let region = Region {
        provider: id.provider.clone(),
        region: id.region.clone(),
        driver: body.driver,
        capacity: body.capacity,
        node_limits,
    };
    let (key, set) = (
        keyspace::region(&id.provider, &id.region),
        keyspace::regions(),
    );
    let reply: Vec<String> = state
        .store
        .run(|mut conn| async move {
            lua::PUT_REGION
                .key(key)
                .key(set)
                .arg(keyspace::PREFIX)
                .arg(Timestamp::now().to_string())
                .arg(&region.provider)
                .arg(&region.region)
                .arg(region.driver.as_str())
                .arg(c.nodes)
                .arg(c.cpu)
                .arg(c.memory)
                .arg(c.disk)
                .arg(limits_json)
                .invoke_async(&mut conn)
                .await
        })
        .await?;
    match reply_status(&reply) {
        "OK" => {
            if let Some(n) = reply.get(1).filter(|n| n.as_str() != "0") {
                tracing::info!(region = %id, allocated = %n, "capacity raised: waiting clusters allocated");
            }
        }
        "BELOW_ALLOCATED" => {
            return Err(Problem::conflict(format!(
                "the new totals are below what is already allocated in {}: {}",
                id,
                reply.get(1).map(String::as_str).unwrap_or("")
            )));
        }
        _ => return Err(StoreError::Reply(reply).into()),
    }
    issue_certificate(&state, &id).await?;
    load(&state, &id.provider, &id.region)
        .await?
        .map(Json)
        .ok_or_else(Problem::internal)
}

/// Makes sure the region has a current wildcard certificate, so its endpoints serve TLS as
/// soon as clusters exist in it (issued once, renewed when due; gateways load it from the
/// announcement).
async fn issue_certificate(state: &AppState, id: &RegionId) -> ApiResult<()> {
    let mut conn = state.store.conn().await?;
    let result = async {
        let ca = certs::store::load_or_create_ca(&mut conn, &state.keyring).await?;
        certs::store::ensure_region(
            &mut conn,
            &state.keyring,
            &ca,
            &id.provider,
            &id.region,
            &state.tld,
        )
        .await
    }
    .await;
    match result {
        Ok((cert, issued)) => {
            if issued {
                tracing::info!(region = %id, name = %cert.name, not_after = %cert.not_after, "issued region certificate");
            }
            Ok(())
        }
        Err(certs::CertError::Redis(e)) => {
            tracing::warn!(error = %e, "redis unavailable while issuing a certificate");
            Err(Problem::unavailable())
        }
        Err(e) => {
            tracing::error!(region = %id, error = %e, "cannot issue the region's certificate");
            Err(Problem::internal())
        }
    }
}

#[utoipa::path(get, path = "/api/v1/regions/{provider}/{region}", tag = "regions",
    params(
        ("provider" = String, Path, min_length = 1, max_length = 63, pattern = r"^[a-z0-9]([a-z0-9-]*[a-z0-9])?$"),
        ("region" = String, Path, min_length = 1, max_length = 63, pattern = r"^[a-z0-9]([a-z0-9-]*[a-z0-9])?$")),
    responses((status = 200, body = RegionView), (status = 404, body = Problem, description = "no such region (also for a name that is not a DNS label)")),
    security(("bearer" = [])))]
pub async fn get_region(
    State(state): State<AppState>,
    _who: Principal,
    ApiPath(path): ApiPath<RegionPath>,
) -> ApiResult<Json<RegionView>> {
    let missing = || Problem::not_found(&format!("region {}/{}", path.provider, path.region));
    // A name that is not a DNS label cannot have been registered: not found, like any other.
    RegionId::new(&path.provider, &path.region).map_err(|_| missing())?;
    load(&state, &path.provider, &path.region)
        .await?
        .map(Json)
        .ok_or_else(missing)
}

#[utoipa::path(get, path = "/api/v1/regions", tag = "regions",
    responses((status = 200, body = [RegionView])),
    security(("bearer" = [])))]
pub async fn list_regions(
    State(state): State<AppState>,
    _who: Principal,
) -> ApiResult<Json<Vec<RegionView>>> {
    let set = keyspace::regions();
    let mut names: Vec<String> = state
        .store
        .run(|mut c| async move { c.smembers(set).await })
        .await?;
    names.sort();
    let mut regions = Vec::with_capacity(names.len());
    for name in names {
        let Some((provider, region)) = name.split_once(':') else {
            continue;
        };
        if let Some(view) = load(&state, provider, region).await? {
            regions.push(view);
        }
    }
    Ok(Json(regions))
}
