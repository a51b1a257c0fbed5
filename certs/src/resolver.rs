//! Serving the right certificate for each TLS handshake, from memory.
//!
//! The certificate is chosen by the SNI name with its first label stripped
//! (`<cluster>.dev.local.localhost` → `dev.local.localhost`), so one wildcard certificate per
//! region serves every cluster in it. Certificates can be added or replaced while the server
//! runs; the next handshake sees the change.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

#[derive(Debug, Default)]
pub struct CertResolver {
    by_suffix: RwLock<HashMap<String, Arc<CertifiedKey>>>,
}

impl CertResolver {
    pub fn new() -> Self {
        Self::default()
    }

    /// Serves `key` for every name directly under `suffix` (lower case, no `*.`).
    pub fn insert(&self, suffix: &str, key: Arc<CertifiedKey>) {
        if let Ok(mut map) = self.by_suffix.write() {
            map.insert(suffix.to_ascii_lowercase(), key);
        }
    }

    pub fn remove(&self, suffix: &str) {
        if let Ok(mut map) = self.by_suffix.write() {
            map.remove(&suffix.to_ascii_lowercase());
        }
    }

    pub fn len(&self) -> usize {
        self.by_suffix.read().map(|m| m.len()).unwrap_or(0)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The certificate for an SNI name, if its suffix has one.
    pub fn for_name(&self, sni: &str) -> Option<Arc<CertifiedKey>> {
        let (_, suffix) = sni.split_once('.')?;
        let map = self.by_suffix.read().ok()?;
        if suffix.bytes().any(|b| b.is_ascii_uppercase()) {
            map.get(&suffix.to_ascii_lowercase()).cloned()
        } else {
            map.get(suffix).cloned()
        }
    }
}

impl ResolvesServerCert for CertResolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        // No SNI, or an unknown suffix: no certificate, and the handshake fails.
        self.for_name(hello.server_name()?)
    }
}
