//! What the crate's own tests need to run a worker against a real Redis (`redis-server` from
//! PATH, through testkit): a worker, records of a region and a cluster, and a driver stub.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test support: a panic is a failed test

use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use contract::cluster::{Cluster, ClusterConfiguration, Phase};
use contract::ids::{AccountId, ClusterId};
use contract::keyspace;
use contract::record::{ClusterRecord, RegionRecord};
use contract::region::{Driver, Region};
use contract::resources::{Capacity, NodeResources};
use contract::route::NodeEndpoint;
use contract::seal::Keyring;
use redis::AsyncCommands;
use redis::aio::ConnectionManager;
use testkit::RedisServer;

use crate::driver::{DriverError, Drivers, InfrastructureClient, NodeSpec, Observation, Repair};
use crate::handlers::Worker;

pub const MASTER_KEY: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";
pub const PROVIDER: &str = "test";
pub const REGION: &str = "r1";

/// A Redis server and a worker on it. The server stops when this is dropped.
pub struct Harness {
    /// Held for its lifetime: the server is killed when it is dropped.
    _redis: RedisServer,
    pub client: redis::Client,
    pub worker: Arc<Worker>,
}

impl Harness {
    pub async fn start(drivers: Drivers) -> Self {
        let redis = RedisServer::start().unwrap();
        let client = redis.client().unwrap();
        let conn = ConnectionManager::new(client.clone()).await.unwrap();
        let worker = Arc::new(Worker {
            conn,
            keyring: Keyring::from_config(MASTER_KEY, &[]).unwrap(),
            drivers,
            holder: "test-worker".into(),
            lease_ttl: Duration::from_secs(30),
            in_hand: Default::default(),
        });
        Self {
            _redis: redis,
            client,
            worker,
        }
    }

    pub fn conn(&self) -> ConnectionManager {
        self.worker.conn.clone()
    }

    /// Registers the test region with `driver`.
    pub async fn region(&self, driver: Driver) {
        let region = Region {
            provider: PROVIDER.into(),
            region: REGION.into(),
            driver,
            capacity: Capacity::default(),
            node_limits: Default::default(),
        };
        let fields = RegionRecord::region_fields(&region).unwrap();
        let _: () = self
            .conn()
            .hset_multiple(keyspace::region(PROVIDER, REGION), &fields)
            .await
            .unwrap();
    }

    /// Stores a cluster of `num_nodes` nodes in the test region, in `phase`.
    pub async fn cluster(&self, phase: Phase, num_nodes: u32) -> Cluster {
        let c = cluster(phase, num_nodes);
        let id = c.id;
        let fields = ClusterRecord::cluster_fields(&c).unwrap();
        let _: () = self
            .conn()
            .hset_multiple(keyspace::cluster(id), &fields)
            .await
            .unwrap();
        c
    }

    /// A field of a stored cluster.
    pub async fn cluster_field(&self, id: ClusterId, field: &str) -> Option<String> {
        self.conn()
            .hget(keyspace::cluster(id), field)
            .await
            .unwrap()
    }
}

/// A cluster of `num_nodes` nodes in the test region, in `phase` (not stored).
pub fn cluster(phase: Phase, num_nodes: u32) -> Cluster {
    let id = ClusterId::new();
    let now = jiff::Timestamp::now();
    Cluster {
        id,
        account_id: AccountId::new(),
        name: "test".into(),
        cloud_provider: PROVIDER.into(),
        cloud_region: REGION.into(),
        version: "v1.18.3".into(),
        configuration: ClusterConfiguration {
            num_nodes,
            node_configuration: NodeResources {
                cpu: 1000,
                memory: 1024,
                disk: 1,
            },
        },
        endpoint: format!("{id}.{REGION}.{PROVIDER}.example.com"),
        phase,
        reason: None,
        created_at: now,
        updated_at: now,
        generation: 1,
    }
}

/// The line of `metric` with all of `labels` in Prometheus' text format, and its value.
pub fn sample(rendered: &str, metric: &str, labels: &[(&str, &str)]) -> Option<f64> {
    rendered
        .lines()
        .filter(|l| l.starts_with(&format!("{metric}{{")))
        .find(|l| {
            labels
                .iter()
                .all(|(k, v)| l.contains(&format!("{k}=\"{v}\"")))
        })
        .and_then(|l| l.rsplit_once(' '))
        .and_then(|(_, v)| v.parse().ok())
}

/// A driver that fails to provision with `provision_error`, reports `observed`, and records
/// the specs it is asked to repair, answering `repair` with `repaired`.
pub struct StubDriver {
    pub provision_error: fn() -> DriverError,
    pub observed: Observation,
    pub repaired: Repair,
    pub repair_calls: Mutex<Vec<NodeSpec>>,
}

impl StubDriver {
    pub fn new(provision_error: fn() -> DriverError) -> Self {
        Self {
            provision_error,
            observed: Observation {
                desired: 0,
                ready: 0,
            },
            repaired: Repair::default(),
            repair_calls: Mutex::new(Vec::new()),
        }
    }
}

#[async_trait]
impl InfrastructureClient for StubDriver {
    async fn provision(&self, _spec: &NodeSpec) -> Result<Vec<NodeEndpoint>, DriverError> {
        Err((self.provision_error)())
    }

    async fn resize(&self, spec: &NodeSpec) -> Result<Vec<NodeEndpoint>, DriverError> {
        self.provision(spec).await
    }

    async fn deprovision(&self, _cluster: ClusterId) -> Result<(), DriverError> {
        Ok(())
    }

    async fn observe(&self, _cluster: ClusterId) -> Result<Observation, DriverError> {
        Ok(self.observed.clone())
    }

    async fn repair(&self, spec: &NodeSpec) -> Result<Repair, DriverError> {
        self.repair_calls.lock().unwrap().push(spec.clone());
        Ok(self.repaired.clone())
    }
}
