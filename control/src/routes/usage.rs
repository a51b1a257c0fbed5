//! Per-cluster usage, as the gateways report it.

use std::collections::{BTreeMap, HashMap};

use axum::Json;
use axum::extract::State;
use contract::ids::ClusterId;
use contract::keyspace::{self, usage_fields};
use redis::AsyncCommands;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::AppState;
use crate::auth::Principal;
use crate::extract::ApiPath;
use crate::problem::{ApiResult, Problem};
use crate::routes::clusters::{ClusterPath, load as load_cluster};

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Usage {
    #[schema(value_type = String, format = Uuid)]
    pub cluster_id: ClusterId,
    /// Counters since the cluster was created: `requests`, `bytes_in`, `bytes_out`, and any
    /// other counter the gateways report. Zero until a gateway has served the cluster.
    pub counters: BTreeMap<String, u64>,
}

#[utoipa::path(get, path = "/api/v1/accounts/{account_id}/clusters/{cluster_id}/usage", tag = "clusters",
    params(("account_id" = uuid::Uuid, Path), ("cluster_id" = uuid::Uuid, Path)),
    responses((status = 200, body = Usage), (status = 404, body = Problem)),
    security(("bearer" = [])))]
pub async fn get_usage(
    State(state): State<AppState>,
    who: Principal,
    ApiPath(path): ApiPath<ClusterPath>,
) -> ApiResult<Json<Usage>> {
    who.require_reader(path.account_id)?;
    let cluster = load_cluster(&state, path.account_id, path.cluster_id)
        .await?
        .cluster;
    let key = keyspace::usage(cluster.id);
    let stored: HashMap<String, String> = state
        .store
        .run(|mut c| async move { c.hgetall(key).await })
        .await?;
    let mut counters: BTreeMap<String, u64> = usage_fields::ALL
        .iter()
        .map(|f| ((*f).to_owned(), 0))
        .collect();
    for (field, value) in stored {
        counters.insert(field, value.parse().unwrap_or(0));
    }
    Ok(Json(Usage {
        cluster_id: cluster.id,
        counters,
    }))
}
