//! Nebula's configuration: command-line flags, each with an environment fallback.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use clap::Args;

#[derive(Debug, Clone, Args)]
pub struct NebulaConfig {
    #[command(flatten)]
    pub platform: contract::platform::PlatformArgs,

    /// Where the local driver keeps its nodes' storage, logs and state.
    #[arg(long, env = "LYRA_DATA_DIR", default_value = ".lyra")]
    pub data_dir: PathBuf,

    /// The Qdrant binary the local driver runs.
    #[arg(long, env = "QDRANT_BIN", default_value = "qdrant")]
    pub qdrant_bin: PathBuf,

    /// Address local Qdrant nodes listen on.
    #[arg(long, env = "LYRA_LOCAL_HOST", default_value = "127.0.0.1")]
    pub local_host: IpAddr,

    /// This worker's name in the consumer group. Keep it stable across restarts, so that a
    /// restarted worker finishes its own pending commands first. Default: the host name.
    #[arg(long, env = "LYRA_NEBULA_CONSUMER")]
    pub consumer: Option<String>,

    /// Commands handled at once.
    #[arg(long, env = "LYRA_NEBULA_CONCURRENCY", default_value_t = 4)]
    pub concurrency: usize,

    /// Attempts before a command is parked in the dead-letter stream.
    #[arg(long, env = "LYRA_NEBULA_MAX_ATTEMPTS", default_value_t = 5)]
    pub max_attempts: u32,

    /// First retry delay (milliseconds); it doubles per attempt, with jitter.
    #[arg(long, env = "LYRA_NEBULA_BACKOFF_MS", default_value_t = 500)]
    pub backoff_ms: u64,

    /// Longest retry delay (milliseconds).
    #[arg(long, env = "LYRA_NEBULA_BACKOFF_MAX_MS", default_value_t = 30_000)]
    pub backoff_max_ms: u64,

    /// How long nodes may take to become ready (seconds).
    #[arg(long, env = "LYRA_NEBULA_READY_TIMEOUT", default_value_t = 120)]
    pub ready_timeout_secs: u64,

    /// A command untouched this long (milliseconds) belongs to a dead worker and is claimed.
    #[arg(long, env = "LYRA_NEBULA_CLAIM_IDLE_MS", default_value_t = 30_000)]
    pub claim_idle_ms: u64,

    /// Run the kubernetes driver, with the credentials of `KUBECONFIG` or the pod's service
    /// account.
    #[arg(long, env = "LYRA_KUBERNETES", default_value_t = false)]
    pub kubernetes: bool,

    /// The `helm` binary of the helm driver.
    #[arg(long, env = "LYRA_HELM_BIN", default_value = "helm")]
    pub helm_bin: PathBuf,

    /// The namespace the helm driver installs releases into.
    #[arg(long, env = "LYRA_HELM_NAMESPACE", default_value = "lyra-qdrant")]
    pub helm_namespace: String,

    /// Admin listener: `/metrics`, `/healthz`, `/readyz`.
    #[arg(long, env = "LYRA_NEBULA_ADMIN", default_value = "127.0.0.1:9091")]
    pub admin_listen: SocketAddr,

    /// How often every served cluster is checked (nodes ready, Raft peers, shard replicas)
    /// and its phase set to HEALTHY, DEGRADED or NOT_READY accordingly (seconds).
    #[arg(long, env = "LYRA_NEBULA_RECONCILE_SECS", default_value_t = 10)]
    pub reconcile_secs: u64,
}

impl NebulaConfig {
    pub fn reconcile_every(&self) -> Duration {
        Duration::from_secs(self.reconcile_secs.max(1))
    }

    pub fn ready_timeout(&self) -> Duration {
        Duration::from_secs(self.ready_timeout_secs)
    }

    pub fn claim_idle(&self) -> Duration {
        Duration::from_millis(self.claim_idle_ms)
    }

    /// The consumer name: configured, else the host name, else `nebula`.
    pub fn consumer_name(&self) -> String {
        if let Some(c) = self.consumer.as_ref().filter(|c| !c.is_empty()) {
            return c.clone();
        }
        std::fs::read_to_string("/etc/hostname")
            .ok()
            .map(|h| h.trim().to_owned())
            .filter(|h| !h.is_empty())
            .unwrap_or_else(|| "nebula".to_owned())
    }
}
