//! The `local` driver (the embedded default): each node is a local process of the Qdrant
//! binary, with its own HTTP, gRPC and p2p ports and storage under the data directory.
//! Node 0 starts with `--uri`, every other node with `--bootstrap` to node 0, so N nodes form
//! one real Qdrant cluster. Qdrant is configured through its own environment variables.
//!
//! Resources (`cpu`, `memory`, `disk`) are accounted by the control plane but not enforced on
//! local processes: that needs cgroups, which the kubernetes driver gets from the kubelet.

mod node;
mod supervisor;

use std::collections::HashMap;
use std::fs;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::Child;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use bytes::Bytes;
use contract::ids::ClusterId;
use contract::route::NodeEndpoint;
use http_body_util::Empty;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

use super::{Drift, DriverError, InfrastructureClient, NodeSpec, Observation, Repair, Repaired};
use crate::crash;
use node::{NodeDir, NodeState};

pub use supervisor::supervise;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// Create the node if it does not exist.
    Create,
    /// Only look after a node that exists.
    Existing,
}

/// How long a node gets to stop after SIGTERM before SIGKILL.
const STOP_GRACE: Duration = Duration::from_secs(5);

pub struct LocalDriver {
    root: PathBuf,
    bin: PathBuf,
    host: IpAddr,
    ready_timeout: Duration,
    /// Processes this worker started, kept to be reaped when they exit.
    children: Mutex<HashMap<u32, Child>>,
    /// Specs of the clusters this worker looks after (filled by provision, resize, adopt).
    specs: Mutex<HashMap<ClusterId, NodeSpec>>,
    http: Client<HttpConnector, Empty<Bytes>>,
}

fn io_error(what: &str, source: std::io::Error) -> DriverError {
    DriverError::Io {
        what: what.to_owned(),
        source,
    }
}

/// A node [`LocalDriver::ensure_node`] looked after, and whether it had to start its process.
struct Ensured {
    state: NodeState,
    started: bool,
}

impl LocalDriver {
    /// Nodes live under `root/<cluster-id>/node-<i>/`.
    pub fn new(root: PathBuf, bin: PathBuf, host: IpAddr, ready_timeout: Duration) -> Self {
        Self {
            root,
            bin,
            host,
            ready_timeout,
            children: Mutex::new(HashMap::new()),
            specs: Mutex::new(HashMap::new()),
            http: Client::builder(TokioExecutor::new()).build_http(),
        }
    }

    fn cluster_dir(&self, cluster: ClusterId) -> PathBuf {
        self.root.join(cluster.to_string())
    }

    fn remember(&self, spec: &NodeSpec) {
        if let Ok(mut specs) = self.specs.lock() {
            specs.insert(spec.cluster_id, spec.clone());
        }
    }

    fn forget(&self, cluster: ClusterId) {
        if let Ok(mut specs) = self.specs.lock() {
            specs.remove(&cluster);
        }
    }

    /// Clusters with nodes on disk (for adoption when a worker starts).
    pub fn clusters_on_disk(&self) -> Vec<ClusterId> {
        let Ok(entries) = fs::read_dir(&self.root) else {
            return Vec::new();
        };
        entries
            .filter_map(|e| e.ok())
            .filter_map(|e| e.file_name().to_str().and_then(|n| n.parse().ok()))
            .collect()
    }

    /// Looks after a cluster that already exists: its running nodes are adopted and any
    /// that are not running are started. Does not wait for readiness.
    pub async fn adopt(&self, spec: &NodeSpec) -> Result<(), DriverError> {
        self.remember(spec);
        self.ensure_nodes(spec).await.map(|_| ())
    }

    /// Makes nodes `0..spec.num_nodes` run, adopting those that already do.
    async fn ensure_nodes(&self, spec: &NodeSpec) -> Result<Vec<NodeState>, DriverError> {
        let mut states = Vec::with_capacity(spec.num_nodes as usize);
        for index in 0..spec.num_nodes {
            let bootstrap = states.first().map(|n0: &NodeState| n0.p2p_port);
            let ensured = self
                .ensure_node(spec, index, bootstrap, Mode::Create)
                .await?;
            states.extend(ensured.map(|e| e.state));
            if index == 0 {
                crash::point("during_driver");
            }
        }
        Ok(states)
    }

