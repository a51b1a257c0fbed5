//! The route table: every cluster a gateway serves, in memory.
//!
//! Filled from the versioned snapshot at start, kept current by pub/sub events (an event
//! older than what the table holds is ignored), replaced wholesale on every resync. A route
//! carries what the hot path needs ready-made: the key signer (its HKDF done once) and the
//! upstream credentials, unsealed once per route version.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use contract::ids::ClusterId;
use contract::keyscheme::{ClusterSecret, KeySigner, SecretKind};
use contract::route::{NodeEndpoint, RouteRecord};
use contract::seal::Keyring;
use moka::sync::Cache;

/// A route made usable.
pub struct Route {
    pub record: RouteRecord,
    pub signer: KeySigner,
    /// Qdrant's read-write key for this cluster (sent upstream for manage keys).
    pub read_write: ClusterSecret,
    /// Qdrant's read-only key (sent upstream for read-only keys).
    pub read_only: ClusterSecret,
    /// Signs the short-lived JWTs of collection-scoped keys (Qdrant: HS256 with its api key).
    pub jwt_key: jsonwebtoken::EncodingKey,
    pub limits: Arc<crate::limits::ClusterLimits>,
    next: AtomicUsize,
}

#[derive(Debug, thiserror::Error)]
pub enum RouteError {
    #[error("cannot open the route's credentials: {0}")]
    Seal(#[from] contract::seal::SealError),
    #[error("the route's credential is not a valid secret")]
    Secret,
}

fn open(
    keyring: &Keyring,
    cluster: ClusterId,
    kind: SecretKind,
    sealed: &contract::seal::Sealed,
) -> Result<ClusterSecret, RouteError> {
    let plain = keyring.unseal(sealed, &kind.seal_context(cluster))?;
    std::str::from_utf8(&plain)
        .ok()
        .and_then(|s| ClusterSecret::parse(s).ok())
        .ok_or(RouteError::Secret)
}

impl Route {
    pub fn from_record(
        record: RouteRecord,
        keyring: &Keyring,
        defaults: &crate::config::GatekeeperConfig,
    ) -> Result<Self, RouteError> {
        let id = record.cluster_id;
        let read_write = open(
            keyring,
            id,
            SecretKind::ReadWrite,
            &record.credentials.read_write,
        )?;
        let read_only = open(
            keyring,
            id,
            SecretKind::ReadOnly,
            &record.credentials.read_only,
        )?;
        Ok(Self {
            signer: KeySigner::new(&read_write),
            jwt_key: jsonwebtoken::EncodingKey::from_secret(read_write.expose().as_bytes()),
            read_write,
            read_only,
            limits: Arc::new(crate::limits::ClusterLimits::new(crate::limits::effective(
                &record.limits,
                defaults,
            ))),
            record,
            next: AtomicUsize::new(0),
        })
    }

    /// Nodes in round-robin order starting from the next one, for picking and for retries.
    pub fn nodes_from_next(&self) -> impl Iterator<Item = &NodeEndpoint> {
        let n = self.record.nodes.len().max(1);
        let start = self.next.fetch_add(1, Ordering::Relaxed) % n;
        self.record
            .nodes
            .iter()
            .cycle()
            .skip(start)
            .take(self.record.nodes.len())
    }
}

pub struct RouteTable {
    routes: Cache<ClusterId, Arc<Route>>,
    /// Clusters recently looked up in Redis and not found: not asked again for a while, so
    /// random hosts cannot flood Redis.
    missing: Cache<ClusterId, ()>,
}

impl Default for RouteTable {
    fn default() -> Self {
        Self::new(Duration::from_secs(5))
    }
}

impl RouteTable {
    pub fn new(negative_ttl: Duration) -> Self {
        Self {
            routes: Cache::builder().build(),
            missing: Cache::builder()
                .time_to_live(negative_ttl)
                .max_capacity(100_000)
                .build(),
        }
    }

    pub fn get(&self, id: &ClusterId) -> Option<Arc<Route>> {
        self.routes.get(id)
    }

    pub(crate) fn len(&self) -> u64 {
        self.routes.run_pending_tasks();
        self.routes.entry_count()
    }

    /// Stores `route` unless the table holds a newer version; `true` if stored.
    pub fn upsert(&self, route: Route) -> bool {
        let id = route.record.cluster_id;
        if self
            .routes
            .get(&id)
            .is_some_and(|held| held.record.version >= route.record.version)
        {
            return false;
        }
        self.missing.invalidate(&id);
        self.routes.insert(id, Arc::new(route));
        true
    }

    /// Removes the route unless the table holds a version newer than the removal.
    pub fn remove(&self, id: &ClusterId, version: u64) {
        if self
            .routes
            .get(id)
            .is_some_and(|held| held.record.version < version)
        {
            self.routes.invalidate(id);
        }
    }

    /// Replaces the whole table with a snapshot.
    pub fn replace_all(&self, routes: Vec<Route>) {
        let keep: std::collections::HashSet<ClusterId> =
            routes.iter().map(|r| r.record.cluster_id).collect();
        for route in routes {
            let id = route.record.cluster_id;
            self.routes.insert(id, Arc::new(route));
        }
        let stale: Vec<ClusterId> = self
            .routes
            .iter()
            .map(|(k, _)| *k)
            .filter(|k| !keep.contains(k))
            .collect();
        for id in stale {
            self.routes.invalidate(&id);
        }
    }

    pub fn known_missing(&self, id: &ClusterId) -> bool {
        self.missing.contains_key(id)
    }

    pub fn mark_missing(&self, id: ClusterId) {
        self.missing.insert(id, ());
    }
}
