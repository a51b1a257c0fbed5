//! Clusters: create (202, capacity claimed atomically), list, get, resize, delete.

use std::collections::HashMap;

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use contract::cluster::{Cluster, ClusterConfiguration, ClusterSpec};
use contract::command::{
    Command, CommandEnvelope, DbConfiguration, DeprovisionDbCluster, ProvisionDbCluster,
    ResizeDbCluster,
};
use contract::ids::{AccountId, ClusterId};
use contract::keyspace;
use contract::record::ClusterRecord;
use contract::validation::{ValidationError, Validator};
use jiff::Timestamp;
use redis::AsyncCommands;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::AppState;
use crate::audit;
use crate::auth::Principal;
use crate::extract::{ApiPath, ApiQuery};
use crate::idempotency;
use crate::json::ApiJson;
use crate::problem::{ApiResult, Problem};
use crate::request_id::RequestId;
use crate::routes::accounts::{AccountPath, require_visible};
use crate::routes::regions::{self, StoredLimits};
use crate::store::{StoreError, lua, reply_status};

/// How many times a create or resize checks the region's node limits again after an operator
/// changed them mid-request (the script refuses stale ones). Limits change by hand, so a
/// second round practically always settles it; the bound only keeps a request from spinning.
const LIMITS_ATTEMPTS: usize = 3;

fn limits_kept_changing(c: &Cluster) -> Problem {
    Problem::conflict(format!(
        "the node limits of region {}/{} kept changing while this request was handled; retry",
        c.cloud_provider, c.cloud_region
    ))
}

/// Runs a script that writes `configuration` for `cluster` under its region's node limits:
/// the limits are checked here, and the script (made by `script` from the limits' stored text)
/// writes only if they are still that text, answering LIMITS_CHANGED otherwise; then it is
/// tried again, a few times, before a 409. `None` when the region does not exist.
async fn under_limits(
    state: &AppState,
    cluster: &Cluster,
    configuration: &ClusterConfiguration,
    script: impl Fn(String) -> redis::ScriptInvocation<'static>,
) -> ApiResult<Option<Vec<String>>> {
    for _ in 0..LIMITS_ATTEMPTS {
        let Some(StoredLimits { limits, raw }) =
            regions::node_limits(state, &cluster.cloud_provider, &cluster.cloud_region).await?
        else {
            return Ok(None);
        };
        limits
            .check(configuration, &cluster.region_id(), "configuration")
            .map_err(Problem::validation)?;
        let invocation = script(raw);
        let reply: Vec<String> = state
            .store
            .run(|mut c| async move { invocation.invoke_async(&mut c).await })
            .await?;
        if reply_status(&reply) != "LIMITS_CHANGED" {
            return Ok(Some(reply));
        }
    }
    Err(limits_kept_changing(cluster))
}

#[derive(Debug, Deserialize)]
pub struct ClusterPath {
    pub account_id: AccountId,
    pub cluster_id: ClusterId,
}

fn location(c: &Cluster) -> String {
    format!("/api/v1/accounts/{}/clusters/{}", c.account_id, c.id)
}

fn accepted(c: Cluster) -> Response {
    let mut response = (StatusCode::ACCEPTED, Json(&c)).into_response();
    if let Ok(v) = HeaderValue::from_str(&location(&c)) {
        response.headers_mut().insert(header::LOCATION, v);
    }
    response
}

fn idempotency_key(headers: &HeaderMap) -> Option<String> {
    headers
        .get(idempotency::HEADER)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
}

fn db_configuration(c: &Cluster, configuration: ClusterConfiguration) -> DbConfiguration {
    DbConfiguration {
        cluster_endpoint: c.endpoint.clone(),
        cluster_id: c.id,
        num_nodes: configuration.num_nodes,
        node_configuration: configuration.node_configuration,
    }
}

/// A cluster of `account`, or 404 (also when it belongs to another account).
pub async fn load(state: &AppState, account: AccountId, id: ClusterId) -> ApiResult<ClusterRecord> {
    let key = keyspace::cluster(id);
    let fields: HashMap<String, String> = state
        .store
        .run(|mut c| async move { c.hgetall(key).await })
        .await?;
    record_of(account, &fields)
}

