//! Revoked API keys: loaded whole at start and on every resync, fed by pub/sub in between.
//! A revocation is remembered until the key would have expired anyway.

use std::collections::HashMap;
use std::sync::RwLock;

use contract::ids::KeyId;
use jiff::Timestamp;

#[derive(Default)]
pub struct RevokedKeys {
    /// Key id → the key's own expiry (unix seconds), `None` for keys that never expire.
    keys: RwLock<HashMap<KeyId, Option<i64>>>,
}

impl RevokedKeys {
    pub fn is_revoked(&self, id: &KeyId) -> bool {
        self.keys.read().map(|k| k.contains_key(id)).unwrap_or(true)
    }

    pub fn insert(&self, id: KeyId, expires_at: Option<Timestamp>) {
        if let Ok(mut keys) = self.keys.write() {
            keys.insert(id, expires_at.map(|t| t.as_second()));
        }
    }

    pub fn replace_all(&self, all: HashMap<KeyId, Option<i64>>) {
        if let Ok(mut keys) = self.keys.write() {
            *keys = all;
        }
    }

    /// Forgets revocations of keys that have expired by now (they fail verification anyway).
    pub fn prune(&self, now: Timestamp) {
        let now = now.as_second();
        if let Ok(mut keys) = self.keys.write() {
            keys.retain(|_, exp| exp.is_none_or(|e| e > now));
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.keys.read().map(|k| k.len()).unwrap_or(0)
    }
}
