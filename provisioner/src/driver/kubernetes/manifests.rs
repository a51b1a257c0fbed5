//! What the official Qdrant chart renders for a cluster, as typed Kubernetes objects.
//!
//! Every name is derived from the cluster id, so applying the same spec twice changes
//! nothing: a retried command is a no-op.

use std::collections::BTreeMap;

use k8s_openapi::ByteString;
use k8s_openapi::api::apps::v1::{StatefulSet, StatefulSetSpec};
use k8s_openapi::api::core::v1::{
    ConfigMap, ConfigMapVolumeSource, Container, ContainerPort, EnvVar, EnvVarSource,
    HTTPGetAction, Namespace, PersistentVolumeClaim, PersistentVolumeClaimSpec, PodSecurityContext,
    PodSpec, PodTemplateSpec, Probe, ResourceRequirements, Secret, SecretKeySelector,
    SecurityContext, Service, ServicePort, ServiceSpec, Volume, VolumeMount,
    VolumeResourceRequirements,
};
use k8s_openapi::api::networking::v1::{
    NetworkPolicy, NetworkPolicyIngressRule, NetworkPolicyPeer, NetworkPolicyPort,
    NetworkPolicySpec,
};
use k8s_openapi::api::policy::v1::{PodDisruptionBudget, PodDisruptionBudgetSpec};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use contract::ids::ClusterId;

use crate::driver::NodeSpec;

pub const NAME: &str = "qdrant";
pub const HEADLESS: &str = "qdrant-headless";
pub const SECRET: &str = "qdrant-apikey";
pub const HTTP_PORT: i32 = 6333;
pub const GRPC_PORT: i32 = 6334;
pub const P2P_PORT: i32 = 6335;
/// The label a namespace carries when its pods are gateways allowed to reach Qdrant.
pub const GATEWAY_LABEL: (&str, &str) = ("lyra.dev/role", "gateway");

/// The namespace of a cluster: `lyra-<cluster-id>`.
pub fn namespace_name(cluster: ClusterId) -> String {
    format!("lyra-{cluster}")
}

fn labels(spec: &NodeSpec) -> BTreeMap<String, String> {
    BTreeMap::from([
        ("app.kubernetes.io/name".into(), NAME.into()),
        (
            "app.kubernetes.io/instance".into(),
            spec.cluster_id.to_string(),
        ),
        ("app.kubernetes.io/managed-by".into(), "lyra".into()),
        ("lyra.dev/cluster".into(), spec.cluster_id.to_string()),
        ("lyra.dev/account".into(), spec.account_id.to_string()),
    ])
}

fn selector(spec: &NodeSpec) -> BTreeMap<String, String> {
    BTreeMap::from([
        ("app.kubernetes.io/name".into(), NAME.into()),
        (
            "app.kubernetes.io/instance".into(),
            spec.cluster_id.to_string(),
        ),
    ])
}

fn meta(spec: &NodeSpec, name: &str) -> ObjectMeta {
    ObjectMeta {
        name: Some(name.into()),
        namespace: Some(namespace_name(spec.cluster_id)),
        labels: Some(labels(spec)),
        ..ObjectMeta::default()
    }
}

pub fn namespace(spec: &NodeSpec) -> Namespace {
    Namespace {
        metadata: ObjectMeta {
            name: Some(namespace_name(spec.cluster_id)),
            labels: Some(labels(spec)),
            ..ObjectMeta::default()
        },
        ..Namespace::default()
    }
}

pub fn secret(spec: &NodeSpec) -> Secret {
    Secret {
        metadata: meta(spec, SECRET),
        data: Some(BTreeMap::from([
            (
                "api-key".into(),
                ByteString(spec.read_write.expose().as_bytes().to_vec()),
            ),
            (
                "read-only-api-key".into(),
                ByteString(spec.read_only.expose().as_bytes().to_vec()),
            ),
        ])),
        type_: Some("Opaque".into()),
        ..Secret::default()
    }
}