/// A cluster's stored fields as a cluster of `account`, or 404.
fn record_of(account: AccountId, fields: &HashMap<String, String>) -> ApiResult<ClusterRecord> {
    if fields.is_empty() {
        return Err(Problem::not_found("cluster"));
    }
    let record = ClusterRecord::from_fields(fields).map_err(StoreError::from)?;
    if record.cluster.account_id != account {
        return Err(Problem::not_found("cluster"));
    }
    Ok(record)
}

/// Which field to blame when a spec names a region that does not exist.
async fn unknown_region(state: &AppState, spec: &ClusterSpec) -> ApiResult<Problem> {
    let set = keyspace::regions();
    let regions: Vec<String> = state
        .store
        .run(|mut c| async move { c.smembers(set).await })
        .await?;
    let provider_known = regions.iter().any(|r| {
        r.split_once(':')
            .is_some_and(|(p, _)| p == spec.cloud_provider)
    });
    Ok(if provider_known {
        let known: Vec<&str> = regions
            .iter()
            .filter_map(|r| r.split_once(':'))
            .filter(|(p, _)| *p == spec.cloud_provider)
            .map(|(_, r)| r)
            .collect();
        Problem::field(
            "cloud_region",
            format!(
                "unknown region {:?} for provider {:?}; known: {}",
                spec.cloud_region,
                spec.cloud_provider,
                known.join(", ")
            ),
        )
    } else {
        Problem::field(
            "cloud_provider",
            format!("unknown provider {:?}", spec.cloud_provider),
        )
    })
}

#[utoipa::path(post, path = "/api/v1/accounts/{account_id}/clusters", tag = "clusters",
    params(("account_id" = uuid::Uuid, Path)),
    request_body = ClusterSpec,
    responses(
        (status = 202, body = Cluster, description = "accepted: CREATING, or PENDING with a reason when the region lacks capacity",
            headers(("Location" = String))),
        (status = 403, body = Problem, description = "a viewer token"), (status = 404, body = Problem),
        (status = 409, body = Problem, description = "the region's node limits kept changing while the request was handled"),
        (status = 422, body = Problem, description = "the provider or region is not registered, or the shape is outside the region's node limits")),
    security(("bearer" = [])))]
