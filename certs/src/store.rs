//! The CA and the regions' certificates in Redis. Private keys are stored only sealed under
//! the platform key; a new or renewed certificate is announced on the events channel so every
//! gateway loads it without restarting.

use contract::event::ChangeEvent;
use contract::host::Tld;
use contract::keyspace;
use contract::seal::{Keyring, Sealed};
use jiff::Timestamp;
use redis::AsyncCommands;
use redis::aio::ConnectionLike;
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use crate::CertError;
use crate::ca::PlatformCa;
use crate::region_cert::RegionCert;

/// Under `contract::seal::AUTHORITY_CONTEXT_PREFIX`: sealed for the issuers only, never
/// with the key GateKeeper holds.
const CA_KEY_CONTEXT: &str = "lyra/ca/key";

fn cert_key_context(provider: &str, region: &str) -> String {
    format!("lyra/cert/{provider}/{region}/key")
}

#[derive(Serialize, Deserialize)]
struct StoredCa {
    cert_pem: String,
    key: Sealed,
}

#[derive(Serialize, Deserialize)]
struct StoredCert {
    provider: String,
    region: String,
    name: String,
    chain_pem: String,
    key: Sealed,
    not_after: Timestamp,
    /// Older records have none: they were all issued by the platform CA.
    #[serde(default)]
    provided: bool,
}

fn open_pem(
    keyring: &Keyring,
    sealed: &Sealed,
    context: &str,
) -> Result<Zeroizing<String>, CertError> {
    let plain = keyring.unseal(sealed, context)?;
    String::from_utf8(plain.to_vec())
        .map(Zeroizing::new)
        .map_err(|_| CertError::Pem("a sealed key is not text".into()))
}

pub async fn load_ca<C: ConnectionLike + Send + Sync>(
    conn: &mut C,
    keyring: &Keyring,
) -> Result<Option<PlatformCa>, CertError> {
    let stored: Option<String> = conn.get(keyspace::ca()).await?;
    let Some(json) = stored else { return Ok(None) };
    let stored: StoredCa = serde_json::from_str(&json)?;
    let key = open_pem(keyring, &stored.key, CA_KEY_CONTEXT)?;
    PlatformCa::from_pem(&stored.cert_pem, &key).map(Some)
}

/// The platform CA, created on first use. Two creators racing agree on one (`SET NX`).
pub async fn load_or_create_ca<C: ConnectionLike + Send + Sync>(
    conn: &mut C,
    keyring: &Keyring,
) -> Result<PlatformCa, CertError> {
    if let Some(ca) = load_ca(conn, keyring).await? {
        return Ok(ca);
    }
    let ca = PlatformCa::generate()?;
    let stored = StoredCa {
        cert_pem: ca.cert_pem().to_owned(),
        key: keyring.seal(ca.key_pem().as_bytes(), CA_KEY_CONTEXT)?,
    };
    let _: Option<String> = redis::cmd("SET")
        .arg(keyspace::ca())
        .arg(serde_json::to_string(&stored)?)
        .arg("NX")
        .query_async(conn)
        .await?;
    load_ca(conn, keyring)
        .await?
        .ok_or_else(|| CertError::Pem("the CA vanished while being stored".into()))
}

/// Makes `ca` the platform CA in Redis (a CA given as files by the operator), replacing any.
pub async fn put_ca<C: ConnectionLike + Send + Sync>(
    conn: &mut C,
    keyring: &Keyring,
    ca: &PlatformCa,
) -> Result<(), CertError> {
    if load_ca(conn, keyring)
        .await
        .ok()
        .flatten()
        .is_some_and(|held| held.cert_pem() == ca.cert_pem())
    {
        return Ok(());
    }
    let stored = StoredCa {
        cert_pem: ca.cert_pem().to_owned(),
        key: keyring.seal(ca.key_pem().as_bytes(), CA_KEY_CONTEXT)?,
    };
    let _: () = conn
        .set(keyspace::ca(), serde_json::to_string(&stored)?)
        .await?;
    Ok(())
}

pub async fn load_region<C: ConnectionLike + Send + Sync>(
    conn: &mut C,
    keyring: &Keyring,
    provider: &str,
    region: &str,
) -> Result<Option<RegionCert>, CertError> {
    let stored: Option<String> = conn.get(keyspace::certificate(provider, region)).await?;
    let Some(json) = stored else { return Ok(None) };
    let s: StoredCert = serde_json::from_str(&json)?;
    let key_pem = open_pem(keyring, &s.key, &cert_key_context(&s.provider, &s.region))?;
    Ok(Some(RegionCert {
        provider: s.provider,
        region: s.region,
        name: s.name,
        chain_pem: s.chain_pem,
        key_pem,
        not_after: s.not_after,
        provided: s.provided,
    }))
}

