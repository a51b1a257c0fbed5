//! The kubernetes driver against a test double of the Kubernetes API server (and against a
//! real cluster when `KUBECONFIG` is set: those tests are ignored otherwise).
#![allow(clippy::unwrap_used, clippy::expect_used)] // a test: a panic is a failed test

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use common::fake_kube::FakeKube;
use contract::ids::{AccountId, ClusterId};
use contract::keyscheme::ClusterSecret;
use contract::resources::NodeResources;
use provisioner::driver::kubernetes::{FIELD_MANAGER, KubernetesDriver, PERMISSIONS, manifests};
use provisioner::driver::{Drift, DriverError, InfrastructureClient, NodeSpec};
use serde_json::json;

fn spec(cluster: ClusterId, num_nodes: u32) -> NodeSpec {
    NodeSpec {
        cluster_id: cluster,
        account_id: AccountId::new(),
        name: "k8s-test".into(),
        version: "v1.18.3".into(),
        num_nodes,
        resources: NodeResources {
            cpu: 2000,
            memory: 4096,
            disk: 50,
        },
        read_write: ClusterSecret::parse("RWsecretRWsecretRWsecretRWsecret").unwrap(),
        read_only: ClusterSecret::parse("ROsecretROsecretROsecretROsecret").unwrap(),
    }
}