pub async fn create_cluster(
    State(state): State<AppState>,
    who: Principal,
    rid: RequestId,
    claim: Option<axum::Extension<idempotency::Claim>>,
    headers: HeaderMap,
    ApiPath(path): ApiPath<AccountPath>,
    ApiJson(spec): ApiJson<ClusterSpec>,
) -> ApiResult<Response> {
    who.require_writer(path.account_id)?;
    spec.validate().map_err(Problem::validation)?;
    require_visible(&state, &who, path.account_id).await?;

    let now = Timestamp::now();
    let cluster = Cluster::new(path.account_id, spec.clone(), &state.tld, now)
        .map_err(Problem::validation)?;
    let command = CommandEnvelope::new(
        Command::Provision(ProvisionDbCluster {
            account_id: cluster.account_id,
            cloud_provider: cluster.cloud_provider.clone(),
            cloud_region: cluster.cloud_region.clone(),
            cluster_id: cluster.id,
            cluster_name: cluster.name.clone(),
            cluster_version: cluster.version.clone(),
            db_configuration: db_configuration(&cluster, cluster.configuration),
        }),
        idempotency_key(&headers),
        now,
    );
    let command_json = command.to_json().map_err(StoreError::from)?;
    let fields = ClusterRecord::cluster_fields(&cluster).map_err(StoreError::from)?;
    // The Idempotency-Key's record, written with the cluster (see `idempotency::Claim`).
    let claimed = match &claim {
        Some(axum::Extension(c)) => Some((
            c.redis_key.clone(),
            c.reference(StatusCode::ACCEPTED, &location(&cluster))
                .map_err(StoreError::from)?,
        )),
        None => None,
    };

    let reply = under_limits(&state, &cluster, &cluster.configuration, |raw| {
        let mut invocation = lua::CREATE_CLUSTER.prepare_invoke();
        invocation
            .key(keyspace::region(
                &cluster.cloud_provider,
                &cluster.cloud_region,
            ))
            .key(keyspace::region_waiting(
                &cluster.cloud_provider,
                &cluster.cloud_region,
            ))
            .key(keyspace::cluster(cluster.id))
            .key(keyspace::account_clusters(cluster.account_id))
            .key(keyspace::command_stream())
            .key(keyspace::cluster_queued_command(cluster.id))
            .arg(keyspace::PREFIX)
            .arg(now.to_string())
            .arg(cluster.id.to_string())
            .arg(now.as_millisecond())
            .arg(&command_json)
            .arg(raw);
        match &claimed {
            Some((key, reference)) => {
                invocation
                    .key(key)
                    .arg(reference)
                    .arg(idempotency::Claim::KEEP_SECS);
            }
            None => {
                invocation.arg("").arg(0);
            }
        }
        for (field, value) in &fields {
            invocation.arg(field).arg(value);
        }
        invocation
    })
    .await?;
    let Some(reply) = reply else {
        return Err(unknown_region(&state, &spec).await?);
    };
    match reply_status(&reply) {
        "NO_REGION" => return Err(unknown_region(&state, &spec).await?),
        "CREATING" => {
            state
                .metrics
                .commands_queued
                .with_label_values(&[Command::PROVISION])
                .inc();
        }
        "PENDING" => {}
        _ => return Err(StoreError::Reply(reply).into()),
    }
    let created = load(&state, cluster.account_id, cluster.id).await?.cluster;
    audit::record(
        &state,
        cluster.account_id,
        &who,
        "cluster.create",
        &location(&created),
        &rid,
    )
    .await?;
    Ok(accepted(created))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    /// 1 to 250; default 50.
    #[param(minimum = 1, maximum = 250)]
    pub page_size: Option<u32>,
    /// From `next_page_token` of the previous page; opaque.
    #[param(min_length = 1, pattern = r"^[A-Za-z0-9_-]+$")]
    pub page_token: Option<String>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ClusterPage {
    pub clusters: Vec<Cluster>,
    /// Present when there are more clusters.
    pub next_page_token: Option<String>,
}

pub const MAX_PAGE_SIZE: u32 = 250;
const DEFAULT_PAGE_SIZE: u32 = 50;

/// Page tokens are opaque to clients: today an offset into the account's creation-ordered
/// index (clusters are never removed from it, so offsets are stable).
fn decode_page_token(token: &str) -> Option<isize> {
    let bytes = URL_SAFE_NO_PAD.decode(token).ok()?;
    let text = String::from_utf8(bytes).ok()?;
    text.strip_prefix("o:")?.parse().ok().filter(|o| *o >= 0)
}

fn encode_page_token(offset: isize) -> String {
    URL_SAFE_NO_PAD.encode(format!("o:{offset}"))
}

#[utoipa::path(get, path = "/api/v1/accounts/{account_id}/clusters", tag = "clusters",
    params(("account_id" = uuid::Uuid, Path), ListQuery),
    responses((status = 200, body = ClusterPage), (status = 404, body = Problem),
        (status = 422, body = Problem, description = "`page_size` is out of range, or `page_token` is not one this API issued")),
    security(("bearer" = [])))]
pub async fn list_clusters(
    State(state): State<AppState>,
    who: Principal,
    ApiPath(path): ApiPath<AccountPath>,
    ApiQuery(query): ApiQuery<ListQuery>,
) -> ApiResult<Json<ClusterPage>> {
    // The request is judged before anything is looked up: bad input is 422 whoever asks.
    let size = query.page_size.unwrap_or(DEFAULT_PAGE_SIZE);
    if !(1..=MAX_PAGE_SIZE).contains(&size) {
        return Err(Problem::field(
            "page_size",
            format!("must be between 1 and {MAX_PAGE_SIZE}"),
        ));
    }
    let size = isize::try_from(size).map_err(|_| Problem::internal())?;
    let not_issued = || Problem::field("page_token", "is not a token this API issued");
    let offset = match &query.page_token {
        None => 0,
        Some(t) => decode_page_token(t).ok_or_else(not_issued)?,
    };
    // The offset after this page. No token this API issues is near isize::MAX; a forged one
    // is, and the sum must not overflow.
    let end = offset.checked_add(size).ok_or_else(not_issued)?;
    require_visible(&state, &who, path.account_id).await?;
    let index = keyspace::account_clusters(path.account_id);
    // One more than asked, to know whether another page exists.
    let ids: Vec<String> = state
        .store
        .run(|mut c| async move { c.zrange(index, offset, end).await })
        .await?;
    let more = ids.len() > size.unsigned_abs();
    let mut pipe = redis::pipe();
    for id in ids.iter().take(size.unsigned_abs()) {
        let id: ClusterId = id.parse().map_err(|_| Problem::internal())?;
        pipe.hgetall(keyspace::cluster(id));
    }
    // One round trip for the whole page, whatever its size.
    let hashes: Vec<HashMap<String, String>> = if pipe.is_empty() {
        Vec::new()
    } else {
        state
            .store
            .run(|mut c| async move { pipe.query_async(&mut c).await })
            .await?
    };
    let clusters = hashes
        .iter()
        .map(|fields| record_of(path.account_id, fields).map(|r| r.cluster))
        .collect::<ApiResult<Vec<_>>>()?;
    Ok(Json(ClusterPage {
        clusters,
        next_page_token: more.then(|| encode_page_token(end)),
    }))
}

