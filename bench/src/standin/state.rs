//! What a stand-in node holds: its peers, its collections (persisted under the storage path
//! so a restarted node keeps them), and counters a test can read.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::auth::Keys;

#[derive(Debug, Default, Clone, Serialize, Deserialize)]
pub struct Collection {
    /// Point id (as written) → payload.
    pub points: BTreeMap<String, Value>,
    /// The creation request's parameters (vectors, shard_number, replication_factor), shown
    /// back in `GET /collections/{c}` as Qdrant shows its config.
    #[serde(default)]
    pub params: Value,
    /// Where each shard's replicas are: shard id to peer ids. Every stand-in node holds every
    /// point whatever this says; it is what `/collections/{c}/cluster` reports and what
    /// Qdrant's shard operations change, so a client's moves can be checked.
    #[serde(default)]
    pub shards: BTreeMap<u32, Vec<u64>>,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct Persisted {
    peer_id: u64,
    collections: BTreeMap<String, Collection>,
}

pub struct Node {
    pub keys: Keys,
    pub peer_id: u64,
    pub uri: Option<String>,
    pub ready: AtomicBool,
    /// Peer id → p2p URI, this node included.
    pub peers: Mutex<BTreeMap<u64, String>>,
    pub leader: AtomicU64,
    pub collections: Mutex<BTreeMap<String, Collection>>,
    file: PathBuf,
    /// Every request that reached the REST or gRPC port.
    pub requests: AtomicU64,
    /// Requests whose credential was accepted.
    pub authorized: AtomicU64,
}

impl Node {
    pub fn open(keys: Keys, storage: PathBuf, uri: Option<String>) -> std::io::Result<Self> {
        std::fs::create_dir_all(&storage)?;
        let file = storage.join("standin.json");
        let persisted: Persisted = match std::fs::read(&file) {
            Ok(bytes) => serde_json::from_slice(&bytes).unwrap_or_default(),
            Err(_) => Persisted::default(),
        };
        let peer_id = if persisted.peer_id != 0 {
            persisted.peer_id
        } else {
            new_peer_id()
        };
        let mut peers = BTreeMap::new();
        if let Some(u) = &uri {
            peers.insert(peer_id, u.clone());
        }
        let node = Self {
            keys,
            peer_id,
            uri,
            ready: AtomicBool::new(false),
            peers: Mutex::new(peers),
            leader: AtomicU64::new(peer_id),
            collections: Mutex::new(persisted.collections),
            file,
            requests: AtomicU64::new(0),
            authorized: AtomicU64::new(0),
        };
        node.persist();
        Ok(node)
    }

    /// Writes the collections to disk (atomically: temp file, then rename).
    pub fn persist(&self) {
        let collections = match self.collections.lock() {
            Ok(c) => c.clone(),
            Err(_) => return,
        };
        let data = Persisted {
            peer_id: self.peer_id,
            collections,
        };
        let Ok(bytes) = serde_json::to_vec(&data) else {
            return;
        };
        let tmp = self.file.with_extension("tmp");
        if std::fs::write(&tmp, bytes).is_ok() {
            let _ = std::fs::rename(&tmp, &self.file);
        }
    }

    pub fn count_request(&self) {
        self.requests.fetch_add(1, Ordering::Relaxed);
    }

    pub fn count_authorized(&self) {
        self.authorized.fetch_add(1, Ordering::Relaxed);
    }
}

/// A random peer id, from the time and the process id (no RNG crate needed for a double).
fn new_peer_id() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u32(std::process::id());
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0),
    );
    h.finish() >> 1
}
