//! The helm driver: the values and command lines it builds, its failure without helm, and a
//! real run when helm and a cluster are there (ignored otherwise).
#![allow(clippy::unwrap_used, clippy::expect_used)] // a test: a panic is a failed test

use std::path::Path;
use std::time::Duration;

use contract::ids::{AccountId, ClusterId};
use contract::keyscheme::ClusterSecret;
use contract::resources::NodeResources;
use provisioner::driver::helm::{HelmDriver, release, values};
use provisioner::driver::{DriverError, InfrastructureClient, NodeSpec};
use serde_json::json;

fn spec(cluster: ClusterId) -> NodeSpec {
    NodeSpec {
        cluster_id: cluster,
        account_id: AccountId::new(),
        name: "helm-test".into(),
        version: "v1.18.3".into(),
        num_nodes: 3,
        resources: NodeResources {
            cpu: 1500,
            memory: 2048,
            disk: 20,
        },
        read_write: ClusterSecret::parse("RWsecretRWsecretRWsecretRWsecret").unwrap(),
        read_only: ClusterSecret::parse("ROsecretROsecretROsecretROsecret").unwrap(),
    }
}

#[test]
fn values_follow_the_official_chart() {
    let cluster = ClusterId::new();
    assert_eq!(
        values(&spec(cluster)),
        json!({
            "fullnameOverride": format!("lyra-{cluster}"),
            "replicaCount": 3,
            "image": {"tag": "v1.18.3"},
            "resources": {
                "requests": {"cpu": "1500m", "memory": "2048Mi"},
                "limits": {"cpu": "1500m", "memory": "2048Mi"},
            },
            "persistence": {"size": "20Gi"},
            "apiKey": "RWsecretRWsecretRWsecretRWsecret",
            "readOnlyApiKey": "ROsecretROsecretROsecretROsecret",
            "config": {"cluster": {"enabled": true, "p2p": {"port": 6335}}, "service": {"jwt_rbac": true}},
        })
    );
}

#[test]
fn command_lines_are_deterministic() {
    let cluster = ClusterId::new();
    let d = HelmDriver::new(
        "helm".into(),
        "qdrant-clusters".into(),
        "/tmp/w".into(),
        Duration::from_secs(300),
    );
    assert_eq!(
        d.install_args(&spec(cluster), Path::new("/tmp/w/v.json")),
        [
            "upgrade",
            "--install",
            &release(cluster),
            "qdrant",
            "--repo",
            "https://qdrant.github.io/qdrant-helm",
            "--namespace",
            "qdrant-clusters",
            "--create-namespace",
            "--values",
            "/tmp/w/v.json",
            "--wait",
            "--timeout",
            "300s",
        ]
    );
    assert_eq!(
        d.uninstall_args(cluster),
        [
            "uninstall",
            &release(cluster),
            "--namespace",
            "qdrant-clusters",
            "--wait",
            "--ignore-not-found"
        ]
    );
}

#[tokio::test]
async fn without_helm_the_failure_says_so_and_no_secret_is_left_on_disk() {
    let work = tempfile::tempdir().unwrap();
    let d = HelmDriver::new(
        "/nonexistent/helm".into(),
        "ns".into(),
        work.path().to_owned(),
        Duration::from_secs(5),
    );
    let err = d.provision(&spec(ClusterId::new())).await.unwrap_err();
    assert!(
        matches!(
            err,
            DriverError::ProgramMissing {
                program: "helm",
                ..
            }
        ),
        "{err:?}"
    );
    assert!(err.retryable(), "helm may be installed later");
    assert_eq!(err.kind(), "program_missing");
    let reason = err.to_string();
    assert!(reason.contains("helm was not found"), "{reason}");
    assert!(reason.contains("LYRA_HELM_BIN"), "{reason}");
    // The io error is kept as the source, not only flattened into the text.
    let source = std::error::Error::source(&err).unwrap();
    assert_eq!(
        source.downcast_ref::<std::io::Error>().unwrap().kind(),
        std::io::ErrorKind::NotFound
    );
    assert_eq!(
        std::fs::read_dir(work.path()).unwrap().count(),
        0,
        "a values file with secrets was left"
    );
}

/// `KUBECONFIG=... cargo nextest run --run-ignored only -E 'test(real_helm)'`, with helm on PATH.
#[tokio::test]
#[ignore = "needs helm on PATH and a real Kubernetes cluster (KUBECONFIG)"]
async fn real_helm_round_trip() {
    assert!(std::env::var_os("KUBECONFIG").is_some(), "set KUBECONFIG");
    let work = tempfile::tempdir().unwrap();
    let d = HelmDriver::new(
        "helm".into(),
        "lyra-helm-test".into(),
        work.path().to_owned(),
        Duration::from_secs(600),
    );
    let cluster = ClusterId::new();
    let nodes = d.provision(&spec(cluster)).await.unwrap();
    assert_eq!(nodes.len(), 3);
    d.deprovision(cluster).await.unwrap();
}
