//! The platform as a user runs it: real `lyra` binaries (Orion, Nebula) on a real Redis,
//! with the stand-in Qdrant (a test double) as `QDRANT_BIN`.
#![allow(dead_code)] // each test binary uses a different subset

pub mod dev;
pub mod grpc;
pub mod https;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::Duration;

use contract::keyscheme::{ClusterSecret, SecretKind};
use contract::keyspace;
use contract::route::UpstreamCredentials;
use contract::seal::{Keyring, PlatformKey};
use reqwest::Method;
use serde_json::{Value, json};
use tempfile::TempDir;
use testkit::standin::standin_bin;
use testkit::{RedisServer, free_port, supervised};

pub const OPERATOR: &str = "an-operator-token-long-enough";
pub const MASTER_KEY: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";

/// Polls `f` every 100 ms until it holds; fails the test after a minute.
pub async fn until<F, Fut>(what: &str, mut f: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    for _ in 0..600 {
        if f().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("timed out: {what}");
}

/// What GateKeeper is given instead of the platform key (`lyra platform-key gateway`).
pub fn gateway_key() -> String {
    Keyring::from_config(MASTER_KEY, &[])
        .unwrap()
        .gateway_key()
        .unwrap()
        .to_string()
}
pub const CONSUMER: &str = "nebula-under-test";

pub struct Platform {
    pub redis: RedisServer,
    pub data: TempDir,
    pub orion_url: String,
    pub http: reqwest::Client,
    pub qdrant_bin: PathBuf,
    orion: Child,
    pub nebula: Option<Child>,
    pub gatekeeper: Option<Gateway>,
}

/// A running `lyra gatekeeper`.
pub struct Gateway {
    pub rest: u16,
    pub grpc: u16,
    pub admin: u16,
    child: Child,
}

fn orion_command(redis: &RedisServer, port: u16) -> Command {
    let mut cmd = lyra();
    cmd.arg("orion")
        .arg("--listen")
        .arg(format!("127.0.0.1:{port}"))
        .arg("--admin-listen")
        .arg(format!("127.0.0.1:{}", free_port().unwrap()))
        .env("LYRA_REDIS_URL", redis.url())
        .env("LYRA_MASTER_KEY", MASTER_KEY)
        .env("LYRA_OPERATOR_TOKEN", OPERATOR);
    cmd
}

pub fn lyra() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_lyra"));
    cmd.env("RUST_LOG", "warn").stdin(Stdio::null());
    cmd
}

