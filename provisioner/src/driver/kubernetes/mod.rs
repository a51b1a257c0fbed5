//! The `kubernetes` driver: kube-rs server-side apply (field manager `lyra-nebula`) of what the
//! official Qdrant chart renders for a spec ([`manifests`]), one namespace per cluster, then a
//! wait for the StatefulSet to be ready (`await_condition` inside a timeout). Names are
//! deterministic, so a retry applies the same objects and changes nothing.
//!
//! [`InfrastructureClient::repair`] applies the very same objects again (same field manager,
//! forced), so an object deleted or changed behind the driver's back comes back as the spec
//! says, and reports which ones that changed: the StatefulSet by its `generation` before and
//! after (read with the `get` the driver has anyway), every other object by what a dry-run
//! apply answers first (see [`KubernetesDriver::reapply`]), since the driver may only `patch`
//! those: it is never granted reading the cluster's Secret.

pub mod manifests;

use std::fmt::Debug;
use std::time::Duration;

use async_trait::async_trait;
use contract::ids::ClusterId;
use contract::route::NodeEndpoint;
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Secret, Service};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::api::{Api, DeleteParams, Patch, PatchParams};
use kube::runtime::wait::{Condition, await_condition, conditions};
use kube::{Client, Resource};
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::{Drift, DriverError, InfrastructureClient, NodeSpec, Observation, Repair, Repaired};

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
    let what = what.to_owned();
    match &e {
        // The object itself is invalid: the same spec will be refused again.
        kube::Error::Api(s) if s.code == 422 => DriverError::KubernetesInvalid {
            what,
            message: s.message.clone(),
            source: e,
        },
        kube::Error::Api(s) => DriverError::KubernetesApi {
            what,
            code: s.code,
            message: s.message.clone(),
            source: e,
        },
        _ => DriverError::KubernetesUnreachable { what, source: e },
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

    /// Applies `obj` (forced, as [`FIELD_MANAGER`]); with `check`, first asks what the apply
    /// will change and pushes the object's drift, if any, to `drifted`.
    async fn put<K>(
        &self,
        api: &Api<K>,
        obj: &K,
        check: bool,
        drifted: &mut Vec<Repaired>,
    ) -> Result<(), DriverError>
    where
        K: Resource + Clone + Debug + Serialize + DeserializeOwned,
        K::DynamicType: Default,
    {
        if check {
            if let Some(drift) = Self::reapply(api, obj).await? {
                drifted.push(repaired::<K>(obj, drift));
            }
            return Ok(());
        }
        let name = obj.meta().name.clone().unwrap_or_default();
        api.patch(&name, &apply_params(), &Patch::Apply(obj))
            .await
            .map(|_| ())
            .map_err(|e| api_error(&describe::<K>(&name), e))
    }

    /// Applies `obj` and says whether that changed it, for an object the driver may not read.
    /// A dry-run apply answers with the object as the apply will leave it, under its current
    /// `resourceVersion` (none when it does not exist: nothing was stored); the real apply
    /// then moves the `resourceVersion` only if it changed something, since the API server
    /// does not write an apply that changes nothing. A write by someone else between the two
    /// calls can make an object look drifted when it was not; it is re-applied either way.
    async fn reapply<K>(api: &Api<K>, obj: &K) -> Result<Option<Drift>, DriverError>
    where
        K: Resource + Clone + Debug + Serialize + DeserializeOwned,
        K::DynamicType: Default,
    {
        let name = obj.meta().name.clone().unwrap_or_default();
        let what = describe::<K>(&name);
        let version = |o: &K| o.meta().resource_version.clone().filter(|v| !v.is_empty());
        let before = api
            .patch(&name, &apply_params().dry_run(), &Patch::Apply(obj))
            .await
            .map_err(|e| api_error(&what, e))?;
        let after = api
            .patch(&name, &apply_params(), &Patch::Apply(obj))
            .await
            .map_err(|e| api_error(&what, e))?;
        Ok(match version(&before) {
            None => Some(Drift::Missing),
            Some(v) if Some(&v) != version(&after).as_ref() => Some(Drift::Changed),
            Some(_) => None,
        })
    }

    /// Applies every object of the cluster; with `check`, returns those whose apply changed
    /// them (see [`InfrastructureClient::repair`]).
    async fn apply_all(&self, spec: &NodeSpec, check: bool) -> Result<Vec<Repaired>, DriverError> {
        let ns = manifests::namespace_name(spec.cluster_id);
        let mut drifted = Vec::new();
        let namespaces: Api<Namespace> = Api::all(self.client.clone());
        self.put(
            &namespaces,
            &manifests::namespace(spec),
            check,
            &mut drifted,
        )
        .await?;
        let secrets: Api<Secret> = Api::namespaced(self.client.clone(), &ns);
        self.put(&secrets, &manifests::secret(spec), check, &mut drifted)
            .await?;
        let config_maps: Api<ConfigMap> = Api::namespaced(self.client.clone(), &ns);
        self.put(
            &config_maps,
            &manifests::config_map(spec),
            check,
            &mut drifted,
        )
        .await?;
        let services: Api<Service> = Api::namespaced(self.client.clone(), &ns);
        self.put(
            &services,
            &manifests::headless_service(spec),
            check,
            &mut drifted,
        )
        .await?;
        self.put(
            &services,
            &manifests::client_service(spec),
            check,
            &mut drifted,
        )
        .await?;
        self.apply_stateful_set(&ns, spec, check, &mut drifted)
            .await?;
        let policies: Api<NetworkPolicy> = Api::namespaced(self.client.clone(), &ns);
        self.put(
            &policies,
            &manifests::network_policy(spec),
            check,
            &mut drifted,
        )
        .await?;
        let budgets: Api<PodDisruptionBudget> = Api::namespaced(self.client.clone(), &ns);
        self.put(
            &budgets,
            &manifests::disruption_budget(spec),
            check,
            &mut drifted,
        )
        .await?;
        Ok(drifted)
    }

    /// The StatefulSet is read before it is applied: its controller writes its status (and
    /// so its `resourceVersion`) all the time, but its `generation` moves only when its spec
    /// does, and the replicas it had say how it was scaled.
    async fn apply_stateful_set(
        &self,
        ns: &str,
        spec: &NodeSpec,
        check: bool,
        drifted: &mut Vec<Repaired>,
    ) -> Result<(), DriverError> {
        let api: Api<StatefulSet> = Api::namespaced(self.client.clone(), ns);
        let desired = manifests::stateful_set(spec);
        if !check {
            return self.put(&api, &desired, false, drifted).await;
        }
        let what = describe::<StatefulSet>(manifests::NAME);
        let before = api
            .get_opt(manifests::NAME)
            .await
            .map_err(|e| api_error(&what, e))?;
        let after = api
            .patch(manifests::NAME, &apply_params(), &Patch::Apply(&desired))
            .await
            .map_err(|e| api_error(&what, e))?;
        let drift = match before {
            None => Some(Drift::Missing),
            Some(before) => {
                // Unset, the API server's default is one replica.
                let replicas = |s: &StatefulSet| u32::try_from(s.spec.replicas.unwrap_or(1));
                match (replicas(&before), replicas(&desired)) {
                    (Ok(from), Ok(to)) if from != to => Some(Drift::Scaled { from, to }),
                    _ if before.metadata.generation != after.metadata.generation => {
                        Some(Drift::Changed)
                    }
                    _ => None,
                }
            }
        };
        if let Some(drift) = drift {
            drifted.push(repaired::<StatefulSet>(&desired, drift));
        }
        Ok(())
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
            Ok(Err(source)) => Err(DriverError::KubernetesWatch {
                what: format!("the StatefulSet in {ns}"),
                source,
            }),
            Err(_) => Err(DriverError::StatefulSetNotReady {
                namespace: ns.to_owned(),
                waited: self.ready_timeout,
            }),
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
        self.apply_all(spec, false).await?;
        let ns = manifests::namespace_name(spec.cluster_id);
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
            Ok(Err(source)) => Err(DriverError::KubernetesWatch {
                what: format!("namespace {ns}"),
                source,
            }),
            Err(_) => Err(DriverError::NamespaceNotGone {
                namespace: ns,
                waited: self.ready_timeout,
            }),
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

    /// Every object is applied again, whether it drifted or not: an apply that changes
    /// nothing is not written by the API server, and a drift the check cannot see (a field
    /// someone removed, say) is undone all the same. Volume claims are never touched, so no
    /// data changes; a deleted namespace took its volumes with it, and comes back empty.
    async fn repair(&self, spec: &NodeSpec) -> Result<Repair, DriverError> {
        Ok(Repair {
            repaired: self.apply_all(spec, true).await?,
        })
    }
}

fn apply_params() -> PatchParams {
    PatchParams::apply(FIELD_MANAGER).force()
}

/// `StatefulSet qdrant`, for error texts.
fn describe<K: Resource>(name: &str) -> String
where
    K::DynamicType: Default,
{
    format!("{} {name}", K::kind(&K::DynamicType::default()))
}

fn repaired<K: Resource>(obj: &K, drift: Drift) -> Repaired
where
    K::DynamicType: Default,
{
    Repaired {
        object: object_label::<K>(),
        name: obj.meta().name.clone().unwrap_or_default(),
        drift,
    }
}

/// The metric label of a kind this driver owns: a fixed set, never a user's value.
fn object_label<K: Resource>() -> &'static str
where
    K::DynamicType: Default,
{
    match K::kind(&K::DynamicType::default()).as_ref() {
        "Namespace" => "namespace",
        "Secret" => "secret",
        "ConfigMap" => "configmap",
        "Service" => "service",
        "StatefulSet" => "statefulset",
        "NetworkPolicy" => "networkpolicy",
        "PodDisruptionBudget" => "poddisruptionbudget",
        _ => "other",
    }
}
