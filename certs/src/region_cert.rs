//! One region's wildcard certificate.

use std::sync::Arc;

use jiff::{SignedDuration, Timestamp};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::sign::CertifiedKey;
use zeroize::Zeroizing;

use crate::CertError;

/// Renew when less than this is left (a third of the 90-day life).
pub const RENEW_BEFORE: SignedDuration = SignedDuration::from_hours(30 * 24);

#[derive(Clone)]
pub struct RegionCert {
    pub provider: String,
    pub region: String,
    /// `*.<region>.<provider>.<tld>`.
    pub name: String,
    /// The leaf, then the CA, in PEM.
    pub chain_pem: String,
    pub key_pem: Zeroizing<String>,
    pub not_after: Timestamp,
    /// Brought by the operator (`lyra certs import`) rather than issued by the platform CA:
    /// Lyra never replaces it; renewing it is the operator's job.
    pub provided: bool,
}

impl std::fmt::Debug for RegionCert {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RegionCert")
            .field("name", &self.name)
            .field("not_after", &self.not_after)
            .finish_non_exhaustive()
    }
}

impl RegionCert {
    /// The suffix SNI names are matched on: the name without its `*.`.
    pub fn suffix(&self) -> &str {
        self.name.strip_prefix("*.").unwrap_or(&self.name)
    }

    pub fn needs_renewal(&self, now: Timestamp) -> bool {
        now.saturating_add(RENEW_BEFORE)
            .is_ok_and(|soon| soon >= self.not_after)
    }

    /// What rustls serves.
    pub fn certified_key(&self) -> Result<Arc<CertifiedKey>, CertError> {
        let chain: Vec<CertificateDer<'static>> =
            CertificateDer::pem_slice_iter(self.chain_pem.as_bytes())
                .collect::<Result<_, _>>()
                .map_err(|e| CertError::Pem(format!("certificate chain of {}: {e}", self.name)))?;
        let key = PrivateKeyDer::from_pem_slice(self.key_pem.as_bytes())
            .map_err(|e| CertError::Pem(format!("key of {}: {e}", self.name)))?;
        let provider = rustls::crypto::ring::default_provider();
        let key = provider.key_provider.load_private_key(key)?;
        Ok(Arc::new(CertifiedKey::new(chain, key)))
    }
}