    /// Restarts the nodes of `spec` that exist on disk and are not running; creates none.
    /// Returns the indexes of the nodes it started.
    async fn restart_dead_nodes(&self, spec: &NodeSpec) -> Result<Vec<u32>, DriverError> {
        let dir = self.cluster_dir(spec.cluster_id);
        let indexes = Self::node_indexes(&dir);
        let bootstrap = NodeDir::new(&dir, 0).load().map(|n0| n0.p2p_port);
        let mut started = Vec::new();
        for index in indexes.into_iter().filter(|i| *i < spec.num_nodes) {
            let bootstrap = if index == 0 { None } else { bootstrap };
            let ensured = self
                .ensure_node(spec, index, bootstrap, Mode::Existing)
                .await?;
            if ensured.is_some_and(|e| e.started) {
                started.push(index);
            }
        }
        Ok(started)
    }

    fn looks_after(&self, cluster: ClusterId) -> bool {
        self.specs
            .lock()
            .is_ok_and(|specs| specs.contains_key(&cluster))
    }

    /// Adopts node `index` if it runs, starts it if not. In [`Mode::Existing`] a node that
    /// is not on disk (being removed, say) is left alone and `None` returned.
    async fn ensure_node(
        &self,
        spec: &NodeSpec,
        index: u32,
        bootstrap: Option<u16>,
        mode: Mode,
    ) -> Result<Option<Ensured>, DriverError> {
        let dir = NodeDir::new(&self.cluster_dir(spec.cluster_id), index);
        let (bin, host, spec) = (self.bin.clone(), self.host, spec.clone());
        let started = tokio::task::spawn_blocking(move || {
            if mode == Mode::Create {
                fs::create_dir_all(&dir.0)
                    .map_err(|e| io_error("cannot create the node directory", e))?;
            } else if !dir.0.exists() {
                return Ok(None);
            }
            let _lock = dir
                .lock()
                .map_err(|e| io_error("cannot lock the node directory", e))?;
            let mut state = match (dir.load(), mode) {
                (Some(s), _) => s,
                (None, Mode::Existing) => return Ok(None),
                (None, Mode::Create) => {
                    let [http_port, grpc_port, p2p_port] =
                        node::free_ports(host).map_err(|e| io_error("no free port", e))?;
                    NodeState {
                        index,
                        http_port,
                        grpc_port,
                        p2p_port,
                        pid: None,
                        ready_once: false,
                    }
                }
            };
            if let Some(pid) = state.pid.filter(|pid| node::is_node(*pid, host, &state)) {
                tracing::debug!(cluster = %spec.cluster_id, index, pid, "adopted running node");
                return Ok(Some((state, None)));
            }
            // Free ports are picked before the node binds them, so another process can take
            // one in between. A node that never served gets fresh ones rather than failing
            // forever; one that served keeps its address (routes point at it).
            if mode == Mode::Create && !state.ready_once && !node::ports_free(host, &state) {
                [state.http_port, state.grpc_port, state.p2p_port] =
                    node::free_ports(host).map_err(|e| io_error("no free port", e))?;
            }
            let child = node::spawn(&bin, host, &dir, &spec, &state, bootstrap).map_err(|e| {
                if e.kind() == std::io::ErrorKind::NotFound {
                    DriverError::ProgramMissing {
                        program: "the Qdrant binary",
                        path: bin.clone(),
                        hint: "install Qdrant or point QDRANT_BIN at it",
                        source: e,
                    }
                } else {
                    io_error(&format!("cannot start {bin:?}"), e)
                }
            })?;
            state.pid = Some(child.id());
            dir.save(&state)
                .map_err(|e| io_error("cannot save the node's state", e))?;
            tracing::info!(cluster = %spec.cluster_id, index, pid = child.id(), "started node");
            Ok(Some((state, Some(child))))
        })
        .await
        .map_err(|source| DriverError::Task {
            what: "node start task",
            source,
        })??;
        let Some((state, child)) = started else {
            return Ok(None);
        };
        let started = child.is_some();
        if let (Some(child), Ok(mut children)) = (child, self.children.lock()) {
            children.insert(child.id(), child);
        }
        Ok(Some(Ensured { state, started }))
    }

