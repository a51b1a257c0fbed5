//! The per-request work of GateKeeper, piece by piece: host parse, route lookup at 1k and
//! 100k routes, key verification, scope check, rate limiters.
//!
//! Run: `cargo bench -p gateway --bench hot_path`
#![allow(clippy::unwrap_used, clippy::expect_used)] // test and benchmark tooling, not the product

use std::hint::black_box;

use clap::Parser;
use contract::cluster::Phase;
use contract::host::{EndpointHost, HostRef, Tld};
use contract::ids::{AccountId, ClusterId, KeyId};
use contract::keyscheme::{ClusterSecret, KeyAccess, KeyClaims, KeySigner, SecretKind};
use contract::route::{NodeEndpoint, RateLimits, RouteRecord, UpstreamCredentials};
use contract::seal::{Keyring, PlatformKey};
use criterion::{Criterion, criterion_group, criterion_main};
use gateway::GatekeeperConfig;
use gateway::limits::{ClusterLimits, KeyLimits, effective};
use gateway::route_table::{Route, RouteTable};
use gateway::scope;

#[derive(Parser)]
struct Wrapper {
    #[command(flatten)]
    config: GatekeeperConfig,
}

fn config() -> GatekeeperConfig {
    Wrapper::parse_from([
        "bench",
        "--gateway-key",
        "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=",
    ])
    .config
}

fn route(ring: &Keyring, config: &GatekeeperConfig, secret: &ClusterSecret, version: u64) -> Route {
    let id = ClusterId::new();
    let seal = |kind: SecretKind| {
        ring.seal(secret.expose().as_bytes(), &kind.seal_context(id))
            .expect("seal")
    };
    let record = RouteRecord {
        cluster_id: id,
        account_id: AccountId::new(),
        host: format!("{id}.dev.local.localhost"),
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
    };
    Route::from_record(
        record,
        ring,
        config,
        &gateway::upstream::Resolved::default(),
    )
    .expect("route")
}

fn table(n: usize, ring: &Keyring, config: &GatekeeperConfig) -> (RouteTable, Vec<ClusterId>) {
    let secret = ClusterSecret::parse("Zq8vN3xR7tLp2WcY5kHm9JdF4sBg6QaE").expect("secret");
    let table = RouteTable::default();
    let mut ids = Vec::with_capacity(n);
    for v in 0..n {
        let r = route(ring, config, &secret, v as u64 + 1);
        ids.push(r.record.cluster_id);
        table.upsert(r);
    }
    (table, ids)
}

fn hot_path(c: &mut Criterion) {
    let ring = Keyring::new(PlatformKey::generate().expect("key").0, vec![]);
    let config = config();
    let tld = Tld::new("localhost").expect("tld");
    let host = format!("{}.dev.local.localhost:6333", ClusterId::new());
    // What the gateway does per request: the borrowed parse, no allocation.
    c.bench_function("host_parse", |b| {
        b.iter(|| HostRef::parse(black_box(&host), &tld).map(|h| h.cluster_id))
    });
    c.bench_function("host_parse_owned", |b| {
        b.iter(|| EndpointHost::parse(black_box(&host), &tld))
    });

    for n in [1_000usize, 100_000] {
        let (table, ids) = table(n, &ring, &config);
        let mut i = 0usize;
        c.bench_function(&format!("route_lookup_{n}"), |b| {
            b.iter(|| {
                i = (i + 7919) % ids.len();
                black_box(table.get(&ids[i]))
            })
        });
    }

    let secret = ClusterSecret::parse("Zq8vN3xR7tLp2WcY5kHm9JdF4sBg6QaE").expect("secret");
    let signer = KeySigner::new(&secret);
    let cluster = ClusterId::new();
    let key = signer
        .issue(&KeyClaims {
            cluster_id: cluster,
            key_id: KeyId::new(),
            expires_at: None,
            access: KeyAccess::Manage,
        })
        .expect("key");
    let now = jiff::Timestamp::now();
    c.bench_function("key_verify", |b| {
        b.iter(|| signer.verify(black_box(key.expose()), cluster, now))
    });

    let method = http::Method::POST;
    c.bench_function("scope_check", |b| {
        b.iter(|| {
            scope::allows(
                KeyAccess::ReadOnly,
                &[],
                scope::need(&method, black_box("/collections/a/points/search")),
            )
        })
    });

    let limits = std::sync::Arc::new(ClusterLimits::new(effective(
        &RateLimits::default(),
        &config,
    )));
    c.bench_function("cluster_limiter", |b| {
        b.iter(|| {
            let _ = black_box(limits.check_rate());
            black_box(limits.enter())
        })
    });
    let keys = KeyLimits::default();
    let quota = effective(&RateLimits::default(), &config).key;
    let key_id = KeyId::new();
    c.bench_function("key_limiter", |b| {
        b.iter(|| black_box(keys.check(key_id, quota)))
    });
}

criterion_group!(benches, hot_path);
criterion_main!(benches);
