//! A cluster's two secrets: made once, stored only sealed, read back for the driver.

use contract::ids::ClusterId;
use contract::keyscheme::{ClusterSecret, InvalidSecret, SecretKind};
use contract::keyspace;
use contract::route::UpstreamCredentials;
use contract::seal::Keyring;
use redis::AsyncCommands;
use redis::aio::ConnectionManager;

use crate::handlers::HandlerError;

pub struct Secrets {
    pub read_write: ClusterSecret,
    pub read_only: ClusterSecret,
    pub sealed: UpstreamCredentials,
}

fn open(
    keyring: &Keyring,
    id: ClusterId,
    sealed: UpstreamCredentials,
) -> Result<Secrets, HandlerError> {
    let one = |kind: SecretKind, s: &contract::seal::Sealed| {
        let plain = keyring
            .unseal(s, &kind.seal_context(id))
            .map_err(HandlerError::Unseal)?;
        // Bytes that are not text are no well-formed secret either.
        std::str::from_utf8(&plain)
            .map_err(|_| InvalidSecret)
            .and_then(ClusterSecret::parse)
            .map_err(HandlerError::InvalidSecret)
    };
    Ok(Secrets {
        read_write: one(SecretKind::ReadWrite, &sealed.read_write)?,
        read_only: one(SecretKind::ReadOnly, &sealed.read_only)?,
        sealed,
    })
}

pub async fn load(
    conn: &mut ConnectionManager,
    keyring: &Keyring,
    id: ClusterId,
) -> Result<Option<Secrets>, HandlerError> {
    let stored: Option<String> = conn.get(keyspace::cluster_secrets(id)).await?;
    let Some(json) = stored else {
        return Ok(None);
    };
    let sealed: UpstreamCredentials =
        serde_json::from_str(&json).map_err(|source| HandlerError::UnreadableJson {
            what: "secrets",
            source,
        })?;
    open(keyring, id, sealed).map(Some)
}

/// The cluster's secrets, made and stored (sealed) on first use. A retry or a second worker
/// finds the stored ones: `SET NX` makes the first writer win.
pub async fn ensure(
    conn: &mut ConnectionManager,
    keyring: &Keyring,
    id: ClusterId,
) -> Result<Secrets, HandlerError> {
    if let Some(existing) = load(conn, keyring, id).await? {
        return Ok(existing);
    }
    let rw = ClusterSecret::generate()?;
    let ro = ClusterSecret::generate()?;
    let seal = |kind: SecretKind, s: &ClusterSecret| {
        keyring
            .seal(s.expose().as_bytes(), &kind.seal_context(id))
            .map_err(HandlerError::Seal)
    };
    let sealed = UpstreamCredentials {
        read_write: seal(SecretKind::ReadWrite, &rw)?,
        read_only: seal(SecretKind::ReadOnly, &ro)?,
    };
    let json = serde_json::to_string(&sealed).map_err(|source| HandlerError::Encode {
        what: "secrets",
        source,
    })?;
    let _: Option<String> = redis::cmd("SET")
        .arg(keyspace::cluster_secrets(id))
        .arg(json)
        .arg("NX")
        .query_async(conn)
        .await?;
    load(conn, keyring, id)
        .await?
        .ok_or(HandlerError::SecretsVanished)
}