#[tokio::test]
async fn provision_applies_the_chart_objects_and_waits_for_readiness() {
    let fake = FakeKube::start(Some(Duration::from_millis(300))).await;
    let driver = KubernetesDriver::new(fake.client(), Duration::from_secs(10));
    let cluster = ClusterId::new();
    let ns = manifests::namespace_name(cluster);

    let nodes = driver.provision(&spec(cluster, 3)).await.unwrap();
    assert_eq!(nodes.len(), 3);
    assert_eq!(
        nodes[2].rest,
        format!("qdrant-2.qdrant-headless.{ns}.svc:6333")
    );
    assert_eq!(
        nodes[2].grpc,
        format!("qdrant-2.qdrant-headless.{ns}.svc:6334")
    );

    // The exact apply requests: paths, field manager, force, apply-patch content type.
    let patches: Vec<_> = fake
        .requests()
        .into_iter()
        .filter(|r| r.method == "PATCH")
        .collect();
    let paths: Vec<&str> = patches.iter().map(|r| r.path.as_str()).collect();
    assert_eq!(
        paths,
        [
            format!("/api/v1/namespaces/{ns}"),
            format!("/api/v1/namespaces/{ns}/secrets/qdrant-apikey"),
            format!("/api/v1/namespaces/{ns}/configmaps/qdrant"),
            format!("/api/v1/namespaces/{ns}/services/qdrant-headless"),
            format!("/api/v1/namespaces/{ns}/services/qdrant"),
            format!("/apis/apps/v1/namespaces/{ns}/statefulsets/qdrant"),
            format!("/apis/networking.k8s.io/v1/namespaces/{ns}/networkpolicies/qdrant"),
            format!("/apis/policy/v1/namespaces/{ns}/poddisruptionbudgets/qdrant"),
        ]
    );
    for p in &patches {
        assert_eq!(
            p.query.get("fieldManager").map(String::as_str),
            Some(FIELD_MANAGER),
            "{}",
            p.path
        );
        assert_eq!(
            p.query.get("force").map(String::as_str),
            Some("true"),
            "{}",
            p.path
        );
        assert_eq!(
            p.content_type.as_deref(),
            Some("application/apply-patch+yaml"),
            "{}",
            p.path
        );
    }

    // Resources, volume size, topology and readiness come from the spec.
    let sts = fake
        .object("apps", "statefulsets", Some(&ns), "qdrant")
        .unwrap();
    assert_eq!(sts["spec"]["replicas"], 3);
    assert_eq!(sts["spec"]["podManagementPolicy"], "Parallel");
    assert_eq!(sts["spec"]["serviceName"], "qdrant-headless");
    let container = &sts["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(container["image"], "docker.io/qdrant/qdrant:v1.18.3");
    assert_eq!(container["resources"]["requests"]["cpu"], "2000m");
    assert_eq!(container["resources"]["limits"]["memory"], "4096Mi");
    assert_eq!(container["readinessProbe"]["httpGet"]["path"], "/readyz");
    let claim = &sts["spec"]["volumeClaimTemplates"][0];
    assert_eq!(claim["spec"]["resources"]["requests"]["storage"], "50Gi");
    assert_eq!(
        sts["status"]["readyReplicas"], 3,
        "the driver returned before the set was ready"
    );

    let secret = fake
        .object("", "secrets", Some(&ns), "qdrant-apikey")
        .unwrap();
    assert_eq!(
        secret["data"]["api-key"],
        "UldzZWNyZXRSV3NlY3JldFJXc2VjcmV0UldzZWNyZXQ="
    );
    let policy = fake
        .object("networking.k8s.io", "networkpolicies", Some(&ns), "qdrant")
        .unwrap();
    let from = &policy["spec"]["ingress"][0]["from"][0]["namespaceSelector"]["matchLabels"];
    assert_eq!(
        from["lyra.dev/role"], "gateway",
        "only gateways reach the API ports"
    );
    let ports: Vec<i64> = policy["spec"]["ingress"][0]["ports"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["port"].as_i64().unwrap())
        .collect();
    assert_eq!(ports, [6333, 6334]);
    let config = fake.object("", "configmaps", Some(&ns), "qdrant").unwrap();
    assert!(
        config["data"]["production.yaml"]
            .as_str()
            .unwrap()
            .contains("jwt_rbac: true")
    );
    assert!(
        config["data"]["initialize.sh"]
            .as_str()
            .unwrap()
            .contains("--bootstrap")
    );
    let pdb = fake
        .object("policy", "poddisruptionbudgets", Some(&ns), "qdrant")
        .unwrap();
    assert_eq!(pdb["spec"]["maxUnavailable"], 1);

    let seen = driver.observe(cluster).await.unwrap();
    assert_eq!((seen.desired, seen.ready), (3, 3));
}

#[tokio::test]
async fn a_retry_applies_the_same_objects_and_changes_nothing() {
    let fake = FakeKube::start(Some(Duration::from_millis(50))).await;
    let driver = KubernetesDriver::new(fake.client(), Duration::from_secs(10));
    let cluster = ClusterId::new();
    let same = spec(cluster, 3);
    let first = driver.provision(&same).await.unwrap();
    let bodies = |fake: &FakeKube| -> Vec<(String, serde_json::Value)> {
        fake.requests()
            .into_iter()
            .filter(|r| r.method == "PATCH")
            .map(|r| (r.path, r.body.unwrap()))
            .collect()
    };
    let before = bodies(&fake);
    let objects = fake.object_count();
    let sts = fake
        .object(
            "apps",
            "statefulsets",
            Some(&manifests::namespace_name(cluster)),
            "qdrant",
        )
        .unwrap();
    fake.clear_requests();

    let again = driver.provision(&same).await.unwrap();
    assert_eq!(again, first);
    assert_eq!(
        bodies(&fake),
        before,
        "a retry must send the very same objects"
    );
    assert_eq!(fake.object_count(), objects, "a retry made new objects");
    let after = fake
        .object(
            "apps",
            "statefulsets",
            Some(&manifests::namespace_name(cluster)),
            "qdrant",
        )
        .unwrap();
    assert_eq!(
        after["metadata"]["generation"], sts["metadata"]["generation"],
        "the spec changed"
    );
}

#[tokio::test]
async fn a_set_that_never_becomes_ready_times_out_with_a_reason() {
    let fake = FakeKube::start(None).await;
    let driver = KubernetesDriver::new(fake.client(), Duration::from_millis(800));
    let err = driver
        .provision(&spec(ClusterId::new(), 2))
        .await
        .unwrap_err();
    assert!(
        matches!(err, DriverError::StatefulSetNotReady { .. }),
        "{err:?}"
    );
    assert!(err.retryable());
    assert_eq!(err.kind(), "driver_timeout");
    let reason = err.to_string();
    assert!(reason.contains("was not ready"), "{reason}");
    assert!(reason.contains("kubectl"), "{reason}");
}

#[tokio::test]
async fn an_unreachable_api_server_is_retryable_and_keeps_its_cause() {
    // Nothing listens there: the port of a listener just closed.
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let config = kube::Config::new(format!("http://127.0.0.1:{port}").parse().unwrap());
    let driver = KubernetesDriver::new(
        kube::Client::try_from(config).unwrap(),
        Duration::from_secs(1),
    );
    let err = driver.observe(ClusterId::new()).await.unwrap_err();
    assert!(
        matches!(err, DriverError::KubernetesUnreachable { .. }),
        "{err:?}"
    );
    assert!(err.retryable());
    assert_eq!(err.kind(), "kubernetes_unreachable");
    assert!(
        err.to_string()
            .starts_with("kubernetes API unreachable (StatefulSet)"),
        "{err}"
    );
    let source = std::error::Error::source(&err).expect("the kube error is kept");
    assert!(source.downcast_ref::<kube::Error>().is_some(), "{source:?}");
}

/// Someone scales the StatefulSet by hand, deletes the headless Service and the Secret, and
/// edits the client Service: `repair` puts every object back as the spec says, and names
/// exactly those it had to. A repair of a cluster that did not drift changes nothing.
#[tokio::test]
async fn repair_puts_back_what_was_changed_or_deleted_behind_the_drivers_back() {
    let fake = FakeKube::start(Some(Duration::from_millis(50))).await;
    let driver = KubernetesDriver::new(fake.client(), Duration::from_secs(10));
    let cluster = ClusterId::new();
    let ns = manifests::namespace_name(cluster);
    let shape = spec(cluster, 3);
    driver.provision(&shape).await.unwrap();

    let versions = |fake: &FakeKube| -> Vec<serde_json::Value> {
        [
            ("", "secrets", "qdrant-apikey"),
            ("", "configmaps", "qdrant"),
            ("", "services", "qdrant-headless"),
            ("", "services", "qdrant"),
            ("networking.k8s.io", "networkpolicies", "qdrant"),
            ("policy", "poddisruptionbudgets", "qdrant"),
        ]
        .iter()
        .map(|(g, r, n)| {
            fake.object(g, r, Some(&ns), n).unwrap()["metadata"]["resourceVersion"].clone()
        })
        .collect()
    };
    let before = versions(&fake);
    let repair = driver.repair(&shape).await.unwrap();
    assert!(repair.is_empty(), "nothing drifted: {repair:?}");
    assert_eq!(
        versions(&fake),
        before,
        "a repair with nothing to do wrote something"
    );

    fake.edit("apps", "statefulsets", Some(&ns), "qdrant", |o| {
        o["spec"]["replicas"] = json!(1)
    });
    fake.remove("", "services", Some(&ns), "qdrant-headless");
    fake.remove("", "secrets", Some(&ns), "qdrant-apikey");
    fake.edit("", "services", Some(&ns), "qdrant", |o| {
        o["spec"]["ports"] = json!([{"name": "http", "port": 80}])
    });

    let repair = driver.repair(&shape).await.unwrap();
    let found: Vec<(&str, &str, Drift)> = repair
        .repaired
        .iter()
        .map(|r| (r.object, r.name.as_str(), r.drift))
        .collect();
    assert_eq!(
        found,
        [
            ("secret", "qdrant-apikey", Drift::Missing),
            ("service", "qdrant-headless", Drift::Missing),
            ("service", "qdrant", Drift::Changed),
            ("statefulset", "qdrant", Drift::Scaled { from: 1, to: 3 }),
        ]
    );
    assert_eq!(
        repair.repaired[3].to_string(),
        "statefulset qdrant had been scaled to 1 (wants 3)"
    );

    // Back as specified.
    let sts = fake
        .object("apps", "statefulsets", Some(&ns), "qdrant")
        .unwrap();
    assert_eq!(sts["spec"]["replicas"], 3);
    let headless = fake
        .object("", "services", Some(&ns), "qdrant-headless")
        .unwrap();
    assert_eq!(headless["spec"]["clusterIP"], "None");
    let ports: Vec<i64> =
        fake.object("", "services", Some(&ns), "qdrant").unwrap()["spec"]["ports"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["port"].as_i64().unwrap())
            .collect();
    assert_eq!(ports, [6333, 6334]);
    let secret = fake
        .object("", "secrets", Some(&ns), "qdrant-apikey")
        .unwrap();
    assert_eq!(
        secret["data"]["api-key"],
        "UldzZWNyZXRSV3NlY3JldFJXc2VjcmV0UldzZWNyZXQ="
    );
    // Re-applied with the driver's field manager, forced, like a provision.
    let patches: Vec<_> = fake
        .requests()
        .into_iter()
        .filter(|r| r.method == "PATCH")
        .collect();
    assert!(patches.iter().all(|p| {
        p.query.get("fieldManager").map(String::as_str) == Some(FIELD_MANAGER)
            && p.query.get("force").map(String::as_str) == Some("true")
    }));

    // Nothing drifted since.
    let again = driver.repair(&shape).await.unwrap();
    assert!(again.is_empty(), "{again:?}");
}

/// A deleted namespace takes everything with it: once it is gone, repair makes it all again.
#[tokio::test]
async fn repair_remakes_a_deleted_namespace_and_everything_in_it() {
    let fake = FakeKube::start(Some(Duration::from_millis(50))).await;
    let driver = KubernetesDriver::new(fake.client(), Duration::from_secs(10));
    let cluster = ClusterId::new();
    let shape = spec(cluster, 2);
    driver.provision(&shape).await.unwrap();
    let objects = fake.object_count();
    fake.remove("", "namespaces", None, &manifests::namespace_name(cluster));
    for (g, r, n) in [
        ("", "secrets", "qdrant-apikey"),
        ("", "configmaps", "qdrant"),
        ("", "services", "qdrant-headless"),
        ("", "services", "qdrant"),
        ("apps", "statefulsets", "qdrant"),
        ("networking.k8s.io", "networkpolicies", "qdrant"),
        ("policy", "poddisruptionbudgets", "qdrant"),
    ] {
        fake.remove(g, r, Some(&manifests::namespace_name(cluster)), n);
    }
    let repair = driver.repair(&shape).await.unwrap();
    assert_eq!(repair.repaired.len(), 8, "{repair:?}");
    assert!(
        repair.repaired.iter().all(|r| r.drift == Drift::Missing),
        "{repair:?}"
    );
    assert_eq!(fake.object_count(), objects);
}

#[tokio::test]
async fn resize_and_deprovision() {
    let fake = FakeKube::start(Some(Duration::from_millis(50))).await;
    let driver = KubernetesDriver::new(fake.client(), Duration::from_secs(10));
    let cluster = ClusterId::new();
    let ns = manifests::namespace_name(cluster);
    driver.provision(&spec(cluster, 3)).await.unwrap();
    let five = driver.resize(&spec(cluster, 5)).await.unwrap();
    assert_eq!(five.len(), 5);
    assert_eq!(
        fake.object("apps", "statefulsets", Some(&ns), "qdrant")
            .unwrap()["spec"]["replicas"],
        5
    );

    driver.deprovision(cluster).await.unwrap();
    assert!(
        fake.object("", "namespaces", None, &ns).is_none(),
        "the namespace is gone"
    );
    assert_eq!(fake.object_count(), 0, "everything in it is gone");
    let deletes: Vec<_> = fake
        .requests()
        .into_iter()
        .filter(|r| r.method == "DELETE")
        .collect();
    assert_eq!(deletes.len(), 1);
    assert_eq!(deletes[0].path, format!("/api/v1/namespaces/{ns}"));
    assert_eq!(
        deletes[0].body.as_ref().unwrap()["propagationPolicy"],
        "Foreground"
    );
    // Deprovisioning what is already gone is done.
    driver.deprovision(cluster).await.unwrap();
}

#[tokio::test]
async fn the_driver_uses_exactly_the_permissions_it_declares() {
    let fake = FakeKube::start(Some(Duration::from_millis(50))).await;
    let driver = KubernetesDriver::new(fake.client(), Duration::from_secs(10));
    let cluster = ClusterId::new();
    driver.provision(&spec(cluster, 1)).await.unwrap();
    driver.resize(&spec(cluster, 2)).await.unwrap();
    driver.observe(cluster).await.unwrap();
    driver.repair(&spec(cluster, 2)).await.unwrap();
    driver.deprovision(cluster).await.unwrap();

    let used: BTreeSet<(String, String, String)> =
        fake.requests().into_iter().map(|r| r.rbac).collect();
    let declared: BTreeSet<(String, String, String)> = PERMISSIONS
        .iter()
        .flat_map(|(g, r, verbs)| {
            verbs
                .iter()
                .map(move |v| ((*g).to_owned(), (*r).to_owned(), (*v).to_owned()))
        })
        .collect();
    assert_eq!(
        used, declared,
        "PERMISSIONS must list what the driver does, no more, no less"
    );
}

/// Against a real cluster: `KUBECONFIG=... cargo nextest run --run-ignored only -E 'test(real_cluster)'`.
#[tokio::test]
#[ignore = "needs a real Kubernetes cluster: set KUBECONFIG and run ignored tests"]
async fn real_cluster_round_trip() {
    if std::env::var_os("KUBECONFIG").is_none() {
        panic!("set KUBECONFIG to a cluster this test may create and delete a namespace in");
    }
    let client = kube::Client::try_default().await.unwrap();
    let driver = KubernetesDriver::new(client, Duration::from_secs(600));
    let cluster = ClusterId::new();
    let nodes = driver.provision(&spec(cluster, 1)).await.unwrap();
    assert_eq!(nodes.len(), 1);
    let seen = driver.observe(cluster).await.unwrap();
    assert_eq!((seen.desired, seen.ready), (1, 1));
    driver.deprovision(cluster).await.unwrap();
}