/// Node 0 starts the cluster; every other node bootstraps from it (the chart's script).
const INITIALIZE: &str = r#"#!/bin/sh
SET_INDEX=${HOSTNAME##*-}
if [ "$SET_INDEX" = "0" ]; then
  exec ./entrypoint.sh --uri "http://$HOSTNAME.qdrant-headless:6335"
else
  exec ./entrypoint.sh --bootstrap "http://qdrant-0.qdrant-headless:6335" --uri "http://$HOSTNAME.qdrant-headless:6335"
fi
"#;

const PRODUCTION: &str = "cluster:\n  enabled: true\n  p2p:\n    port: 6335\n  consensus:\n    tick_period_ms: 100\nservice:\n  jwt_rbac: true\ntelemetry_disabled: true\n";

pub fn config_map(spec: &NodeSpec) -> ConfigMap {
    ConfigMap {
        metadata: meta(spec, NAME),
        data: Some(BTreeMap::from([
            ("initialize.sh".into(), INITIALIZE.into()),
            ("production.yaml".into(), PRODUCTION.into()),
        ])),
        ..ConfigMap::default()
    }
}

fn port(name: &str, port: i32) -> ServicePort {
    ServicePort {
        name: Some(name.into()),
        port,
        target_port: Some(IntOrString::Int(port)),
        ..ServicePort::default()
    }
}

pub fn headless_service(spec: &NodeSpec) -> Service {
    Service {
        metadata: meta(spec, HEADLESS),
        spec: Some(ServiceSpec {
            cluster_ip: Some("None".into()),
            publish_not_ready_addresses: Some(true),
            selector: Some(selector(spec)),
            ports: Some(vec![
                port("http", HTTP_PORT),
                port("grpc", GRPC_PORT),
                port("p2p", P2P_PORT),
            ]),
            ..ServiceSpec::default()
        }),
        ..Service::default()
    }
}

pub fn client_service(spec: &NodeSpec) -> Service {
    Service {
        metadata: meta(spec, NAME),
        spec: Some(ServiceSpec {
            type_: Some("ClusterIP".into()),
            selector: Some(selector(spec)),
            ports: Some(vec![port("http", HTTP_PORT), port("grpc", GRPC_PORT)]),
            ..ServiceSpec::default()
        }),
        ..Service::default()
    }
}

fn secret_env(name: &str, key: &str) -> EnvVar {
    EnvVar {
        name: name.into(),
        value_from: Some(EnvVarSource {
            secret_key_ref: Some(SecretKeySelector {
                name: SECRET.into(),
                key: key.into(),
                optional: Some(false),
            }),
            ..EnvVarSource::default()
        }),
        ..EnvVar::default()
    }
}

/// `cpu` in millicores, `memory` in MiB, `disk` in GiB: the units of the contract.
pub fn resources(spec: &NodeSpec) -> ResourceRequirements {
    let amounts = BTreeMap::from([
        ("cpu".into(), Quantity(format!("{}m", spec.resources.cpu))),
        (
            "memory".into(),
            Quantity(format!("{}Mi", spec.resources.memory)),
        ),
    ]);
    ResourceRequirements {
        requests: Some(amounts.clone()),
        limits: Some(amounts),
        ..ResourceRequirements::default()
    }
}

pub fn stateful_set(spec: &NodeSpec) -> StatefulSet {
    let container_port = |name: &str, port: i32| ContainerPort {
        name: Some(name.into()),
        container_port: port,
        protocol: Some("TCP".into()),
        ..ContainerPort::default()
    };
    let mount = |name: &str, path: &str, sub_path: Option<&str>| VolumeMount {
        name: name.into(),
        mount_path: path.into(),
        sub_path: sub_path.map(Into::into),
        ..VolumeMount::default()
    };
    let container = Container {
        name: NAME.into(),
        image: Some(format!("docker.io/qdrant/qdrant:{}", spec.version)),
        command: Some(vec!["/bin/sh".into(), "-c".into()]),
        args: Some(vec!["exec ./config/initialize.sh".into()]),
        env: Some(vec![
            secret_env("QDRANT__SERVICE__API_KEY", "api-key"),
            secret_env("QDRANT__SERVICE__READ_ONLY_API_KEY", "read-only-api-key"),
        ]),
        ports: Some(vec![
            container_port("http", HTTP_PORT),
            container_port("grpc", GRPC_PORT),
            container_port("p2p", P2P_PORT),
        ]),
        resources: Some(resources(spec)),
        readiness_probe: Some(Probe {
            http_get: Some(HTTPGetAction {
                path: Some("/readyz".into()),
                port: IntOrString::Int(HTTP_PORT),
                ..HTTPGetAction::default()
            }),
            initial_delay_seconds: Some(5),
            period_seconds: Some(5),
            ..Probe::default()
        }),
        security_context: Some(SecurityContext {
            allow_privilege_escalation: Some(false),
            run_as_non_root: Some(true),
            run_as_user: Some(1000),
            run_as_group: Some(2000),
            ..SecurityContext::default()
        }),
        volume_mounts: Some(vec![
            mount("qdrant-storage", "/qdrant/storage", None),
            mount(
                "qdrant-config",
                "/qdrant/config/initialize.sh",
                Some("initialize.sh"),
            ),
            mount(
                "qdrant-config",
                "/qdrant/config/production.yaml",
                Some("production.yaml"),
            ),
        ]),
        ..Container::default()
    };
    StatefulSet {
        metadata: meta(spec, NAME),
        spec: StatefulSetSpec {
            replicas: Some(i32::try_from(spec.num_nodes).unwrap_or(i32::MAX)),
            pod_management_policy: Some("Parallel".into()),
            service_name: Some(HEADLESS.into()),
            selector: LabelSelector {
                match_labels: Some(selector(spec)),
                ..LabelSelector::default()
            },
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(labels(spec)),
                    ..ObjectMeta::default()
                }),
                spec: Some(PodSpec {
                    containers: vec![container],
                    security_context: Some(PodSecurityContext {
                        fs_group: Some(3000),
                        ..PodSecurityContext::default()
                    }),
                    volumes: Some(vec![Volume {
                        name: "qdrant-config".into(),
                        config_map: Some(ConfigMapVolumeSource {
                            name: NAME.into(),
                            default_mode: Some(0o755),
                            ..ConfigMapVolumeSource::default()
                        }),
                        ..Volume::default()
                    }]),
                    ..PodSpec::default()
                }),
            },
            volume_claim_templates: Some(vec![PersistentVolumeClaim {
                metadata: ObjectMeta {
                    name: Some("qdrant-storage".into()),
                    labels: Some(labels(spec)),
                    ..ObjectMeta::default()
                },
                spec: Some(PersistentVolumeClaimSpec {
                    access_modes: Some(vec!["ReadWriteOnce".into()]),
                    resources: Some(VolumeResourceRequirements {
                        requests: Some(BTreeMap::from([(
                            "storage".into(),
                            Quantity(format!("{}Gi", spec.resources.disk)),
                        )])),
                        ..VolumeResourceRequirements::default()
                    }),
                    ..PersistentVolumeClaimSpec::default()
                }),
                ..PersistentVolumeClaim::default()
            }]),
            ..StatefulSetSpec::default()
        },
        ..StatefulSet::default()
    }
}

