//! Nebula's throughput and provisioning latency, measured end to end on this machine.
//!
//!   cargo run --release -p bench --bin nebula-bench -- [commands] [concurrency]
//!
//! Starts its own redis-server (AOF, appendfsync always), Orion and Nebula in one process,
//! with the stand-in Qdrant (a test double) as the Qdrant binary, and reports:
//! 1. commands per second with a no-op driver (the consumer, handlers and state alone);
//! 2. commands per second with the local driver (real node processes);
//! 3. the time from Orion's 202 to HEALTHY for 1-node and 3-node clusters.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test and benchmark tooling, not the product

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use contract::ids::ClusterId;
use contract::region::Driver;
use contract::route::NodeEndpoint;
use provisioner::NebulaConfig;
use provisioner::driver::{DriverError, Drivers, InfrastructureClient, NodeSpec, Observation};
use serde_json::{Value, json};
use testkit::RedisServer;

const OPERATOR: &str = "bench-operator-token-0123456789";
const MASTER_KEY: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";

/// Makes nothing and answers at once: isolates Nebula's own cost per command.
struct NoopDriver;

#[async_trait]
impl InfrastructureClient for NoopDriver {
    async fn provision(&self, spec: &NodeSpec) -> Result<Vec<NodeEndpoint>, DriverError> {
        Ok((0..spec.num_nodes)
            .map(|i| NodeEndpoint {
                rest: format!("127.0.0.1:{}", 10_000 + i),
                grpc: format!("127.0.0.1:{}", 20_000 + i),
            })
            .collect())
    }
    async fn resize(&self, spec: &NodeSpec) -> Result<Vec<NodeEndpoint>, DriverError> {
        self.provision(spec).await
    }
    async fn deprovision(&self, _: ClusterId) -> Result<(), DriverError> {
        Ok(())
    }
    async fn observe(&self, _: ClusterId) -> Result<Observation, DriverError> {
        Ok(Observation {
            desired: 0,
            ready: 0,
        })
    }
}

struct Api {
    url: String,
    http: reqwest::Client,
    account: String,
    token: String,
}

