//! The Lyra side of a run: the real `lyra` binaries (Orion, Nebula with the local driver,
//! GateKeeper) on a real Redis, with one stand-in Qdrant node (a test double) as the upstream
//! every peer shares.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::Duration;

use contract::ids::ClusterId;
use contract::keyscheme::SecretKind;
use contract::route::RouteRecord;
use contract::seal::Keyring;
use serde_json::{Value, json};
use tempfile::TempDir;
use testkit::{RedisServer, free_port};

use super::HarnessError;
use super::procs::{self, Pinning};

/// What the upstream node answers on, and the credential a proxy must send it.
#[derive(Debug, Clone)]
pub struct Upstream {
    pub rest: SocketAddr,
    pub grpc: SocketAddr,
    /// The node's read-write API key (what GateKeeper sends for a manage key).
    pub api_key: String,
}

pub struct Lyra {
    pub work: TempDir,
    pub redis: RedisServer,
    pub lyra_bin: PathBuf,
    pub master_key: String,
    /// The serving key GateKeeper is given instead of the platform key.
    pub gateway_key: String,
    pub operator: String,
    pub api: String,
    pub ca_cert: PathBuf,
    pub ca_key: PathBuf,
    pub account: String,
    pub token: String,
    pub cluster: ClusterId,
    /// `<cluster>.dev.local.localhost`: the Host every peer routes on.
    pub host: String,
    pub key: String,
    pub upstream: Upstream,
    pub http: reqwest::Client,
    pub pinning: Pinning,
    orion: Child,
    nebula: Child,
    nebula_spec: NebulaSpec,
}

/// How Nebula is started, so that it can be killed and started again (chaos runs).
struct NebulaSpec {
    bin: PathBuf,
    redis_url: String,
    master_key: String,
    nodes: PathBuf,
    standin: PathBuf,
    admin: u16,
    log: PathBuf,
}

impl NebulaSpec {
    fn command(&self) -> Command {
        let mut nebula = Command::new(&self.bin);
        nebula
            .arg("nebula")
            .args(["--admin-listen", &format!("127.0.0.1:{}", self.admin)])
            .env("LYRA_REDIS_URL", &self.redis_url)
            .env("LYRA_MASTER_KEY", &self.master_key)
            .env("LYRA_DATA_DIR", &self.nodes)
            .env("QDRANT_BIN", &self.standin)
            .env("RUST_LOG", "warn");
        nebula
    }
}

impl Drop for Lyra {
    /// The local driver's nodes outlive Nebula on purpose (a restarted worker adopts them);
    /// a benchmark run must not leave them behind.
    fn drop(&mut self) {
        // Nebula first: its supervisor would restart the nodes.
        let _ = testkit::supervised::kill(&mut self.nebula);
        let _ = testkit::supervised::kill(&mut self.orion);
        for pid in testkit::procs::qdrant_nodes_under(&self.work.path().join("nodes")) {
            if let Ok(pid) = libc::pid_t::try_from(pid) {
                // SAFETY: kill(2) on a node this run started (found by its storage path).
                unsafe { libc::kill(pid, libc::SIGKILL) };
            }
        }
    }
}

/// A running `lyra gatekeeper`.
pub struct Gatekeeper {
    pub child: Child,
    pub plain: u16,
    pub rest: u16,
    pub grpc: u16,
    pub admin: u16,
}

impl Gatekeeper {
    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Gatekeeper {
    fn drop(&mut self) {
        let _ = testkit::supervised::kill(&mut self.child);
    }
}

fn setup<E: std::fmt::Display>(what: &str) -> impl FnOnce(E) -> HarnessError + '_ {
    move |e| HarnessError::Setup(format!("{what}: {e}"))
}

