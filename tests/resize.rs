//! Resizing keeps every shard: the real binaries on real Redis with stand-in nodes (a test
//! double that keeps Qdrant's shard placement and its shard operations), so the whole suite
//! checks what Nebula asks of Qdrant. The same flows on real Qdrant, with points counted, are
//! in tests/real_qdrant.rs.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a test: a panic is a failed test

mod common;

use std::collections::BTreeSet;

use common::Platform;
use contract::keyspace;
use contract::route::RouteRecord;
use reqwest::Method;
use serde_json::{Value, json};

fn route(p: &Platform, id: &str) -> RouteRecord {
    let json: String = redis::cmd("HGET")
        .arg(keyspace::routes())
        .arg(id)
        .query(&mut p.redis())
        .unwrap();
    serde_json::from_str(&json).unwrap()
}

/// A call straight to a node with the cluster's read-write secret, as an operator would.
async fn node_call(
    p: &Platform,
    id: &str,
    node: &str,
    method: Method,
    path: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let secret = p.read_write_secret(id);
    let mut r = p
        .http
        .request(method, format!("http://{node}{path}"))
        .header("api-key", secret.expose());
    if let Some(b) = body {
        r = r.json(&b);
    }
    let r = r.send().await.unwrap();
    (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
}

async fn resize(p: &Platform, admin: &str, account: &str, id: &str, n: u32) {
    let (s, c) = p
        .call(admin, Method::PATCH, &format!("/api/v1/accounts/{account}/clusters/{id}"),
            Some(json!({"configuration": {"num_nodes": n, "node_configuration": {"cpu": 1000, "memory": 1024, "disk": 10}}})))
        .await;
    assert_eq!(s, 202, "{c}");
}

/// Peers of the Raft cluster, as the first node reports them.
async fn peers(p: &Platform, id: &str) -> BTreeSet<String> {
    let node = route(p, id).nodes[0].rest.clone();
    let (s, b) = node_call(p, id, &node, Method::GET, "/cluster", None).await;
    assert_eq!(s, 200, "{b}");
    b["result"]["peers"]
        .as_object()
        .unwrap()
        .keys()
        .cloned()
        .collect()
}

/// The peers holding a replica of some shard of `collection`.
async fn holders(p: &Platform, id: &str, collection: &str) -> BTreeSet<u64> {
    let node = route(p, id).nodes[0].rest.clone();
    let (s, b) = node_call(
        p,
        id,
        &node,
        Method::GET,
        &format!("/collections/{collection}/cluster"),
        None,
    )
    .await;
    assert_eq!(s, 200, "{b}");
    let r = &b["result"];
    let mut peers = BTreeSet::new();
    if !r["local_shards"].as_array().unwrap().is_empty() {
        peers.insert(r["peer_id"].as_u64().unwrap());
    }
    for s in r["remote_shards"].as_array().unwrap() {
        peers.insert(s["peer_id"].as_u64().unwrap());
    }
    peers
}

async fn shard_count(p: &Platform, id: &str, collection: &str) -> usize {
    let node = route(p, id).nodes[0].rest.clone();
    let (_, b) = node_call(
        p,
        id,
        &node,
        Method::GET,
        &format!("/collections/{collection}/cluster"),
        None,
    )
    .await;
    let r = &b["result"];
    let shards: BTreeSet<u64> = r["local_shards"]
        .as_array()
        .unwrap()
        .iter()
        .chain(r["remote_shards"].as_array().unwrap())
        .map(|s| s["shard_id"].as_u64().unwrap())
        .collect();
    shards.len()
}

/// A 3-node cluster with a collection of 3 shards, one copy each, one per node.
async fn three_nodes_with_a_sharded_collection(
    p: &mut Platform,
    nebula_env: &[(&str, &str)],
) -> (String, String, String) {
    let (account, admin) = p.tenant(10).await;
    p.start_nebula(&[]);
    let id = p.create_cluster(&admin, &account, 3).await;
    p.wait_phase(&admin, &account, &id, "HEALTHY").await;
    let node = route(p, &id).nodes[0].rest.clone();
    let (s, b) = node_call(p, &id, &node, Method::PUT, "/collections/docs",
        Some(json!({"vectors": {"size": 2, "distance": "Dot"}, "shard_number": 3, "replication_factor": 1}))).await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(
        holders(p, &id, "docs").await.len(),
        3,
        "one shard on each node"
    );
    if !nebula_env.is_empty() {
        p.kill_nebula();
        p.start_nebula(nebula_env);
    }
    (account, admin, id)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scaling_down_moves_every_shard_to_the_nodes_that_stay_before_any_node_stops() {
    let mut p = Platform::start().await;
    let (account, admin, id) = three_nodes_with_a_sharded_collection(&mut p, &[]).await;
    resize(&p, &admin, &account, &id, 1).await;
    let c = p.wait_phase(&admin, &account, &id, "HEALTHY").await;
    assert!(c["reason"].is_null(), "{c}");
    assert_eq!(p.node_processes(&id).len(), 1);
    assert_eq!(route(&p, &id).nodes.len(), 1);
    assert_eq!(
        peers(&p, &id).await.len(),
        1,
        "the leaving peers left the Raft cluster"
    );
    let holding = holders(&p, &id, "docs").await;
    assert_eq!(
        holding.len(),
        1,
        "every replica is on the node that stayed: {holding:?}"
    );
    assert_eq!(shard_count(&p, &id, "docs").await, 3, "no shard was lost");

    // Up again: new peers join; existing shards stay where they are.
    resize(&p, &admin, &account, &id, 3).await;
    p.wait_phase(&admin, &account, &id, "HEALTHY").await;
    assert_eq!(peers(&p, &id).await.len(), 3);
    assert_eq!(shard_count(&p, &id, "docs").await, 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_at_any_step_of_a_scale_down_resumes_and_ends_with_every_shard_kept() {
    for point in ["during_drain", "after_drain", "after_resize_driver"] {
        let mut p = Platform::start().await;
        let (account, admin, id) =
            three_nodes_with_a_sharded_collection(&mut p, &[("LYRA_CRASH_AT", point)]).await;
        resize(&p, &admin, &account, &id, 1).await;
        let status = p.nebula_exit().await;
        assert!(!status.success(), "{point}: Nebula was meant to die");
        p.start_nebula(&[]);
        p.wait_phase(&admin, &account, &id, "HEALTHY").await;
        assert_eq!(p.node_processes(&id).len(), 1, "{point}");
        assert_eq!(peers(&p, &id).await.len(), 1, "{point}");
        assert_eq!(holders(&p, &id, "docs").await.len(), 1, "{point}");
        assert_eq!(
            shard_count(&p, &id, "docs").await,
            3,
            "{point}: no shard lost"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scale_down_below_a_collections_replication_factor_is_422_and_changes_nothing() {
    let mut p = Platform::start().await;
    let (account, admin, id) = three_nodes_with_a_sharded_collection(&mut p, &[]).await;
    let node = route(&p, &id).nodes[0].rest.clone();
    let (s, b) = node_call(&p, &id, &node, Method::PUT, "/collections/safe",
        Some(json!({"vectors": {"size": 2, "distance": "Dot"}, "shard_number": 1, "replication_factor": 3}))).await;
    assert_eq!(s, 200, "{b}");
    let before = p.cluster(&admin, &account, &id).await;
    let (s, problem) = p
        .call(&admin, Method::PATCH, &format!("/api/v1/accounts/{account}/clusters/{id}"),
            Some(json!({"configuration": {"num_nodes": 2, "node_configuration": {"cpu": 1000, "memory": 1024, "disk": 10}}})))
        .await;
    assert_eq!(s, 422, "{problem}");
    let field = &problem["errors"][0];
    assert_eq!(field["field"], "configuration.num_nodes", "{problem}");
    let reason = field["reason"].as_str().unwrap_or_default();
    assert!(
        reason.contains("`safe`") && reason.contains("replication_factor"),
        "{problem}"
    );
    let after = p.cluster(&admin, &account, &id).await;
    assert_eq!(before, after, "the refused change changed nothing");
    assert_eq!(p.node_processes(&id).len(), 3, "no node was stopped");
    assert_eq!(peers(&p, &id).await.len(), 3);
    assert_eq!(holders(&p, &id, "docs").await.len(), 3, "nothing was moved");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scale_down_onto_disks_too_small_for_the_data_is_422_and_changes_nothing() {
    let mut p = Platform::start().await;
    let (account, admin, id) = three_nodes_with_a_sharded_collection(&mut p, &[]).await;
    let node = route(&p, &id).nodes[0].rest.clone();
    // 7,000 points of 65,536 dimensions: 1.7 GiB of vectors as Qdrant's telemetry counts
    // them (4 bytes a dimension). The stand-in (a double) keeps payloads, not vectors, and
    // does not check a vector's length, so the size is declared rather than sent; its nodes
    // do not forward points to a shard's holder, so every node is written, and each reports
    // its own shard's share.
    let (s, b) = node_call(&p, &id, &node, Method::PUT, "/collections/big",
        Some(json!({"vectors": {"size": 65536, "distance": "Dot"}, "shard_number": 3, "replication_factor": 1}))).await;
    assert_eq!(s, 200, "{b}");
    let points: Vec<Value> = (0..7000)
        .map(|i| json!({"id": i, "vector": [0.0], "payload": {}}))
        .collect();
    for n in route(&p, &id).nodes {
        let (s, b) = node_call(
            &p,
            &id,
            &n.rest,
            Method::PUT,
            "/collections/big/points?wait=true",
            Some(json!({"points": points})),
        )
        .await;
        assert_eq!(s, 200, "{b}");
    }
    let before = p.cluster(&admin, &account, &id).await;
    let path = format!("/api/v1/accounts/{account}/clusters/{id}");
    let (s, problem) = p
        .call(&admin, Method::PATCH, &path,
            Some(json!({"configuration": {"num_nodes": 2, "node_configuration": {"cpu": 1000, "memory": 1024, "disk": 1}}})))
        .await;
    assert_eq!(s, 422, "{problem}");
    let field = &problem["errors"][0];
    assert_eq!(field["field"], "configuration.num_nodes", "{problem}");
    let reason = field["reason"].as_str().unwrap_or_default();
    assert!(
        reason.contains("1.7 GiB") && reason.contains("2 node(s) of 1 GiB"),
        "{problem}"
    );
    assert_eq!(
        before,
        p.cluster(&admin, &account, &id).await,
        "the refused change changed nothing"
    );
    assert_eq!(p.node_processes(&id).len(), 3, "no node was stopped");
    assert_eq!(holders(&p, &id, "big").await.len(), 3, "nothing was moved");
    // The same shrink onto disks that hold it is accepted.
    let (s, b) = p
        .call(&admin, Method::PATCH, &path,
            Some(json!({"configuration": {"num_nodes": 2, "node_configuration": {"cpu": 1000, "memory": 1024, "disk": 10}}})))
        .await;
    assert_eq!(s, 202, "{b}");
}

/// Route events for `id` published on the gateways' channel while `during` runs.
struct Watch {
    conn: redis::Connection,
}

impl Watch {
    fn start(p: &Platform) -> Self {
        let mut conn = p.redis.client().unwrap().get_connection().unwrap();
        redis::cmd("SUBSCRIBE")
            .arg(keyspace::EVENTS_CHANNEL)
            .exec(&mut conn)
            .unwrap();
        conn.set_read_timeout(Some(std::time::Duration::from_millis(200)))
            .unwrap();
        Self { conn }
    }

    /// The phases of the routes published for `id` so far.
    fn route_phases(&mut self, id: &str) -> Vec<String> {
        let mut phases = Vec::new();
        while let Ok(msg) = self.conn.recv_response() {
            let redis::Value::Array(parts) = msg else {
                continue;
            };
            let Some(redis::Value::BulkString(payload)) = parts.last() else {
                continue;
            };
            let Ok(event) = serde_json::from_slice::<Value>(payload) else {
                continue;
            };
            if event["type"] == "route.upserted" && event["route"]["cluster_id"] == id {
                phases.push(
                    event["route"]["phase"]
                        .as_str()
                        .unwrap_or_default()
                        .to_owned(),
                );
            }
        }
        phases
    }
}

/// A delete that arrives while Nebula provisions or resizes a cluster is never undone: the
/// worker, finishing after it, publishes no HEALTHY route (the stored phase says DELETING).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delete_during_provisioning_or_resizing_never_gets_a_healthy_route() {
    for hold in ["after_driver", "after_resize_driver"] {
        let mut p = Platform::start().await;
        let (account, admin) = p.tenant(10).await;
        let hold_file = p.data.path().join("hold");
        let reached = p.data.path().join("hold.reached");
        std::fs::write(&hold_file, "").unwrap();
        let held = [
            ("LYRA_HOLD_AT", hold),
            ("LYRA_HOLD_FILE", hold_file.to_str().unwrap()),
        ];
        let id = if hold == "after_driver" {
            p.start_nebula(&held);
            p.create_cluster(&admin, &account, 1).await
        } else {
            p.start_nebula(&[]);
            let id = p.create_cluster(&admin, &account, 1).await;
            p.wait_phase(&admin, &account, &id, "HEALTHY").await;
            p.kill_nebula();
            p.start_nebula(&held);
            resize(&p, &admin, &account, &id, 2).await;
            id
        };
        p.wait_until(|| async { reached.exists() }, "Nebula holding")
            .await;
        let mut watch = Watch::start(&p);
        let (s, _) = p
            .call(
                &admin,
                Method::DELETE,
                &format!("/api/v1/accounts/{account}/clusters/{id}"),
                None,
            )
            .await;
        assert_eq!(s, 202);
        std::fs::remove_file(&hold_file).unwrap();
        p.wait_phase(&admin, &account, &id, "DELETED").await;
        let phases = watch.route_phases(&id);
        assert!(
            !phases.iter().any(|ph| ph == "HEALTHY"),
            "{hold}: a HEALTHY route was published after the delete: {phases:?}"
        );
        assert!(
            p.node_processes(&id).is_empty(),
            "{hold}: nodes left behind"
        );
    }
}