    fn endpoints(&self, states: &[NodeState]) -> Vec<NodeEndpoint> {
        states
            .iter()
            .map(|s| NodeEndpoint {
                rest: SocketAddr::new(self.host, s.http_port).to_string(),
                grpc: SocketAddr::new(self.host, s.grpc_port).to_string(),
            })
            .collect()
    }

    async fn is_ready(&self, state: &NodeState) -> bool {
        let addr = SocketAddr::new(self.host, state.http_port);
        let Ok(uri) = format!("http://{addr}/readyz").parse() else {
            return false;
        };
        matches!(
            tokio::time::timeout(Duration::from_secs(2), self.http.get(uri)).await,
            Ok(Ok(r)) if r.status() == 200
        )
    }

    /// Waits until every node answers `/readyz`, or fails with the laggards and their logs.
    async fn wait_ready(
        &self,
        cluster: ClusterId,
        states: &[NodeState],
    ) -> Result<(), DriverError> {
        let deadline = Instant::now() + self.ready_timeout;
        // Nodes usually come up within tens of milliseconds: look often at first, then less.
        let mut pause = Duration::from_millis(10);
        loop {
            let mut waiting = Vec::new();
            for s in states {
                if !self.is_ready(s).await {
                    waiting.push(s.index);
                }
            }
            if waiting.is_empty() {
                self.mark_ready_once(cluster, states).await;
                return Ok(());
            }
            self.reap();
            if Instant::now() >= deadline {
                let dir = self.cluster_dir(cluster);
                let logs: Vec<String> = waiting
                    .iter()
                    .map(|i| {
                        let d = NodeDir::new(&dir, *i);
                        format!("node {i}: {}", d.log_tail(3))
                    })
                    .collect();
                return Err(DriverError::NodesNotReady {
                    nodes: waiting,
                    waited: self.ready_timeout,
                    log_dir: dir,
                    logs: logs.join("; "),
                });
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(Duration::from_millis(100));
        }
    }

    /// Records that these nodes have served, so their ports are theirs from now on.
    async fn mark_ready_once(&self, cluster: ClusterId, states: &[NodeState]) {
        let dir = self.cluster_dir(cluster);
        let indexes: Vec<u32> = states
            .iter()
            .filter(|s| !s.ready_once)
            .map(|s| s.index)
            .collect();
        let _ = tokio::task::spawn_blocking(move || {
            for index in indexes {
                let node = NodeDir::new(&dir, index);
                let Ok(_lock) = node.lock() else { continue };
                if let Some(mut state) = node.load() {
                    state.ready_once = true;
                    let _ = node.save(&state);
                }
            }
        })
        .await;
    }

    /// Collects the exit status of nodes that stopped, so none lingers as a zombie.
    fn reap(&self) {
        if let Ok(mut children) = self.children.lock() {
            children.retain(|_, c| matches!(c.try_wait(), Ok(None)));
        }
    }

    fn node_indexes(cluster_dir: &Path) -> Vec<u32> {
        let Ok(entries) = fs::read_dir(cluster_dir) else {
            return Vec::new();
        };
        let mut indexes: Vec<u32> = entries
            .filter_map(|e| e.ok())
            .filter_map(|e| {
                e.file_name()
                    .to_str()
                    .and_then(|n| n.strip_prefix("node-"))
                    .and_then(|i| i.parse().ok())
            })
            .collect();
        indexes.sort_unstable();
        indexes
    }

    /// Stops and removes nodes with index `>= keep`, highest first.
    async fn remove_nodes_from(&self, cluster: ClusterId, keep: u32) -> Result<(), DriverError> {
        let dir = self.cluster_dir(cluster);
        let host = self.host;
        tokio::task::spawn_blocking(move || {
            for index in Self::node_indexes(&dir)
                .into_iter()
                .rev()
                .filter(|i| *i >= keep)
            {
                let node = NodeDir::new(&dir, index);
                let _lock = node
                    .lock()
                    .map_err(|e| io_error("cannot lock the node", e))?;
                node::stop_saved(&node, host, STOP_GRACE);
                fs::remove_dir_all(&node.0)
                    .map_err(|e| io_error("cannot remove the node's directory", e))?;
            }
            Ok::<_, DriverError>(())
        })
        .await
        .map_err(|source| DriverError::Task {
            what: "node stop task",
            source,
        })??;
        self.reap();
        Ok(())
    }

    /// Stops every node this worker looks after, keeping their data (for `lyra dev` exit).
    pub async fn stop_all(&self) {
        let clusters: Vec<ClusterId> = self
            .specs
            .lock()
            .map(|s| s.keys().copied().collect())
            .unwrap_or_default();
        self.specs.lock().map(|mut s| s.clear()).ok();
        for cluster in clusters {
            let dir = self.cluster_dir(cluster);
            let host = self.host;
            let _ = tokio::task::spawn_blocking(move || {
                for index in Self::node_indexes(&dir) {
                    let node = NodeDir::new(&dir, index);
                    node::stop_saved(&node, host, STOP_GRACE);
                }
            })
            .await;
        }
        self.reap();
    }
}

#[async_trait]
impl InfrastructureClient for LocalDriver {
    async fn provision(&self, spec: &NodeSpec) -> Result<Vec<NodeEndpoint>, DriverError> {
        self.remember(spec);
        let states = self.ensure_nodes(spec).await?;
        self.wait_ready(spec.cluster_id, &states).await?;
        Ok(self.endpoints(&states))
    }

