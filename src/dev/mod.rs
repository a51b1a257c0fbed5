//! `lyra dev`: the whole platform on one machine, on loopback.
//!
//! Redis (its own, unless `--redis-url` is given), Orion, Nebula (one worker, local driver) and
//! GateKeeper in one process. The platform key, the operator token and the CA are made on the
//! first start and kept in the data directory, readable by the owner only, so a restart keeps
//! every cluster and key working. Ctrl-C stops everything: the Qdrant nodes, then Redis.
//! Before anything starts, dev checks that it has what it needs: `redis-server` (unless
//! `--redis-url`), and a Qdrant binary ([`qdrant`]: found, cached, or downloaded).

mod qdrant;
mod release;

use std::fs;
use std::io::Write;
use std::net::{SocketAddr, ToSocketAddrs};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Args;
use contract::platform::PlatformArgs;
use contract::region::Driver;
use provisioner::driver::{Drivers, InfrastructureClient};

#[derive(Debug, Args)]
pub struct DevArgs {
    /// Where dev keeps Redis's data, the platform key, the operator token, the CA and the nodes.
    #[arg(long, env = "LYRA_DATA_DIR", default_value = ".lyra")]
    pub data_dir: PathBuf,
    /// Use this Redis instead of starting one.
    #[arg(long, env = "LYRA_REDIS_URL")]
    pub redis_url: Option<String>,
    /// Orion's API.
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub api: SocketAddr,
    /// GateKeeper's REST listener (TLS).
    #[arg(long, default_value = "127.0.0.1:6333")]
    pub rest: SocketAddr,
    /// GateKeeper's gRPC listener (TLS).
    #[arg(long, default_value = "127.0.0.1:6334")]
    pub grpc: SocketAddr,
    /// GateKeeper's admin listener.
    #[arg(long, default_value = "127.0.0.1:9090")]
    pub gateway_admin: SocketAddr,
    /// Nebula's admin listener.
    #[arg(long, default_value = "127.0.0.1:9091")]
    pub nebula_admin: SocketAddr,
    /// Orion's admin listener (`/metrics`).
    #[arg(long, default_value = "127.0.0.1:9092")]
    pub orion_admin: SocketAddr,
    /// The Qdrant binary the local nodes run. Default: `qdrant` on PATH, else the copy
    /// downloaded earlier into the cache, else the pinned official release, downloaded now.
    #[arg(long, env = "QDRANT_BIN")]
    pub qdrant_bin: Option<PathBuf>,
    /// Run the nodes on the project's stand-in (`qdrant-standin`, a test double that answers
    /// like Qdrant but does not search): a demo without Qdrant.
    #[arg(long)]
    pub standin: bool,
    /// Where downloaded Qdrant releases are kept. Default: $XDG_CACHE_HOME/lyra/qdrant, else
    /// ~/.cache/lyra/qdrant.
    #[arg(long, env = "LYRA_QDRANT_CACHE")]
    pub qdrant_cache: Option<PathBuf>,
    /// Where official Qdrant releases are downloaded from: <URL>/v<version>/<archive>.
    #[arg(long, env = "LYRA_QDRANT_RELEASE_URL", default_value = release::DEFAULT_BASE_URL)]
    pub qdrant_release_url: String,
    /// The sha256 the downloaded archive must have, instead of the pinned release's (for a
    /// mirror that serves its own build).
    #[arg(long, env = "LYRA_QDRANT_SHA256")]
    pub qdrant_sha256: Option<String>,
    /// Capacity of the `local`/`dev` region: nodes.
    #[arg(long, default_value_t = 16)]
    pub nodes: u64,
    /// Capacity of the region: millicores.
    #[arg(long, default_value_t = 32_000)]
    pub cpu: u64,
    /// Capacity of the region: MiB.
    #[arg(long, default_value_t = 65_536)]
    pub memory: u64,
    /// Capacity of the region: GiB.
    #[arg(long, default_value_t = 1_000)]
    pub disk: u64,
}

