//! The key scheme: cluster secrets and the API keys derived from them.
//!
//! **Cluster secrets** are 32 characters of `[A-Za-z0-9]` from the OS CSPRNG. Each cluster has
//! two: a read-write one and a read-only one, which are Qdrant's own `api_key` and
//! `read_only_api_key`. Only GateKeeper ever sends them, to the cluster's nodes.
//!
//! **API keys** are what clients hold. A key is self-verifying: GateKeeper checks it with the
//! cluster's read-write secret alone, with no I/O. It binds, under an HMAC-SHA256 tag:
//!
//! ```text
//! offset  size  field
//!      0     1  format version (1)
//!      1    16  cluster id (UUID bytes)
//!     17    16  key id (UUID bytes), the handle for revocation and collection rules
//!     33     8  expiry, unix seconds, big-endian; 0 = never expires
//!     41     1  access: 1 manage, 2 read-only, 3 collection rules (stored by key id)
//!     42    24  HMAC-SHA256(signing key, bytes 0..42), truncated to 192 bits
//! ```
//!
//! and is written as `lyra_` followed by the 66 bytes in unpadded base64url (88 characters,
//! so 93 in all). 66 is a multiple of 3, so the encoding has no spare bits: any change of any
//! character changes the bytes or makes them undecodable.
//!
//! The signing key is not the secret itself but `HKDF-SHA256(salt = "lyra/keyscheme",
//! ikm = read-write secret, info = "lyra api-key signing v1")`, so the secret used as Qdrant's
//! api key and the key that signs client keys are never the same bytes.
//!
//! Unlike the seed's non-expiring "golden ticket" keys, a key carries an expiry and a scope,
//! and can be revoked by id (revocation is a set lookup in the gateway, outside this module).

use std::fmt;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hkdf::Hkdf;
use hmac::{Hmac, Mac};
use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use zeroize::Zeroizing;

use crate::ids::{ClusterId, KeyId};
use crate::random::{self, RandomError};

/// Length of a cluster secret, in characters.
pub const SECRET_LEN: usize = 32;
/// Every API key starts with this, so that people and secret scanners can recognise one.
pub const KEY_PREFIX: &str = "lyra_";
/// The format version this build issues and accepts.
pub const KEY_VERSION: u8 = 1;

const HKDF_SALT: &[u8] = b"lyra/keyscheme";
const HKDF_INFO: &[u8] = b"lyra api-key signing v1";
const SIGNED_LEN: usize = 42;
const TAG_LEN: usize = 24;
const RAW_LEN: usize = SIGNED_LEN + TAG_LEN;
const ENCODED_LEN: usize = RAW_LEN / 3 * 4;
/// Length of a whole API key, prefix included.
pub const KEY_LEN: usize = KEY_PREFIX.len() + ENCODED_LEN;

/// A cluster secret. Its `Debug` never shows the value, and the memory is wiped on drop.
#[derive(Clone, PartialEq, Eq)]
pub struct ClusterSecret(Zeroizing<String>);

/// A string that is not a well-formed cluster secret.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("a cluster secret must be {SECRET_LEN} characters of [A-Za-z0-9]")]
pub struct InvalidSecret;

impl ClusterSecret {
    pub fn generate() -> Result<Self, RandomError> {
        Ok(Self(Zeroizing::new(random::alphanumeric(SECRET_LEN)?)))
    }

    /// Accepts a secret read back from storage (after unsealing).
    pub fn parse(secret: &str) -> Result<Self, InvalidSecret> {
        if secret.len() == SECRET_LEN && secret.bytes().all(|b| b.is_ascii_alphanumeric()) {
            Ok(Self(Zeroizing::new(secret.to_owned())))
        } else {
            Err(InvalidSecret)
        }
    }

    /// The secret itself: for sealing, and for the upstream credential header only.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for ClusterSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ClusterSecret([redacted])")
    }
}

/// Which of a cluster's two secrets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SecretKind {
    ReadWrite,
    ReadOnly,
}

impl SecretKind {
    /// The context a sealed secret is bound to, so that a sealed blob moved to another cluster
    /// or swapped between the two kinds no longer opens.
    pub fn seal_context(self, cluster: ClusterId) -> String {
        let kind = match self {
            SecretKind::ReadWrite => "read-write",
            SecretKind::ReadOnly => "read-only",
        };
        format!("lyra/cluster/{cluster}/{kind}")
    }
}

/// The class of access a key's signature fixes. Collection rules themselves are stored by key
/// id, not in the key, so that the key stays short.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum KeyAccess {
    /// Everything: Qdrant's read-write key goes upstream.
    Manage,
    /// Reads only: Qdrant's read-only key goes upstream.
    ReadOnly,
    /// Per-collection rules: a short-lived JWT with Qdrant `access` claims goes upstream.
    Collections,
}

impl KeyAccess {
    fn to_byte(self) -> u8 {
        match self {
            KeyAccess::Manage => 1,
            KeyAccess::ReadOnly => 2,
            KeyAccess::Collections => 3,
        }
    }

    fn from_byte(b: u8) -> Option<Self> {
        match b {
            1 => Some(KeyAccess::Manage),
            2 => Some(KeyAccess::ReadOnly),
            3 => Some(KeyAccess::Collections),
            _ => None,
        }
    }
}

/// What a key says about itself, once verified.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeyClaims {
    pub cluster_id: ClusterId,
    pub key_id: KeyId,
    /// Whole seconds; `None` for a key that never expires.
    pub expires_at: Option<Timestamp>,
    pub access: KeyAccess,
}

/// An issued API key. Shown to the client once; its `Debug` never shows it.
pub struct ApiKey(Zeroizing<String>);