/// Only gateways (namespaces labelled [`GATEWAY_LABEL`]) reach the API ports; the nodes of
/// the cluster reach each other on every port.
pub fn network_policy(spec: &NodeSpec) -> NetworkPolicy {
    let api_port = |p: i32| NetworkPolicyPort {
        port: Some(IntOrString::Int(p)),
        protocol: Some("TCP".into()),
        ..NetworkPolicyPort::default()
    };
    NetworkPolicy {
        metadata: meta(spec, NAME),
        spec: Some(NetworkPolicySpec {
            pod_selector: Some(LabelSelector {
                match_labels: Some(selector(spec)),
                ..LabelSelector::default()
            }),
            policy_types: Some(vec!["Ingress".into()]),
            ingress: Some(vec![
                NetworkPolicyIngressRule {
                    from: Some(vec![NetworkPolicyPeer {
                        namespace_selector: Some(LabelSelector {
                            match_labels: Some(BTreeMap::from([(
                                GATEWAY_LABEL.0.into(),
                                GATEWAY_LABEL.1.into(),
                            )])),
                            ..LabelSelector::default()
                        }),
                        ..NetworkPolicyPeer::default()
                    }]),
                    ports: Some(vec![api_port(HTTP_PORT), api_port(GRPC_PORT)]),
                },
                NetworkPolicyIngressRule {
                    from: Some(vec![NetworkPolicyPeer {
                        pod_selector: Some(LabelSelector {
                            match_labels: Some(selector(spec)),
                            ..LabelSelector::default()
                        }),
                        ..NetworkPolicyPeer::default()
                    }]),
                    ports: None,
                },
            ]),
            ..NetworkPolicySpec::default()
        }),
    }
}

pub fn disruption_budget(spec: &NodeSpec) -> PodDisruptionBudget {
    PodDisruptionBudget {
        metadata: meta(spec, NAME),
        spec: Some(PodDisruptionBudgetSpec {
            max_unavailable: Some(IntOrString::Int(1)),
            selector: Some(LabelSelector {
                match_labels: Some(selector(spec)),
                ..LabelSelector::default()
            }),
            ..PodDisruptionBudgetSpec::default()
        }),
        ..PodDisruptionBudget::default()
    }
}
