//! A real Orion on a free loopback port over a real redis-server, and helpers to drive it.
#![allow(dead_code)] // each test binary uses a different subset

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use contract::keyscheme::{ClusterSecret, SecretKind};
use contract::keyspace;
use contract::route::UpstreamCredentials;
use contract::seal::{Keyring, PlatformKey};
use control::{AppState, OrionConfig};
use reqwest::{Method, RequestBuilder, Response};
use serde_json::{Value, json};
use testkit::RedisServer;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::oneshot;

pub const OPERATOR: &str = "operator-token-for-tests-0123456789";
pub const MASTER_KEY: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";

pub struct Orion {
    pub url: String,
    /// The admin listener: `/metrics`, `/healthz`, `/readyz`.
    pub admin_url: String,
    pub redis: RedisServer,
    pub http: reqwest::Client,
    stop: Option<oneshot::Sender<()>>,
    stop_admin: Option<oneshot::Sender<()>>,
}

/// The configuration the tests run Orion with.
pub fn config(redis_url: String) -> OrionConfig {
    OrionConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        admin_listen: "127.0.0.1:0".parse().unwrap(),
        platform: contract::platform::PlatformArgs::new(redis_url, MASTER_KEY),
        operator_token: OPERATOR.into(),
        tld: "localhost".into(),
        redis_timeout_ms: 1000,
        cert_renew_secs: 1,
        ca_cert: None,
        ca_key: None,
        idempotent_answer_max_bytes: control::config::DEFAULT_IDEMPOTENT_ANSWER_MAX_BYTES,
    }
}

impl Orion {
    pub async fn start() -> Self {
        Self::start_with(|_| {}).await
    }

    /// Orion with `tweak` applied to the test configuration.
    pub async fn start_with(tweak: impl FnOnce(&mut OrionConfig)) -> Self {
        let redis = RedisServer::start().expect("redis-server");
        let mut config = config(redis.url());
        tweak(&mut config);
        Self::start_on(redis, config).await
    }

    /// Orion with `config` (whose listen addresses are not used), keeping `redis` for the
    /// helpers that read it directly.
    pub async fn start_on(redis: RedisServer, config: OrionConfig) -> Self {
        let state = AppState::new(&config).expect("config");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let admin = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let admin_url = format!("http://{}", admin.local_addr().unwrap());
        let (stop, stopped) = oneshot::channel::<()>();
        tokio::spawn(control::serve(state.clone(), listener, async move {
            let _ = stopped.await;
        }));
        let (stop_admin, admin_stopped) = oneshot::channel::<()>();
        tokio::spawn(control::serve_admin(state, admin, async move {
            let _ = admin_stopped.await;
        }));
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()
            .unwrap();
        Self {
            url,
            admin_url,
            redis,
            http,
            stop: Some(stop),
            stop_admin: Some(stop_admin),
        }
    }

    pub fn request(&self, token: Option<&str>, method: Method, path: &str) -> RequestBuilder {
        let r = self.http.request(method, format!("{}{path}", self.url));
        match token {
            Some(t) => r.bearer_auth(t),
            None => r,
        }
    }

    pub fn op(&self, method: Method, path: &str) -> RequestBuilder {
        self.request(Some(OPERATOR), method, path)
    }