impl Lyra {
    /// Starts Redis, Orion and Nebula, registers `local/dev`, and creates one 1-node cluster
    /// with a manage key; the node is the upstream every peer uses.
    pub async fn start(pinning: Pinning) -> Result<Self, HarnessError> {
        let lyra_bin = procs::sibling_binary("lyra", "LYRA_BIN")?;
        let standin = testkit::standin::standin_bin().map_err(setup("qdrant-standin"))?;
        let work = tempfile::Builder::new()
            .prefix("lyra-bench-")
            .tempdir()
            .map_err(setup("temp dir"))?;
        let redis = RedisServer::start().map_err(setup("redis-server"))?;
        let (_, master) = contract::seal::PlatformKey::generate().map_err(setup("platform key"))?;
        let master_key = master.to_string();
        // GateKeeper is given only the serving key, as in production.
        let gateway_key = contract::seal::Keyring::from_config(&master_key, &[])
            .map_err(setup("keyring"))?
            .gateway_key()
            .map(|k| k.to_string())
            .unwrap_or_default();
        let operator = contract::account::generate_token()
            .map_err(setup("operator token"))?
            .to_string();
        // One CA for everyone: GateKeeper's region certificate and the peers' come from it.
        let ca = certs::ca::PlatformCa::generate().map_err(setup("CA"))?;
        let (ca_cert, ca_key) = (work.path().join("ca.pem"), work.path().join("ca.key"));
        std::fs::write(&ca_cert, ca.cert_pem()).map_err(setup("ca.pem"))?;
        std::fs::write(&ca_key, ca.key_pem().as_bytes()).map_err(setup("ca.key"))?;

        let orion_port = free_port().map_err(setup("port"))?;
        let mut orion = Command::new(&lyra_bin);
        orion
            .args(["orion", "--listen", &format!("127.0.0.1:{orion_port}")])
            .args([
                "--admin-listen",
                &format!("127.0.0.1:{}", free_port().map_err(setup("port"))?),
            ])
            .arg("--ca-cert")
            .arg(&ca_cert)
            .arg("--ca-key")
            .arg(&ca_key)
            .env("LYRA_REDIS_URL", redis.url())
            .env("LYRA_MASTER_KEY", &master_key)
            .env("LYRA_OPERATOR_TOKEN", &operator)
            .env("RUST_LOG", "warn");
        let orion = procs::spawn(orion, pinning.rest, &work.path().join("orion.log"))?;
        let nebula_admin = free_port().map_err(setup("port"))?;
        let nebula = NebulaSpec {
            bin: lyra_bin.clone(),
            redis_url: redis.url(),
            master_key: master_key.clone(),
            nodes: work.path().join("nodes"),
            standin,
            admin: nebula_admin,
            log: work.path().join("nebula.log"),
        };
        let nebula_child = procs::spawn(nebula.command(), pinning.rest, &nebula.log)?;
        let api = format!("http://127.0.0.1:{orion_port}");
        let http = reqwest::Client::new();
        ready(
            &http,
            &format!("{api}/readyz"),
            "Orion ready",
            Duration::from_secs(30),
        )
        .await?;

        let call = Caller {
            http: &http,
            api: &api,
        };
        call.json(&operator, "PUT", "/api/v1/regions/local/dev",
            Some(json!({"driver": "local", "capacity": {"nodes": 100_000, "cpu": 100_000_000u64, "memory": 100_000_000u64, "disk": 100_000_000u64}}))).await?;
        let account = call
            .json(
                &operator,
                "POST",
                "/api/v1/accounts",
                Some(json!({"name": "bench"})),
            )
            .await?;
        let account = field(&account, "id")?;
        let token = call
            .json(
                &operator,
                "POST",
                &format!("/api/v1/accounts/{account}/tokens"),
                Some(json!({"role": "admin"})),
            )
            .await?;
        let token = field(&token, "token")?;
        let cluster = call
            .json(
                &token,
                "POST",
                &format!("/api/v1/accounts/{account}/clusters"),
                Some(cluster_spec("bench", 1)),
            )
            .await?;
        let cluster_id = field(&cluster, "id")?;
        let host = field(&cluster, "endpoint")?;
        let cluster: ClusterId = cluster_id.parse().map_err(setup("cluster id"))?;
        let path = format!("/api/v1/accounts/{account}/clusters/{cluster_id}");
        until_phase(&call, &token, &path, "HEALTHY").await?;
        let key = call
            .json(
                &token,
                "POST",
                &format!("{path}/api-keys"),
                Some(json!({"name": "bench", "access": "manage"})),
            )
            .await?;
        let key = field(&key, "key")?;
        let upstream = upstream_of(&redis, &master_key, cluster).await?;
        Ok(Self {
            work,
            redis,
            lyra_bin,
            master_key,
            gateway_key,
            operator,
            api,
            ca_cert,
            ca_key,
            account,
            token,
            cluster,
            host,
            key,
            upstream,
            http,
            pinning,
            orion,
            nebula: nebula_child,
            nebula_spec: nebula,
        })
    }

    pub fn ca_pem(&self) -> Result<String, HarnessError> {
        std::fs::read_to_string(&self.ca_cert).map_err(setup("ca.pem"))
    }

