//! The local driver against real processes of the stand-in Qdrant (a test double).
#![allow(clippy::unwrap_used, clippy::expect_used)] // a test: a panic is a failed test

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use contract::ids::{AccountId, ClusterId};
use contract::keyscheme::ClusterSecret;
use contract::resources::NodeResources;
use provisioner::driver::local::LocalDriver;
use provisioner::driver::{Drift, DriverError, InfrastructureClient, NodeSpec};
use testkit::standin::standin_bin;

fn spec(cluster: ClusterId, num_nodes: u32) -> NodeSpec {
    NodeSpec {
        cluster_id: cluster,
        account_id: AccountId::new(),
        name: "local-test".into(),
        version: "v1.18.3".into(),
        num_nodes,
        resources: NodeResources {
            cpu: 1000,
            memory: 1024,
            disk: 1,
        },
        read_write: ClusterSecret::parse("RWsecretRWsecretRWsecretRWsecret").unwrap(),
        read_only: ClusterSecret::parse("ROsecretROsecretROsecretROsecret").unwrap(),
    }
}

fn driver(root: &Path, bin: &Path) -> LocalDriver {
    LocalDriver::new(
        root.to_owned(),
        bin.to_owned(),
        "127.0.0.1".parse().unwrap(),
        Duration::from_secs(20),
    )
}

fn processes_under(dir: &Path) -> BTreeSet<u32> {
    testkit::procs::qdrant_nodes_under(dir)
        .into_iter()
        .collect()
}

async fn get(url: String, key: Option<&str>) -> u16 {
    let mut req = reqwest::Client::new().get(url);
    if let Some(k) = key {
        req = req.header("api-key", k);
    }
    req.send().await.map(|r| r.status().as_u16()).unwrap_or(0)
}

#[tokio::test]
async fn three_nodes_are_provisioned_adopted_resized_and_removed() {
    let bin = standin_bin().unwrap();
    let root = tempfile::tempdir().unwrap();
    let cluster = ClusterId::new();
    let cluster_dir = root.path().join(cluster.to_string());
    let d = driver(root.path(), &bin);

    let nodes = d.provision(&spec(cluster, 3)).await.unwrap();
    assert_eq!(nodes.len(), 3);
    assert_eq!(processes_under(&cluster_dir).len(), 3);
    for n in &nodes {
        // Ready, and the node takes the cluster's read-write secret and nothing else.
        assert_eq!(get(format!("http://{}/readyz", n.rest), None).await, 200);
        assert_eq!(
            get(
                format!("http://{}/collections", n.rest),
                Some("RWsecretRWsecretRWsecretRWsecret")
            )
            .await,
            200
        );
        assert_eq!(
            get(format!("http://{}/collections", n.rest), Some("wrong")).await,
            401
        );
    }
    let peers: serde_json::Value = reqwest::Client::new()
        .get(format!("http://{}/cluster", nodes[0].rest))
        .header("api-key", "RWsecretRWsecretRWsecretRWsecret")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        peers["result"]["peers"].as_object().unwrap().len(),
        3,
        "one Qdrant cluster of 3 peers"
    );

    // Provisioning again (a retry), or from a fresh worker (a restart), adopts: no duplicates.
    let before = processes_under(&cluster_dir);
    assert_eq!(d.provision(&spec(cluster, 3)).await.unwrap(), nodes);
    let fresh = driver(root.path(), &bin);
    assert_eq!(fresh.provision(&spec(cluster, 3)).await.unwrap(), nodes);
    assert_eq!(
        processes_under(&cluster_dir),
        before,
        "a retry started duplicates"
    );

    // Resize 3 -> 5 -> 2.
    let five = d.resize(&spec(cluster, 5)).await.unwrap();
    assert_eq!(five.len(), 5);
    assert_eq!(
        &five[..3],
        &nodes[..],
        "existing nodes keep their addresses"
    );
    assert_eq!(processes_under(&cluster_dir).len(), 5);
    let two = d.resize(&spec(cluster, 2)).await.unwrap();
    assert_eq!(two, nodes[..2].to_vec());
    assert_eq!(processes_under(&cluster_dir).len(), 2);
    assert!(
        !cluster_dir.join("node-2").exists(),
        "a removed node's storage is gone"
    );

    // Deprovision removes processes and storage; doing it twice is fine.
    d.deprovision(cluster).await.unwrap();
    assert!(processes_under(&cluster_dir).is_empty());
    assert!(!cluster_dir.exists());
    d.deprovision(cluster).await.unwrap();
    for n in &nodes[..2] {
        assert_eq!(
            get(format!("http://{}/readyz", n.rest), None).await,
            0,
            "a node still answers"
        );
    }
}

