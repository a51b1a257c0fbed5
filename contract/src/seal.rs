//! Sealed secrets: how cluster secrets and certificate keys are stored in Redis.
//!
//! A secret is sealed with XChaCha20-Poly1305, with a fresh random 192-bit nonce each time
//! (large enough that random nonces never collide in practice) and a *context* string as
//! associated data, so a sealed blob only opens where it was meant to be used (e.g.
//! `lyra/cluster/<id>/read-write`).
//!
//! The key is not the platform key (`LYRA_MASTER_KEY`, 32 bytes, base64) itself but one
//! derived from it per [`Purpose`], chosen by the context: the CA's key is sealed for
//! `authority`, everything the gateways serve with for `serving`. Orion and Nebula hold the
//! platform key and so every purpose; GateKeeper is given only the serving key
//! (`LYRA_GATEWAY_KEY`, printed by `lyra platform-key gateway`), so the internet-facing
//! process cannot open the CA's key.
//!
//! The sealing key's id travels beside the ciphertext. A [`Keyring`] holds the current keys
//! and any previous ones: it seals with the current key of a purpose and opens with whichever
//! key a blob names, so keys can be rotated by adding a new one and resealing at leisure (Orion
//! reseals at start). Values sealed before purposes existed name the platform key itself; a
//! keyring holding the platform key still opens them, GateKeeper's does not.

use std::fmt;

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use hkdf::Hkdf;
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
    #[error("this keyring holds no {purpose} key: the value is not for this service to open")]
    OutOfScope { purpose: Purpose },
    #[error(
        "sealed with the serving key derived from the key this service was given: it was given \
         the platform key, and must be given the gateway key instead (`lyra platform-key gateway`)"
    )]
    PlatformKeyGiven,
    #[error(transparent)]
    Random(#[from] RandomError),
}

/// One platform key. `Debug` shows only its id.
pub struct PlatformKey {
    id: String,
    cipher: XChaCha20Poly1305,
    /// Kept to derive purpose keys from and to hand GateKeeper its key.
    secret: Zeroizing<[u8; PLATFORM_KEY_LEN]>,
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
        let mut secret = Zeroizing::new([0u8; PLATFORM_KEY_LEN]);
        secret.copy_from_slice(bytes);
        Ok(Self {
            id: key_id(bytes),
            cipher,
            secret,
        })
    }

    /// The key `purpose` seals with: HKDF-SHA256(salt = "lyra/seal/purpose", ikm = this key,
    /// info = the purpose's name). One way: a purpose key reveals neither the platform key nor
    /// the other purposes' keys.
    pub fn derive(&self, purpose: Purpose) -> PlatformKey {
        let hk = Hkdf::<Sha256>::new(Some(PURPOSE_SALT), self.secret.as_slice());
        let mut okm = Zeroizing::new([0u8; PLATFORM_KEY_LEN]);
        hk.expand(purpose.label().as_bytes(), okm.as_mut_slice())
            .unwrap_or_else(|_| unreachable!("32 bytes is a valid HKDF-SHA256 output length"));
        Self::from_bytes(okm.as_slice())
            .unwrap_or_else(|_| unreachable!("a derived key has the right length"))
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

    /// The same key again (a key is not `Clone`, to keep copies of its secret deliberate).
    fn duplicate(&self) -> PlatformKey {
        Self::from_bytes(self.secret.as_slice())
            .unwrap_or_else(|_| unreachable!("a key's own bytes have the right length"))
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

/// What a sealed secret is for. Each purpose has its own sealing key, derived one way from the
/// platform key (HKDF-SHA256), so a service can be given one purpose's key and nothing else:
/// GateKeeper, the process that faces the internet, holds only the serving key and so cannot
/// open the CA's private key even with full read access to Redis.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    /// What the data plane opens to serve: clusters' upstream secrets, regions' TLS keys.
    Serving,
    /// The platform CA's private key: only the issuers (Orion, `lyra certs`) open it.
    Authority,
}

/// Contexts under this prefix are sealed for [`Purpose::Authority`]; every other one for
/// [`Purpose::Serving`]. The context names what a blob is, so it also names who may open it.
pub const AUTHORITY_CONTEXT_PREFIX: &str = "lyra/ca/";

impl Purpose {
    pub fn of_context(context: &str) -> Self {
        if context.starts_with(AUTHORITY_CONTEXT_PREFIX) {
            Purpose::Authority
        } else {
            Purpose::Serving
        }
    }

    fn label(self) -> &'static str {
        match self {
            Purpose::Serving => "serving",
            Purpose::Authority => "authority",
        }
    }
}