    /// Starts a GateKeeper with one worker thread, pinned to the proxy CPU, its limits out of
    /// the way (the runs measure the path, not refusals), plus `extra` environment.
    pub async fn gatekeeper(
        &self,
        name: &str,
        extra: &[(&str, &str)],
    ) -> Result<Gatekeeper, HarnessError> {
        let port = || free_port().map_err(setup("port"));
        let (plain, rest, grpc, admin) = (port()?, port()?, port()?, port()?);
        let mut cmd = Command::new(&self.lyra_bin);
        cmd.arg("gatekeeper")
            .args(["--plain-listen", &format!("127.0.0.1:{plain}")])
            .args(["--rest-listen", &format!("127.0.0.1:{rest}")])
            .args(["--grpc-listen", &format!("127.0.0.1:{grpc}")])
            .args(["--admin-listen", &format!("127.0.0.1:{admin}")])
            .args(["--threads", "1"])
            .env("LYRA_REDIS_URL", self.redis.url())
            .env("LYRA_GATEWAY_KEY", &self.gateway_key)
            .env("LYRA_KEY_RPS", "1000000000")
            .env("LYRA_KEY_BURST", "1000000000")
            .env("LYRA_CLUSTER_RPS", "1000000000")
            .env("LYRA_CLUSTER_BURST", "1000000000")
            .env("LYRA_MAX_IN_FLIGHT", "1000000")
            .env("RUST_LOG", "warn");
        for (k, v) in extra {
            cmd.env(k, v);
        }
        let log = self.work.path().join(format!("{name}.log"));
        let child = procs::spawn(cmd, self.pinning.proxy, &log)?;
        let gk = Gatekeeper {
            child,
            plain,
            rest,
            grpc,
            admin,
        };
        let readyz = format!("http://127.0.0.1:{admin}/readyz");
        ready(
            &self.http,
            &readyz,
            "GateKeeper ready",
            Duration::from_secs(120),
        )
        .await?;
        Ok(gk)
    }

    /// A new manage key for the cluster: `(key, key id)`.
    pub async fn new_key(&self, name: &str) -> Result<(String, String), HarnessError> {
        let call = Caller {
            http: &self.http,
            api: &self.api,
        };
        let path = format!(
            "/api/v1/accounts/{}/clusters/{}/api-keys",
            self.account, self.cluster
        );
        let key = call
            .json(
                &self.token,
                "POST",
                &path,
                Some(json!({"name": name, "access": "manage"})),
            )
            .await?;
        Ok((field(&key, "key")?, field(&key, "id")?))
    }

    /// Revokes a key through Orion.
    pub async fn revoke(&self, key_id: &str) -> Result<(), HarnessError> {
        let call = Caller {
            http: &self.http,
            api: &self.api,
        };
        let path = format!(
            "/api/v1/accounts/{}/clusters/{}/api-keys/{key_id}",
            self.account, self.cluster
        );
        call.json(&self.token, "DELETE", &path, None)
            .await
            .map(|_| ())
    }

    pub fn work_dir(&self) -> &Path {
        self.work.path()
    }

    /// Orion's and Nebula's process ids.
    pub fn service_pids(&self) -> (u32, u32) {
        (self.orion.id(), self.nebula.id())
    }

    /// Nebula's admin port (`/metrics`).
    pub fn nebula_admin(&self) -> u16 {
        self.nebula_spec.admin
    }

    /// kill -9 Nebula (its nodes live on, as they do when a worker crashes).
    pub fn kill_nebula(&mut self) -> Result<(), HarnessError> {
        testkit::supervised::kill(&mut self.nebula).map_err(setup("kill nebula"))
    }

    /// Starts Nebula again, as its supervisor would after a crash.
    pub fn restart_nebula(&mut self) -> Result<(), HarnessError> {
        let _ = testkit::supervised::kill(&mut self.nebula);
        let spec = &self.nebula_spec;
        self.nebula = procs::spawn(spec.command(), self.pinning.rest, &spec.log)?;
        Ok(())
    }

    /// Where Nebula's local driver keeps each cluster's nodes (`<dir>/<cluster id>`).
    pub fn nodes_dir(&self) -> PathBuf {
        self.nebula_spec.nodes.join("nodes")
    }

    /// The live node processes of `cluster` (found by their storage path).
    pub fn node_pids(&self, cluster: &str) -> Vec<u32> {
        testkit::procs::qdrant_nodes_under(&self.nodes_dir().join(cluster))
    }