    pub async fn create_account(&self, name: &str) -> String {
        let r = self
            .op(Method::POST, "/api/v1/accounts")
            .json(&json!({"name": name}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201, "{}", r.text().await.unwrap());
        body(r).await["id"].as_str().unwrap().to_owned()
    }

    pub async fn create_token(&self, account: &str, role: &str) -> String {
        let r = self
            .op(Method::POST, &format!("/api/v1/accounts/{account}/tokens"))
            .json(&json!({"role": role}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201);
        body(r).await["token"].as_str().unwrap().to_owned()
    }

    pub async fn put_region(&self, provider: &str, region: &str, capacity: Value) -> Value {
        let r = self
            .op(Method::PUT, &format!("/api/v1/regions/{provider}/{region}"))
            .json(&json!({"driver": "local", "capacity": capacity}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
        body(r).await
    }

    pub async fn create_cluster(&self, token: &str, account: &str, spec: &Value) -> Response {
        self.request(
            Some(token),
            Method::POST,
            &format!("/api/v1/accounts/{account}/clusters"),
        )
        .json(spec)
        .send()
        .await
        .unwrap()
    }

    pub fn redis(&self) -> redis::Connection {
        self.redis.client().unwrap().get_connection().unwrap()
    }

    /// Every key and its contents in a canonical form: equal snapshots mean nothing was
    /// written. (Not DUMP: Redis rehashes hash tables on reads, so bytes can differ while
    /// the contents do not.)
    pub fn dataset(&self) -> BTreeMap<String, String> {
        let mut con = self.redis();
        let keys: Vec<String> = redis::cmd("KEYS").arg("*").query(&mut con).unwrap();
        keys.into_iter()
            .map(|k| {
                let kind: String = redis::cmd("TYPE").arg(&k).query(&mut con).unwrap();
                let contents = match kind.as_str() {
                    "string" => redis::cmd("GET").arg(&k).query::<String>(&mut con).unwrap(),
                    "hash" => format!(
                        "{:?}",
                        redis::cmd("HGETALL")
                            .arg(&k)
                            .query::<BTreeMap<String, String>>(&mut con)
                            .unwrap()
                    ),
                    "list" => format!(
                        "{:?}",
                        redis::cmd("LRANGE")
                            .arg(&k)
                            .arg(0)
                            .arg(-1)
                            .query::<Vec<String>>(&mut con)
                            .unwrap()
                    ),
                    "set" => {
                        let mut m: Vec<String> =
                            redis::cmd("SMEMBERS").arg(&k).query(&mut con).unwrap();
                        m.sort();
                        format!("{m:?}")
                    }
                    "zset" => format!(
                        "{:?}",
                        redis::cmd("ZRANGE")
                            .arg(&k)
                            .arg(0)
                            .arg(-1)
                            .arg("WITHSCORES")
                            .query::<Vec<String>>(&mut con)
                            .unwrap()
                    ),
                    "stream" => format!(
                        "{:?}",
                        redis::cmd("XRANGE")
                            .arg(&k)
                            .arg("-")
                            .arg("+")
                            .query::<redis::Value>(&mut con)
                            .unwrap()
                    ),
                    other => panic!("unexpected type {other} for {k}"),
                };
                (format!("{kind} {k}"), contents)
            })
            .collect()
    }

    /// Stands in for Nebula having finished a provision: secrets sealed with the platform
    /// key, phase HEALTHY. Returns the read-write secret. (Nebula itself is another crate;
    /// Orion's tests only need the state it leaves behind.)
    pub fn finish_provisioning(&self, cluster_id: &str) -> ClusterSecret {
        let ring = Keyring::new(PlatformKey::from_base64(MASTER_KEY).unwrap(), vec![]);
        let id = cluster_id.parse().unwrap();
        let rw = ClusterSecret::generate().unwrap();
        let ro = ClusterSecret::generate().unwrap();
        let creds = UpstreamCredentials {
            read_write: ring
                .seal(
                    rw.expose().as_bytes(),
                    &SecretKind::ReadWrite.seal_context(id),
                )
                .unwrap(),
            read_only: ring
                .seal(
                    ro.expose().as_bytes(),
                    &SecretKind::ReadOnly.seal_context(id),
                )
                .unwrap(),
        };
        let mut con = self.redis();
        redis::pipe()
            .set(
                keyspace::cluster_secrets(id),
                serde_json::to_string(&creds).unwrap(),
            )
            .hset(keyspace::cluster(id), "phase", "HEALTHY")
            .exec(&mut con)
            .unwrap();
        rw
    }
}

impl Drop for Orion {
    fn drop(&mut self) {
        for stop in [self.stop.take(), self.stop_admin.take()]
            .into_iter()
            .flatten()
        {
            let _ = stop.send(());
        }
    }
}

/// A TCP relay in front of Redis that counts round trips: each time a client speaks after
/// Redis has answered it (or for the first time) is one. Requests sent back to back without
/// waiting, as a pipeline is, count once.
pub struct RoundTrips {
    pub url: String,
    count: Arc<AtomicU64>,
}

impl RoundTrips {
    pub async fn relay(redis: &RedisServer) -> Self {
        let target = format!("127.0.0.1:{}", redis.port());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("redis://{}/", listener.local_addr().unwrap());
        let count = Arc::new(AtomicU64::new(0));
        let counted = count.clone();
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let Ok(server) = tokio::net::TcpStream::connect(&target).await else {
                    continue;
                };
                let (mut client_rx, mut client_tx) = client.into_split();
                let (mut server_rx, mut server_tx) = server.into_split();
                // True while the client spoke last.
                let client_turn = Arc::new(AtomicBool::new(false));
                let (turn, count) = (client_turn.clone(), counted.clone());
                tokio::spawn(async move {
                    let mut buf = vec![0u8; 64 * 1024];
                    while let Ok(n @ 1..) = client_rx.read(&mut buf).await {
                        if !turn.swap(true, Ordering::SeqCst) {
                            count.fetch_add(1, Ordering::SeqCst);
                        }
                        if server_tx.write_all(&buf[..n]).await.is_err() {
                            break;
                        }
                    }
                });
                tokio::spawn(async move {
                    let mut buf = vec![0u8; 64 * 1024];
                    while let Ok(n @ 1..) = server_rx.read(&mut buf).await {
                        // Before the client can read the answer, so its next request counts.
                        client_turn.store(false, Ordering::SeqCst);
                        if client_tx.write_all(&buf[..n]).await.is_err() {
                            break;
                        }
                    }
                });
            }
        });
        Self { url, count }
    }

    pub fn count(&self) -> u64 {
        self.count.load(Ordering::SeqCst)
    }
}

pub async fn body(r: Response) -> Value {
    let text = r.text().await.unwrap();
    serde_json::from_str(&text).unwrap_or_else(|_| panic!("not JSON: {text}"))
}

pub fn spec(name: &str, num_nodes: u32) -> Value {
    json!({
        "name": name,
        "cloud_provider": "local",
        "cloud_region": "dev",
        "configuration": {
            "num_nodes": num_nodes,
            "node_configuration": {"cpu": 1000, "memory": 2048, "disk": 10}
        }
    })
}

/// Capacity for exactly `clusters` one-node clusters of [`spec`].
pub fn room_for(clusters: u64) -> Value {
    json!({"nodes": clusters, "cpu": clusters * 1000, "memory": clusters * 2048, "disk": clusters * 10})
}
