//! Reading an account's audit log.

use axum::Json;
use axum::extract::State;
use contract::keyspace;
use redis::streams::StreamRangeReply;
use serde::Deserialize;
use utoipa::IntoParams;

use crate::AppState;
use crate::audit::AuditEntry;
use crate::auth::Principal;
use crate::extract::{ApiPath, ApiQuery};
use crate::problem::{ApiResult, Problem};
use crate::routes::accounts::{AccountPath, require_visible};

/// Most entries one read returns.
pub const MAX_LIMIT: usize = 1000;
const DEFAULT_LIMIT: usize = 100;

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct AuditQuery {
    /// How many entries, newest first: 1 to 1000, default 100.
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<usize>,
}

#[utoipa::path(get, path = "/api/v1/accounts/{account_id}/audit", tag = "accounts",
    params(("account_id" = uuid::Uuid, Path), AuditQuery),
    responses((status = 200, body = [AuditEntry]), (status = 404, body = Problem),
        (status = 422, body = Problem, description = "`limit` is out of range")),
    security(("bearer" = [])))]
pub async fn get_audit(
    State(state): State<AppState>,
    who: Principal,
    ApiPath(path): ApiPath<AccountPath>,
    ApiQuery(query): ApiQuery<AuditQuery>,
) -> ApiResult<Json<Vec<AuditEntry>>> {
    // The request is judged before anything is looked up: bad input is 422 whoever asks.
    let limit = query.limit.unwrap_or(DEFAULT_LIMIT);
    if !(1..=MAX_LIMIT).contains(&limit) {
        return Err(Problem::field(
            "limit",
            format!("must be between 1 and {MAX_LIMIT}"),
        ));
    }
    require_visible(&state, &who, path.account_id).await?;
    let key = keyspace::audit(path.account_id);
    let reply: StreamRangeReply = state
        .store
        .run(|mut c| async move {
            redis::cmd("XREVRANGE")
                .arg(key)
                .arg("+")
                .arg("-")
                .arg("COUNT")
                .arg(limit)
                .query_async(&mut c)
                .await
        })
        .await?;
    let entries = reply
        .ids
        .into_iter()
        .map(|entry| {
            let field = |name: &str| -> String {
                entry
                    .map
                    .get(name)
                    .and_then(|v| redis::from_redis_value_ref::<String>(v).ok())
                    .unwrap_or_default()
            };
            AuditEntry {
                at: field("at"),
                actor: field("actor"),
                action: field("action"),
                resource: field("resource"),
                request_id: field("request_id"),
                id: entry.id.clone(),
            }
        })
        .collect();
    Ok(Json(entries))
}
