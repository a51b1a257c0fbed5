//! API-key issue and verification cost: verification runs on every request through GateKeeper.
//!
//! Run: `cargo bench -p contract --bench keyscheme`
#![allow(clippy::unwrap_used, clippy::expect_used)] // test and benchmark tooling, not the product

use std::hint::black_box;

use contract::ids::{ClusterId, KeyId};
use contract::keyscheme::{ClusterSecret, KeyAccess, KeyClaims, KeySigner};
use criterion::{Criterion, criterion_group, criterion_main};
use jiff::Timestamp;

fn bench_keyscheme(c: &mut Criterion) {
    let secret = ClusterSecret::parse("Zq8vN3xR7tLp2WcY5kHm9JdF4sBg6QaE").expect("valid secret");
    let signer = KeySigner::new(&secret);
    let cluster = ClusterId::new();
    let now = Timestamp::now();
    let claims = KeyClaims {
        cluster_id: cluster,
        key_id: KeyId::new(),
        expires_at: Some(Timestamp::from_second(now.as_second() + 86_400).expect("in range")),
        access: KeyAccess::Manage,
    };
    let key = signer.issue(&claims).expect("issue");
    let mut forged = key.expose().to_owned();
    forged.replace_range(60..61, if &forged[60..61] == "A" { "B" } else { "A" });

    let mut group = c.benchmark_group("api_key");
    group.bench_function("verify_valid", |b| {
        b.iter(|| signer.verify(black_box(key.expose()), black_box(cluster), now))
    });
    group.bench_function("verify_bad_signature", |b| {
        b.iter(|| signer.verify(black_box(&forged), black_box(cluster), now))
    });
    group.bench_function("verify_wrong_cluster", |b| {
        let other = ClusterId::new();
        b.iter(|| signer.verify(black_box(key.expose()), black_box(other), now))
    });
    group.bench_function("issue", |b| b.iter(|| signer.issue(black_box(&claims))));
    group.bench_function("signer_new", |b| {
        b.iter(|| KeySigner::new(black_box(&secret)))
    });
    group.finish();
}

criterion_group!(benches, bench_keyscheme);
criterion_main!(benches);
