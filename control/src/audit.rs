//! The audit log: one entry per mutation, per account, in a capped Redis stream.

use contract::ids::AccountId;
use contract::keyspace;
use jiff::Timestamp;
use redis::streams::StreamMaxlen;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::AppState;
use crate::auth::Principal;
use crate::request_id::RequestId;
use crate::store::StoreError;

/// Entries kept per account (approximately: trimming is done in whole stream nodes).
const MAX_ENTRIES: usize = 10_000;

/// One audited mutation.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct AuditEntry {
    /// The stream entry id: orders entries.
    pub id: String,
    /// When it happened (RFC 3339).
    pub at: String,
    /// Who: an account token id, or `operator`.
    pub actor: String,
    /// What, e.g. `cluster.create`.
    pub action: String,
    /// Which resource, as its API path.
    pub resource: String,
    /// The request's `x-request-id`.
    pub request_id: String,
}

pub async fn record(
    state: &AppState,
    account: AccountId,
    who: &Principal,
    action: &str,
    resource: &str,
    request_id: &RequestId,
) -> Result<(), StoreError> {
    let key = keyspace::audit(account);
    let fields = [
        ("at", Timestamp::now().to_string()),
        ("actor", who.actor()),
        ("action", action.to_owned()),
        ("resource", resource.to_owned()),
        ("request_id", request_id.0.clone()),
    ];
    state
        .store
        .run(|mut c| async move {
            redis::AsyncCommands::xadd_maxlen::<_, _, _, _, String>(
                &mut c,
                key,
                StreamMaxlen::Approx(MAX_ENTRIES),
                "*",
                &fields,
            )
            .await
        })
        .await
        .map(|_| ())
}
