//! deploy/ as an operator would apply it: every overlay renders with `kubectl kustomize`
//! (Debian's kubernetes-client), every rendered object is a typed Kubernetes object with no
//! field the model does not know, and Nebula's RBAC grants exactly what the kubernetes driver
//! uses (`PERMISSIONS`, which the driver's own tests derive from the requests it sends).
#![allow(clippy::unwrap_used, clippy::expect_used)] // a test: a panic is a failed test

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, PodSpec, Service, ServiceAccount};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding};
use provisioner::driver::kubernetes::PERMISSIONS;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn render(overlay: &str) -> Vec<Value> {
    let dir = repo().join("deploy/kustomize/overlays").join(overlay);
    let out = Command::new("kubectl")
        .arg("kustomize")
        .arg(&dir)
        .output()
        .unwrap_or_else(|e| panic!("kubectl: {e} (apt-get install kubernetes-client)"));
    assert!(
        out.status.success(),
        "kubectl kustomize {}: {}",
        dir.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    let yaml = String::from_utf8(out.stdout).unwrap();
    let docs: Vec<Value> = serde_saphyr::from_multiple(&yaml).unwrap();
    assert!(
        docs.len() > 10,
        "{overlay} rendered only {} objects",
        docs.len()
    );
    docs
}

fn empty(v: &Value) -> bool {
    v.is_null() || v.as_object().is_some_and(|o| o.is_empty())
}

/// Where two JSON values first differ, as a path.
fn first_difference(a: &Value, b: &Value, path: String) -> Option<String> {
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => {
            x.keys()
                .chain(y.keys())
                .find_map(|k| match (x.get(k), y.get(k)) {
                    (Some(u), Some(v)) => first_difference(u, v, format!("{path}.{k}")),
                    // An empty object or null says nothing either way.
                    (Some(u), None) | (None, Some(u)) if empty(u) => None,
                    (Some(_), None) => Some(format!("{path}.{k} is dropped by the model")),
                    (None, _) => Some(format!("{path}.{k} appears from the model")),
                })
        }
        (Value::Array(x), Value::Array(y)) if x.len() == y.len() => x
            .iter()
            .zip(y)
            .enumerate()
            .find_map(|(i, (u, v))| first_difference(u, v, format!("{path}[{i}]"))),
        _ if a == b => None,
        _ => Some(format!("{path}: {a} became {b}")),
    }
}

/// The object as its typed model, failing if the model drops anything (an unknown or
/// misspelt field) or cannot read it.
fn typed<T: DeserializeOwned + Serialize>(doc: &Value) -> T {
    let t: T = serde_json::from_value(doc.clone())
        .unwrap_or_else(|e| panic!("{} {}: {e}", doc["kind"], doc["metadata"]["name"]));
    let original = doc.clone();
    let mut back = serde_json::to_value(&t).unwrap();
    // The model writes apiVersion/kind into a StatefulSet's embedded claim templates, which
    // the manifests (like most) leave out.
    if let Some(claims) = back
        .pointer_mut("/spec/volumeClaimTemplates")
        .and_then(Value::as_array_mut)
    {
        for claim in claims.iter_mut().filter_map(Value::as_object_mut) {
            claim.remove("apiVersion");
            claim.remove("kind");
        }
    }
    if let Some(diff) = first_difference(&original, &back, String::new()) {
        panic!("{} {}: {diff}", doc["kind"], doc["metadata"]["name"]);
    }
    t
}

/// Every object, typed; an unknown kind fails.
struct Objects {
    deployments: Vec<Deployment>,
    stateful_sets: Vec<StatefulSet>,
    services: Vec<Service>,
    config_maps: Vec<ConfigMap>,
    cluster_roles: Vec<ClusterRole>,
    bindings: Vec<ClusterRoleBinding>,
    policies: Vec<NetworkPolicy>,
    budgets: Vec<PodDisruptionBudget>,
    namespaces: Vec<Namespace>,
}

fn objects(overlay: &str) -> Objects {
    let mut o = Objects {
        deployments: vec![],
        stateful_sets: vec![],
        services: vec![],
        config_maps: vec![],
        cluster_roles: vec![],
        bindings: vec![],
        policies: vec![],
        budgets: vec![],
        namespaces: vec![],
    };
    for doc in render(overlay) {
        let api = doc["apiVersion"].as_str().unwrap_or_default();
        let kind = doc["kind"].as_str().unwrap_or_default();
        match (api, kind) {
            ("v1", "Namespace") => o.namespaces.push(typed(&doc)),
            ("v1", "ConfigMap") => o.config_maps.push(typed(&doc)),
            ("v1", "Service") => o.services.push(typed(&doc)),
            ("v1", "ServiceAccount") => drop(typed::<ServiceAccount>(&doc)),
            ("apps/v1", "Deployment") => o.deployments.push(typed(&doc)),
            ("apps/v1", "StatefulSet") => o.stateful_sets.push(typed(&doc)),
            ("autoscaling/v2", "HorizontalPodAutoscaler") => {
                drop(typed::<HorizontalPodAutoscaler>(&doc))
            }
            ("policy/v1", "PodDisruptionBudget") => o.budgets.push(typed(&doc)),
            ("rbac.authorization.k8s.io/v1", "ClusterRole") => o.cluster_roles.push(typed(&doc)),
            ("rbac.authorization.k8s.io/v1", "ClusterRoleBinding") => o.bindings.push(typed(&doc)),
            ("networking.k8s.io/v1", "NetworkPolicy") => o.policies.push(typed(&doc)),
            _ => panic!("{overlay}: unknown kind {api} {kind}"),
        }
    }
    o
}