#[tokio::test]
async fn a_node_that_dies_is_restarted() {
    let bin = standin_bin().unwrap();
    let root = tempfile::tempdir().unwrap();
    let cluster = ClusterId::new();
    let d = Arc::new(driver(root.path(), &bin));
    let nodes = d.provision(&spec(cluster, 2)).await.unwrap();
    let (stop, stopping) = tokio::sync::watch::channel(false);
    let supervisor = tokio::spawn(provisioner::driver::local::supervise(d.clone(), stopping));

    let dir = root.path().join(cluster.to_string());
    let victim = *processes_under(&dir).iter().next().unwrap();
    unsafe { libc_kill(victim as i32, 9) };
    let mut back = false;
    for _ in 0..100 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let now = processes_under(&dir);
        if now.len() == 2 && !now.contains(&victim) {
            back = true;
            break;
        }
    }
    assert!(back, "the dead node was not restarted");
    for n in &nodes {
        let mut ready = false;
        for _ in 0..50 {
            if get(format!("http://{}/readyz", n.rest), None).await == 200 {
                ready = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert!(ready, "{} is not back on its port", n.rest);
    }
    let _ = stop.send(true);
    supervisor.await.unwrap();
    d.deprovision(cluster).await.unwrap();
}

unsafe extern "C" {
    #[link_name = "kill"]
    fn libc_kill(pid: i32, sig: i32) -> i32;
}

/// A worker that does not look after a cluster (it was not adopted when the worker started)
/// has no supervisor restarting its nodes: `repair` takes it over and starts the stopped
/// node on its own ports. A cluster the worker looks after is its supervisor's: nothing to do.
#[tokio::test]
async fn repair_restarts_the_nodes_of_a_cluster_nobody_looks_after() {
    let bin = standin_bin().unwrap();
    let root = tempfile::tempdir().unwrap();
    let cluster = ClusterId::new();
    let provisioner = driver(root.path(), &bin);
    let nodes = provisioner.provision(&spec(cluster, 2)).await.unwrap();
    assert!(
        provisioner
            .repair(&spec(cluster, 2))
            .await
            .unwrap()
            .is_empty(),
        "a cluster the worker looks after is left to its supervisor"
    );

    let dir = root.path().join(cluster.to_string());
    let pids = processes_under(&dir);
    let killed = *pids.iter().max().unwrap();
    unsafe { libc_kill(killed as i32, 9) };
    for _ in 0..100 {
        if processes_under(&dir).len() == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(processes_under(&dir).len(), 1, "the node did not die");

    // Another worker on the same data directory, which never adopted the cluster.
    let other = driver(root.path(), &bin);
    let repair = other.repair(&spec(cluster, 2)).await.unwrap();
    assert_eq!(repair.repaired.len(), 1, "{repair:?}");
    let node = &repair.repaired[0];
    assert_eq!(node.object, "node");
    assert_eq!(node.drift, Drift::Stopped);
    assert!(
        node.name == "node-0" || node.name == "node-1",
        "{}",
        node.name
    );
    assert_eq!(
        processes_under(&dir).len(),
        2,
        "the stopped node is running again"
    );
    let mut ready = 0;
    for n in &nodes {
        for _ in 0..100 {
            if get(format!("http://{}/readyz", n.rest), None).await == 200 {
                ready += 1;
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    assert_eq!(ready, 2, "a node is not back on its own port");
    // It looks after the cluster now: a second repair leaves it to the supervisor.
    assert!(other.repair(&spec(cluster, 2)).await.unwrap().is_empty());
    other.deprovision(cluster).await.unwrap();
}

#[tokio::test]
async fn a_missing_binary_is_a_plain_retryable_reason() {
    let root = tempfile::tempdir().unwrap();
    let d = driver(root.path(), Path::new("/nonexistent/qdrant"));
    let err = d.provision(&spec(ClusterId::new(), 1)).await.unwrap_err();
    assert!(matches!(err, DriverError::ProgramMissing { .. }), "{err:?}");
    assert!(err.retryable(), "the binary may be installed later");
    assert_eq!(err.kind(), "program_missing");
    let reason = err.to_string();
    assert!(reason.contains("was not found"), "{reason}");
    assert!(reason.contains("QDRANT_BIN"), "{reason}");
    assert!(reason.contains("/nonexistent/qdrant"), "{reason}");
    assert!(
        std::error::Error::source(&err).is_some(),
        "the io error is kept"
    );
}

/// On an IPv6 host, node addresses are written with brackets (`[::1]:6333`, not `::1:6333`),
/// so the routes, the readiness checks and the p2p URIs the nodes join with all work.
#[tokio::test]
async fn an_ipv6_host_gives_addresses_that_work() {
    let bin = standin_bin().unwrap();
    let root = tempfile::tempdir().unwrap();
    let driver = LocalDriver::new(
        root.path().to_owned(),
        bin,
        "::1".parse().unwrap(),
        Duration::from_secs(20),
    );
    let cluster = ClusterId::new();
    let nodes = driver.provision(&spec(cluster, 2)).await.unwrap();
    assert_eq!(nodes.len(), 2);
    for n in &nodes {
        assert!(n.rest.starts_with("[::1]:"), "{}", n.rest);
        assert!(n.grpc.starts_with("[::1]:"), "{}", n.grpc);
        assert_eq!(get(format!("http://{}/readyz", n.rest), None).await, 200);
    }
    let secret = "RWsecretRWsecretRWsecretRWsecret";
    let peers: serde_json::Value = reqwest::Client::new()
        .get(format!("http://{}/cluster", nodes[1].rest))
        .header("api-key", secret)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        peers["result"]["peers"].as_object().map(|p| p.len()),
        Some(2),
        "the second node joined the first over its bracketed p2p URI: {peers}"
    );
    driver.deprovision(cluster).await.unwrap();
}
