//! Sealed secrets: how cluster secrets and certificate keys are stored in Redis.
//!
//! A secret is sealed with XChaCha20-Poly1305 under the platform key (`LYRA_MASTER_KEY`,
//! 32 bytes, base64), with a fresh random 192-bit nonce each time (large enough that random
//! nonces never collide in practice) and a *context* string as associated data, so a sealed
//! blob only opens where it was meant to be used (e.g. `lyra/cluster/<id>/read-write`).
//!
//! The platform key's id travels beside the ciphertext. A [`Keyring`] holds the current key
//! and any previous ones: it seals with the current key and opens with whichever key a blob
//! names, so the platform key can be rotated by adding a new one and resealing at leisure.

use std::fmt;

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use zeroize::Zeroizing;

use crate::random::{self, RandomError};

/// Length of the platform key, in bytes.
pub const PLATFORM_KEY_LEN: usize = 32;
/// The one algorithm this build seals with.
pub const ALGORITHM: &str = "xchacha20poly1305";
const NONCE_LEN: usize = 24;

/// Why a platform key given by configuration is unusable. Never contains the key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlatformKeyError {
    #[error("the platform key is not valid base64")]
    NotBase64,
    #[error("the platform key must be {PLATFORM_KEY_LEN} bytes, got {0}")]
    WrongLength(usize),
}

/// Why a sealed value could not be made or opened.
#[derive(Debug, thiserror::Error)]
pub enum SealError {
    #[error("sealed with platform key {kid:?}, which this keyring does not hold")]
    UnknownKey { kid: String },
    #[error("sealed with unsupported algorithm {0:?}")]
    UnsupportedAlgorithm(String),
    #[error("sealed value is malformed: {0}")]
    Malformed(&'static str),
    #[error("sealed value does not open: wrong key, wrong context, or tampered")]
    Unauthentic,
    #[error(transparent)]
    Random(#[from] RandomError),
}

/// One platform key. `Debug` shows only its id.
pub struct PlatformKey {
    id: String,
    cipher: XChaCha20Poly1305,
}

impl PlatformKey {
    /// Reads a key from its base64 form (standard alphabet, padding optional; surrounding
    /// white space, such as a file's trailing newline, is ignored).
    pub fn from_base64(encoded: &str) -> Result<Self, PlatformKeyError> {
        let trimmed = encoded.trim().trim_end_matches('=');
        let bytes = Zeroizing::new(
            base64::engine::general_purpose::STANDARD_NO_PAD
                .decode(trimmed)
                .map_err(|_| PlatformKeyError::NotBase64)?,
        );
        Self::from_bytes(&bytes)
    }

    pub fn from_bytes(bytes: &[u8]) -> Result<Self, PlatformKeyError> {
        if bytes.len() != PLATFORM_KEY_LEN {
            return Err(PlatformKeyError::WrongLength(bytes.len()));
        }
        let cipher = XChaCha20Poly1305::new_from_slice(bytes)
            .map_err(|_| PlatformKeyError::WrongLength(bytes.len()))?;
        Ok(Self {
            id: key_id(bytes),
            cipher,
        })
    }

    /// A new random key, and its base64 form to keep in configuration.
    pub fn generate() -> Result<(Self, Zeroizing<String>), RandomError> {
        let mut bytes = Zeroizing::new([0u8; PLATFORM_KEY_LEN]);
        random::fill(bytes.as_mut_slice())?;
        let encoded = Zeroizing::new(STANDARD.encode(bytes.as_slice()));
        let key = Self::from_bytes(bytes.as_slice())
            .unwrap_or_else(|_| unreachable!("a generated key has the right length"));
        Ok((key, encoded))
    }

    /// A public identifier of the key: derived from it one way, so it reveals nothing.
    pub fn id(&self) -> &str {
        &self.id
    }
}

impl fmt::Debug for PlatformKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PlatformKey").field("id", &self.id).finish()
    }
}

/// The first 8 bytes of HMAC-SHA256(key, "lyra platform key id"), in hex.
fn key_id(key: &[u8]) -> String {
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(key)
        .unwrap_or_else(|_| unreachable!("HMAC accepts keys of any length"));
    mac.update(b"lyra platform key id");
    mac.finalize().into_bytes()[..8]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// A sealed secret as stored. Nothing here is secret: the ciphertext is useless without the
/// platform key.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Sealed {
    /// Id of the platform key that sealed it.
    pub kid: String,
    pub alg: String,
    /// base64url, no padding.
    pub nonce: String,
    /// base64url, no padding; includes the 16-byte authentication tag.
    pub ciphertext: String,
}

