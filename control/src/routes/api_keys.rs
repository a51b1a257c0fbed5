//! API keys: created from the cluster's secret (the key is shown once), listed as metadata
//! only, revoked with a publish that reaches every gateway.

use std::collections::HashMap;

use axum::extract::State;
use axum::http::StatusCode;
use axum::{Extension, Json};
use contract::api_key::{ApiKeyMetadata, KeyScope};
use contract::ids::{ClusterId, KeyId};
use contract::keyscheme::{ClusterSecret, KeyClaims, KeySigner, SecretKind};
use contract::keyspace;
use contract::route::UpstreamCredentials;
use contract::validation::Validator;
use jiff::Timestamp;
use redis::AsyncCommands;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::AppState;
use crate::audit;
use crate::auth::Principal;
use crate::extract::ApiPath;
use crate::idempotency::SecretBearing;
use crate::json::ApiJson;
use crate::problem::{ApiResult, Problem};
use crate::request_id::RequestId;
use crate::routes::clusters::{ClusterPath, load as load_cluster};
use crate::store::{StoreError, lua, reply_status};

#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateApiKey {
    /// 2 to 64 characters of `[a-zA-Z0-9_-]`.
    #[schema(min_length = 2, max_length = 64, pattern = r"^[a-zA-Z0-9_-]+$")]
    pub name: String,
    /// `"manage"`, `"read-only"`, or `[{"collection": "...", "access": "r" | "rw"}]`.
    pub access: KeyScope,
    /// When the key stops working (RFC 3339), in the future; omit for a key that does not
    /// expire.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub expires_at: Option<Timestamp>,
}

/// A new key: `key` appears only in this answer.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct CreatedApiKey {
    #[schema(value_type = String, format = Uuid)]
    pub id: KeyId,
    pub name: String,
    pub access: KeyScope,
    #[schema(value_type = Option<String>, format = DateTime)]
    pub expires_at: Option<Timestamp>,
    #[schema(value_type = String, format = DateTime)]
    pub created_at: Timestamp,
    pub postfix: String,
    pub key: String,
}

#[derive(Debug, Deserialize)]
pub struct KeyPath {
    pub account_id: contract::ids::AccountId,
    pub cluster_id: ClusterId,
    pub key_id: KeyId,
}

/// The cluster's read-write secret, unsealed.
pub(crate) async fn read_write_secret(
    state: &AppState,
    cluster: ClusterId,
) -> ApiResult<Option<ClusterSecret>> {
    let key = keyspace::cluster_secrets(cluster);
    let stored: Option<String> = state
        .store
        .run(|mut c| async move { c.get(key).await })
        .await?;
    let Some(json) = stored else {
        return Ok(None);
    };
    let creds: UpstreamCredentials = serde_json::from_str(&json).map_err(StoreError::from)?;
    let plain = state
        .keyring
        .unseal(
            &creds.read_write,
            &SecretKind::ReadWrite.seal_context(cluster),
        )
        .map_err(|e| {
            tracing::error!(%cluster, error = %e, "cannot open the cluster's sealed secret");
            Problem::internal()
        })?;
    let secret = std::str::from_utf8(&plain)
        .ok()
        .and_then(|s| ClusterSecret::parse(s).ok())
        .ok_or_else(|| {
            tracing::error!(%cluster, "the cluster's secret is not a valid secret");
            Problem::internal()
        })?;
    Ok(Some(secret))
}

#[utoipa::path(post, path = "/api/v1/accounts/{account_id}/clusters/{cluster_id}/api-keys", tag = "api-keys",
    params(("account_id" = uuid::Uuid, Path), ("cluster_id" = uuid::Uuid, Path)),
    request_body = CreateApiKey,
    responses((status = 201, body = CreatedApiKey), (status = 403, body = Problem, description = "a viewer token"),
        (status = 404, body = Problem),
        (status = 409, body = Problem, description = "the cluster is not ready: it has no secret yet"),
        (status = 422, body = Problem, description = "`expires_at` is not in the future, or two rules name the same collection")),
    security(("bearer" = [])))]
