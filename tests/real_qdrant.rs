//! Lyra on real Qdrant: the real binaries (Orion, Nebula, GateKeeper) on real Redis, and
//! nodes of the Qdrant binary named by `QDRANT_BIN`. Skipped, with a message saying so, when
//! `QDRANT_BIN` is unset or names something that is not Qdrant (the stand-in is not).
//!
//! What only real Qdrant can show: nodes forming one Raft cluster over p2p, replicated shards
//! that hold every point whichever node answers, and Qdrant itself enforcing the read-only
//! secret and the gateway's JWT over REST and gRPC.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a test: a panic is a failed test

mod common;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::Platform;
use common::https::Https;
use http_body_util::Full;
use prost::Message;
use reqwest::Method;
use serde_json::{Value, json};

/// The Qdrant binary to test with, or `None` (and a visible note) when there is none.
fn real_qdrant() -> Option<PathBuf> {
    let Some(bin) = std::env::var_os("QDRANT_BIN").filter(|v| !v.is_empty()) else {
        eprintln!("SKIPPED: set QDRANT_BIN to a Qdrant binary to run the real-Qdrant tests");
        return None;
    };
    let out = std::process::Command::new(&bin).arg("--version").output();
    let version = out
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default();
    if !version.starts_with("qdrant ") {
        eprintln!(
            "SKIPPED: QDRANT_BIN={} is not Qdrant ({version:?})",
            PathBuf::from(bin).display()
        );
        return None;
    }
    eprintln!("real Qdrant: {version}");
    Some(PathBuf::from(bin))
}

// The few Qdrant gRPC messages these tests send and read (qdrant's collections.proto and
// points.proto; only the fields used here).
#[derive(Clone, PartialEq, Message)]
struct ListCollectionsRequest {}
#[derive(Clone, PartialEq, Message)]
struct CollectionDescription {
    #[prost(string, tag = "1")]
    name: String,
}
#[derive(Clone, PartialEq, Message)]
struct ListCollectionsResponse {
    #[prost(message, repeated, tag = "1")]
    collections: Vec<CollectionDescription>,
}
#[derive(Clone, PartialEq, Message)]
struct DeleteCollection {
    #[prost(string, tag = "1")]
    collection_name: String,
}
#[derive(Clone, PartialEq, Message)]
struct CountPoints {
    #[prost(string, tag = "1")]
    collection_name: String,
    #[prost(bool, optional, tag = "3")]
    exact: Option<bool>,
}
#[derive(Clone, PartialEq, Message)]
struct CountResult {
    #[prost(uint64, tag = "1")]
    count: u64,
}
#[derive(Clone, PartialEq, Message)]
struct CountResponse {
    #[prost(message, optional, tag = "1")]
    result: Option<CountResult>,
}

fn encode(m: &impl Message) -> Bytes {
    Bytes::from(m.encode_to_vec())
}

/// REST through the gateway: (status, JSON body).
async fn rest(
    c: &Https,
    host: &str,
    port: u16,
    key: &str,
    method: &str,
    path: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let mut r = http::Request::builder()
        .method(method)
        .uri(format!("https://{host}:{port}{path}"))
        .header("api-key", key);
    if body.is_some() {
        r = r.header("content-type", "application/json");
    }
    let body = body.map(|b| b.to_string()).unwrap_or_default();
    let a = c
        .send(r.body(Full::new(Bytes::from(body))).unwrap())
        .await
        .unwrap();
    let json = serde_json::from_str(&a.body).unwrap_or(Value::String(a.body));
    (a.status, json)
}

async fn names_over_grpc(channel: &tonic::transport::Channel, key: &str) -> Vec<String> {
    let answer = common::grpc::unary(
        channel,
        "/qdrant.Collections/List",
        Some(key),
        encode(&ListCollectionsRequest {}),
    )
    .await
    .expect("List over gRPC");
    let mut names: Vec<String> = ListCollectionsResponse::decode(answer)
        .unwrap()
        .collections
        .into_iter()
        .map(|c| c.name)
        .collect();
    names.sort();
    names
}

