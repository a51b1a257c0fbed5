//! The route table: every cluster a gateway serves, in memory.
//!
//! Filled from the versioned snapshot at start, kept current by pub/sub events (an event
//! older than what the table holds is ignored), replaced wholesale on every resync. A route
//! carries what the hot path needs ready-made: the key signer (its HKDF done once) and the
//! upstream credentials, unsealed once per route version.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use contract::host::{EndpointHost, Tld};
use contract::ids::ClusterId;
use contract::keyscheme::{ClusterSecret, KeySigner, SecretKind};
use contract::route::{NodeEndpoint, RouteRecord};
use contract::seal::Keyring;
use moka::sync::Cache;

/// A route made usable.
pub struct Route {
    pub record: RouteRecord,
    pub signer: KeySigner,
    /// Signs the short-lived JWTs of collection-scoped keys (Qdrant: HS256 with its api key).
    pub jwt_key: jsonwebtoken::EncodingKey,
    /// The route's host, parsed once under this gateway's TLD, so a request's host is
    /// compared without allocating; `None` when the host is not under that TLD (every request
    /// to it is then an unknown host).
    pub endpoint: Option<EndpointHost>,
    /// Qdrant's read-write key, sent upstream for manage keys (ready as a header value).
    pub read_write_header: Arc<str>,
    /// Qdrant's read-only key, sent upstream for read-only keys.
    pub read_only_header: Arc<str>,
    pub limits: Arc<crate::limits::ClusterLimits>,
    next: AtomicUsize,
    /// Per node: until when (ms on the route's clock) it is skipped after refusing a connection.
    down_until: Vec<AtomicU64>,
    clock: Instant,
}

/// How long a node that refused a connection is passed over.
pub const NODE_PENALTY: Duration = Duration::from_secs(5);

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
        let endpoint = Tld::new(&defaults.tld)
            .ok()
            .and_then(|tld| EndpointHost::parse(&record.host, &tld).ok());
        Ok(Self {
            endpoint,
            read_write_header: Arc::from(read_write.expose()),
            read_only_header: Arc::from(read_only.expose()),
            signer: KeySigner::new(&read_write),
            jwt_key: jsonwebtoken::EncodingKey::from_secret(read_write.expose().as_bytes()),
            limits: Arc::new(crate::limits::ClusterLimits::new(crate::limits::effective(
                &record.limits,
                defaults,
            ))),
            down_until: record.nodes.iter().map(|_| AtomicU64::new(0)).collect(),
            clock: Instant::now(),
            record,
            next: AtomicUsize::new(0),
        })
    }

    fn now_ms(&self) -> u64 {
        self.clock.elapsed().as_millis() as u64
    }

    /// Nodes in round-robin order from the next one, healthy ones first (passive health: a
    /// node that refused a connection is tried last for a while), as `(index, node)`.
    pub fn nodes_from_next(&self) -> Vec<(usize, &NodeEndpoint)> {
        let n = self.record.nodes.len().max(1);
        let start = self.next.fetch_add(1, Ordering::Relaxed) % n;
        let now = self.now_ms();
        let mut order: Vec<(usize, &NodeEndpoint)> = (0..self.record.nodes.len())
            .map(|i| (i + start) % n)
            .map(|i| (i, &self.record.nodes[i]))
            .collect();
        order.sort_by_key(|(i, _)| self.down_until[*i].load(Ordering::Relaxed) > now);
        order
    }

    /// Marks node `index` as refusing connections.
    pub fn mark_down(&self, index: usize) {
        if let Some(slot) = self.down_until.get(index) {
            slot.store(
                self.now_ms() + NODE_PENALTY.as_millis() as u64,
                Ordering::Relaxed,
            );
        }
    }
}

pub struct RouteTable {
    routes: Cache<ClusterId, Arc<Route>>,
    /// Lookups of unknown hosts in flight: concurrent misses for one host share one call.
    pub(crate) lookups: moka::future::Cache<ClusterId, Option<Arc<Route>>>,
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
            lookups: moka::future::Cache::builder()
                .time_to_live(Duration::from_millis(1))
                .max_capacity(100_000)
                .build(),
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