pub async fn create_api_key(
    State(state): State<AppState>,
    who: Principal,
    rid: RequestId,
    ApiPath(path): ApiPath<ClusterPath>,
    ApiJson(body): ApiJson<CreateApiKey>,
) -> ApiResult<(StatusCode, Extension<SecretBearing>, Json<CreatedApiKey>)> {
    who.require_writer(path.account_id)?;
    let now = Timestamp::now();
    let mut v = Validator::new();
    v.name("name", &body.name);
    body.access.validate_into(&mut v, "access");
    if let Some(t) = body.expires_at {
        v.check(t > now, "expires_at", || "must be in the future".to_owned());
    }
    v.finish().map_err(Problem::validation)?;

    let cluster = load_cluster(&state, path.account_id, path.cluster_id)
        .await?
        .cluster;
    let secret = match read_write_secret(&state, cluster.id).await? {
        Some(s) if cluster.phase.serves_traffic() => s,
        _ => {
            return Err(Problem::conflict(format!(
                "the cluster is {}; keys can be created once it is HEALTHY",
                cluster.phase
            )));
        }
    };
    let expires_at = body
        .expires_at
        .map(|t| Timestamp::from_second(t.as_second()))
        .transpose()
        .map_err(|_| Problem::field("expires_at", "is out of range"))?;
    let claims = KeyClaims {
        cluster_id: cluster.id,
        key_id: KeyId::new(),
        expires_at,
        access: body.access.key_access(),
    };
    let key = KeySigner::new(&secret)
        .issue(&claims)
        .map_err(|e| Problem::field("expires_at", e.to_string()))?;
    let metadata = ApiKeyMetadata {
        id: claims.key_id,
        cluster_id: cluster.id,
        name: body.name,
        access: body.access,
        expires_at,
        created_at: now,
        postfix: key.postfix().to_owned(),
        created_by: who.token_id(),
        revoked_at: None,
    };
    let json = serde_json::to_string(&metadata).map_err(StoreError::from)?;
    let (hash, field) = (keyspace::cluster_keys(cluster.id), metadata.id.to_string());
    state
        .store
        .run(|mut c| async move { c.hset::<_, _, _, ()>(hash, field, json).await })
        .await?;
    let resource = format!(
        "/api/v1/accounts/{}/clusters/{}/api-keys/{}",
        cluster.account_id, cluster.id, metadata.id
    );
    audit::record(
        &state,
        path.account_id,
        &who,
        "api_key.create",
        &resource,
        &rid,
    )
    .await?;
    Ok((
        StatusCode::CREATED,
        Extension(SecretBearing),
        Json(CreatedApiKey {
            id: metadata.id,
            name: metadata.name,
            access: metadata.access,
            expires_at: metadata.expires_at,
            created_at: metadata.created_at,
            postfix: metadata.postfix,
            key: key.expose().to_owned(),
        }),
    ))
}

#[utoipa::path(get, path = "/api/v1/accounts/{account_id}/clusters/{cluster_id}/api-keys", tag = "api-keys",
    params(("account_id" = uuid::Uuid, Path), ("cluster_id" = uuid::Uuid, Path)),
    responses((status = 200, body = [ApiKeyMetadata], description = "metadata only, never a key"), (status = 404, body = Problem)),
    security(("bearer" = [])))]
pub async fn list_api_keys(
    State(state): State<AppState>,
    who: Principal,
    ApiPath(path): ApiPath<ClusterPath>,
) -> ApiResult<Json<Vec<ApiKeyMetadata>>> {
    who.require_reader(path.account_id)?;
    let cluster = load_cluster(&state, path.account_id, path.cluster_id)
        .await?
        .cluster;
    let hash = keyspace::cluster_keys(cluster.id);
    let stored: HashMap<String, String> = state
        .store
        .run(|mut c| async move { c.hgetall(hash).await })
        .await?;
    let mut keys = stored
        .values()
        .map(|j| serde_json::from_str(j))
        .collect::<Result<Vec<ApiKeyMetadata>, _>>()
        .map_err(StoreError::from)?;
    keys.sort_by_key(|k| (k.created_at, k.id));
    Ok(Json(keys))
}