async fn create_key(p: &Platform, admin: &str, account: &str, id: &str, body: Value) -> String {
    let (s, k) = p
        .call(
            admin,
            Method::POST,
            &format!("/api/v1/accounts/{account}/clusters/{id}/api-keys"),
            Some(body),
        )
        .await;
    assert_eq!(s, 201, "{k}");
    k["key"].as_str().unwrap().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_qdrant_clusters_behind_the_gateway() {
    let Some(qdrant) = real_qdrant() else { return };
    let mut p = Platform::start().await;
    let (account, admin) = p.tenant(10).await;
    p.qdrant_bin = qdrant;
    p.start_nebula(&[("LYRA_NEBULA_READY_TIMEOUT", "60")]);

    // 202 -> HEALTHY, for 1 and for 3 real nodes.
    let started = Instant::now();
    let single = p.create_cluster(&admin, &account, 1).await;
    p.wait_phase(&admin, &account, &single, "HEALTHY").await;
    eprintln!(
        "1 real node: 202 -> HEALTHY in {:.2} s",
        started.elapsed().as_secs_f64()
    );
    let started = Instant::now();
    let id = p.create_cluster(&admin, &account, 3).await;
    p.wait_phase(&admin, &account, &id, "HEALTHY").await;
    eprintln!(
        "3 real nodes: 202 -> HEALTHY in {:.2} s",
        started.elapsed().as_secs_f64()
    );

    let (rest_port, grpc_port) = p.start_gatekeeper().await;
    let ca = p.ca_pem();
    let c = Https::new(
        &ca,
        format!("127.0.0.1:{rest_port}").parse().unwrap(),
        &["h2", "http/1.1"],
    );
    let host = format!("{id}.dev.local.localhost");
    let manage = create_key(
        &p,
        &admin,
        &account,
        &id,
        json!({"name": "app", "access": "manage"}),
    )
    .await;

    // The three nodes are one Raft cluster, seen through the gateway.
    let (s, cluster) = rest(&c, &host, rest_port, &manage, "GET", "/cluster", None).await;
    assert_eq!(s, 200, "{cluster}");
    assert_eq!(cluster["result"]["status"], "enabled", "{cluster}");
    let peers = cluster["result"]["peers"].as_object().map(|m| m.len());
    assert_eq!(peers, Some(3), "{cluster}");
    assert!(
        cluster["result"]["raft_info"]["leader"].is_u64(),
        "{cluster}"
    );

    // A replicated, sharded collection holds every point whichever node answers.
    let (s, b) = rest(&c, &host, rest_port, &manage, "PUT", "/collections/docs",
        Some(json!({"vectors": {"size": 4, "distance": "Dot"}, "shard_number": 3, "replication_factor": 2}))).await;
    assert_eq!(s, 200, "{b}");
    let (s, b) = rest(
        &c,
        &host,
        rest_port,
        &manage,
        "PUT",
        "/collections/logs",
        Some(json!({"vectors": {"size": 4, "distance": "Dot"}})),
    )
    .await;
    assert_eq!(s, 200, "{b}");
    let points: Vec<Value> = (1..=300)
        .map(|i| json!({"id": i, "vector": [0.1, 0.2, 0.3, f64::from(i) / 300.0], "payload": {"n": i}}))
        .collect();
    let (s, b) = rest(
        &c,
        &host,
        rest_port,
        &manage,
        "PUT",
        "/collections/docs/points?wait=true",
        Some(json!({"points": points})),
    )
    .await;
    assert_eq!(s, 200, "{b}");
    // Requests go round the three nodes: six counts ask each node twice.
    for _ in 0..6 {
        let (s, b) = rest(
            &c,
            &host,
            rest_port,
            &manage,
            "POST",
            "/collections/docs/points/count",
            Some(json!({"exact": true})),
        )
        .await;
        assert_eq!(s, 200, "{b}");
        assert_eq!(b["result"]["count"], 300, "{b}");
    }
    let (s, b) = rest(
        &c,
        &host,
        rest_port,
        &manage,
        "POST",
        "/collections/docs/points/query",
        Some(json!({"query": [0.0, 0.0, 0.0, 1.0], "limit": 1})),
    )
    .await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(
        b["result"]["points"][0]["id"], 300,
        "the nearest point by Dot: {b}"
    );

    // Read-only: reads (POST included) pass, a write is refused.
    let reader = create_key(
        &p,
        &admin,
        &account,
        &id,
        json!({"name": "ro", "access": "read-only"}),
    )
    .await;
    let (s, _) = rest(&c, &host, rest_port, &reader, "GET", "/collections", None).await;
    assert_eq!(s, 200);
    let (s, b) = rest(
        &c,
        &host,
        rest_port,
        &reader,
        "POST",
        "/collections/docs/points/count",
        Some(json!({"exact": true})),
    )
    .await;
    assert_eq!((s, b["result"]["count"].clone()), (200, json!(300)), "{b}");
    let (s, b) = rest(
        &c,
        &host,
        rest_port,
        &reader,
        "PUT",
        "/collections/other",
        Some(json!({"vectors": {"size": 4, "distance": "Dot"}})),
    )
    .await;
    assert_eq!(s, 403, "{b}");

    // Collection-scoped: Qdrant itself sees only what the key's JWT grants.
    let scoped = create_key(
        &p,
        &admin,
        &account,
        &id,
        json!({"name": "docs-r", "access": [{"collection": "docs", "access": "r"}]}),
    )
    .await;
    let (s, b) = rest(&c, &host, rest_port, &scoped, "GET", "/collections", None).await;
    assert_eq!(s, 200, "{b}");
    let listed: Vec<&str> = b["result"]["collections"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|c| c["name"].as_str())
        .collect();
    assert_eq!(
        listed,
        ["docs"],
        "the node filtered the list by the JWT: {b}"
    );
    let (s, _) = rest(
        &c,
        &host,
        rest_port,
        &scoped,
        "GET",
        "/collections/logs",
        None,
    )
    .await;
    assert_eq!(s, 403);
    let (s, _) = rest(
        &c,
        &host,
        rest_port,
        &scoped,
        "PUT",
        "/collections/docs/points?wait=true",
        Some(json!({"points": [{"id": 1, "vector": [1.0, 0.0, 0.0, 0.0]}]})),
    )
    .await;
    assert_eq!(s, 403);

    // gRPC, through a real gRPC client, with the same three keys.
    let channel = common::grpc::channel(&ca, grpc_port, &host, &host).await;
    assert_eq!(names_over_grpc(&channel, &manage).await, ["docs", "logs"]);
    assert_eq!(names_over_grpc(&channel, &reader).await, ["docs", "logs"]);
    assert_eq!(
        names_over_grpc(&channel, &scoped).await,
        ["docs"],
        "JWT-filtered over gRPC"
    );
    let count = common::grpc::unary(
        &channel,
        "/qdrant.Points/Count",
        Some(&scoped),
        encode(&CountPoints {
            collection_name: "docs".into(),
            exact: Some(true),
        }),
    )
    .await
    .expect("Count over gRPC");
    assert_eq!(
        CountResponse::decode(count)
            .unwrap()
            .result
            .map(|r| r.count),
        Some(300)
    );
    let (code, text) = common::grpc::code(
        &channel,
        "/qdrant.Collections/Delete",
        Some(&reader),
        encode(&DeleteCollection {
            collection_name: "logs".into(),
        }),
    )
    .await;
    assert_eq!(
        code,
        tonic::Code::PermissionDenied,
        "Qdrant refuses the read-only secret: {text}"
    );
    let (code, _) = common::grpc::code(
        &channel,
        "/qdrant.Points/Count",
        Some(&scoped),
        encode(&CountPoints {
            collection_name: "logs".into(),
            exact: Some(true),
        }),
    )
    .await;
    assert_eq!(
        code,
        tonic::Code::PermissionDenied,
        "the JWT does not grant logs"
    );
    let (code, text) = common::grpc::code(
        &channel,
        "/qdrant.Collections/List",
        Some("lyra_forged"),
        encode(&ListCollectionsRequest {}),
    )
    .await;
    assert_eq!(code, tonic::Code::Unauthenticated, "{text}");
    assert_eq!(
        names_over_grpc(&channel, &manage).await,
        ["docs", "logs"],
        "logs survived"
    );

    // Revocation reaches the gateway: REST 401 and gRPC 16.
    let (s, listed) = p
        .call(
            &admin,
            Method::GET,
            &format!("/api/v1/accounts/{account}/clusters/{id}/api-keys"),
            None,
        )
        .await;
    assert_eq!(s, 200);
    let app = listed
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["name"] == "app")
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let (s, _) = p
        .call(
            &admin,
            Method::DELETE,
            &format!("/api/v1/accounts/{account}/clusters/{id}/api-keys/{app}"),
            None,
        )
        .await;
    assert_eq!(s, 204);
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let (code, _) = common::grpc::code(
            &channel,
            "/qdrant.Collections/List",
            Some(&manage),
            encode(&ListCollectionsRequest {}),
        )
        .await;
        if code == tonic::Code::Unauthenticated {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "a revoked key still passed over gRPC: {code:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (s, _) = rest(&c, &host, rest_port, &manage, "GET", "/collections", None).await;
    assert_eq!(s, 401);
}

/// Resizes the cluster to `n` nodes and waits until it is HEALTHY again: the seconds it took.
async fn resize(p: &Platform, admin: &str, account: &str, id: &str, n: u32) -> f64 {
    let started = Instant::now();
    let (s, c) = p
        .call(
            admin,
            Method::PATCH,
            &format!("/api/v1/accounts/{account}/clusters/{id}"),
            Some(json!({"configuration": {"num_nodes": n, "node_configuration": {"cpu": 1000, "memory": 1024, "disk": 10}}})),
        )
        .await;
    assert_eq!(s, 202, "{c}");
    let c = p.wait_phase(admin, account, id, "HEALTHY").await;
    assert_eq!(c["configuration"]["num_nodes"], n, "{c}");
    started.elapsed().as_secs_f64()
}

/// Every point is still there, whichever node answers, and the nearest one is the same.
async fn assert_all_points(c: &Https, host: &str, port: u16, key: &str, collection: &str, n: u64) {
    for _ in 0..4 {
        let (s, b) = rest(
            c,
            host,
            port,
            key,
            "POST",
            &format!("/collections/{collection}/points/count"),
            Some(json!({"exact": true})),
        )
        .await;
        assert_eq!(s, 200, "{b}");
        assert_eq!(b["result"]["count"], n, "{collection}: {b}");
        let (s, b) = rest(
            c,
            host,
            port,
            key,
            "POST",
            &format!("/collections/{collection}/points/query"),
            Some(json!({"query": [0.0, 0.0, 0.0, 1.0], "limit": 1})),
        )
        .await;
        assert_eq!(s, 200, "{b}");
        assert_eq!(b["result"]["points"][0]["id"], n, "{collection}: {b}");
    }
}

async fn fill(
    c: &Https,
    host: &str,
    port: u16,
    key: &str,
    collection: &str,
    (shards, replicas): (u32, u32),
    n: u64,
) {
    let (s, b) = rest(c, host, port, key, "PUT", &format!("/collections/{collection}"),
        Some(json!({"vectors": {"size": 4, "distance": "Dot"}, "shard_number": shards, "replication_factor": replicas}))).await;
    assert_eq!(s, 200, "{b}");
    for chunk in (1..=n).collect::<Vec<_>>().chunks(1000) {
        let points: Vec<Value> = chunk
            .iter()
            .map(|i| json!({"id": i, "vector": [0.1, 0.2, 0.3, *i as f64 / n as f64]}))
            .collect();
        let (s, b) = rest(
            c,
            host,
            port,
            key,
            "PUT",
            &format!("/collections/{collection}/points?wait=true"),
            Some(json!({"points": points})),
        )
        .await;
        assert_eq!(s, 200, "{b}");
    }
}

async fn peers(c: &Https, host: &str, port: u16, key: &str) -> usize {
    let (s, b) = rest(c, host, port, key, "GET", "/cluster", None).await;
    assert_eq!(s, 200, "{b}");
    b["result"]["peers"].as_object().map_or(0, |m| m.len())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scaling_real_qdrant_down_and_up_keeps_every_point() {
    let Some(qdrant) = real_qdrant() else { return };
    let mut p = Platform::start().await;
    let (account, admin) = p.tenant(10).await;
    p.qdrant_bin = qdrant;
    // Nebula's own log says how long the drain and the driver each took.
    p.start_nebula(&[
        ("LYRA_NEBULA_READY_TIMEOUT", "60"),
        ("RUST_LOG", "warn,provisioner::handlers::resize=info"),
    ]);
    let id = p.create_cluster(&admin, &account, 3).await;
    p.wait_phase(&admin, &account, &id, "HEALTHY").await;
    let (rest_port, _) = p.start_gatekeeper().await;
    let c = Https::new(
        &p.ca_pem(),
        format!("127.0.0.1:{rest_port}").parse().unwrap(),
        &["h2", "http/1.1"],
    );
    let host = format!("{id}.dev.local.localhost");
    let key = create_key(
        &p,
        &admin,
        &account,
        &id,
        json!({"name": "app", "access": "manage"}),
    )
    .await;

    // The reported case: one copy of each of 3 shards, one per node, then 3 -> 1.
    fill(&c, &host, rest_port, &key, "docs", (3, 1), 300).await;
    fill(&c, &host, rest_port, &key, "big", (3, 1), 10_000).await;
    // What Orion weighs a shrink's disk by: every node's own count of its shards' data.
    let secret = p.read_write_secret(&id);
    let api = contract::qdrant::QdrantApi::new(&secret, std::time::Duration::from_secs(5));
    let nodes: Vec<contract::route::NodeEndpoint> = serde_json::from_str(
        &redis::cmd("HGET")
            .arg(contract::keyspace::cluster(id.parse().unwrap()))
            .arg("nodes")
            .query::<String>(&mut p.redis())
            .unwrap(),
    )
    .unwrap();
    let mut data = 0;
    for node in &nodes {
        data += api.local_data_bytes(node).await.unwrap();
    }
    eprintln!("real Qdrant: {data} bytes of vectors and payloads on 3 nodes for 10,300 4-d points");
    assert!(data >= 10_300 * 4 * 4, "{data}");
    let took = resize(&p, &admin, &account, &id, 2).await;
    eprintln!("real Qdrant, 10,300 points in 6 shards: 3 -> 2 nodes in {took:.2} s");
    assert_all_points(&c, &host, rest_port, &key, "big", 10_000).await;
    let took = resize(&p, &admin, &account, &id, 1).await;
    eprintln!("real Qdrant: 2 -> 1 node in {took:.2} s");
    assert_all_points(&c, &host, rest_port, &key, "docs", 300).await;
    assert_all_points(&c, &host, rest_port, &key, "big", 10_000).await;
    assert_eq!(p.node_processes(&id).len(), 1);

    // 1 -> 3: new peers join the Raft cluster; then 3 -> 2 with two copies of each shard.
    let took = resize(&p, &admin, &account, &id, 3).await;
    eprintln!("real Qdrant: 1 -> 3 nodes in {took:.2} s");
    assert_eq!(peers(&c, &host, rest_port, &key).await, 3);
    fill(&c, &host, rest_port, &key, "replicated", (3, 2), 300).await;
    let took = resize(&p, &admin, &account, &id, 2).await;
    eprintln!("real Qdrant: 3 -> 2 nodes (replication 2) in {took:.2} s");
    assert_eq!(peers(&c, &host, rest_port, &key).await, 2);
    for (collection, n) in [("docs", 300), ("big", 10_000), ("replicated", 300)] {
        assert_all_points(&c, &host, rest_port, &key, collection, n).await;
    }
    assert_eq!(p.node_processes(&id).len(), 2);
}
