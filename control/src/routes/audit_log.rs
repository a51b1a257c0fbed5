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

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct AuditQuery {
    /// Newest entries first; 1 to 1000, default 100.
    pub limit: Option<usize>,
}

#[utoipa::path(get, path = "/api/v1/accounts/{account_id}/audit", tag = "accounts",
    params(("account_id" = uuid::Uuid, Path), AuditQuery),
    responses((status = 200, body = [AuditEntry]), (status = 404, body = Problem)),
    security(("bearer" = [])))]
pub async fn get_audit(
    State(state): State<AppState>,
    who: Principal,
    ApiPath(path): ApiPath<AccountPath>,
    ApiQuery(query): ApiQuery<AuditQuery>,
) -> ApiResult<Json<Vec<AuditEntry>>> {
    require_visible(&state, &who, path.account_id).await?;
    let limit = query.limit.unwrap_or(100);
    if !(1..=1000).contains(&limit) {
        return Err(Problem::field("limit", "must be between 1 and 1000"));
    }
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
