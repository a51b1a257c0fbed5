//! Orion's configuration: command-line flags, each with an environment fallback.

use std::net::SocketAddr;
use std::time::Duration;

use clap::Args;

/// The largest answer kept for `Idempotency-Key` replay unless configured otherwise: far above
/// any answer Orion gives today, small enough that a flood of keys cannot fill Redis fast.
pub const DEFAULT_IDEMPOTENT_ANSWER_MAX_BYTES: usize = 1 << 20;

#[derive(Debug, Clone, Args)]
pub struct OrionConfig {
    /// Address the API listens on.
    #[arg(
        long = "listen",
        env = "LYRA_ORION_LISTEN",
        default_value = "127.0.0.1:8080"
    )]
    pub listen: SocketAddr,

    /// Admin listener: `/metrics`, `/healthz`, `/readyz`. Keep it off the public network: the
    /// metrics tell anyone who reads them how busy every route is.
    #[arg(
        long = "admin-listen",
        env = "LYRA_ORION_ADMIN",
        default_value = "127.0.0.1:9092"
    )]
    pub admin_listen: SocketAddr,

    #[command(flatten)]
    pub platform: contract::platform::PlatformArgs,

    /// The operator token: manages accounts and regions. At least 16 characters.
    #[arg(long, env = "LYRA_OPERATOR_TOKEN", hide_env_values = true)]
    pub operator_token: String,

    /// Domain under which cluster endpoints live: `<id>.<region>.<provider>.<tld>`.
    #[arg(long, env = "LYRA_TLD", default_value = "localhost")]
    pub tld: String,

    /// The platform CA's certificate (PEM file), when the operator provides the CA; with
    /// `--ca-key`. Default: a CA created once and kept sealed in Redis.
    #[arg(long, env = "LYRA_CA_CERT", requires = "ca_key")]
    pub ca_cert: Option<std::path::PathBuf>,

    /// The platform CA's private key (PEM file), with `--ca-cert`.
    #[arg(long, env = "LYRA_CA_KEY", requires = "ca_cert")]
    pub ca_key: Option<std::path::PathBuf>,

    /// How often regional certificates are checked and renewed when due (seconds).
    #[arg(long, env = "LYRA_CERT_RENEW_SECS", default_value_t = 3600)]
    pub cert_renew_secs: u64,

    /// How long one Redis call may take before Orion answers 503 (milliseconds).
    #[arg(long, env = "LYRA_REDIS_TIMEOUT_MS", default_value_t = 1000)]
    pub redis_timeout_ms: u64,

    /// The largest answer kept for `Idempotency-Key` replay (bytes). A larger one is still
    /// given in full to the client; a retry is then sent to the resource it made (303).
    #[arg(
        long,
        env = "LYRA_IDEMPOTENT_ANSWER_MAX_BYTES",
        default_value_t = DEFAULT_IDEMPOTENT_ANSWER_MAX_BYTES
    )]
    pub idempotent_answer_max_bytes: usize,
}

impl OrionConfig {
    pub fn cert_renew_every(&self) -> Duration {
        Duration::from_secs(self.cert_renew_secs.max(1))
    }

    pub fn redis_timeout(&self) -> Duration {
        Duration::from_millis(self.redis_timeout_ms)
    }
}