/// Stores a region's certificate and announces it; returns the event's version.
pub async fn save_region<C: ConnectionLike + Send + Sync>(
    conn: &mut C,
    keyring: &Keyring,
    cert: &RegionCert,
) -> Result<u64, CertError> {
    let stored = StoredCert {
        provider: cert.provider.clone(),
        region: cert.region.clone(),
        name: cert.name.clone(),
        chain_pem: cert.chain_pem.clone(),
        key: keyring.seal(
            cert.key_pem.as_bytes(),
            &cert_key_context(&cert.provider, &cert.region),
        )?,
        not_after: cert.not_after,
        provided: cert.provided,
    };
    let version: u64 = conn.incr(keyspace::config_version(), 1).await?;
    let event = ChangeEvent::CertificateIssued {
        provider: cert.provider.clone(),
        region: cert.region.clone(),
        version,
    }
    .to_json()?;
    let _: () = redis::pipe()
        .atomic()
        .set(
            keyspace::certificate(&cert.provider, &cert.region),
            serde_json::to_string(&stored)?,
        )
        .publish(keyspace::EVENTS_CHANNEL, event)
        .query_async(conn)
        .await?;
    Ok(version)
}

/// The region's certificate: the stored one while it is fresh, else a new one (issued,
/// stored, announced). Returns it and whether it was issued now. A certificate the operator
/// provided is never replaced, fresh or not.
pub async fn ensure_region<C: ConnectionLike + Send + Sync>(
    conn: &mut C,
    keyring: &Keyring,
    ca: &PlatformCa,
    provider: &str,
    region: &str,
    tld: &Tld,
) -> Result<(RegionCert, bool), CertError> {
    let expected = contract::host::EndpointHost::wildcard(region, provider, tld)?;
    let existing = load_region(conn, keyring, provider, region).await?;
    if let Some(current) = existing.as_ref().filter(|c| c.provided) {
        return Ok((current.clone(), false));
    }
    if let Some(current) =
        existing.filter(|c| c.name == expected && !c.needs_renewal(Timestamp::now()))
    {
        return Ok((current, false));
    }
    let cert = ca.issue_region(provider, region, tld)?;
    save_region(conn, keyring, &cert).await?;
    Ok((cert, true))
}

/// Every region's certificate (for a gateway starting up).
pub async fn load_all<C: ConnectionLike + Send + Sync>(
    conn: &mut C,
    keyring: &Keyring,
) -> Result<Vec<RegionCert>, CertError> {
    let regions: Vec<String> = conn.smembers(keyspace::regions()).await?;
    let mut certs = Vec::new();
    for r in regions {
        let Some((provider, region)) = r.split_once(':') else {
            continue;
        };
        certs.extend(load_region(conn, keyring, provider, region).await?);
    }
    Ok(certs)
}

/// How many sealed values a reseal pass looked at and how many it sealed again.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct ResealCount {
    pub checked: usize,
    pub resealed: usize,
}

impl std::ops::AddAssign for ResealCount {
    fn add_assign(&mut self, other: Self) {
        self.checked += other.checked;
        self.resealed += other.resealed;
    }
}

static REPLACE_IF_UNCHANGED: std::sync::LazyLock<redis::Script> =
    std::sync::LazyLock::new(|| redis::Script::new(contract::scripts::REPLACE_IF_UNCHANGED));

/// Writes `new` at `key` (or its hash `field`) only if it still holds `read`; whether it did.
pub async fn replace_if_unchanged<C: ConnectionLike + Send + Sync>(
    conn: &mut C,
    key: &str,
    field: Option<&str>,
    read: &str,
    new: &str,
) -> Result<bool, redis::RedisError> {
    let replaced: i64 = REPLACE_IF_UNCHANGED
        .key(key)
        .arg(keyspace::PREFIX)
        .arg(Timestamp::now().as_second())
        .arg(field.unwrap_or(""))
        .arg(read)
        .arg(new)
        .invoke_async(conn)
        .await?;
    Ok(replaced == 1)
}

/// Seals the CA's key and every region's certificate key again where the stored value names
/// another key than its purpose's current one (an earlier platform key, or the platform key
/// itself from before purposes existed). A value changed meanwhile is left to the next pass.
pub async fn reseal<C: ConnectionLike + Send + Sync>(
    conn: &mut C,
    keyring: &Keyring,
) -> Result<ResealCount, CertError> {
    let mut count = ResealCount::default();
    let ca_key = keyspace::ca();
    let stored: Option<String> = conn.get(&ca_key).await?;
    if let Some(json) = stored {
        let mut ca: StoredCa = serde_json::from_str(&json)?;
        count.checked += 1;
        if keyring.needs_reseal(&ca.key, CA_KEY_CONTEXT) {
            ca.key = keyring.reseal(&ca.key, CA_KEY_CONTEXT)?;
            let new = serde_json::to_string(&ca)?;
            if replace_if_unchanged(conn, &ca_key, None, &json, &new).await? {
                count.resealed += 1;
            }
        }
    }
    let regions: Vec<String> = conn.smembers(keyspace::regions()).await?;
    for r in regions {
        let Some((provider, region)) = r.split_once(':') else {
            continue;
        };
        let key = keyspace::certificate(provider, region);
        let stored: Option<String> = conn.get(&key).await?;
        let Some(json) = stored else { continue };
        let mut cert: StoredCert = serde_json::from_str(&json)?;
        count.checked += 1;
        let context = cert_key_context(&cert.provider, &cert.region);
        if keyring.needs_reseal(&cert.key, &context) {
            cert.key = keyring.reseal(&cert.key, &context)?;
            let new = serde_json::to_string(&cert)?;
            if replace_if_unchanged(conn, &key, None, &json, &new).await? {
                count.resealed += 1;
            }
        }
    }
    Ok(count)
}