impl fmt::Display for Purpose {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.label())
    }
}

const PURPOSE_SALT: &[u8] = b"lyra/seal/purpose";

/// The sealing keys a service holds: per purpose the current key first, then earlier ones
/// (kept open-only during a rotation), and, for a service given the platform key itself, the
/// platform keys, which opened everything sealed before purposes existed.
#[derive(Debug)]
pub struct Keyring {
    serving: Vec<PlatformKey>,
    /// Empty in a keyring scoped to serving.
    authority: Vec<PlatformKey>,
    /// The platform keys themselves: open-only, for values sealed before purposes existed.
    legacy: Vec<PlatformKey>,
    /// In a keyring scoped to serving: the id its key would give the serving key if it were
    /// the platform key, to say so when someone configures the wrong one.
    mistaken_for_platform: Option<String>,
}

/// A platform key from configuration that cannot be used, naming which setting it came from.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{setting}: {error}")]
pub struct KeyringConfigError {
    pub setting: &'static str,
    pub error: PlatformKeyError,
}

fn keys_from_config(
    current: &str,
    previous: &[String],
    settings: (&'static str, &'static str),
) -> Result<(PlatformKey, Vec<PlatformKey>), KeyringConfigError> {
    let current = PlatformKey::from_base64(current).map_err(|error| KeyringConfigError {
        setting: settings.0,
        error,
    })?;
    let previous = previous
        .iter()
        .filter(|k| !k.trim().is_empty())
        .map(|k| PlatformKey::from_base64(k))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|error| KeyringConfigError {
            setting: settings.1,
            error,
        })?;
    Ok((current, previous))
}

impl Keyring {
    /// The full keyring of a service given the platform key (`current`) and, during a
    /// rotation, earlier platform keys: it seals and opens for every purpose.
    pub fn new(current: PlatformKey, previous: Vec<PlatformKey>) -> Self {
        let platform: Vec<PlatformKey> = std::iter::once(current).chain(previous).collect();
        let derive = |purpose| platform.iter().map(|k| k.derive(purpose)).collect();
        Self {
            serving: derive(Purpose::Serving),
            authority: derive(Purpose::Authority),
            legacy: platform,
            mistaken_for_platform: None,
        }
    }

    /// A keyring scoped to [`Purpose::Serving`]: the serving key (`lyra platform-key
    /// gateway`) and earlier ones. It cannot seal or open anything of another purpose.
    pub fn serving_only(current: PlatformKey, previous: Vec<PlatformKey>) -> Self {
        let mistaken_for_platform = Some(current.derive(Purpose::Serving).id);
        Self {
            serving: std::iter::once(current).chain(previous).collect(),
            authority: Vec::new(),
            legacy: Vec::new(),
            mistaken_for_platform,
        }
    }

    /// A keyring that seals as releases before purposes did, under the platform key itself,
    /// and opens both kinds. For tests of the migration from those releases, which need
    /// values sealed the old way.
    pub fn before_purposes(platform: PlatformKey) -> Self {
        let both = |purpose| vec![platform.duplicate(), platform.derive(purpose)];
        Self {
            serving: both(Purpose::Serving),
            authority: both(Purpose::Authority),
            legacy: Vec::new(),
            mistaken_for_platform: None,
        }
    }

