//! Who is calling: the operator, or an account token with a role.
//!
//! Tenants are isolated by answering 404, not 403, for anything under another account, so a
//! token learns nothing about accounts it cannot see.

use axum::extract::FromRequestParts;
use axum::http::header;
use axum::http::request::Parts;
use contract::account::{AccountToken, Role, token_hash};
use contract::ids::{AccountId, TokenId};
use contract::keyspace;
use redis::AsyncCommands;
use sha2::{Digest, Sha256};

use crate::AppState;
use crate::problem::{ApiResult, Problem};

#[derive(Debug, Clone)]
pub enum Principal {
    Operator,
    Account {
        account_id: AccountId,
        token_id: TokenId,
        role: Role,
    },
}

impl Principal {
    /// Who did it, for the audit log: a token id, or `operator`.
    pub fn actor(&self) -> String {
        match self {
            Principal::Operator => "operator".to_owned(),
            Principal::Account { token_id, .. } => token_id.to_string(),
        }
    }

    pub fn token_id(&self) -> Option<TokenId> {
        match self {
            Principal::Operator => None,
            Principal::Account { token_id, .. } => Some(*token_id),
        }
    }

    pub fn require_operator(&self) -> ApiResult<()> {
        match self {
            Principal::Operator => Ok(()),
            Principal::Account { .. } => Err(Problem::forbidden("this needs the operator token")),
        }
    }

    /// May read anything under `account`.
    pub fn require_reader(&self, account: AccountId) -> ApiResult<()> {
        match self {
            Principal::Operator => Ok(()),
            Principal::Account { account_id, .. } if *account_id == account => Ok(()),
            Principal::Account { .. } => Err(Problem::not_found("account")),
        }
    }

    /// May change anything under `account`.
    pub fn require_writer(&self, account: AccountId) -> ApiResult<()> {
        self.require_reader(account)?;
        match self {
            Principal::Account {
                role: Role::Viewer, ..
            } => Err(Problem::forbidden("a viewer token can only read")),
            _ => Ok(()),
        }
    }
}

/// The bearer token of a request, if it has one.
pub fn bearer(parts: &Parts) -> Option<&str> {
    let value = parts.headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim())
        .filter(|t| !t.is_empty())
}

/// Compares digests, not tokens, so the comparison time says nothing about the token.
fn is_operator(token: &str, operator_digest: &[u8; 32]) -> bool {
    let digest: [u8; 32] = Sha256::digest(token.as_bytes()).into();
    digest
        .iter()
        .zip(operator_digest)
        .fold(0u8, |acc, (a, b)| acc | (a ^ b))
        == 0
}

impl FromRequestParts<AppState> for Principal {
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Problem> {
        let token = bearer(parts).ok_or_else(Problem::unauthorized)?;
        if is_operator(token, &state.operator_digest) {
            return Ok(Principal::Operator);
        }
        let key = keyspace::token(&token_hash(token));
        let stored: Option<String> = state
            .store
            .run(|mut c| async move { c.get(key).await })
            .await?;
        let record: AccountToken = match stored {
            None => return Err(Problem::unauthorized()),
            Some(json) => serde_json::from_str(&json).map_err(|e| {
                tracing::error!(error = %e, "stored account token is unreadable");
                Problem::internal()
            })?,
        };
        Ok(Principal::Account {
            account_id: record.account_id,
            token_id: record.id,
            role: record.role,
        })
    }
}
