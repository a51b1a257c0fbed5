//! Accounts and their tokens.

use axum::extract::State;
use axum::http::StatusCode;
use axum::{Extension, Json};
use contract::account::{Account, AccountToken, Role, generate_token, token_hash};
use contract::ids::{AccountId, TokenId};
use contract::keyspace;
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
use crate::store::StoreError;

#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateAccount {
    /// 2 to 64 characters of `[a-zA-Z0-9_-]`.
    #[schema(min_length = 2, max_length = 64, pattern = r"^[a-zA-Z0-9_-]+$")]
    pub name: String,
}

#[derive(Debug, Deserialize)]
pub struct AccountPath {
    pub account_id: AccountId,
}

/// Loads an account, or `None` when there is none.
pub async fn load(state: &AppState, id: AccountId) -> Result<Option<Account>, StoreError> {
    let key = keyspace::account(id);
    let json: Option<String> = state
        .store
        .run(|mut c| async move { c.get(key).await })
        .await?;
    json.map(|j| serde_json::from_str(&j).map_err(StoreError::from))
        .transpose()
}

/// 404 unless the account exists and the caller may read it.
pub async fn require_visible(
    state: &AppState,
    who: &Principal,
    id: AccountId,
) -> ApiResult<Account> {
    who.require_reader(id)?;
    load(state, id)
        .await?
        .ok_or_else(|| Problem::not_found("account"))
}

#[utoipa::path(post, path = "/api/v1/accounts", tag = "accounts",
    request_body = CreateAccount,
    responses((status = 201, body = Account), (status = 403, body = Problem, description = "an account token: accounts are made by the operator")),
    security(("bearer" = [])))]
pub async fn create_account(
    State(state): State<AppState>,
    who: Principal,
    rid: RequestId,
    ApiJson(body): ApiJson<CreateAccount>,
) -> ApiResult<(StatusCode, Json<Account>)> {
    who.require_operator()?;
    let account = Account::new(body.name, Timestamp::now()).map_err(Problem::validation)?;
    let json = serde_json::to_string(&account).map_err(StoreError::from)?;
    let (key, index, id, score) = (
        keyspace::account(account.id),
        keyspace::accounts(),
        account.id.to_string(),
        account.created_at.as_millisecond(),
    );
    state
        .store
        .run(|mut c| async move {
            redis::pipe()
                .atomic()
                .set(key, json)
                .zadd(index, id, score)
                .query_async::<()>(&mut c)
                .await
        })
        .await?;
    let resource = format!("/api/v1/accounts/{}", account.id);
    audit::record(&state, account.id, &who, "account.create", &resource, &rid).await?;
    Ok((StatusCode::CREATED, Json(account)))
}

#[utoipa::path(get, path = "/api/v1/accounts", tag = "accounts",
    responses((status = 200, body = [Account], description = "every account for the operator; its own for an account token")),
    security(("bearer" = [])))]
pub async fn list_accounts(
    State(state): State<AppState>,
    who: Principal,
) -> ApiResult<Json<Vec<Account>>> {
    let ids: Vec<String> = match &who {
        Principal::Operator => {
            let index = keyspace::accounts();
            state
                .store
                .run(|mut c| async move { c.zrange(index, 0, -1).await })
                .await?
        }
        Principal::Account { account_id, .. } => vec![account_id.to_string()],
    };
    let mut accounts = Vec::with_capacity(ids.len());
    for id in ids {
        let id: AccountId = id.parse().map_err(|_| Problem::internal())?;
        if let Some(a) = load(&state, id).await? {
            accounts.push(a);
        }
    }
    Ok(Json(accounts))
}

#[utoipa::path(get, path = "/api/v1/accounts/{account_id}", tag = "accounts",
    params(("account_id" = uuid::Uuid, Path)),
    responses((status = 200, body = Account), (status = 404, body = Problem)),
    security(("bearer" = [])))]
pub async fn get_account(
    State(state): State<AppState>,
    who: Principal,
    ApiPath(path): ApiPath<AccountPath>,
) -> ApiResult<Json<Account>> {
    require_visible(&state, &who, path.account_id)
        .await
        .map(Json)
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateToken {
    pub role: Role,
}

/// A new token. `token` is shown only in this answer; only its hash is stored.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct CreatedToken {
    #[schema(value_type = String, format = Uuid)]
    pub id: TokenId,
    pub role: Role,
    pub token: String,
}

#[utoipa::path(post, path = "/api/v1/accounts/{account_id}/tokens", tag = "accounts",
    params(("account_id" = uuid::Uuid, Path)),
    request_body = CreateToken,
    responses((status = 201, body = CreatedToken), (status = 403, body = Problem, description = "a viewer token"), (status = 404, body = Problem)),
    security(("bearer" = [])))]
pub async fn create_token(
    State(state): State<AppState>,
    who: Principal,
    rid: RequestId,
    ApiPath(path): ApiPath<AccountPath>,
    ApiJson(body): ApiJson<CreateToken>,
) -> ApiResult<(StatusCode, Extension<SecretBearing>, Json<CreatedToken>)> {
    who.require_writer(path.account_id)?;
    require_visible(&state, &who, path.account_id).await?;
    let token = generate_token().map_err(|e| {
        tracing::error!(error = %e, "no randomness for a token");
        Problem::internal()
    })?;
    let record = AccountToken {
        id: TokenId::new(),
        account_id: path.account_id,
        role: body.role,
        created_at: Timestamp::now(),
    };
    let json = serde_json::to_string(&record).map_err(StoreError::from)?;
    let key = keyspace::token(&token_hash(&token));
    state
        .store
        .run(|mut c| async move { c.set::<_, _, ()>(key, json).await })
        .await?;
    let resource = format!("/api/v1/accounts/{}/tokens/{}", path.account_id, record.id);
    audit::record(
        &state,
        path.account_id,
        &who,
        "token.create",
        &resource,
        &rid,
    )
    .await?;
    Ok((
        StatusCode::CREATED,
        Extension(SecretBearing),
        Json(CreatedToken {
            id: record.id,
            role: record.role,
            token: token.to_string(),
        }),
    ))
}