    /// Creates a cluster of `nodes` nodes, waits until it is HEALTHY and makes a manage key
    /// for it: `(cluster id, endpoint host, key)`.
    pub async fn healthy_cluster(
        &self,
        name: &str,
        nodes: u32,
    ) -> Result<(String, String, String), HarnessError> {
        let call = Caller {
            http: &self.http,
            api: &self.api,
        };
        let clusters = format!("/api/v1/accounts/{}/clusters", self.account);
        let created = call
            .json(
                &self.token,
                "POST",
                &clusters,
                Some(cluster_spec(name, nodes)),
            )
            .await?;
        let id = field(&created, "id")?;
        let host = field(&created, "endpoint")?;
        let path = format!("{clusters}/{id}");
        until_phase(&call, &self.token, &path, "HEALTHY").await?;
        let key = call
            .json(
                &self.token,
                "POST",
                &format!("{path}/api-keys"),
                Some(json!({"name": name, "access": "manage"})),
            )
            .await?;
        Ok((id, host, field(&key, "key")?))
    }
}

/// Polls `url` until it answers 2xx (a service's /readyz).
async fn ready(
    http: &reqwest::Client,
    url: &str,
    what: &str,
    within: Duration,
) -> Result<(), HarnessError> {
    procs::until(what, within, || async move {
        http.get(url)
            .send()
            .await
            .is_ok_and(|r| r.status().is_success())
    })
    .await
}

struct Caller<'a> {
    http: &'a reqwest::Client,
    api: &'a str,
}

impl Caller<'_> {
    async fn json(
        &self,
        token: &str,
        method: &str,
        path: &str,
        body: Option<Value>,
    ) -> Result<Value, HarnessError> {
        let method: reqwest::Method = method.parse().map_err(setup("method"))?;
        let mut req = self
            .http
            .request(method, format!("{}{path}", self.api))
            .bearer_auth(token);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let r = req.send().await.map_err(setup(path))?;
        let status = r.status();
        let text = r.text().await.map_err(setup(path))?;
        if !status.is_success() {
            return Err(HarnessError::Setup(format!(
                "{path}: HTTP {status}: {text}"
            )));
        }
        if text.is_empty() {
            return Ok(Value::Null);
        }
        serde_json::from_str(&text).map_err(setup(path))
    }
}

fn field(v: &Value, name: &str) -> Result<String, HarnessError> {
    v[name]
        .as_str()
        .map(str::to_owned)
        .ok_or_else(|| HarnessError::Setup(format!("answer without {name}: {v}")))
}

/// A cluster of `nodes` small nodes in `local/dev`, as every run creates them.
pub fn cluster_spec(name: &str, nodes: u32) -> Value {
    json!({"name": name, "cloud_provider": "local", "cloud_region": "dev",
        "configuration": {"num_nodes": nodes, "node_configuration": {"cpu": 1000, "memory": 1024, "disk": 1}}})
}

/// Polls the cluster at `path` until it is in `phase` (a minute at most).
async fn until_phase(
    call: &Caller<'_>,
    token: &str,
    path: &str,
    phase: &str,
) -> Result<(), HarnessError> {
    procs::until(
        &format!("{path} {phase}"),
        Duration::from_secs(60),
        || async move {
            call.json(token, "GET", path, None)
                .await
                .is_ok_and(|c| c["phase"] == phase)
        },
    )
    .await
}

/// The node's addresses and read-write secret, from the stored route (unsealed with the
/// platform key the harness made).
async fn upstream_of(
    redis: &RedisServer,
    master_key: &str,
    cluster: ClusterId,
) -> Result<Upstream, HarnessError> {
    let client = redis.client().map_err(setup("redis"))?;
    let mut conn = client
        .get_multiplexed_async_connection()
        .await
        .map_err(setup("redis"))?;
    let routes: HashMap<String, String> =
        redis::AsyncCommands::hgetall(&mut conn, contract::keyspace::routes())
            .await
            .map_err(setup("routes"))?;
    let json = routes
        .get(&cluster.to_string())
        .ok_or_else(|| HarnessError::Setup("the cluster has no route".into()))?;
    let route: RouteRecord = serde_json::from_str(json).map_err(setup("route"))?;
    let node = route
        .nodes
        .first()
        .ok_or_else(|| HarnessError::Setup("the route has no node".into()))?;
    let keyring = Keyring::from_config(master_key, &[]).map_err(setup("keyring"))?;
    let secret = keyring
        .unseal(
            &route.credentials.read_write,
            &SecretKind::ReadWrite.seal_context(cluster),
        )
        .map_err(setup("unseal"))?;
    let api_key = String::from_utf8(secret.to_vec()).map_err(setup("secret"))?;
    let addr = |s: &str| -> Result<SocketAddr, HarnessError> {
        s.trim_start_matches("http://")
            .parse()
            .map_err(setup("node address"))
    };
    Ok(Upstream {
        rest: addr(&node.rest)?,
        grpc: addr(&node.grpc)?,
        api_key,
    })
}