/// Reads `path`, or writes `make()` to it (owner-only) and returns that.
fn kept(path: &Path, make: impl FnOnce() -> Result<String, String>) -> Result<String, String> {
    if let Ok(existing) = fs::read_to_string(path) {
        return Ok(existing.trim().to_owned());
    }
    let value = make()?;
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| format!("cannot create {}: {e}", path.display()))?;
    writeln!(f, "{value}").map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    Ok(value)
}

fn free_port() -> Result<u16, String> {
    std::net::TcpListener::bind(("127.0.0.1", 0))
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(|e| format!("no free port: {e}"))
}

/// Starts redis-server under the data directory (AOF, fsync always, noeviction).
fn start_redis(data: &Path) -> Result<(Child, String), String> {
    let dir = data.join("redis");
    fs::create_dir_all(&dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    let port: u16 = kept(&data.join("redis.port"), || {
        free_port().map(|p| p.to_string())
    })?
    .parse()
    .map_err(|_| "redis.port in the data directory is not a port".to_owned())?;
    let mut command = Command::new(redis_server()?);
    // Its usual name in `ps` (Redis rewrites its title from argv[0]), however it was found.
    std::os::unix::process::CommandExt::arg0(&mut command, "redis-server");
    // SAFETY: prctl(2) only, between fork and exec. Redis gets SIGTERM (a clean shutdown: the
    // AOF is fsynced on every write) when `lyra dev` dies, even by SIGKILL, so a killed dev
    // never leaves a Redis holding the port the next start needs.
    unsafe {
        std::os::unix::process::CommandExt::pre_exec(&mut command, || {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM) == -1 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let child = command
        .args(["--bind", "127.0.0.1", "--port", &port.to_string(), "--save", ""])
        .args(["--appendonly", "yes", "--appendfsync", "always", "--maxmemory-policy", "noeviction"])
        .arg("--dir")
        .arg(&dir)
        .arg("--logfile")
        .arg(dir.join("redis.log"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("cannot start redis-server ({e}): install it (apt-get install redis-server) or pass --redis-url"))?;
    let url = format!("redis://127.0.0.1:{port}/");
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        let up = redis::Client::open(url.as_str())
            .and_then(|c| c.get_connection_with_timeout(Duration::from_millis(200)))
            .and_then(|mut c| redis::cmd("PING").query::<String>(&mut c));
        if up.is_ok() {
            return Ok((child, url));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Err(format!(
        "redis-server did not start: see {}",
        dir.join("redis.log").display()
    ))
}

/// `redis-server`, found before anything starts (`REDIS_SERVER_BIN`, else PATH), or how to
/// install it.
fn redis_server() -> Result<PathBuf, String> {
    let named = std::env::var_os("REDIS_SERVER_BIN").filter(|v| !v.is_empty());
    let found = match named {
        Some(bin) => which::which(&bin).ok(),
        None => which::which("redis-server").ok(),
    };
    found.ok_or_else(|| {
        "redis-server is not installed. Debian/Ubuntu: `sudo apt-get install redis-server`; \
         macOS: `brew install redis`; or point --redis-url at a Redis you run"
            .to_owned()
    })
}

fn stop(child: &mut Child, grace: Duration) {
    if let Ok(pid) = libc::pid_t::try_from(child.id()) {
        // SAFETY: kill(2) on our own child, not yet reaped.
        unsafe { libc::kill(pid, libc::SIGTERM) };
    }
    let deadline = Instant::now() + grace;
    while Instant::now() < deadline {
        if matches!(child.try_wait(), Ok(Some(_))) {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    let _ = child.wait();
}

/// Whether `*.dev.local.localhost` resolves to loopback here; if not, how to fix it.
fn resolver_advice() -> Option<String> {
    let probe = format!(
        "{}.dev.local.localhost:443",
        contract::ids::ClusterId::new()
    );
    let loopback = probe
        .to_socket_addrs()
        .is_ok_and(|mut a| a.all(|a| a.ip().is_loopback()));
    (!loopback).then(|| {
        "names under .localhost do not resolve to loopback here. Fix: apt-get install \
         libnss-myhostname, and make sure the hosts line of /etc/nsswitch.conf lists \
         'myhostname' (e.g. 'hosts: files myhostname dns'); or use curl --resolve."
            .to_owned()
    })
}

pub fn run(mut args: DevArgs) -> Result<(), String> {
    if args.redis_url.is_none() {
        redis_server()?;
    }
    let cache_dir = match args.qdrant_cache.clone().or_else(qdrant::default_cache_dir) {
        Some(dir) => dir,
        None => {
            return Err("no cache directory for Qdrant: set HOME or --qdrant-cache".to_owned());
        }
    };
    let qdrant = qdrant::resolve(&qdrant::Options {
        given: args.qdrant_bin.clone(),
        standin: args.standin,
        cache_dir,
        release_url: args.qdrant_release_url.clone(),
        sha256: args.qdrant_sha256.clone(),
        download_timeout: Duration::from_secs(60),
    })?;
    let given = args.data_dir.clone();
    fs::create_dir_all(&given).map_err(|e| format!("cannot create {}: {e}", given.display()))?;
    // Absolute from here on: redis-server resolves its log file after changing into its
    // directory, and the nodes run in directories of their own.
    args.data_dir =
        fs::canonicalize(&given).map_err(|e| format!("cannot resolve {}: {e}", given.display()))?;
    let data = &args.data_dir;
    fs::set_permissions(data, fs::Permissions::from_mode(0o700)).map_err(|e| e.to_string())?;
    let master_key = kept(&data.join("platform.key"), || {
        contract::seal::PlatformKey::generate()
            .map(|(_, b64)| b64.to_string())
            .map_err(|e| e.to_string())
    })?;
    let operator = kept(
        &data.join(crate::client::connection::DEV_TOKEN_FILE),
        || {
            contract::account::generate_token()
                .map(|t| t.to_string())
                .map_err(|e| e.to_string())
        },
    )?;
    let (ca_cert, ca_key) = (data.join("ca.pem"), data.join("ca.key"));
    if !ca_cert.exists() || !ca_key.exists() {
        let ca = certs::ca::PlatformCa::generate().map_err(|e| e.to_string())?;
        let _ = fs::remove_file(&ca_key);
        kept(&ca_key, || Ok(ca.key_pem().to_string()))?;
        fs::write(&ca_cert, ca.cert_pem()).map_err(|e| e.to_string())?;
    }
    let (mut redis, redis_url) = match &args.redis_url {
        Some(url) => (None, url.clone()),
        None => {
            let (child, url) = start_redis(data)?;
            (Some(child), url)
        }
    };
    let result = serve(
        &args,
        &qdrant,
        &redis_url,
        &master_key,
        &operator,
        &ca_cert,
        &ca_key,
    );
    if let Some(child) = redis.as_mut() {
        stop(child, Duration::from_secs(5));
    }
    result
}

fn serve(
    args: &DevArgs,
    qdrant: &qdrant::Resolved,
    redis_url: &str,
    master_key: &str,
    operator: &str,
    ca_cert: &Path,
    ca_key: &Path,
) -> Result<(), String> {
    let platform = PlatformArgs::new(redis_url, master_key);
    // GateKeeper gets only the serving key, as in production: not the platform key.
    let gateway_key = platform
        .keyring()
        .map_err(|e| e.to_string())?
        .gateway_key()
        .ok_or("the platform keyring gives no gateway key")?;
    let runtime = tokio::runtime::Runtime::new().map_err(|e| e.to_string())?;
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let until_stopped = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|stop| *stop).await;
    };

    let orion = control::OrionConfig {
        listen: args.api,
        admin_listen: args.orion_admin,
        platform: platform.clone(),
        operator_token: operator.to_owned(),
        tld: "localhost".into(),
        redis_timeout_ms: 1000,
        ca_cert: Some(ca_cert.to_owned()),
        ca_key: Some(ca_key.to_owned()),
        cert_renew_secs: 3600,
        idempotent_answer_max_bytes: control::config::DEFAULT_IDEMPOTENT_ANSWER_MAX_BYTES,
    };
    let nebula = provisioner::NebulaConfig {
        platform: platform.clone(),
        data_dir: args.data_dir.clone(),
        qdrant_bin: qdrant.bin.clone(),
        local_host: "127.0.0.1".parse().map_err(|_| "bad address".to_owned())?,
        consumer: Some("dev".into()),
        concurrency: 4,
        max_attempts: 5,
        backoff_ms: 500,
        backoff_max_ms: 30_000,
        ready_timeout_secs: 120,
        claim_idle_ms: 30_000,
        kubernetes: false,
        helm_bin: "helm".into(),
        helm_namespace: "lyra-qdrant".into(),
        admin_listen: args.nebula_admin,
        reconcile_secs: 10,
    };
    let gatekeeper = gateway::GatekeeperConfig {
        platform: contract::platform::ServingArgs::new(redis_url, gateway_key.as_str()),
        tld: "localhost".into(),
        rest_listen: args.rest,
        grpc_listen: args.grpc,
        plain_listen: None,
        admin_listen: args.gateway_admin,
        threads: 2,
        key_rps: 1000,
        key_burst: 2000,
        cluster_rps: 20_000,
        cluster_burst: 40_000,
        max_in_flight: 1024,
        upstream_connect_timeout_ms: 2_000,
        upstream_read_timeout_ms: 60_000,
        upstream_write_timeout_ms: 10_000,
        upstream_idle_timeout_secs: 60,
        upstream_pool_size: 4096,
        resync_secs: 60,
        max_header_bytes: 32 * 1024,
        bench_without_auth: false,
    };

    let local = provisioner::local_driver(&nebula);
    let drivers = Drivers::default().with(
        Driver::Local,
        local.clone() as Arc<dyn InfrastructureClient>,
    );
    let mut orion_task = runtime.spawn(control::run(orion, until_stopped(stop_rx.clone())));
    let nebula_task = runtime.spawn(provisioner::run_with(
        nebula,
        drivers,
        Some(local.clone()),
        until_stopped(stop_rx.clone()),
    ));
    let gateway_stop = until_stopped(stop_rx.clone());
    let gateway_thread = std::thread::Builder::new()
        .name("gatekeeper".into())
        .spawn(move || gateway::run(gatekeeper, Some(Box::pin(gateway_stop))))
        .map_err(|e| e.to_string())?;

    let api = format!("http://{}", args.api);
    // Orion that stops at start (a port taken, say) is said at once, with its own words,
    // rather than after the readiness wait.
    let mut orion_done = None;
    let ready = runtime.block_on(async {
        tokio::select! {
            ready = register_region(&api, operator, args) => ready,
            ended = &mut orion_task => {
                let why = match &ended {
                    Ok(Err(e)) => e.to_string(),
                    Ok(Ok(())) => "it stopped".to_owned(),
                    Err(e) => e.to_string(),
                };
                orion_done = Some(ended);
                Err(format!("Orion did not start: {why}"))
            }
        }
    });
    // Where the client commands find Orion when run next to this data directory.
    let url_file = args.data_dir.join(crate::client::connection::DEV_URL_FILE);
    if let Err(e) = fs::write(&url_file, format!("{api}\n")) {
        tracing::warn!(error = %e, file = %url_file.display(), "cannot record Orion's URL");
    }
    let signals = {
        let _in_runtime = runtime.enter();
        StopSignals::install()
    };
    if let Err(e) = &ready {
        tracing::error!(error = %e, "the platform did not come up");
    } else {
        println!("Lyra is running.");
        println!("  API         {api}   (docs: {api}/docs)");
        // Where the token is, never the token: a terminal's output ends up in scrollback,
        // CI logs and screen shares.
        println!(
            "  token       in {} (owner-only; the CLI reads it there)",
            args.data_dir
                .join(crate::client::connection::DEV_TOKEN_FILE)
                .display()
        );
        println!("  CA          {}", args.data_dir.join("ca.pem").display());
        println!("  Qdrant      {}", qdrant.describe());
        println!(
            "  endpoints   https://<cluster-id>.dev.local.localhost:{} (REST), :{} (gRPC)",
            args.rest.port(),
            args.grpc.port()
        );
        println!("Try, in another shell in this directory:");
        println!("  lyra account create me");
        println!("  lyra cluster create demo --nodes 3 --wait");
        println!("  lyra key create demo --name app --access manage");
        if std::env::current_dir().is_ok_and(|cwd| cwd.join(".lyra") != args.data_dir) {
            println!(
                "  (elsewhere: export LYRA_DATA_DIR={})",
                args.data_dir.display()
            );
        }
        if !qdrant.is_qdrant() {
            println!(
                "Note: the nodes run {} ({:?}), which is NOT Qdrant: the project's stand-in is a \
                 test double that stores data but does not search. For real Qdrant, drop \
                 --standin and QDRANT_BIN (lyra dev then finds or downloads Qdrant).",
                qdrant.bin.display(),
                qdrant.version
            );
        }
        if let Some(advice) = resolver_advice() {
            println!("Note: {advice}");
        }
        let _ = std::io::stdout().flush();
        runtime.block_on(signals.wait());
    }
    let _ = stop_tx.send(true);
    if orion_done.is_none() {
        let _ = runtime.block_on(orion_task);
    }
    let _ = runtime.block_on(nebula_task);
    runtime.block_on(local.stop_all());
    let _ = gateway_thread.join();
    ready
}

/// Waits for Orion, then registers the `local`/`dev` region with the configured capacity.
async fn register_region(api: &str, operator: &str, args: &DevArgs) -> Result<(), String> {
    let http = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if http
            .get(format!("{api}/readyz"))
            .send()
            .await
            .is_ok_and(|r| r.status().is_success())
        {
            break;
        }
        if Instant::now() > deadline {
            return Err("Orion did not become ready within 30 s".into());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let body = serde_json::json!({"driver": "local", "capacity": {"nodes": args.nodes, "cpu": args.cpu, "memory": args.memory, "disk": args.disk}});
    let r = http
        .put(format!("{api}/api/v1/regions/local/dev"))
        .bearer_auth(operator)
        .json(&body)
        .send()
        .await
        .map_err(|e| format!("cannot register the dev region: {e}"))?;
    if !r.status().is_success() {
        return Err(format!("cannot register the dev region: {}", r.status()));
    }
    Ok(())
}

/// Ctrl-C and SIGTERM, listened for from the moment this is made: made before the banner, so
/// a signal sent as soon as the banner shows stops dev cleanly instead of killing it.
struct StopSignals {
    interrupt: Option<tokio::signal::unix::Signal>,
    terminate: Option<tokio::signal::unix::Signal>,
}

impl StopSignals {
    /// Must run inside the runtime.
    fn install() -> Self {
        use tokio::signal::unix::{SignalKind, signal};
        Self {
            interrupt: signal(SignalKind::interrupt()).ok(),
            terminate: signal(SignalKind::terminate()).ok(),
        }
    }

    async fn wait(mut self) {
        let interrupt = async {
            match self.interrupt.as_mut() {
                Some(s) => {
                    s.recv().await;
                }
                None => {
                    let _ = tokio::signal::ctrl_c().await;
                }
            }
        };
        let terminate = async {
            match self.terminate.as_mut() {
                Some(s) => {
                    s.recv().await;
                }
                None => std::future::pending::<()>().await,
            }
        };
        tokio::select! {
            _ = interrupt => {}
            _ = terminate => {}
        }
        println!("stopping…");
    }
}
