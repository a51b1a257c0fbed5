//! The route table: every cluster a gateway serves, in memory.
//!
//! Filled from the versioned snapshot at start, kept current by pub/sub events (an event
//! older than what the table holds is ignored), and brought in line with the snapshot on every
//! resync, where a route whose version did not change is kept as it is (its limiter state,
//! in-flight count and node health go on; nothing is unsealed again). A removal leaves a
//! tombstone with its version, so a lookup that read the route before it was removed cannot
//! put it back. A route carries what the hot path needs ready-made: the key signer (its HKDF
//! done once) and the upstream credentials, unsealed once per route version.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use contract::host::{EndpointHost, Tld};
use contract::ids::ClusterId;
use contract::keyscheme::{ClusterSecret, KeySigner, SecretKind};
use contract::route::RouteRecord;
use contract::seal::Keyring;
use moka::sync::Cache;
use pingora::upstreams::peer::HttpPeer;

use crate::upstream::{NodePeers, Resolved};

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
    pub read_write_header: http::HeaderValue,
    /// Qdrant's read-only key, sent upstream for read-only keys.
    pub read_only_header: http::HeaderValue,
    pub limits: Arc<crate::limits::ClusterLimits>,
    /// Per node, its ready upstream peers (addresses resolved when the route was made).
    pub peers: Vec<NodePeers>,
    next: AtomicUsize,
    /// Per node: until when (ms on the route's clock) it is skipped after refusing a connection.
    down_until: Vec<AtomicU64>,
    clock: Instant,
}

/// Node `i`'s bit in a set of tried nodes (`u128`, bit `i` for node `i`). Nodes past the 128th
/// have none: they are never recorded as tried, so a retry may meet them again.
pub fn tried_bit(i: usize) -> u128 {
    if i < 128 { 1 << i } else { 0 }
}

/// How long a removal is remembered: far longer than a lookup or an event can be in flight,
/// and past at least one full resync.
pub const TOMBSTONE_TTL: Duration = Duration::from_secs(600);

/// How long a node that refused a connection is passed over.
pub const NODE_PENALTY: Duration = Duration::from_secs(5);