#[utoipa::path(get, path = "/api/v1/accounts/{account_id}/clusters/{cluster_id}", tag = "clusters",
    params(("account_id" = uuid::Uuid, Path), ("cluster_id" = uuid::Uuid, Path)),
    responses((status = 200, body = Cluster), (status = 404, body = Problem)),
    security(("bearer" = [])))]
pub async fn get_cluster(
    State(state): State<AppState>,
    who: Principal,
    ApiPath(path): ApiPath<ClusterPath>,
) -> ApiResult<Json<Cluster>> {
    who.require_reader(path.account_id)?;
    Ok(Json(
        load(&state, path.account_id, path.cluster_id)
            .await?
            .cluster,
    ))
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ResizeCluster {
    pub configuration: ClusterConfiguration,
}

#[utoipa::path(patch, path = "/api/v1/accounts/{account_id}/clusters/{cluster_id}", tag = "clusters",
    params(("account_id" = uuid::Uuid, Path), ("cluster_id" = uuid::Uuid, Path)),
    request_body = ResizeCluster,
    responses((status = 202, body = Cluster), (status = 403, body = Problem, description = "a viewer token"), (status = 404, body = Problem),
        (status = 409, body = Problem, description = "not in a phase that can be resized, or the region lacks capacity"),
        (status = 422, body = Problem, description = "outside the region's node limits, or the nodes that stay cannot hold the data")),
    security(("bearer" = [])))]
pub async fn resize_cluster(
    State(state): State<AppState>,
    who: Principal,
    rid: RequestId,
    headers: HeaderMap,
    ApiPath(path): ApiPath<ClusterPath>,
    ApiJson(body): ApiJson<ResizeCluster>,
) -> ApiResult<Response> {
    who.require_writer(path.account_id)?;
    let mut v = Validator::new();
    body.configuration.validate_into(&mut v, "configuration");
    v.finish().map_err(Problem::validation)?;
    let current = load(&state, path.account_id, path.cluster_id)
        .await?
        .cluster;
    if current.configuration == body.configuration {
        return Ok(accepted(current));
    }
    let keep = body.configuration.num_nodes;
    if keep < current.configuration.num_nodes
        && let Some(reason) = crate::data_guard::shrink_blocker(
            &state,
            &current,
            keep,
            body.configuration.node_configuration.disk,
        )
        .await?
    {
        return Err(Problem::validation(ValidationError::single(
            "configuration.num_nodes",
            reason,
        )));
    }
    let now = Timestamp::now();
    let command = CommandEnvelope::new(
        Command::Resize(ResizeDbCluster {
            account_id: current.account_id,
            cloud_provider: current.cloud_provider.clone(),
            cloud_region: current.cloud_region.clone(),
            cluster_id: current.id,
            generation: current.generation + 1,
            db_configuration: db_configuration(&current, body.configuration),
        }),
        idempotency_key(&headers),
        now,
    );
    let command_json = command.to_json().map_err(StoreError::from)?;
    let configuration = serde_json::to_string(&body.configuration).map_err(StoreError::from)?;
    // The whole new shape must fit today's limits, also the dimensions that do not change:
    // tightened limits are how an operator moves clusters off shapes it no longer runs.
    let reply = under_limits(&state, &current, &body.configuration, |raw| {
        let mut invocation = lua::RESIZE_CLUSTER.prepare_invoke();
        invocation
            .key(keyspace::region(
                &current.cloud_provider,
                &current.cloud_region,
            ))
            .key(keyspace::cluster(current.id))
            .key(keyspace::command_stream())
            .arg(keyspace::PREFIX)
            .arg(now.to_string())
            .arg(current.generation)
            .arg(&configuration)
            .arg(&command_json)
            .arg(raw);
        invocation
    })
    .await?;
    let Some(reply) = reply else {
        // Regions are never removed, so a cluster's region is always there.
        tracing::error!(cluster = %current.id, region = %current.region_id(), "a cluster's region is missing");
        return Err(Problem::internal());
    };
    let detail = reply.get(1).cloned().unwrap_or_default();
    match reply_status(&reply) {
        "RESIZING" => {
            state
                .metrics
                .commands_queued
                .with_label_values(&[Command::RESIZE])
                .inc();
        }
        "NOT_FOUND" => return Err(Problem::not_found("cluster")),
        "BAD_PHASE" => {
            return Err(Problem::conflict(format!(
                "the cluster is {detail}; it can be resized when it is HEALTHY"
            )));
        }
        "STALE" => {
            return Err(Problem::conflict(
                "the cluster changed while this request was handled; read it and retry",
            ));
        }
        "NO_CAPACITY" => {
            return Err(Problem::conflict(format!(
                "region {}/{} lacks free {detail} for this resize",
                current.cloud_provider, current.cloud_region
            )));
        }
        _ => return Err(StoreError::Reply(reply).into()),
    }
    let resized = load(&state, path.account_id, path.cluster_id)
        .await?
        .cluster;
    audit::record(
        &state,
        path.account_id,
        &who,
        "cluster.resize",
        &location(&resized),
        &rid,
    )
    .await?;
    Ok(accepted(resized))
}

