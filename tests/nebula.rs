//! Nebula end to end: real `lyra orion` and `lyra nebula` processes, real Redis, stand-in
//! Qdrant nodes as real processes.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a test: a panic is a failed test

mod common;

use std::collections::HashMap;
use std::time::Duration;

use common::{CONSUMER, OPERATOR, Platform};
use contract::event::{self, ChangeEvent, Notification};
use contract::keyspace;
use contract::route::RouteRecord;
use reqwest::Method;
use serde_json::json;

fn route(p: &Platform, id: &str) -> Option<RouteRecord> {
    let json: Option<String> = redis::cmd("HGET")
        .arg(keyspace::routes())
        .arg(id)
        .query(&mut p.redis())
        .unwrap();
    json.map(|j| serde_json::from_str(&j).unwrap())
}

fn region_allocated(p: &Platform) -> HashMap<String, i64> {
    let fields: HashMap<String, String> = redis::cmd("HGETALL")
        .arg(keyspace::region("local", "dev"))
        .query(&mut p.redis())
        .unwrap();
    fields
        .into_iter()
        .filter(|(k, _)| k.starts_with("alloc_"))
        .map(|(k, v)| (k, v.parse().unwrap()))
        .collect()
}

fn pending(p: &Platform) -> usize {
    let reply: redis::Value = redis::cmd("XPENDING")
        .arg(keyspace::command_stream())
        .arg(keyspace::NEBULA_GROUP)
        .query(&mut p.redis())
        .unwrap();
    match reply {
        redis::Value::Array(items) => match items.first() {
            Some(redis::Value::Int(n)) => *n as usize,
            _ => 0,
        },
        _ => 0,
    }
}