impl Api {
    async fn call(
        &self,
        token: &str,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> Value {
        let mut r = self
            .http
            .request(method, format!("{}{path}", self.url))
            .bearer_auth(token);
        if let Some(b) = body {
            r = r.json(&b);
        }
        r.send().await.expect("orion").json().await.expect("json")
    }

    async fn create(&self, nodes: u32) -> String {
        let spec = json!({"name": "bench", "cloud_provider": "local", "cloud_region": "dev",
            "configuration": {"num_nodes": nodes, "node_configuration": {"cpu": 500, "memory": 512, "disk": 1}}});
        let c = self
            .call(
                &self.token,
                reqwest::Method::POST,
                &format!("/api/v1/accounts/{}/clusters", self.account),
                Some(spec),
            )
            .await;
        c["id"].as_str().expect("cluster id").to_owned()
    }

    async fn phase(&self, id: &str) -> String {
        let c = self
            .call(
                &self.token,
                reqwest::Method::GET,
                &format!("/api/v1/accounts/{}/clusters/{id}", self.account),
                None,
            )
            .await;
        c["phase"].as_str().unwrap_or("").to_owned()
    }
}

async fn start_orion(redis: &RedisServer) -> Api {
    let config = control::OrionConfig {
        listen: "127.0.0.1:0".parse().expect("addr"),
        admin_listen: "127.0.0.1:0".parse().expect("addr"),
        platform: contract::platform::PlatformArgs::new(redis.url(), MASTER_KEY),
        operator_token: OPERATOR.into(),
        tld: "localhost".into(),
        redis_timeout_ms: 2000,
        cert_renew_secs: 3600,
        ca_cert: None,
        ca_key: None,
        idempotent_answer_max_bytes: control::config::DEFAULT_IDEMPOTENT_ANSWER_MAX_BYTES,
    };
    let state = control::AppState::new(&config).expect("orion config");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    tokio::spawn(control::serve(state, listener, std::future::pending()));
    let http = reqwest::Client::new();
    let mut api = Api {
        url,
        http,
        account: String::new(),
        token: String::new(),
    };
    api.call(OPERATOR, reqwest::Method::PUT, "/api/v1/regions/local/dev", Some(json!({"driver": "local",
        "capacity": {"nodes": 1_000_000, "cpu": 1_000_000_000u64, "memory": 1_000_000_000u64, "disk": 1_000_000_000u64}})))
        .await;
    api.account = api
        .call(
            OPERATOR,
            reqwest::Method::POST,
            "/api/v1/accounts",
            Some(json!({"name": "bench"})),
        )
        .await["id"]
        .as_str()
        .expect("account")
        .to_owned();
    api.token = api
        .call(
            OPERATOR,
            reqwest::Method::POST,
            &format!("/api/v1/accounts/{}/tokens", api.account),
            Some(json!({"role": "admin"})),
        )
        .await["token"]
        .as_str()
        .expect("token")
        .to_owned();
    api
}

fn nebula_config(redis: &RedisServer, data: &std::path::Path, concurrency: usize) -> NebulaConfig {
    NebulaConfig {
        platform: contract::platform::PlatformArgs::new(redis.url(), MASTER_KEY),
        data_dir: data.to_owned(),
        qdrant_bin: testkit::standin::standin_bin()
            .expect("qdrant-standin: cargo build --release -p bench"),
        local_host: "127.0.0.1".parse().expect("ip"),
        consumer: Some("bench".into()),
        concurrency,
        max_attempts: 3,
        backoff_ms: 100,
        backoff_max_ms: 1000,
        ready_timeout_secs: 60,
        claim_idle_ms: 30_000,
        kubernetes: false,
        helm_bin: "helm".into(),
        helm_namespace: "unused".into(),
        admin_listen: format!("127.0.0.1:{}", testkit::free_port().expect("port"))
            .parse()
            .expect("addr"),
        reconcile_secs: 10,
    }
}

/// Queues `n` clusters with no worker running, then measures how fast one worker drains them.
async fn throughput(label: &str, n: usize, concurrency: usize, noop: bool) {
    let redis = RedisServer::start().expect("redis-server");
    let data = tempfile::tempdir().expect("temp dir");
    let data = data.path();
    let api = start_orion(&redis).await;
    let mut ids = Vec::with_capacity(n);
    for _ in 0..n {
        ids.push(api.create(1).await);
    }
    let config = nebula_config(&redis, data, concurrency);
    let local = provisioner::local_driver(&config);
    let drivers = if noop {
        Drivers::default().with(Driver::Local, Arc::new(NoopDriver))
    } else {
        Drivers::default().with(
            Driver::Local,
            local.clone() as Arc<dyn InfrastructureClient>,
        )
    };
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let started = Instant::now();
    let nebula = tokio::spawn(provisioner::run_with(
        config,
        drivers,
        (!noop).then_some(local.clone()),
        async move {
            let _ = stopped.await;
        },
    ));
    let mut remaining = ids.clone();
    while !remaining.is_empty() {
        let mut still = Vec::new();
        for id in remaining {
            if api.phase(&id).await != "HEALTHY" {
                still.push(id);
            }
        }
        remaining = still;
        if !remaining.is_empty() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    let took = started.elapsed();
    println!(
        "{label}: {n} provision commands in {:.2} s = {:.1} commands/s (concurrency {concurrency})",
        took.as_secs_f64(),
        n as f64 / took.as_secs_f64()
    );
    let _ = stop.send(());
    let _ = nebula.await;
    local.stop_all().await;
}

/// Time from the 202 to HEALTHY, `runs` times, for clusters of `nodes` nodes.
async fn latency(nodes: u32, runs: usize) {
    let redis = RedisServer::start().expect("redis-server");
    let data = tempfile::tempdir().expect("temp dir");
    let api = start_orion(&redis).await;
    let config = nebula_config(&redis, data.path(), 4);
    let local = provisioner::local_driver(&config);
    let drivers = Drivers::default().with(
        Driver::Local,
        local.clone() as Arc<dyn InfrastructureClient>,
    );
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let nebula = tokio::spawn(provisioner::run_with(
        config,
        drivers,
        Some(local.clone()),
        async move {
            let _ = stopped.await;
        },
    ));
    let mut samples = Vec::with_capacity(runs);
    for _ in 0..runs {
        let t0 = Instant::now();
        let id = api.create(nodes).await;
        while api.phase(&id).await != "HEALTHY" {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        samples.push(t0.elapsed());
    }
    samples.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    println!(
        "202 -> HEALTHY, {nodes} node(s), {runs} runs: median {:.1} ms, min {:.1} ms, max {:.1} ms",
        ms(samples[runs / 2]),
        ms(samples[0]),
        ms(samples[runs - 1])
    );
    let _ = stop.send(());
    let _ = nebula.await;
    local.stop_all().await;
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let n: usize = args.get(1).and_then(|a| a.parse().ok()).unwrap_or(500);
    let concurrency: usize = args.get(2).and_then(|a| a.parse().ok()).unwrap_or(4);
    throughput("no-op driver", n, concurrency, true).await;
    throughput("local driver + stand-in", n.min(100), concurrency, false).await;
    latency(1, 11).await;
    latency(3, 11).await;
}