fn name<
    T: k8s_openapi::Metadata<Ty = k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta>,
>(
    t: &T,
) -> &str {
    t.metadata().name.as_deref().unwrap_or_default()
}

fn pod<'a>(o: &'a Objects, deployment: &str) -> &'a PodSpec {
    o.deployments
        .iter()
        .find(|d| name(*d) == deployment)
        .and_then(|d| d.spec.template.spec.as_ref())
        .unwrap_or_else(|| panic!("no Deployment {deployment}"))
}

/// (group, resource, verb) triples.
fn grants(role: &ClusterRole) -> BTreeSet<(String, String, String)> {
    let mut out = BTreeSet::new();
    for rule in role.rules.iter().flatten() {
        for group in rule.api_groups.iter().flatten() {
            for resource in rule.resources.iter().flatten() {
                for verb in &rule.verbs {
                    out.insert((group.clone(), resource.clone(), verb.clone()));
                }
            }
        }
    }
    out
}

#[test]
fn every_overlay_renders_into_typed_objects() {
    for overlay in ["dev", "production"] {
        let o = objects(overlay);
        for d in ["lyra-orion", "lyra-nebula", "lyra-gatekeeper"] {
            let spec = pod(&o, d);
            for c in &spec.containers {
                let sc = c
                    .security_context
                    .as_ref()
                    .unwrap_or_else(|| panic!("{d}: no securityContext"));
                assert_eq!(
                    sc.read_only_root_filesystem,
                    Some(true),
                    "{d}: writable root"
                );
                assert_eq!(sc.allow_privilege_escalation, Some(false), "{d}");
                assert!(
                    c.readiness_probe.is_some() && c.liveness_probe.is_some(),
                    "{d}: probes"
                );
            }
            assert_eq!(
                spec.security_context
                    .as_ref()
                    .and_then(|s| s.run_as_non_root),
                Some(true),
                "{d}: root"
            );
        }
        assert_eq!(o.namespaces.len(), 1);
        assert!(o.stateful_sets.iter().any(|s| name(s) == "lyra-redis"));
        assert!(o.budgets.iter().any(|b| name(b) == "lyra-gatekeeper"));
    }
}

#[test]
fn nebula_may_do_exactly_what_the_kubernetes_driver_does() {
    let o = objects("production");
    let role = o
        .cluster_roles
        .iter()
        .find(|r| name(*r) == "lyra-nebula")
        .expect("ClusterRole lyra-nebula");
    let granted = grants(role);
    let used: BTreeSet<(String, String, String)> = PERMISSIONS
        .iter()
        .flat_map(|(group, resource, verbs)| {
            verbs
                .iter()
                .map(move |v| ((*group).to_owned(), (*resource).to_owned(), (*v).to_owned()))
        })
        .collect();
    let missing: Vec<_> = used.difference(&granted).collect();
    assert!(
        missing.is_empty(),
        "the driver needs, and the role lacks: {missing:?}"
    );
    let extra: Vec<_> = granted.difference(&used).collect();
    assert!(
        extra.is_empty(),
        "the role grants what the driver never uses: {extra:?}"
    );
    // Bound to the account Nebula runs as.
    let binding = o
        .bindings
        .iter()
        .find(|b| b.role_ref.name == "lyra-nebula")
        .expect("binding");
    let subject = binding.subjects.iter().flatten().next().expect("a subject");
    assert_eq!(
        (subject.kind.as_str(), subject.name.as_str()),
        ("ServiceAccount", "lyra-nebula")
    );
    assert_eq!(subject.namespace.as_deref(), Some("lyra"));
    assert_eq!(
        pod(&o, "lyra-nebula").service_account_name.as_deref(),
        Some("lyra-nebula")
    );
}