async fn node_status(rest: &str, key: &str) -> u16 {
    reqwest::Client::new()
        .get(format!("http://{rest}/collections"))
        .header("api-key", key)
        .send()
        .await
        .map(|r| r.status().as_u16())
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_three_node_cluster_becomes_healthy_and_its_route_is_published() {
    let mut p = Platform::start().await;
    let (account, admin) = p.tenant(10).await;
    let mut subscriber = p.redis.client().unwrap().get_connection().unwrap();
    let mut events = subscriber.as_pubsub();
    events.subscribe(keyspace::EVENTS_CHANNEL).unwrap();
    events
        .set_read_timeout(Some(Duration::from_secs(60)))
        .unwrap();
    p.start_nebula(&[]);

    let id = p.create_cluster(&admin, &account, 3).await;
    let healthy = p.wait_phase(&admin, &account, &id, "HEALTHY").await;
    assert!(healthy["reason"].is_null());
    assert_eq!(p.node_processes(&id).len(), 3);

    let route = route(&p, &id).expect("the route is stored");
    assert_eq!(route.nodes.len(), 3);
    assert_eq!(route.host, format!("{id}.dev.local.localhost"));
    let published: String = events.get_message().unwrap().get_payload().unwrap();
    match event::decode(published.as_bytes()).unwrap() {
        Notification::Event(ChangeEvent::RouteUpserted { route: r }) => assert_eq!(*r, route),
        other => panic!("unexpected event {other:?}"),
    }

    // The nodes take the stored read-write secret, and nothing else.
    let secret = p.read_write_secret(&id);
    for node in &route.nodes {
        assert_eq!(node_status(&node.rest, secret.expose()).await, 200);
        assert_eq!(node_status(&node.rest, "guess").await, 401);
    }
    assert_eq!(pending(&p), 0, "the command was acknowledged");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_at_any_step_still_ends_healthy_exactly_once() {
    for point in [
        "before_driver",
        "during_driver",
        "after_driver",
        "before_ack",
    ] {
        let mut p = Platform::start().await;
        let (account, admin) = p.tenant(10).await;
        p.start_nebula(&[("LYRA_CRASH_AT", point)]);
        let id = p.create_cluster(&admin, &account, 3).await;
        let status = p.nebula_exit().await;
        assert!(!status.success(), "{point}: Nebula was meant to die");
        assert_eq!(pending(&p), 1, "{point}: the command must still be pending");

        p.start_nebula(&[]);
        p.wait_phase(&admin, &account, &id, "HEALTHY").await;
        p.wait_until(|| async { pending(&p) == 0 }, "the command acknowledged")
            .await;
        assert_eq!(
            p.node_processes(&id).len(),
            3,
            "{point}: exactly num_nodes processes"
        );
        let nodes_on_disk = std::fs::read_dir(p.data.path().join("nodes").join(&id))
            .unwrap()
            .count();
        assert_eq!(nodes_on_disk, 3, "{point}: exactly three node directories");
        assert_eq!(route(&p, &id).unwrap().nodes.len(), 3);
        let clusters: usize = redis::cmd("ZCARD")
            .arg(keyspace::account_clusters(account.parse().unwrap()))
            .query(&mut p.redis())
            .unwrap();
        assert_eq!(clusters, 1, "{point}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_driver_is_retried_then_parked_and_a_replay_after_the_fix_succeeds() {
    let mut p = Platform::start().await;
    let (account, admin) = p.tenant(10).await;
    let bin_dir = tempfile::tempdir().unwrap();
    let qdrant = bin_dir.path().join("qdrant");
    let mut cmd = p.nebula_command(&qdrant);
    cmd.env("LYRA_NEBULA_MAX_ATTEMPTS", "3");
    p.nebula = Some(testkit::supervised::spawn(cmd).unwrap());

    let id = p.create_cluster(&admin, &account, 1).await;
    let failed = p
        .wait_phase(&admin, &account, &id, "FAILED_TO_CREATE")
        .await;
    let reason = failed["reason"].as_str().unwrap();
    assert!(
        reason.contains("was not found") && reason.contains("QDRANT_BIN"),
        "{reason}"
    );

    let (s, dead) = p
        .call(OPERATOR, Method::GET, "/api/v1/dead-letters", None)
        .await;
    assert_eq!(s, 200);
    assert_eq!(dead.as_array().unwrap().len(), 1);
    assert_eq!(dead[0]["attempts"], 3);
    assert_eq!(dead[0]["cluster_id"], id);
    assert_eq!(pending(&p), 0, "a parked command leaves the pending list");

    // Fix the cause (install the binary where Nebula looks), then replay.
    std::os::unix::fs::symlink(&p.qdrant_bin, &qdrant).unwrap();
    let entry = dead[0]["id"].as_str().unwrap();
    let (s, _) = p
        .call(
            OPERATOR,
            Method::POST,
            &format!("/api/v1/dead-letters/{entry}/replay"),
            None,
        )
        .await;
    assert_eq!(s, 202);
    p.wait_phase(&admin, &account, &id, "HEALTHY").await;
    assert_eq!(p.node_processes(&id).len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resize_three_five_two_then_delete_frees_everything() {
    let mut p = Platform::start().await;
    let (account, admin) = p.tenant(10).await;
    p.start_nebula(&[]);
    let id = p.create_cluster(&admin, &account, 3).await;
    p.wait_phase(&admin, &account, &id, "HEALTHY").await;
    let path = format!("/api/v1/accounts/{account}/clusters/{id}");

    for n in [5u32, 2] {
        let (s, c) = p
            .call(&admin, Method::PATCH, &path, Some(json!({"configuration": {"num_nodes": n, "node_configuration": {"cpu": 1000, "memory": 1024, "disk": 10}}})))
            .await;
        assert_eq!(s, 202, "{c}");
        p.wait_phase(&admin, &account, &id, "HEALTHY").await;
        assert_eq!(p.node_processes(&id).len(), n as usize);
        assert_eq!(route(&p, &id).unwrap().nodes.len(), n as usize);
        assert_eq!(
            region_allocated(&p)["alloc_nodes"],
            i64::from(n),
            "reservation follows the shape"
        );
    }

    let (s, _) = p.call(&admin, Method::DELETE, &path, None).await;
    assert_eq!(s, 202);
    p.wait_phase(&admin, &account, &id, "DELETED").await;
    assert!(p.node_processes(&id).is_empty());
    assert!(
        !p.data.path().join("nodes").join(&id).exists(),
        "storage removed"
    );
    assert!(route(&p, &id).is_none(), "route removed");
    assert!(
        region_allocated(&p).values().all(|v| *v == 0),
        "capacity released"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_stops_cleanly_and_two_workers_share_the_stream() {
    let mut p = Platform::start().await;
    let (account, admin) = p.tenant(10).await;
    p.start_nebula(&[]);
    let first = p.create_cluster(&admin, &account, 1).await;
    p.wait_phase(&admin, &account, &first, "HEALTHY").await;
    testkit::supervised::terminate(p.nebula.as_ref().unwrap()).unwrap();
    let status = p.nebula_exit().await;
    assert!(status.success(), "SIGTERM exit: {status}");
    assert_eq!(
        p.node_processes(&first).len(),
        1,
        "clusters keep running without Nebula"
    );

    // Two workers under different names share new work; none is done twice.
    let mut a = p.nebula_command(&p.qdrant_bin.clone());
    a.env("LYRA_NEBULA_CONSUMER", "worker-a");
    let mut b = p.nebula_command(&p.qdrant_bin.clone());
    b.env("LYRA_NEBULA_CONSUMER", "worker-b");
    let mut workers = vec![
        testkit::supervised::spawn(a).unwrap(),
        testkit::supervised::spawn(b).unwrap(),
    ];
    let mut ids = Vec::new();
    for _ in 0..4 {
        ids.push(p.create_cluster(&admin, &account, 1).await);
    }
    for id in &ids {
        p.wait_phase(&admin, &account, id, "HEALTHY").await;
        assert_eq!(p.node_processes(id).len(), 1);
    }
    assert_eq!(
        p.node_processes(&first).len(),
        1,
        "the first cluster was adopted, not duplicated"
    );
    for w in &mut workers {
        testkit::supervised::kill(w).unwrap();
    }
    let _ = CONSUMER;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_workers_command_is_claimed_by_another_worker() {
    let mut p = Platform::start().await;
    let (account, admin) = p.tenant(10).await;
    let fast_claims = [("LYRA_NEBULA_CLAIM_IDLE_MS", "1000")];
    let mut dying = p.nebula_command(&p.qdrant_bin.clone());
    dying
        .env("LYRA_NEBULA_CONSUMER", "dies-for-good")
        .env("LYRA_CRASH_AT", "after_driver");
    dying.envs(fast_claims);
    p.nebula = Some(testkit::supervised::spawn(dying).unwrap());
    let id = p.create_cluster(&admin, &account, 2).await;
    assert!(!p.nebula_exit().await.success());

    // Another worker, under another name, takes the command over once it is idle.
    let mut survivor = p.nebula_command(&p.qdrant_bin.clone());
    survivor
        .env("LYRA_NEBULA_CONSUMER", "survivor")
        .envs(fast_claims);
    p.nebula = Some(testkit::supervised::spawn(survivor).unwrap());
    p.wait_phase(&admin, &account, &id, "HEALTHY").await;
    p.wait_until(
        || async { pending(&p) == 0 },
        "the claimed command acknowledged",
    )
    .await;
    assert_eq!(
        p.node_processes(&id).len(),
        2,
        "the survivor adopted the nodes the dead worker started"
    );
}

/// A handler that panics is one failed attempt, retried by the same worker: it does not take
/// the worker's consumer down with it, nor leave the cluster's lease renewed by an orphaned
/// task. (The reaper is slowed down here so that only the worker's own retry can finish it.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_handler_that_panics_is_retried_and_wedges_nothing() {
    let mut p = Platform::start().await;
    let (account, admin) = p.tenant(10).await;
    p.start_nebula(&[
        ("LYRA_PANIC_AT", "handler"),
        ("LYRA_NEBULA_CLAIM_IDLE_MS", "600000"),
    ]);
    let id = p.create_cluster(&admin, &account, 1).await;
    p.wait_phase(&admin, &account, &id, "HEALTHY").await;
    p.wait_until(|| async { pending(&p) == 0 }, "the command acknowledged")
        .await;
    assert_eq!(p.node_processes(&id).len(), 1);
    let lease: Option<String> = redis::cmd("GET")
        .arg(keyspace::cluster_lease(id.parse().unwrap()))
        .query(&mut p.redis())
        .unwrap();
    assert_eq!(
        lease, None,
        "the lease is released once the command is done"
    );
    // The worker still takes new commands.
    let other = p.create_cluster(&admin, &account, 1).await;
    p.wait_phase(&admin, &account, &other, "HEALTHY").await;
}

/// Nebula's control loop notices what no command told it: a hung node makes the cluster
/// DEGRADED (still served), every node hung makes it NOT_READY (the gateway answers 503 with
/// Retry-After without reaching a node), and recovery makes it HEALTHY again; the route
/// follows each time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_control_loop_tells_degraded_and_not_ready_and_sees_recovery() {
    let mut p = Platform::start().await;
    let (account, admin) = p.tenant(10).await;
    p.start_nebula(&[("LYRA_NEBULA_RECONCILE_SECS", "1")]);
    let id = p.create_cluster(&admin, &account, 3).await;
    p.wait_phase(&admin, &account, &id, "HEALTHY").await;
    let (rest, _) = p.start_gatekeeper().await;
    let (s, k) = p
        .call(
            &admin,
            Method::POST,
            &format!("/api/v1/accounts/{account}/clusters/{id}/api-keys"),
            Some(json!({"name": "app", "access": "manage"})),
        )
        .await;
    assert_eq!(s, 201);
    let key = k["key"].as_str().unwrap().to_owned();
    let pids = p.node_processes(&id);
    assert_eq!(pids.len(), 3);
    let signal = |pid: u32, sig| {
        // SAFETY: kill(2) on this test's own node process.
        unsafe { libc::kill(pid as libc::pid_t, sig) };
    };

    signal(pids[2], libc::SIGSTOP);
    let c = p.wait_phase(&admin, &account, &id, "DEGRADED").await;
    let reason = c["reason"].as_str().unwrap_or_default().to_owned();
    assert!(reason.contains("2 of 3 nodes are ready"), "{c}");
    assert_eq!(route(&p, &id).unwrap().phase.as_str(), "DEGRADED");
    signal(pids[2], libc::SIGCONT);
    let c = p.wait_phase(&admin, &account, &id, "HEALTHY").await;
    assert!(c["reason"].is_null() || c["reason"] == "", "{c}");

    for pid in &pids {
        signal(*pid, libc::SIGSTOP);
    }
    p.wait_phase(&admin, &account, &id, "NOT_READY").await;
    assert_eq!(route(&p, &id).unwrap().phase.as_str(), "NOT_READY");
    let ca = p.ca_pem();
    let client = common::https::Https::new(
        &ca,
        format!("127.0.0.1:{rest}").parse().unwrap(),
        &["http/1.1"],
    );
    let mut answer = None;
    for _ in 0..100 {
        let a = client
            .send(
                http::Request::get(format!(
                    "https://{id}.dev.local.localhost:{rest}/collections"
                ))
                .header("api-key", &key)
                .body(http_body_util::Full::new(bytes::Bytes::new()))
                .unwrap(),
            )
            .await
            .unwrap();
        if a.status == 503 {
            answer = Some(a);
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let answer = answer.expect("the gateway answers 503 for a cluster with no ready node");
    assert!(answer.headers.contains_key("retry-after"));
    for pid in &pids {
        signal(*pid, libc::SIGCONT);
    }
    p.wait_phase(&admin, &account, &id, "HEALTHY").await;
    assert_eq!(route(&p, &id).unwrap().phase.as_str(), "HEALTHY");
}
