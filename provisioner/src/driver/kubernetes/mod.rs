//! The `kubernetes` driver: kube-rs server-side apply (field manager `lyra-nebula`) of what the
//! official Qdrant chart renders for a spec ([`manifests`]), one namespace per cluster, then a
//! wait for the StatefulSet to be ready (`await_condition` inside a timeout). Names are
//! deterministic, so a retry applies the same objects and changes nothing.

pub mod manifests;

use std::fmt::Debug;
use std::time::Duration;

use async_trait::async_trait;
use contract::ids::ClusterId;
use contract::route::NodeEndpoint;
use k8s_openapi::NamespaceResourceScope;
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Secret, Service};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::api::{Api, DeleteParams, Patch, PatchParams};
use kube::runtime::wait::{Condition, await_condition, conditions};
use kube::{Client, Resource};
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::{DriverError, InfrastructureClient, NodeSpec, Observation};

/// The field manager of every apply, so that ownership of fields is Lyra's.
pub const FIELD_MANAGER: &str = "lyra-nebula";

/// Everything this driver does to the Kubernetes API: `(api group, resource, verbs)`. The
/// RBAC of a Nebula deployment must grant exactly this; a test proves the driver uses no
/// more (server-side apply is the `patch` verb; waiting is `list` + `watch`).
pub const PERMISSIONS: &[(&str, &str, &[&str])] = &[
    (
        "",
        "namespaces",
        &["get", "list", "watch", "patch", "delete"],
    ),
    ("", "secrets", &["patch"]),
    ("", "configmaps", &["patch"]),
    ("", "services", &["patch"]),
    ("apps", "statefulsets", &["get", "list", "watch", "patch"]),
    ("networking.k8s.io", "networkpolicies", &["patch"]),
    ("policy", "poddisruptionbudgets", &["patch"]),
];

pub struct KubernetesDriver {
    client: Client,
    ready_timeout: Duration,
}

fn api_error(what: &str, e: kube::Error) -> DriverError {
    match &e {
        // The object itself is invalid: the same spec will be refused again.
        kube::Error::Api(s) if s.code == 422 => {
            DriverError::Permanent(format!("kubernetes refused the {what}: {}", s.message))
        }
        kube::Error::Api(s) => DriverError::Retryable(format!(
            "kubernetes API error on the {what}: {} ({})",
            s.message, s.code
        )),
        _ => DriverError::Retryable(format!("kubernetes API unreachable ({what}): {e}")),
    }
}

/// Ready when the controller has seen the latest spec and every replica is updated and ready.
fn stateful_set_ready(replicas: i32) -> impl Condition<StatefulSet> {
    move |obj: Option<&StatefulSet>| {
        let Some(sts) = obj else { return false };
        let Some(status) = &sts.status else {
            return false;
        };
        status.observed_generation >= sts.metadata.generation
            && status.replicas == replicas
            && status.ready_replicas.unwrap_or(0) == replicas
            && status.updated_replicas.unwrap_or(0) == replicas
    }
}

impl KubernetesDriver {
    pub fn new(client: Client, ready_timeout: Duration) -> Self {
        Self {
            client,
            ready_timeout,
        }
    }

    async fn apply<K>(&self, ns: &str, obj: &K) -> Result<(), DriverError>
    where
        K: Resource<Scope = NamespaceResourceScope> + Clone + Debug + Serialize + DeserializeOwned,
        K::DynamicType: Default,
    {
        let name = obj.meta().name.clone().unwrap_or_default();
        let api: Api<K> = Api::namespaced(self.client.clone(), ns);
        api.patch(
            &name,
            &PatchParams::apply(FIELD_MANAGER).force(),
            &Patch::Apply(obj),
        )
        .await
        .map(|_| ())
        .map_err(|e| {
            api_error(
                &format!("{} {name}", K::kind(&K::DynamicType::default())),
                e,
            )
        })
    }

