//! Resealing at start: every stored sealed value that names another key than the current key
//! of its purpose (an earlier platform key after a rotation, or the platform key itself, from
//! releases before purposes existed) is opened and sealed again, in place.
//!
//! This is what lets GateKeeper run with only the gateway key: it can open a cluster's
//! credentials and a region's TLS key only once they are sealed for `serving`. Each value is
//! written back only if it is unchanged since it was read, so a pass never undoes a newer
//! write; whatever changed meanwhile was written by current code, sealed with current keys.

use std::collections::HashMap;
use std::time::Duration;

use certs::store::{ResealCount, replace_if_unchanged};
use contract::ids::ClusterId;
use contract::keyscheme::SecretKind;
use contract::keyspace;
use contract::route::{RouteRecord, UpstreamCredentials};
use contract::seal::{Keyring, SealError};
use redis::AsyncCommands;
use redis::aio::ConnectionLike;

use crate::AppState;

/// Why a reseal pass stopped.
#[derive(Debug, thiserror::Error)]
pub enum ResealError {
    #[error("redis: {0}")]
    Redis(#[from] redis::RedisError),
    #[error("certificates: {0}")]
    Certs(#[from] certs::CertError),
}

/// Reseals both credentials of a cluster where needed; whether anything changed.
fn reseal_credentials(
    keyring: &Keyring,
    cluster: ClusterId,
    creds: &mut UpstreamCredentials,
) -> Result<bool, SealError> {
    let mut changed = false;
    for (kind, sealed) in [
        (SecretKind::ReadWrite, &mut creds.read_write),
        (SecretKind::ReadOnly, &mut creds.read_only),
    ] {
        let context = kind.seal_context(cluster);
        if keyring.needs_reseal(sealed, &context) {
            *sealed = keyring.reseal(sealed, &context)?;
            changed = true;
        }
    }
    Ok(changed)
}

/// One pass over the CA, the regions' certificates, every cluster's stored secrets and every
/// route record. A value that cannot be opened (sealed under a key this Orion does not hold)
/// is left as it is and logged; it does not stop the pass.
pub async fn run<C: ConnectionLike + Send + Sync>(
    conn: &mut C,
    keyring: &Keyring,
) -> Result<ResealCount, ResealError> {
    let mut count = certs::store::reseal(conn, keyring).await?;

    let routes: HashMap<String, String> = conn.hgetall(keyspace::routes()).await?;
    // Every account's clusters (a cluster still being made has secrets but no route yet), and
    // every routed cluster, in case a record outlived its account's index.
    let mut clusters: Vec<ClusterId> = routes.keys().filter_map(|id| id.parse().ok()).collect();
    let accounts: Vec<String> = conn.zrange(keyspace::accounts(), 0, -1).await?;
    for account in accounts.iter().filter_map(|a| a.parse().ok()) {
        let ids: Vec<String> = conn
            .zrange(keyspace::account_clusters(account), 0, -1)
            .await?;
        for id in ids.iter().filter_map(|id| id.parse::<ClusterId>().ok()) {
            if !clusters.contains(&id) {
                clusters.push(id);
            }
        }
    }

    for id in clusters {
        // The secrets first: a route written meanwhile copies them from there.
        let key = keyspace::cluster_secrets(id);
        let stored: Option<String> = conn.get(&key).await?;
        if let Some(json) = stored {
            count += reseal_one(conn, keyring, id, &key, None, &json, |s| {
                serde_json::from_str::<UpstreamCredentials>(s).ok()
            })
            .await?;
        }
        if let Some(json) = routes.get(&id.to_string()) {
            count += reseal_route(conn, keyring, id, json).await?;
        }
    }
    Ok(count)
}

async fn reseal_one<C: ConnectionLike + Send + Sync>(
    conn: &mut C,
    keyring: &Keyring,
    id: ClusterId,
    key: &str,
    field: Option<&str>,
    json: &str,
    parse: impl Fn(&str) -> Option<UpstreamCredentials>,
) -> Result<ResealCount, ResealError> {
    let Some(mut creds) = parse(json) else {
        tracing::warn!(cluster = %id, "stored secrets are unreadable; not resealed");
        return Ok(ResealCount::default());
    };
    let mut count = ResealCount {
        checked: 2,
        resealed: 0,
    };
    match reseal_credentials(keyring, id, &mut creds) {
        Ok(false) => {}
        Ok(true) => {
            let new = serde_json::to_string(&creds).map_err(certs::CertError::from)?;
            if replace_if_unchanged(conn, key, field, json, &new).await? {
                count.resealed = 2;
            }
        }
        Err(e) => tracing::warn!(cluster = %id, error = %e, "cannot reseal the cluster's secrets"),
    }
    Ok(count)
}

async fn reseal_route<C: ConnectionLike + Send + Sync>(
    conn: &mut C,
    keyring: &Keyring,
    id: ClusterId,
    json: &str,
) -> Result<ResealCount, ResealError> {
    let Ok(mut route) = serde_json::from_str::<RouteRecord>(json) else {
        tracing::warn!(cluster = %id, "route record is unreadable; not resealed");
        return Ok(ResealCount::default());
    };
    let mut count = ResealCount {
        checked: 2,
        resealed: 0,
    };
    match reseal_credentials(keyring, id, &mut route.credentials) {
        Ok(false) => {}
        // The version stays: the route means the same, and gateways holding it keep it.
        Ok(true) => {
            let new = serde_json::to_string(&route).map_err(certs::CertError::from)?;
            let field = id.to_string();
            if replace_if_unchanged(conn, &keyspace::routes(), Some(&field), json, &new).await? {
                count.resealed = 2;
            }
        }
        Err(e) => tracing::warn!(cluster = %id, error = %e, "cannot reseal the cluster's route"),
    }
    Ok(count)
}

/// Runs one pass when Orion starts, retrying while Redis cannot be reached, so an Orion that
/// starts before its Redis still reseals once it can.
pub async fn at_start(state: AppState) {
    loop {
        let pass = async {
            let mut conn = state.store.conn().await.map_err(|e| e.to_string())?;
            run(&mut conn, &state.keyring)
                .await
                .map_err(|e| e.to_string())
        };
        match pass.await {
            Ok(count) if count.resealed > 0 => {
                tracing::info!(
                    checked = count.checked,
                    resealed = count.resealed,
                    "resealed stored secrets under the current keys"
                );
                return;
            }
            Ok(_) => return,
            Err(e) => {
                tracing::warn!(error = %e, "cannot reseal stored secrets yet; retrying in 5s");
                tokio::time::sleep(Duration::from_secs(5)).await;
            }
        }
    }
}
