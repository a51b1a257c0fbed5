//! The `helm` driver: the seed's route. It renders values for the official `qdrant/qdrant`
//! chart from the spec and runs `helm upgrade --install --wait` through the `helm` binary.
//! Each cluster is one release, `lyra-<cluster-id>`, in one namespace shared by all releases.
//!
//! The values carry the cluster's secrets (the chart's `apiKey` and `readOnlyApiKey`), so the
//! values file is written readable by the owner only and removed as soon as helm has read it.
//! `helm uninstall` leaves the StatefulSet's volume claims behind (helm never deletes PVCs);
//! the kubernetes driver, which owns a namespace per cluster, removes storage too.

use std::path::{Path, PathBuf};
use std::time::Duration;

use async_trait::async_trait;
use contract::ids::ClusterId;
use contract::route::NodeEndpoint;
use serde_json::{Value, json};

use super::{DriverError, InfrastructureClient, NodeSpec, Observation};

pub const CHART: &str = "qdrant";
pub const REPO: &str = "https://qdrant.github.io/qdrant-helm";

pub struct HelmDriver {
    bin: PathBuf,
    namespace: String,
    work_dir: PathBuf,
    timeout: Duration,
}

/// The release (and, through `fullnameOverride`, the object names) of a cluster.
pub fn release(cluster: ClusterId) -> String {
    format!("lyra-{cluster}")
}

/// The chart values for a spec.
pub fn values(spec: &NodeSpec) -> Value {
    let amounts = json!({
        "cpu": format!("{}m", spec.resources.cpu),
        "memory": format!("{}Mi", spec.resources.memory),
    });
    json!({
        "fullnameOverride": release(spec.cluster_id),
        "replicaCount": spec.num_nodes,
        "image": {"tag": spec.version},
        "resources": {"requests": amounts, "limits": amounts},
        "persistence": {"size": format!("{}Gi", spec.resources.disk)},
        "apiKey": spec.read_write.expose(),
        "readOnlyApiKey": spec.read_only.expose(),
        "config": {
            "cluster": {"enabled": true, "p2p": {"port": 6335}},
            "service": {"jwt_rbac": true},
        },
    })
}

impl HelmDriver {
    /// Releases go to `namespace`; values files are written under `work_dir` for a moment.
    pub fn new(bin: PathBuf, namespace: String, work_dir: PathBuf, timeout: Duration) -> Self {
        Self {
            bin,
            namespace,
            work_dir,
            timeout,
        }
    }

    /// `helm upgrade --install` for a spec, reading values from `values_file`.
    pub fn install_args(&self, spec: &NodeSpec, values_file: &Path) -> Vec<String> {
        vec![
            "upgrade".into(),
            "--install".into(),
            release(spec.cluster_id),
            CHART.into(),
            "--repo".into(),
            REPO.into(),
            "--namespace".into(),
            self.namespace.clone(),
            "--create-namespace".into(),
            "--values".into(),
            values_file.display().to_string(),
            "--wait".into(),
            "--timeout".into(),
            format!("{}s", self.timeout.as_secs()),
        ]
    }

    pub fn uninstall_args(&self, cluster: ClusterId) -> Vec<String> {
        vec![
            "uninstall".into(),
            release(cluster),
            "--namespace".into(),
            self.namespace.clone(),
            "--wait".into(),
            "--ignore-not-found".into(),
        ]
    }

    fn endpoints(&self, cluster: ClusterId, n: u32) -> Vec<NodeEndpoint> {
        let name = release(cluster);
        (0..n)
            .map(|i| {
                let host = format!("{name}-{i}.{name}-headless.{}.svc", self.namespace);
                NodeEndpoint {
                    rest: format!("{host}:6333"),
                    grpc: format!("{host}:6334"),
                }
            })
            .collect()
    }

    async fn helm(&self, args: &[String]) -> Result<(), DriverError> {
        let output = tokio::process::Command::new(&self.bin)
            .args(args)
            .kill_on_drop(true)
            .output()
            .await
            .map_err(|source| match source.kind() {
                std::io::ErrorKind::NotFound => DriverError::ProgramMissing {
                    program: "helm",
                    path: self.bin.clone(),
                    hint: "install helm, point LYRA_HELM_BIN at it, or register the region \
                           with the kubernetes driver",
                    source,
                },
                _ => DriverError::Io {
                    what: format!("cannot run {:?}", self.bin),
                    source,
                },
            })?;
        if output.status.success() {
            return Ok(());
        }
        let stderr = String::from_utf8_lossy(&output.stderr);
        let last: Vec<&str> = stderr.lines().rev().take(3).collect();
        Err(DriverError::Helm {
            command: args.first().cloned().unwrap_or_default(),
            status: output.status,
            stderr: last.into_iter().rev().collect::<Vec<_>>().join(" | "),
        })
    }

    /// Writes the values (owner-only), runs helm, and removes the file whatever happened.
    async fn install(&self, spec: &NodeSpec) -> Result<(), DriverError> {
        tokio::fs::create_dir_all(&self.work_dir)
            .await
            .map_err(|source| DriverError::Io {
                what: format!("cannot create {:?}", self.work_dir),
                source,
            })?;
        let file = self
            .work_dir
            .join(format!("{}.values.json", release(spec.cluster_id)));
        let body = serde_json::to_vec(&values(spec)).map_err(|source| DriverError::Encode {
            what: "values",
            source,
        })?;
        write_private(&file, &body).map_err(|source| DriverError::Io {
            what: format!("cannot write {file:?}"),
            source,
        })?;
        let result = self.helm(&self.install_args(spec, &file)).await;
        let _ = std::fs::remove_file(&file);
        result
    }
}

fn write_private(path: &Path, body: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?;
    f.write_all(body)
}

#[async_trait]
impl InfrastructureClient for HelmDriver {
    async fn provision(&self, spec: &NodeSpec) -> Result<Vec<NodeEndpoint>, DriverError> {
        self.install(spec).await?;
        Ok(self.endpoints(spec.cluster_id, spec.num_nodes))
    }

    async fn resize(&self, spec: &NodeSpec) -> Result<Vec<NodeEndpoint>, DriverError> {
        self.provision(spec).await
    }

    async fn deprovision(&self, cluster: ClusterId) -> Result<(), DriverError> {
        self.helm(&self.uninstall_args(cluster)).await
    }

    async fn observe(&self, _cluster: ClusterId) -> Result<Observation, DriverError> {
        Err(DriverError::Unsupported(
            "the helm driver cannot observe nodes (helm does not report readiness after \
             install); use the kubernetes driver for that",
        ))
    }

    // `repair` is the trait's no-op. Re-running `helm upgrade --install --wait` would put
    // back what the chart made, but it is not cheap: it fetches the chart from its repository,
    // writes a new release revision every time and waits for readiness for up to the driver's
    // timeout, all under the cluster's lease. And the reconcile loop never gets as far as
    // asking: it needs `observe`, which this driver cannot do.
}