impl fmt::Debug for Sealed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Sealed")
            .field("kid", &self.kid)
            .field("alg", &self.alg)
            .field("ciphertext_len", &self.ciphertext.len())
            .finish()
    }
}

/// The current platform key and any previous ones.
#[derive(Debug)]
pub struct Keyring {
    current: PlatformKey,
    previous: Vec<PlatformKey>,
}

/// A platform key from configuration that cannot be used, naming which setting it came from.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{setting}: {error}")]
pub struct KeyringConfigError {
    pub setting: &'static str,
    pub error: PlatformKeyError,
}

impl Keyring {
    pub fn new(current: PlatformKey, previous: Vec<PlatformKey>) -> Self {
        Self { current, previous }
    }

    /// The keyring a service runs with: `LYRA_MASTER_KEY` and, during a rotation, the
    /// earlier keys of `LYRA_MASTER_KEY_PREVIOUS` (blank entries ignored).
    pub fn from_config(current: &str, previous: &[String]) -> Result<Self, KeyringConfigError> {
        let current = PlatformKey::from_base64(current).map_err(|error| KeyringConfigError {
            setting: "LYRA_MASTER_KEY",
            error,
        })?;
        let previous = previous
            .iter()
            .filter(|k| !k.trim().is_empty())
            .map(|k| PlatformKey::from_base64(k))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|error| KeyringConfigError {
                setting: "LYRA_MASTER_KEY_PREVIOUS",
                error,
            })?;
        Ok(Self::new(current, previous))
    }

    pub fn current_id(&self) -> &str {
        self.current.id()
    }

    pub fn seal(&self, plaintext: &[u8], context: &str) -> Result<Sealed, SealError> {
        let mut nonce = [0u8; NONCE_LEN];
        random::fill(&mut nonce)?;
        let ciphertext = self
            .current
            .cipher
            .encrypt(
                XNonce::from_slice(&nonce),
                Payload {
                    msg: plaintext,
                    aad: context.as_bytes(),
                },
            )
            .map_err(|_| SealError::Malformed("plaintext too long"))?;
        Ok(Sealed {
            kid: self.current.id.clone(),
            alg: ALGORITHM.to_owned(),
            nonce: URL_SAFE_NO_PAD.encode(nonce),
            ciphertext: URL_SAFE_NO_PAD.encode(ciphertext),
        })
    }

    pub fn unseal(&self, sealed: &Sealed, context: &str) -> Result<Zeroizing<Vec<u8>>, SealError> {
        if sealed.alg != ALGORITHM {
            return Err(SealError::UnsupportedAlgorithm(sealed.alg.clone()));
        }
        let key = std::iter::once(&self.current)
            .chain(&self.previous)
            .find(|k| k.id == sealed.kid)
            .ok_or_else(|| SealError::UnknownKey {
                kid: sealed.kid.clone(),
            })?;
        let nonce = URL_SAFE_NO_PAD
            .decode(&sealed.nonce)
            .map_err(|_| SealError::Malformed("nonce is not base64url"))?;
        if nonce.len() != NONCE_LEN {
            return Err(SealError::Malformed("nonce has the wrong length"));
        }
        let ciphertext = URL_SAFE_NO_PAD
            .decode(&sealed.ciphertext)
            .map_err(|_| SealError::Malformed("ciphertext is not base64url"))?;
        key.cipher
            .decrypt(
                XNonce::from_slice(&nonce),
                Payload {
                    msg: &ciphertext,
                    aad: context.as_bytes(),
                },
            )
            .map(Zeroizing::new)
            .map_err(|_| SealError::Unauthentic)
    }

    /// Whether `sealed` was made with an older key and should be resealed.
    pub fn needs_reseal(&self, sealed: &Sealed) -> bool {
        sealed.kid != self.current.id
    }

    /// Opens `sealed` with whichever key made it and seals it again with the current key.
    pub fn reseal(&self, sealed: &Sealed, context: &str) -> Result<Sealed, SealError> {
        let plaintext = self.unseal(sealed, context)?;
        self.seal(&plaintext, context)
    }
}