    async fn apply_all(&self, spec: &NodeSpec) -> Result<String, DriverError> {
        let ns = manifests::namespace_name(spec.cluster_id);
        let namespaces: Api<Namespace> = Api::all(self.client.clone());
        namespaces
            .patch(
                &ns,
                &PatchParams::apply(FIELD_MANAGER).force(),
                &Patch::Apply(&manifests::namespace(spec)),
            )
            .await
            .map_err(|e| api_error("namespace", e))?;
        self.apply::<Secret>(&ns, &manifests::secret(spec)).await?;
        self.apply::<ConfigMap>(&ns, &manifests::config_map(spec))
            .await?;
        self.apply::<Service>(&ns, &manifests::headless_service(spec))
            .await?;
        self.apply::<Service>(&ns, &manifests::client_service(spec))
            .await?;
        self.apply::<StatefulSet>(&ns, &manifests::stateful_set(spec))
            .await?;
        self.apply::<NetworkPolicy>(&ns, &manifests::network_policy(spec))
            .await?;
        self.apply::<PodDisruptionBudget>(&ns, &manifests::disruption_budget(spec))
            .await?;
        Ok(ns)
    }

    async fn wait_ready(&self, ns: &str, replicas: u32) -> Result<(), DriverError> {
        let replicas = i32::try_from(replicas).unwrap_or(i32::MAX);
        let api: Api<StatefulSet> = Api::namespaced(self.client.clone(), ns);
        match tokio::time::timeout(
            self.ready_timeout,
            await_condition(api, manifests::NAME, stateful_set_ready(replicas)),
        )
        .await
        {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => Err(DriverError::Retryable(format!(
                "watching the StatefulSet in {ns} failed: {e}"
            ))),
            Err(_) => Err(DriverError::Retryable(format!(
                "the StatefulSet in {ns} was not ready after {}s: see `kubectl -n {ns} describe statefulset {}`",
                self.ready_timeout.as_secs(),
                manifests::NAME
            ))),
        }
    }

    fn endpoints(ns: &str, n: u32) -> Vec<NodeEndpoint> {
        (0..n)
            .map(|i| {
                let host = format!("{}-{i}.{}.{ns}.svc", manifests::NAME, manifests::HEADLESS);
                NodeEndpoint {
                    rest: format!("{host}:{}", manifests::HTTP_PORT),
                    grpc: format!("{host}:{}", manifests::GRPC_PORT),
                }
            })
            .collect()
    }
}

#[async_trait]
impl InfrastructureClient for KubernetesDriver {
    async fn provision(&self, spec: &NodeSpec) -> Result<Vec<NodeEndpoint>, DriverError> {
        let ns = self.apply_all(spec).await?;
        self.wait_ready(&ns, spec.num_nodes).await?;
        Ok(Self::endpoints(&ns, spec.num_nodes))
    }

    async fn resize(&self, spec: &NodeSpec) -> Result<Vec<NodeEndpoint>, DriverError> {
        self.provision(spec).await
    }

    async fn deprovision(&self, cluster: ClusterId) -> Result<(), DriverError> {
        let ns = manifests::namespace_name(cluster);
        let api: Api<Namespace> = Api::all(self.client.clone());
        let Some(existing) = api
            .get_opt(&ns)
            .await
            .map_err(|e| api_error("namespace", e))?
        else {
            return Ok(());
        };
        let uid = existing.metadata.uid.clone().unwrap_or_default();
        match api.delete(&ns, &DeleteParams::foreground()).await {
            Ok(_) => {}
            Err(kube::Error::Api(s)) if s.code == 404 => return Ok(()),
            Err(e) => return Err(api_error("namespace", e)),
        }
        match tokio::time::timeout(
            self.ready_timeout,
            await_condition(api, &ns, conditions::is_deleted(&uid)),
        )
        .await
        {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => Err(DriverError::Retryable(format!(
                "watching namespace {ns} failed: {e}"
            ))),
            Err(_) => Err(DriverError::Retryable(format!(
                "namespace {ns} was not gone after {}s: look for finalizers with `kubectl get namespace {ns} -o yaml`",
                self.ready_timeout.as_secs()
            ))),
        }
    }

    async fn observe(&self, cluster: ClusterId) -> Result<Observation, DriverError> {
        let ns = manifests::namespace_name(cluster);
        let api: Api<StatefulSet> = Api::namespaced(self.client.clone(), &ns);
        let sts = api
            .get_opt(manifests::NAME)
            .await
            .map_err(|e| api_error("StatefulSet", e))?;
        let (desired, ready) = sts
            .map(|s| {
                let desired = s.spec.replicas.unwrap_or(1);
                let ready = s
                    .status
                    .as_ref()
                    .and_then(|st| st.ready_replicas)
                    .unwrap_or(0);
                (desired, ready)
            })
            .unwrap_or((0, 0));
        Ok(Observation {
            desired: u32::try_from(desired).unwrap_or(0),
            ready: u32::try_from(ready).unwrap_or(0),
        })
    }
}