#[utoipa::path(delete, path = "/api/v1/accounts/{account_id}/clusters/{cluster_id}/api-keys/{key_id}", tag = "api-keys",
    params(("account_id" = uuid::Uuid, Path), ("cluster_id" = uuid::Uuid, Path), ("key_id" = uuid::Uuid, Path)),
    responses((status = 204, description = "revoked (revoking twice is not an error)"), (status = 403, body = Problem, description = "a viewer token"),
        (status = 404, body = Problem),
        (status = 409, body = Problem, description = "the key was being changed concurrently")),
    security(("bearer" = [])))]
pub async fn revoke_api_key(
    State(state): State<AppState>,
    who: Principal,
    rid: RequestId,
    ApiPath(path): ApiPath<KeyPath>,
) -> ApiResult<StatusCode> {
    who.require_writer(path.account_id)?;
    let cluster = load_cluster(&state, path.account_id, path.cluster_id)
        .await?
        .cluster;
    // Compare-and-set: retried when another revocation of the same key wins the race.
    for _ in 0..3 {
        let (hash, field) = (keyspace::cluster_keys(cluster.id), path.key_id.to_string());
        let stored: Option<String> = state
            .store
            .run(|mut c| async move { c.hget(hash, field).await })
            .await?;
        let Some(before) = stored else {
            return Err(Problem::not_found("API key"));
        };
        let mut metadata: ApiKeyMetadata =
            serde_json::from_str(&before).map_err(StoreError::from)?;
        if metadata.revoked_at.is_some() {
            return Ok(StatusCode::NO_CONTENT);
        }
        metadata.revoked_at = Some(Timestamp::now());
        let after = serde_json::to_string(&metadata).map_err(StoreError::from)?;
        let score = metadata
            .expires_at
            .map(|t| t.as_second().to_string())
            .unwrap_or_else(|| "+inf".to_owned());
        let expires = metadata
            .expires_at
            .map(|t| t.to_string())
            .unwrap_or_default();
        let keys = (
            keyspace::cluster_keys(cluster.id),
            keyspace::revoked_keys(),
            keyspace::config_version(),
        );
        let (key_id, cluster_id) = (path.key_id.to_string(), cluster.id.to_string());
        let reply: Vec<String> = state
            .store
            .run(|mut c| async move {
                lua::REVOKE_KEY
                    .key(keys.0)
                    .key(keys.1)
                    .key(keys.2)
                    .arg(keyspace::PREFIX)
                    .arg(Timestamp::now().to_string())
                    .arg(key_id)
                    .arg(before)
                    .arg(after)
                    .arg(cluster_id)
                    .arg(score)
                    .arg(expires)
                    .arg(keyspace::EVENTS_CHANNEL)
                    .invoke_async(&mut c)
                    .await
            })
            .await?;
        match reply_status(&reply) {
            "REVOKED" => {
                let resource = format!(
                    "/api/v1/accounts/{}/clusters/{}/api-keys/{}",
                    path.account_id, cluster.id, path.key_id
                );
                audit::record(
                    &state,
                    path.account_id,
                    &who,
                    "api_key.revoke",
                    &resource,
                    &rid,
                )
                .await?;
                return Ok(StatusCode::NO_CONTENT);
            }
            "NOT_FOUND" => return Err(Problem::not_found("API key")),
            "CONFLICT" => continue,
            _ => return Err(StoreError::Reply(reply).into()),
        }
    }
    Err(Problem::conflict(
        "the key is being changed concurrently; retry",
    ))
}