    async fn resize(&self, spec: &NodeSpec) -> Result<Vec<NodeEndpoint>, DriverError> {
        self.remember(spec);
        let states = self.ensure_nodes(spec).await?;
        self.remove_nodes_from(spec.cluster_id, spec.num_nodes)
            .await?;
        self.wait_ready(spec.cluster_id, &states).await?;
        Ok(self.endpoints(&states))
    }

    async fn deprovision(&self, cluster: ClusterId) -> Result<(), DriverError> {
        self.forget(cluster);
        let dir = self.cluster_dir(cluster);
        if !dir.exists() {
            return Ok(());
        }
        self.remove_nodes_from(cluster, 0).await?;
        fs::remove_dir_all(&dir)
            .or_else(|e| match e.kind() {
                std::io::ErrorKind::NotFound => Ok(()),
                _ => Err(e),
            })
            .map_err(|e| io_error("cannot remove the cluster's directory", e))
    }

    async fn observe(&self, cluster: ClusterId) -> Result<Observation, DriverError> {
        let dir = self.cluster_dir(cluster);
        let states: Vec<NodeState> = Self::node_indexes(&dir)
            .into_iter()
            .filter_map(|i| NodeDir::new(&dir, i).load())
            .collect();
        let mut ready = 0;
        for s in &states {
            if self.is_ready(s).await {
                ready += 1;
            }
        }
        Ok(Observation {
            desired: u32::try_from(states.len()).unwrap_or(u32::MAX),
            ready,
        })
    }

    /// The supervisor restarts, within a second, the dead nodes of every cluster this worker
    /// looks after, so for those there is nothing to repair here (and racing it would only
    /// take the node locks twice). A cluster it does not look after has nobody to restart its
    /// nodes: one that was not adopted when the worker started (Redis unreachable then, say),
    /// or whose worker is gone while this one shares its data directory. Repair takes it
    /// over, as adoption does, and starts its stopped nodes on their own ports and storage.
    /// A node whose directory is gone is not made again: its data went with it, and a new
    /// node would get new ports, which is a resize's business, not a repair's.
    async fn repair(&self, spec: &NodeSpec) -> Result<Repair, DriverError> {
        if self.looks_after(spec.cluster_id) {
            return Ok(Repair::default());
        }
        self.remember(spec);
        let started = self.restart_dead_nodes(spec).await?;
        Ok(Repair {
            repaired: started
                .into_iter()
                .map(|i| Repaired {
                    object: "node",
                    name: format!("node-{i}"),
                    drift: Drift::Stopped,
                })
                .collect(),
        })
    }
}