impl ApiKey {
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// The last six characters, which a listing may show so a person can tell keys apart.
    pub fn postfix(&self) -> &str {
        &self.0[self.0.len() - 6..]
    }
}

impl fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ApiKey([redacted]…{})", self.postfix())
    }
}

/// Why a key could not be issued.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyIssueError {
    #[error("a key's expiry must be after 1970-01-01T00:00:00Z")]
    ExpiryBeforeEpoch,
}

/// Why a presented key was refused. Clients all see one generic answer; the kind is for
/// metrics and logs (it names no key material).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, thiserror::Error)]
pub enum KeyRejection {
    #[error("not a Lyra API key")]
    Malformed,
    #[error("key belongs to another cluster")]
    WrongCluster,
    #[error("key signature does not verify")]
    BadSignature,
    #[error("key has expired")]
    Expired,
}

impl KeyRejection {
    /// A stable label for metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            KeyRejection::Malformed => "malformed",
            KeyRejection::WrongCluster => "wrong_cluster",
            KeyRejection::BadSignature => "bad_signature",
            KeyRejection::Expired => "expired",
        }
    }
}

/// Issues and verifies one cluster's API keys. Build it once per cluster and keep it: the key
/// derivation and HMAC key schedule are done here, so each verification costs one HMAC.
#[derive(Clone)]
pub struct KeySigner {
    mac: Hmac<Sha256>,
}

impl fmt::Debug for KeySigner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("KeySigner([redacted])")
    }
}

impl KeySigner {
    /// A signer for the cluster whose read-write secret is `secret`.
    pub fn new(secret: &ClusterSecret) -> Self {
        let mut signing_key = Zeroizing::new([0u8; 32]);
        Hkdf::<Sha256>::new(Some(HKDF_SALT), secret.expose().as_bytes())
            .expand(HKDF_INFO, signing_key.as_mut_slice())
            .unwrap_or_else(|_| unreachable!("32 bytes is a valid HKDF-SHA256 output length"));
        let mac = <Hmac<Sha256> as Mac>::new_from_slice(signing_key.as_slice())
            .unwrap_or_else(|_| unreachable!("HMAC accepts keys of any length"));
        Self { mac }
    }

    pub fn issue(&self, claims: &KeyClaims) -> Result<ApiKey, KeyIssueError> {
        let expiry = match claims.expires_at {
            None => 0u64,
            Some(t) => u64::try_from(t.as_second())
                .ok()
                .filter(|s| *s > 0)
                .ok_or(KeyIssueError::ExpiryBeforeEpoch)?,
        };
        let mut raw = [0u8; RAW_LEN];
        raw[0] = KEY_VERSION;
        raw[1..17].copy_from_slice(claims.cluster_id.as_bytes());
        raw[17..33].copy_from_slice(claims.key_id.as_bytes());
        raw[33..41].copy_from_slice(&expiry.to_be_bytes());
        raw[41] = claims.access.to_byte();
        let mut mac = self.mac.clone();
        mac.update(&raw[..SIGNED_LEN]);
        let tag = mac.finalize().into_bytes();
        raw[SIGNED_LEN..].copy_from_slice(&tag[..TAG_LEN]);

        let mut key = String::with_capacity(KEY_LEN);
        key.push_str(KEY_PREFIX);
        URL_SAFE_NO_PAD.encode_string(raw, &mut key);
        Ok(ApiKey(Zeroizing::new(key)))
    }

    /// Verifies `key` for `cluster` at time `now`. Constant-time in the tag comparison; the
    /// checks before it look only at public framing and the cluster id.
    pub fn verify(
        &self,
        key: &str,
        cluster: ClusterId,
        now: Timestamp,
    ) -> Result<KeyClaims, KeyRejection> {
        let body = key
            .strip_prefix(KEY_PREFIX)
            .filter(|b| b.len() == ENCODED_LEN)
            .ok_or(KeyRejection::Malformed)?;
        let mut raw = [0u8; RAW_LEN];
        match URL_SAFE_NO_PAD.decode_slice(body, &mut raw) {
            Ok(RAW_LEN) => {}
            _ => return Err(KeyRejection::Malformed),
        }
        if raw[0] != KEY_VERSION {
            return Err(KeyRejection::Malformed);
        }
        if raw[1..17] != cluster.as_bytes()[..] {
            return Err(KeyRejection::WrongCluster);
        }
        let mut mac = self.mac.clone();
        mac.update(&raw[..SIGNED_LEN]);
        mac.verify_truncated_left(&raw[SIGNED_LEN..])
            .map_err(|_| KeyRejection::BadSignature)?;

        // Authentic from here on: the fields below were written by a signer with our secret.
        let access = KeyAccess::from_byte(raw[41]).ok_or(KeyRejection::Malformed)?;
        let mut key_id = [0u8; 16];
        key_id.copy_from_slice(&raw[17..33]);
        let mut expiry = [0u8; 8];
        expiry.copy_from_slice(&raw[33..41]);
        let expires_at = match u64::from_be_bytes(expiry) {
            0 => None,
            secs => {
                let secs = i64::try_from(secs).map_err(|_| KeyRejection::Malformed)?;
                if now.as_second() >= secs {
                    return Err(KeyRejection::Expired);
                }
                Some(Timestamp::from_second(secs).map_err(|_| KeyRejection::Malformed)?)
            }
        };
        Ok(KeyClaims {
            cluster_id: cluster,
            key_id: KeyId::from_uuid(uuid::Uuid::from_bytes(key_id)),
            expires_at,
            access,
        })
    }
}