/// Orion alone on its own Redis (no Nebula: queued commands stay queued), for the control
/// plane's request rate. Orion is pinned like a proxy: it is the system under test.
pub struct OrionAlone {
    pub redis: RedisServer,
    pub child: Child,
    pub port: u16,
    pub token: String,
    pub account: String,
    _work: TempDir,
}

impl Drop for OrionAlone {
    fn drop(&mut self) {
        let _ = testkit::supervised::kill(&mut self.child);
    }
}

impl Lyra {
    pub async fn orion_alone(&self) -> Result<OrionAlone, HarnessError> {
        let work = tempfile::Builder::new()
            .prefix("lyra-bench-orion-")
            .tempdir()
            .map_err(setup("temp dir"))?;
        let redis = RedisServer::start().map_err(setup("redis-server"))?;
        let port = free_port().map_err(setup("port"))?;
        let mut cmd = Command::new(&self.lyra_bin);
        cmd.args(["orion", "--listen", &format!("127.0.0.1:{port}")])
            .args([
                "--admin-listen",
                &format!("127.0.0.1:{}", free_port().map_err(setup("port"))?),
            ])
            .env("LYRA_REDIS_URL", redis.url())
            .env("LYRA_MASTER_KEY", &self.master_key)
            .env("LYRA_OPERATOR_TOKEN", &self.operator)
            .env("RUST_LOG", "warn");
        let child = procs::spawn(cmd, self.pinning.proxy, &work.path().join("orion.log"))?;
        let api = format!("http://127.0.0.1:{port}");
        ready(
            &self.http,
            &format!("{api}/readyz"),
            "Orion ready",
            Duration::from_secs(30),
        )
        .await?;
        let call = Caller {
            http: &self.http,
            api: &api,
        };
        call.json(&self.operator, "PUT", "/api/v1/regions/local/dev",
            Some(json!({"driver": "local", "capacity": {"nodes": 1u64 << 40, "cpu": 1u64 << 45, "memory": 1u64 << 45, "disk": 1u64 << 45}}))).await?;
        let account = field(
            &call
                .json(
                    &self.operator,
                    "POST",
                    "/api/v1/accounts",
                    Some(json!({"name": "load"})),
                )
                .await?,
            "id",
        )?;
        let token = field(
            &call
                .json(
                    &self.operator,
                    "POST",
                    &format!("/api/v1/accounts/{account}/tokens"),
                    Some(json!({"role": "admin"})),
                )
                .await?,
            "token",
        )?;
        Ok(OrionAlone {
            redis,
            child,
            port,
            token,
            account,
            _work: work,
        })
    }

    /// Creates a cluster of `nodes` nodes and returns the time from its 202 to HEALTHY; then
    /// deletes it and waits until it is gone.
    pub async fn time_to_healthy(&self, nodes: u32) -> Result<Duration, HarnessError> {
        let call = Caller {
            http: &self.http,
            api: &self.api,
        };
        let clusters = format!("/api/v1/accounts/{}/clusters", self.account);
        let created = call
            .json(
                &self.token,
                "POST",
                &clusters,
                Some(cluster_spec("timed", nodes)),
            )
            .await?;
        let accepted = std::time::Instant::now();
        let path = format!("{clusters}/{}", field(&created, "id")?);
        let mut healthy = None;
        while accepted.elapsed() < Duration::from_secs(60) {
            let c = call.json(&self.token, "GET", &path, None).await?;
            if c["phase"] == "HEALTHY" {
                healthy = Some(accepted.elapsed());
                break;
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        call.json(&self.token, "DELETE", &path, None).await?;
        until_phase(&call, &self.token, &path, "DELETED").await?;
        healthy.ok_or_else(|| HarnessError::Setup("a timed cluster never became HEALTHY".into()))
    }
}