#[test]
fn the_platform_is_wired_as_the_brief_says() {
    let o = objects("production");
    // Redis: AOF fsync always, noeviction, on a volume; reachable only from Lyra.
    let redis = o
        .config_maps
        .iter()
        .find(|c| name(*c) == "lyra-redis-config")
        .expect("redis config");
    let conf = &redis.data.as_ref().expect("data")["redis.conf"];
    for line in [
        "appendonly yes",
        "appendfsync always",
        "maxmemory-policy noeviction",
    ] {
        assert!(
            conf.lines().any(|l| l.trim() == line),
            "redis.conf lacks {line:?}"
        );
    }
    let sts = o
        .stateful_sets
        .iter()
        .find(|s| name(*s) == "lyra-redis")
        .expect("redis");
    assert!(
        sts.spec
            .volume_claim_templates
            .as_ref()
            .is_some_and(|v| !v.is_empty())
    );
    let only_lyra = o
        .policies
        .iter()
        .find(|p| name(*p) == "lyra-redis")
        .expect("redis NetworkPolicy");
    let from = serde_json::to_string(&only_lyra.spec).unwrap();
    for app in ["lyra-orion", "lyra-nebula", "lyra-gatekeeper"] {
        assert!(from.contains(app), "{app} cannot reach Redis");
    }
    // GateKeeper: one LoadBalancer for 443, 6333 and 6334, with the wildcard DNS name.
    let lb = o
        .services
        .iter()
        .find(|s| name(*s) == "lyra-gatekeeper")
        .expect("gatekeeper service");
    let spec = lb.spec.as_ref().expect("spec");
    assert_eq!(spec.type_.as_deref(), Some("LoadBalancer"));
    let ports: BTreeSet<i32> = spec.ports.iter().flatten().map(|p| p.port).collect();
    assert_eq!(ports, BTreeSet::from([443, 6333, 6334]));
    let dns = lb
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get("external-dns.alpha.kubernetes.io/hostname"));
    assert!(
        dns.is_some_and(|h| h.starts_with("*.")),
        "no wildcard external-dns name"
    );
    // Qdrant pods admit only namespaces labelled as gateways: Lyra's namespace is one.
    let ns = &o.namespaces[0];
    assert_eq!(
        ns.metadata
            .labels
            .as_ref()
            .and_then(|l| l.get("lyra.dev/role"))
            .map(String::as_str),
        Some("gateway")
    );
    // Every service is scraped, on the admin port it listens on, which no Service exposes.
    for d in &o.deployments {
        let meta = d.spec.template.metadata.as_ref();
        let ann = meta.and_then(|m| m.annotations.as_ref());
        assert_eq!(
            ann.and_then(|a| a.get("prometheus.io/scrape"))
                .map(String::as_str),
            Some("true"),
            "{}",
            name(d)
        );
        let port: i32 = ann
            .and_then(|a| a.get("prometheus.io/port"))
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("{}: no prometheus.io/port", name(d)));
        let container = &pod(&o, name(d)).containers[0];
        let declared = container
            .ports
            .iter()
            .flatten()
            .find(|p| p.container_port == port);
        assert!(
            declared.is_some(),
            "{}: scraped on {port}, a port it does not declare",
            name(d)
        );
        let admin = container
            .env
            .iter()
            .flatten()
            .find(|e| e.name.starts_with("LYRA_") && e.name.ends_with("_ADMIN"))
            .and_then(|e| e.value.as_deref());
        assert!(
            admin.is_some_and(|a| a.ends_with(&format!(":{port}"))),
            "{}: scraped on {port}, but its admin listener is {admin:?}",
            name(d)
        );
        let labels = meta.and_then(|m| m.labels.clone()).unwrap_or_default();
        for service in &o.services {
            let Some(spec) = &service.spec else { continue };
            let selects = spec
                .selector
                .as_ref()
                .is_some_and(|sel| sel.iter().all(|(k, v)| labels.get(k) == Some(v)));
            if !selects {
                continue;
            }
            for p in spec.ports.iter().flatten() {
                use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
                let target = match &p.target_port {
                    None => p.port,
                    Some(IntOrString::Int(n)) => *n,
                    Some(IntOrString::String(named)) => container
                        .ports
                        .iter()
                        .flatten()
                        .find(|c| c.name.as_deref() == Some(named.as_str()))
                        .map(|c| c.container_port)
                        .unwrap_or_else(|| panic!("{}: no port named {named}", name(service))),
                };
                assert_ne!(
                    target,
                    port,
                    "Service {} exposes the metrics of {}",
                    name(service),
                    name(d)
                );
            }
        }
    }
    // The platform key comes from a Secret, never from the manifests, and only to the
    // services that need it: GateKeeper gets the gateway key, from a Secret of its own.
    let secret_env = |d: &str, var: &str| {
        let env = pod(&o, d).containers[0].env.clone().unwrap_or_default();
        env.iter().find(|e| e.name == var).map(|e| {
            assert!(e.value.is_none(), "{d}: {var} is written in the manifest");
            e.value_from
                .as_ref()
                .and_then(|v| v.secret_key_ref.as_ref())
                .map(|s| s.name.clone())
        })
    };
    for d in ["lyra-orion", "lyra-nebula"] {
        assert_eq!(
            secret_env(d, "LYRA_MASTER_KEY"),
            Some(Some("lyra-platform".into())),
            "{d}"
        );
    }
    assert_eq!(secret_env("lyra-gatekeeper", "LYRA_MASTER_KEY"), None);
    assert_eq!(
        secret_env("lyra-gatekeeper", "LYRA_GATEWAY_KEY"),
        Some(Some("lyra-gateway".into()))
    );
    let gatekeeper = pod(&o, "lyra-gatekeeper");
    let mounts_platform = serde_json::to_string(&gatekeeper)
        .unwrap_or_default()
        .contains("lyra-platform");
    assert!(
        !mounts_platform,
        "GateKeeper's pod refers to the platform Secret"
    );
}