#[derive(Debug, thiserror::Error)]
pub enum RouteError {
    #[error("cannot open the route's credentials: {0}")]
    Seal(#[from] contract::seal::SealError),
    #[error("the route's credential is not a valid secret")]
    Secret,
}

/// A secret as a header value, marked sensitive (kept out of HPACK's table and of `Debug`).
fn secret_header(secret: &ClusterSecret) -> Result<http::HeaderValue, RouteError> {
    let mut value = http::HeaderValue::from_str(secret.expose()).map_err(|_| RouteError::Secret)?;
    value.set_sensitive(true);
    Ok(value)
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
    /// Makes a route of `record`: its secrets unsealed, its nodes' peers built from the
    /// addresses in `resolved` (a node whose name did not resolve is skipped).
    pub fn from_record(
        record: RouteRecord,
        keyring: &Keyring,
        defaults: &crate::config::GatekeeperConfig,
        resolved: &Resolved,
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
        let timeouts = defaults.upstream_timeouts();
        Ok(Self {
            endpoint,
            read_write_header: secret_header(&read_write)?,
            read_only_header: secret_header(&read_only)?,
            peers: record
                .nodes
                .iter()
                .map(|n| NodePeers::new(n, resolved, timeouts))
                .collect(),
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

    /// Where a request starts in the round-robin order (taken once per request).
    pub fn start(&self) -> usize {
        self.next.fetch_add(1, Ordering::Relaxed)
    }

    /// The next node to try for a request that started at `start` and has tried the nodes in
    /// `tried` (bit `i` for node `i`), on the REST or gRPC listener, as `(index, peer)`:
    /// round-robin, nodes that refused a connection lately after the others (passive health),
    /// nodes whose address did not resolve never. No allocation: this runs on every request.
    pub fn pick(&self, start: usize, tried: u128, grpc: bool) -> Option<(usize, &HttpPeer)> {
        let n = self.peers.len();
        if n == 0 {
            return None;
        }
        let now = self.now_ms();
        let open = |i: &usize| self.open(*i, tried, grpc);
        // `start` is a wrapping counter: reduced once, it cannot overflow when added to.
        let first = start % n;
        let ring = (0..n).map(|k| (first + k) % n);
        let chosen = ring
            .clone()
            .find(|i| open(i) && !self.down(*i, now))
            .or_else(|| ring.clone().find(|i| open(i)))?;
        self.peers[chosen]
            .for_listener(grpc)
            .map(|peer| (chosen, peer))
    }

    /// Node `index` with its REST peer, if a request that has tried `tried` may go there now:
    /// not tried yet, its address resolved, and not passed over for refusing a connection.
    /// For a client connection that keeps its node (see `h1`).
    pub fn serving(&self, index: usize, tried: u128) -> Option<(usize, &HttpPeer)> {
        if !self.open(index, tried, false) || self.down(index, self.now_ms()) {
            return None;
        }
        self.peers
            .get(index)?
            .for_listener(false)
            .map(|peer| (index, peer))
    }

    /// Whether node `i` has an address on this listener and is not in `tried`.
    fn open(&self, i: usize, tried: u128, grpc: bool) -> bool {
        self.peers
            .get(i)
            .is_some_and(|p| p.for_listener(grpc).is_some())
            && tried & tried_bit(i) == 0
    }

    /// Whether node `i` is passed over at `now` for having refused a connection lately.
    fn down(&self, i: usize, now: u64) -> bool {
        self.down_until
            .get(i)
            .is_some_and(|d| d.load(Ordering::Relaxed) > now)
    }

    /// Whether the nodes' names now resolve to other addresses than when this route was made.
    pub fn resolves_elsewhere(&self, resolved: &Resolved) -> bool {
        self.record
            .nodes
            .iter()
            .zip(&self.peers)
            .any(|(node, peers)| {
                peers.addrs != (resolved.get(&node.rest), resolved.get(&node.grpc))
            })
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
    /// Removed clusters and the version of their removal: no route at or below it comes
    /// back. Kept longer than any lookup or event can be in flight.
    removed: Cache<ClusterId, u64>,
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
            removed: Cache::builder()
                .time_to_live(TOMBSTONE_TTL)
                .max_capacity(1_000_000)
                .build(),
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

    /// Whether a route of `version` for `id` is older than what the table holds or removed.
    fn outdated(&self, id: &ClusterId, version: u64) -> bool {
        self.routes
            .get(id)
            .is_some_and(|held| held.record.version >= version)
            || self.removed.get(id).is_some_and(|gone| gone >= version)
    }

    /// Stores `route` unless the table holds a newer version or removed it later; `true` if
    /// stored.
    pub fn upsert(&self, route: Route) -> bool {
        let id = route.record.cluster_id;
        if self.outdated(&id, route.record.version) {
            return false;
        }
        self.missing.invalidate(&id);
        self.routes.insert(id, Arc::new(route));
        true
    }

    /// Removes the route unless the table holds a version newer than the removal, and
    /// remembers the removal so that no older route comes back.
    pub fn remove(&self, id: &ClusterId, version: u64) {
        if self.removed.get(id).is_none_or(|gone| gone < version) {
            self.removed.insert(*id, version);
        }
        if self
            .routes
            .get(id)
            .is_some_and(|held| held.record.version < version)
        {
            self.routes.invalidate(id);
        }
    }

    /// Brings the table in line with a snapshot taken at platform version `snapshot_version`:
    /// routes whose version is unchanged are kept as they are (`make` is not called for
    /// them), newer ones are made and stored, and routes missing from the snapshot are
    /// removed unless they are newer than it (an event that arrived after it was read).
    /// Returns how many routes were made anew.
    pub fn sync_all<E: std::fmt::Display>(
        &self,
        snapshot_version: u64,
        records: Vec<RouteRecord>,
        resolved: &Resolved,
        make: impl Fn(RouteRecord) -> Result<Route, E>,
    ) -> usize {
        let mut keep = std::collections::HashSet::with_capacity(records.len());
        let mut made = 0;
        for record in records {
            let id = record.cluster_id;
            keep.insert(id);
            // A held route is rebuilt at the same version only when its nodes' names now
            // resolve elsewhere (a pod rescheduled behind its Service name).
            let moved = self.routes.get(&id).is_some_and(|held| {
                held.record.version == record.version && held.resolves_elsewhere(resolved)
            });
            if self.outdated(&id, record.version) && !moved {
                continue;
            }
            match make(record) {
                Ok(route) => {
                    made += 1;
                    self.missing.invalidate(&id);
                    self.routes.insert(id, Arc::new(route));
                }
                Err(e) => {
                    tracing::error!(cluster = %id, error = %e, "unusable route in the snapshot; skipped")
                }
            }
        }
        let stale: Vec<ClusterId> = self
            .routes
            .iter()
            .filter(|(k, held)| !keep.contains(k) && held.record.version <= snapshot_version)
            .map(|(k, _)| *k)
            .collect();
        for id in stale {
            self.routes.invalidate(&id);
        }
        made
    }

    pub fn known_missing(&self, id: &ClusterId) -> bool {
        self.missing.contains_key(id)
    }

    pub fn mark_missing(&self, id: ClusterId) {
        self.missing.insert(id, ());
    }
}

#[cfg(test)]
mod tests {
    use std::cell::Cell;

    use clap::Parser;
    use contract::cluster::Phase;
    use contract::ids::AccountId;
    use contract::route::{NodeEndpoint, RateLimits, UpstreamCredentials};
    use contract::seal::PlatformKey;
    use pingora::upstreams::peer::Peer;

    use super::*;
    use crate::config::GatekeeperConfig;

    #[derive(Parser)]
    struct Wrapper {
        #[command(flatten)]
        config: GatekeeperConfig,
    }

    struct World {
        ring: Keyring,
        config: GatekeeperConfig,
        id: ClusterId,
    }

    impl World {
        fn new() -> Self {
            let config = Wrapper::parse_from([
                "test",
                "--gateway-key",
                "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=",
            ])
            .config;
            Self {
                ring: Keyring::new(PlatformKey::generate().unwrap().0, vec![]),
                config,
                id: ClusterId::new(),
            }
        }

        fn record(&self, version: u64) -> RouteRecord {
            let secret = ClusterSecret::parse("Zq8vN3xR7tLp2WcY5kHm9JdF4sBg6QaE").unwrap();
            let seal = |kind: SecretKind| {
                self.ring
                    .seal(secret.expose().as_bytes(), &kind.seal_context(self.id))
                    .unwrap()
            };
            RouteRecord {
                cluster_id: self.id,
                account_id: AccountId::new(),
                host: format!("{}.dev.local.localhost", self.id),
                phase: Phase::Healthy,
                nodes: vec![NodeEndpoint {
                    rest: "127.0.0.1:1".into(),
                    grpc: "127.0.0.1:2".into(),
                }],
                credentials: UpstreamCredentials {
                    read_write: seal(SecretKind::ReadWrite),
                    read_only: seal(SecretKind::ReadOnly),
                },
                limits: RateLimits::default(),
                version,
            }
        }

        fn route(&self, version: u64) -> Route {
            Route::from_record(
                self.record(version),
                &self.ring,
                &self.config,
                &Resolved::default(),
            )
            .unwrap()
        }
    }

    #[test]
    fn a_resync_keeps_an_unchanged_route_as_it_is_and_replaces_a_changed_one() {
        let w = World::new();
        let table = RouteTable::default();
        assert!(table.upsert(w.route(3)));
        let held = table.get(&w.id).unwrap();
        held.mark_down(0);
        let made = Cell::new(0);
        let make = |r: RouteRecord| {
            made.set(made.get() + 1);
            Route::from_record(r, &w.ring, &w.config, &Resolved::default())
        };
        assert_eq!(
            table.sync_all(3, vec![w.record(3)], &Resolved::default(), make),
            0
        );
        assert_eq!(
            made.get(),
            0,
            "nothing unsealed again for an unchanged route"
        );
        assert!(
            Arc::ptr_eq(&held, &table.get(&w.id).unwrap()),
            "the same route, with its limiter, in-flight count and node health"
        );
        assert_eq!(
            table.sync_all(4, vec![w.record(4)], &Resolved::default(), make),
            1
        );
        assert_eq!(table.get(&w.id).unwrap().record.version, 4);
    }

    #[test]
    fn a_resync_does_not_drop_or_downgrade_a_route_that_arrived_after_its_snapshot() {
        let w = World::new();
        let table = RouteTable::default();
        // An event brought version 7 while the snapshot (taken at 6, holding 5) was read.
        assert!(table.upsert(w.route(7)));
        let make = |r: RouteRecord| Route::from_record(r, &w.ring, &w.config, &Resolved::default());
        table.sync_all(6, vec![w.record(5)], &Resolved::default(), make);
        assert_eq!(table.get(&w.id).unwrap().record.version, 7);
        table.sync_all(6, vec![], &Resolved::default(), make);
        assert!(table.get(&w.id).is_some(), "newer than the snapshot: kept");
        table.sync_all(7, vec![], &Resolved::default(), make);
        assert!(
            table.get(&w.id).is_none(),
            "gone from a snapshot that knows it"
        );
    }

    #[test]
    fn a_removed_route_does_not_come_back_from_a_lookup_that_read_it_before() {
        let w = World::new();
        let table = RouteTable::default();
        // The removal (version 9) arrives first; a lookup that read version 8 lands after.
        table.remove(&w.id, 9);
        assert!(!table.upsert(w.route(8)), "tombstoned");
        assert!(table.get(&w.id).is_none());
        let make = |r: RouteRecord| Route::from_record(r, &w.ring, &w.config, &Resolved::default());
        table.sync_all(9, vec![w.record(8)], &Resolved::default(), make);
        assert!(table.get(&w.id).is_none(), "nor from a stale snapshot");
        assert!(
            table.upsert(w.route(10)),
            "a newer route (a re-created cluster) is served"
        );
    }

    fn with_nodes(w: &World, version: u64, nodes: &[&str]) -> RouteRecord {
        let mut r = w.record(version);
        r.nodes = nodes
            .iter()
            .map(|a| NodeEndpoint {
                rest: (*a).into(),
                grpc: (*a).into(),
            })
            .collect();
        r
    }

    /// Found by the `change_event` fuzz target: the round-robin counter wraps, and a start
    /// near `usize::MAX` overflowed when the ring was walked.
    #[test]
    fn the_round_robin_start_wraps_without_overflow() {
        let w = World::new();
        let nodes = ["127.0.0.1:1", "127.0.0.1:2", "127.0.0.1:3"];
        let route = Route::from_record(
            with_nodes(&w, 1, &nodes),
            &w.ring,
            &w.config,
            &Resolved::default(),
        )
        .unwrap();
        let picked = |start, tried| route.pick(start, tried, false).map(|(i, _)| i);
        assert_eq!(picked(usize::MAX, 0), Some(usize::MAX % 3));
        assert_eq!(picked(usize::MAX, tried_bit(usize::MAX % 3)), Some(1));
    }

    #[test]
    fn nodes_are_picked_round_robin_healthy_first_and_unresolved_never() {
        let w = World::new();
        let nodes = ["127.0.0.1:1", "qdrant-1.svc:6333", "127.0.0.1:3"];
        let unresolved = Route::from_record(
            with_nodes(&w, 1, &nodes),
            &w.ring,
            &w.config,
            &Resolved::default(),
        )
        .unwrap();
        let picked = |r: &Route, start, tried| r.pick(start, tried, false).map(|(i, _)| i);
        assert_eq!(picked(&unresolved, 0, 0), Some(0));
        assert_eq!(
            picked(&unresolved, 1, 0),
            Some(2),
            "the unresolved node is passed over"
        );
        assert_eq!(picked(&unresolved, 1, 0b100), Some(0));
        assert_eq!(
            picked(&unresolved, 1, 0b101),
            None,
            "only two nodes can be tried"
        );

        let resolved =
            Resolved::default().with("qdrant-1.svc:6333", "10.0.0.2:6333".parse().unwrap());
        let route =
            Route::from_record(with_nodes(&w, 1, &nodes), &w.ring, &w.config, &resolved).unwrap();
        let (index, peer) = route.pick(1, 0, false).unwrap();
        assert_eq!(
            (index, peer.address().to_string()),
            (1, "10.0.0.2:6333".to_owned())
        );
        route.mark_down(1);
        assert_eq!(
            picked(&route, 1, 0),
            Some(2),
            "a node that refused goes last"
        );
        assert_eq!(picked(&route, 1, 0b101), Some(1));
        // A retry after node 1 refused (and was marked down) never tries node 1 again.
        assert_eq!(picked(&route, 1, 0b010), Some(2));
        assert_eq!(picked(&route, 1, 0b110), Some(0));
        assert_eq!(picked(&route, 1, 0b111), None);
        // Successive requests start at successive nodes.
        let (a, b) = (route.start(), route.start());
        assert_eq!(b, a + 1);
    }

    #[test]
    fn a_resync_rebuilds_a_route_only_when_a_node_name_resolves_elsewhere() {
        let w = World::new();
        let table = RouteTable::default();
        let nodes = ["qdrant-0.svc:6333"];
        let at =
            |ip: &str| Resolved::default().with(nodes[0], format!("{ip}:6333").parse().unwrap());
        let w = &w;
        let make = |resolved: &Resolved| {
            let resolved = resolved.clone();
            move |r: RouteRecord| Route::from_record(r, &w.ring, &w.config, &resolved)
        };
        let first = at("10.0.0.1");
        assert_eq!(
            table.sync_all(1, vec![with_nodes(w, 1, &nodes)], &first, make(&first)),
            1
        );
        assert_eq!(
            table.sync_all(1, vec![with_nodes(w, 1, &nodes)], &first, make(&first)),
            0
        );
        let moved = at("10.0.0.9");
        assert_eq!(
            table.sync_all(1, vec![with_nodes(w, 1, &nodes)], &moved, make(&moved)),
            1
        );
        let held = table.get(&w.id).unwrap();
        assert_eq!(
            held.pick(0, 0, false).unwrap().1.address().to_string(),
            "10.0.0.9:6333"
        );
    }
}