#[utoipa::path(delete, path = "/api/v1/accounts/{account_id}/clusters/{cluster_id}", tag = "clusters",
    params(("account_id" = uuid::Uuid, Path), ("cluster_id" = uuid::Uuid, Path)),
    responses((status = 202, body = Cluster, description = "DELETING (or DELETED for a cluster that never got capacity); deleting twice is not an error"),
        (status = 403, body = Problem, description = "a viewer token"), (status = 404, body = Problem)),
    security(("bearer" = [])))]
pub async fn delete_cluster(
    State(state): State<AppState>,
    who: Principal,
    rid: RequestId,
    headers: HeaderMap,
    ApiPath(path): ApiPath<ClusterPath>,
) -> ApiResult<Response> {
    who.require_writer(path.account_id)?;
    let current = load(&state, path.account_id, path.cluster_id)
        .await?
        .cluster;
    let now = Timestamp::now();
    let command = CommandEnvelope::new(
        Command::Deprovision(DeprovisionDbCluster {
            account_id: current.account_id,
            cloud_provider: current.cloud_provider.clone(),
            cloud_region: current.cloud_region.clone(),
            cluster_id: current.id,
        }),
        idempotency_key(&headers),
        now,
    );
    let command_json = command.to_json().map_err(StoreError::from)?;
    let mut invocation = lua::DELETE_CLUSTER.prepare_invoke();
    invocation
        .key(keyspace::cluster(current.id))
        .key(keyspace::region_waiting(
            &current.cloud_provider,
            &current.cloud_region,
        ))
        .key(keyspace::command_stream())
        .key(keyspace::cluster_queued_command(current.id))
        .key(keyspace::routes())
        .key(keyspace::config_version())
        .arg(keyspace::PREFIX)
        .arg(now.to_string())
        .arg(current.id.to_string())
        .arg(command_json)
        .arg(keyspace::EVENTS_CHANNEL);
    let reply: Vec<String> = state
        .store
        .run(|mut c| async move { invocation.invoke_async(&mut c).await })
        .await?;
    match (reply_status(&reply), current.phase.as_str()) {
        ("NOT_FOUND", _) => return Err(Problem::not_found("cluster")),
        ("DELETING", before) if before != "DELETING" => {
            state
                .metrics
                .commands_queued
                .with_label_values(&[Command::DEPROVISION])
                .inc();
        }
        ("DELETING" | "DELETED", _) => {}
        _ => return Err(StoreError::Reply(reply).into()),
    }
    let deleted = load(&state, path.account_id, path.cluster_id)
        .await?
        .cluster;
    audit::record(
        &state,
        path.account_id,
        &who,
        "cluster.delete",
        &location(&deleted),
        &rid,
    )
    .await?;
    Ok(accepted(deleted))
}