    /// The keyring a service runs with: `LYRA_MASTER_KEY` and, during a rotation, the
    /// earlier keys of `LYRA_MASTER_KEY_PREVIOUS` (blank entries ignored).
    pub fn from_config(current: &str, previous: &[String]) -> Result<Self, KeyringConfigError> {
        let (current, previous) = keys_from_config(
            current,
            previous,
            ("LYRA_MASTER_KEY", "LYRA_MASTER_KEY_PREVIOUS"),
        )?;
        Ok(Self::new(current, previous))
    }

    /// GateKeeper's keyring: `LYRA_GATEWAY_KEY` and the earlier `LYRA_GATEWAY_KEY_PREVIOUS`.
    pub fn serving_from_config(
        current: &str,
        previous: &[String],
    ) -> Result<Self, KeyringConfigError> {
        let (current, previous) = keys_from_config(
            current,
            previous,
            ("LYRA_GATEWAY_KEY", "LYRA_GATEWAY_KEY_PREVIOUS"),
        )?;
        Ok(Self::serving_only(current, previous))
    }

    fn keys(&self, purpose: Purpose) -> &[PlatformKey] {
        match purpose {
            Purpose::Serving => &self.serving,
            Purpose::Authority => &self.authority,
        }
    }

    /// The id of the key that seals for `purpose` now; `None` when this keyring has none.
    pub fn current_id(&self, purpose: Purpose) -> Option<&str> {
        self.keys(purpose).first().map(PlatformKey::id)
    }

    /// The serving key to give GateKeeper (base64), in a keyring that holds the platform key.
    pub fn gateway_key(&self) -> Option<Zeroizing<String>> {
        if self.legacy.is_empty() {
            return None;
        }
        self.serving
            .first()
            .map(|k| Zeroizing::new(STANDARD.encode(k.secret.as_slice())))
    }

    /// Seals `plaintext` for `context`, under the current key of the context's purpose.
    pub fn seal(&self, plaintext: &[u8], context: &str) -> Result<Sealed, SealError> {
        let purpose = Purpose::of_context(context);
        let key = self
            .keys(purpose)
            .first()
            .ok_or(SealError::OutOfScope { purpose })?;
        let mut nonce = [0u8; NONCE_LEN];
        random::fill(&mut nonce)?;
        let ciphertext = key
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
            kid: key.id.clone(),
            alg: ALGORITHM.to_owned(),
            nonce: URL_SAFE_NO_PAD.encode(nonce),
            ciphertext: URL_SAFE_NO_PAD.encode(ciphertext),
        })
    }

    pub fn unseal(&self, sealed: &Sealed, context: &str) -> Result<Zeroizing<Vec<u8>>, SealError> {
        if sealed.alg != ALGORITHM {
            return Err(SealError::UnsupportedAlgorithm(sealed.alg.clone()));
        }
        let purpose = Purpose::of_context(context);
        if self.keys(purpose).is_empty() {
            return Err(SealError::OutOfScope { purpose });
        }
        let key = self
            .keys(purpose)
            .iter()
            .chain(&self.legacy)
            .find(|k| k.id == sealed.kid)
            .ok_or_else(|| {
                if self.mistaken_for_platform.as_deref() == Some(sealed.kid.as_str()) {
                    SealError::PlatformKeyGiven
                } else {
                    SealError::UnknownKey {
                        kid: sealed.kid.clone(),
                    }
                }
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

    /// Whether `sealed` (stored for `context`) was made with another key than the one its
    /// purpose seals with now (an earlier platform key, or the platform key itself from before
    /// purposes existed) and should be resealed.
    pub fn needs_reseal(&self, sealed: &Sealed, context: &str) -> bool {
        self.current_id(Purpose::of_context(context)) != Some(sealed.kid.as_str())
    }

    /// Opens `sealed` with whichever key made it and seals it again with the current key.
    pub fn reseal(&self, sealed: &Sealed, context: &str) -> Result<Sealed, SealError> {
        let plaintext = self.unseal(sealed, context)?;
        self.seal(&plaintext, context)
    }
}