impl Platform {
    pub async fn start() -> Self {
        let redis = RedisServer::start().unwrap();
        let port = free_port().unwrap();
        let cmd = orion_command(&redis, port);
        let orion = supervised::spawn(cmd).unwrap();
        let platform = Self {
            redis,
            data: tempfile::Builder::new()
                .prefix("lyra-e2e-")
                .tempdir()
                .unwrap(),
            orion_url: format!("http://127.0.0.1:{port}"),
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(10))
                .build()
                .unwrap(),
            qdrant_bin: standin_bin().unwrap(),
            orion,
            nebula: None,
            gatekeeper: None,
        };
        platform
            .wait_until(
                || async { platform.get_status("/healthz").await == 200 },
                "Orion up",
            )
            .await;
        platform
    }

    async fn get_status(&self, path: &str) -> u16 {
        self.http
            .get(format!("{}{path}", self.orion_url))
            .send()
            .await
            .map(|r| r.status().as_u16())
            .unwrap_or(0)
    }

    pub fn nebula_command(&self, qdrant_bin: &Path) -> Command {
        let mut cmd = lyra();
        cmd.arg("nebula")
            .env("LYRA_REDIS_URL", self.redis.url())
            .env("LYRA_MASTER_KEY", MASTER_KEY)
            .env("LYRA_DATA_DIR", self.data.path())
            .env("QDRANT_BIN", qdrant_bin)
            .env("LYRA_NEBULA_CONSUMER", CONSUMER)
            .env(
                "LYRA_NEBULA_ADMIN",
                format!("127.0.0.1:{}", free_port().unwrap()),
            )
            .env("LYRA_NEBULA_READY_TIMEOUT", "20")
            .env("LYRA_NEBULA_BACKOFF_MS", "100")
            .env("LYRA_NEBULA_BACKOFF_MAX_MS", "400");
        cmd
    }

    /// Starts Nebula with the stand-in as Qdrant and `env` on top.
    pub fn start_nebula(&mut self, env: &[(&str, &str)]) {
        let mut cmd = self.nebula_command(&self.qdrant_bin.clone());
        for (k, v) in env {
            cmd.env(k, v);
        }
        self.nebula = Some(supervised::spawn(cmd).unwrap());
    }

    /// Starts `lyra gatekeeper` on free ports and waits until it has synced.
    pub async fn start_gatekeeper(&mut self) -> (u16, u16) {
        self.start_gatekeeper_with(&[]).await
    }

    /// Like [`Platform::start_gatekeeper`], with extra environment (limits, resync period).
    pub async fn start_gatekeeper_with(&mut self, env: &[(&str, &str)]) -> (u16, u16) {
        let (rest, grpc, admin) = (
            free_port().unwrap(),
            free_port().unwrap(),
            free_port().unwrap(),
        );
        let mut cmd = lyra();
        cmd.arg("gatekeeper")
            .env("LYRA_REDIS_URL", self.redis.url())
            .env_remove("LYRA_MASTER_KEY")
            .env("LYRA_GATEWAY_KEY", gateway_key())
            .env("LYRA_GATEKEEPER_REST", format!("127.0.0.1:{rest}"))
            .env("LYRA_GATEKEEPER_GRPC", format!("127.0.0.1:{grpc}"))
            .env("LYRA_GATEKEEPER_ADMIN", format!("127.0.0.1:{admin}"));
        for (k, v) in env {
            cmd.env(k, v);
        }
        let child = supervised::spawn(cmd).unwrap();
        self.gatekeeper = Some(Gateway {
            rest,
            grpc,
            admin,
            child,
        });
        let url = format!("http://127.0.0.1:{admin}/readyz");
        let http = self.http.clone();
        self.wait_until(
            || {
                let (http, url) = (http.clone(), url.clone());
                async move { http.get(url).send().await.is_ok_and(|r| r.status() == 200) }
            },
            "GateKeeper synced",
        )
        .await;
        (rest, grpc)
    }

    /// The platform CA, as `lyra certs ca` prints it.
    pub fn ca_pem(&self) -> String {
        let out = lyra()
            .arg("certs")
            .arg("ca")
            .env("LYRA_REDIS_URL", self.redis.url())
            .env("LYRA_MASTER_KEY", MASTER_KEY)
            .output()
            .unwrap();
        assert!(out.status.success());
        String::from_utf8(out.stdout).unwrap()
    }

    /// Stops Orion and starts it again on the same port, as an upgrade or a restart would.
    pub async fn restart_orion(&mut self) {
        supervised::kill(&mut self.orion).unwrap();
        let port: u16 = self.orion_url.rsplit(':').next().unwrap().parse().unwrap();
        self.orion = supervised::spawn(orion_command(&self.redis, port)).unwrap();
        self.wait_until(
            || async { self.get_status("/healthz").await == 200 },
            "Orion up again",
        )
        .await;
    }

    pub fn stop_gatekeeper(&mut self) {
        if let Some(mut g) = self.gatekeeper.take() {
            supervised::kill(&mut g.child).unwrap();
        }
    }

    pub fn kill_nebula(&mut self) {
        if let Some(mut n) = self.nebula.take() {
            supervised::kill(&mut n).unwrap();
        }
    }

    /// Waits for Nebula to exit by itself (a crash point, or after SIGTERM).
    pub async fn nebula_exit(&mut self) -> ExitStatus {
        let mut child = self.nebula.take().expect("nebula runs");
        tokio::task::spawn_blocking(move || child.wait().unwrap())
            .await
            .unwrap()
    }

    pub fn request(&self, token: &str, method: Method, path: &str) -> reqwest::RequestBuilder {
        self.http
            .request(method, format!("{}{path}", self.orion_url))
            .bearer_auth(token)
    }

    pub async fn call(
        &self,
        token: &str,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> (u16, Value) {
        let mut r = self.request(token, method, path);
        if let Some(b) = body {
            r = r.json(&b);
        }
        let r = r.send().await.unwrap();
        let status = r.status().as_u16();
        let text = r.text().await.unwrap();
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }

    /// An account with an admin token, and a local region with room for `nodes` nodes.
    pub async fn tenant(&self, nodes: u64) -> (String, String) {
        let (s, region) = self
            .call(OPERATOR, Method::PUT, "/api/v1/regions/local/dev", Some(json!({
                "driver": "local",
                "capacity": {"nodes": nodes, "cpu": nodes * 1000, "memory": nodes * 1024, "disk": nodes * 10}
            })))
            .await;
        assert_eq!(s, 200, "{region}");
        let (s, account) = self
            .call(
                OPERATOR,
                Method::POST,
                "/api/v1/accounts",
                Some(json!({"name": "e2e"})),
            )
            .await;
        assert_eq!(s, 201);
        let account = account["id"].as_str().unwrap().to_owned();
        let (s, token) = self
            .call(
                OPERATOR,
                Method::POST,
                &format!("/api/v1/accounts/{account}/tokens"),
                Some(json!({"role": "admin"})),
            )
            .await;
        assert_eq!(s, 201);
        (account, token["token"].as_str().unwrap().to_owned())
    }

    pub async fn create_cluster(&self, token: &str, account: &str, nodes: u32) -> String {
        let (s, c) = self
            .call(token, Method::POST, &format!("/api/v1/accounts/{account}/clusters"), Some(json!({
                "name": "e2e-cluster",
                "cloud_provider": "local",
                "cloud_region": "dev",
                "configuration": {"num_nodes": nodes, "node_configuration": {"cpu": 1000, "memory": 1024, "disk": 10}}
            })))
            .await;
        assert_eq!(s, 202, "{c}");
        c["id"].as_str().unwrap().to_owned()
    }

    pub async fn cluster(&self, token: &str, account: &str, id: &str) -> Value {
        self.call(
            token,
            Method::GET,
            &format!("/api/v1/accounts/{account}/clusters/{id}"),
            None,
        )
        .await
        .1
    }

    /// Polls until the cluster is in `phase` (fails after a generous minute).
    pub async fn wait_phase(&self, token: &str, account: &str, id: &str, phase: &str) -> Value {
        let mut last = Value::Null;
        for _ in 0..600 {
            last = self.cluster(token, account, id).await;
            if last["phase"] == phase {
                return last;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("cluster {id} never reached {phase}; last seen: {last}");
    }

    pub async fn wait_until<F, Fut>(&self, check: F, what: &str)
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = bool>,
    {
        until(what, check).await
    }

    pub fn redis(&self) -> redis::Connection {
        self.redis.client().unwrap().get_connection().unwrap()
    }

    /// The cluster's route record as the gateways read it.
    pub fn route_record(&self, id: &str) -> contract::route::RouteRecord {
        let json: String = redis::cmd("HGET")
            .arg(keyspace::routes())
            .arg(id)
            .query(&mut self.redis())
            .unwrap();
        serde_json::from_str(&json).unwrap()
    }

    /// The cluster's read-write secret, opened with the platform key.
    pub fn read_write_secret(&self, id: &str) -> ClusterSecret {
        let json: String = redis::cmd("GET")
            .arg(keyspace::cluster_secrets(id.parse().unwrap()))
            .query(&mut self.redis())
            .unwrap();
        let creds: UpstreamCredentials = serde_json::from_str(&json).unwrap();
        let ring = Keyring::new(PlatformKey::from_base64(MASTER_KEY).unwrap(), vec![]);
        let plain = ring
            .unseal(
                &creds.read_write,
                &SecretKind::ReadWrite.seal_context(id.parse().unwrap()),
            )
            .unwrap();
        ClusterSecret::parse(std::str::from_utf8(&plain).unwrap()).unwrap()
    }

    /// Live Qdrant processes of a cluster (found by their storage path).
    pub fn node_processes(&self, id: &str) -> Vec<u32> {
        testkit::procs::qdrant_nodes_under(&self.data.path().join("nodes").join(id))
    }

    /// Kills the nodes left behind (they outlive Nebula by design).
    pub fn kill_all_nodes(&self) {
        let root = self.data.path().join("nodes");
        let Ok(clusters) = std::fs::read_dir(&root) else {
            return;
        };
        for c in clusters.filter_map(|e| e.ok()) {
            if let Some(id) = c.file_name().to_str() {
                for pid in self.node_processes(id) {
                    // SAFETY: kill(2) on a node process of this test's own data directory.
                    unsafe { libc::kill(pid as libc::pid_t, libc::SIGKILL) };
                }
            }
        }
    }
}

impl Drop for Platform {
    fn drop(&mut self) {
        self.kill_nebula();
        if let Some(mut g) = self.gatekeeper.take() {
            let _ = supervised::kill(&mut g.child);
        }
        self.kill_all_nodes();
        let _ = supervised::kill(&mut self.orion);
    }
}
