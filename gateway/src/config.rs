//! GateKeeper's configuration: command-line flags, each with an environment fallback.

use std::net::SocketAddr;
use std::time::Duration;

use clap::Args;

#[derive(Debug, Clone, Args)]
pub struct GatekeeperConfig {
    /// Redis and the gateway key: GateKeeper never holds the platform key.
    #[command(flatten)]
    pub platform: contract::platform::ServingArgs,

    /// Domain under which cluster endpoints live.
    #[arg(long, env = "LYRA_TLD", default_value = "localhost")]
    pub tld: String,

    /// REST listener (TLS; ALPN h2 and http/1.1).
    #[arg(long, env = "LYRA_GATEKEEPER_REST", default_value = "127.0.0.1:6333")]
    pub rest_listen: SocketAddr,

    /// gRPC listener (TLS; ALPN h2).
    #[arg(long, env = "LYRA_GATEKEEPER_GRPC", default_value = "127.0.0.1:6334")]
    pub grpc_listen: SocketAddr,

    /// Plain-HTTP REST listener for development (no TLS: no SNI check). Off unless set.
    #[arg(long, env = "LYRA_GATEKEEPER_PLAIN")]
    pub plain_listen: Option<SocketAddr>,

    /// Admin listener: `/metrics`, `/healthz`, `/readyz`.
    #[arg(long, env = "LYRA_GATEKEEPER_ADMIN", default_value = "127.0.0.1:9090")]
    pub admin_listen: SocketAddr,

    /// Worker threads per listener.
    #[arg(long, env = "LYRA_GATEKEEPER_THREADS", default_value_t = 1)]
    pub threads: usize,

    /// Default sustained requests per second per API key (a route may set its own).
    #[arg(long, env = "LYRA_KEY_RPS", default_value_t = 1000)]
    pub key_rps: u32,

    /// Default burst per API key.
    #[arg(long, env = "LYRA_KEY_BURST", default_value_t = 2000)]
    pub key_burst: u32,

    /// Default sustained requests per second per cluster.
    #[arg(long, env = "LYRA_CLUSTER_RPS", default_value_t = 20_000)]
    pub cluster_rps: u32,

    /// Default burst per cluster.
    #[arg(long, env = "LYRA_CLUSTER_BURST", default_value_t = 40_000)]
    pub cluster_burst: u32,

    /// Default cap on requests in flight per cluster.
    #[arg(long, env = "LYRA_MAX_IN_FLIGHT", default_value_t = 1024)]
    pub max_in_flight: u32,

    /// How long connecting to a node may take (milliseconds) before the next node is tried.
    /// Without it a node that drops packets holds the request for the OS's connect timeout.
    #[arg(
        long,
        env = "LYRA_UPSTREAM_CONNECT_TIMEOUT_MS",
        default_value_t = 2_000
    )]
    pub upstream_connect_timeout_ms: u64,

    /// How long a node may be silent while it owes an answer (milliseconds): the client gets
    /// 504 (gRPC 14) after it. It bounds the slowest query, which sends nothing until it ends.
    #[arg(long, env = "LYRA_UPSTREAM_READ_TIMEOUT_MS", default_value_t = 60_000)]
    pub upstream_read_timeout_ms: u64,

    /// How long writing a request to a node may stall (milliseconds).
    #[arg(long, env = "LYRA_UPSTREAM_WRITE_TIMEOUT_MS", default_value_t = 10_000)]
    pub upstream_write_timeout_ms: u64,

    /// How long an idle connection to a node is kept for reuse (seconds).
    #[arg(long, env = "LYRA_UPSTREAM_IDLE_TIMEOUT_SECS", default_value_t = 60)]
    pub upstream_idle_timeout_secs: u64,

    /// How many idle node connections are kept for reuse, across all clusters. Past it, a
    /// busy cluster's extra connections are closed after their request (pingora's default is
    /// 128: fewer than one per client connection under load).
    #[arg(long, env = "LYRA_UPSTREAM_POOL_SIZE", default_value_t = 4096)]
    pub upstream_pool_size: usize,

    /// The largest request line and header block accepted (bytes, each field counted as
    /// `name: value` and its line end); more is refused with 431 before any upstream work.
    /// nginx allows 32 KiB in all by default, Envoy 60 KiB.
    #[arg(long, env = "LYRA_MAX_HEADER_BYTES", default_value_t = 32 * 1024)]
    pub max_header_bytes: usize,

    /// Full resync from Redis this often (seconds), on top of every reconnect.
    #[arg(long, env = "LYRA_RESYNC_SECS", default_value_t = 60)]
    pub resync_secs: u64,

    /// For the benchmark harness only: skip key checks, scopes and limits, and send every
    /// request to its cluster with the read-write credential, to measure what they cost.
    /// Refused unless every listener is on loopback. Hidden from --help on purpose.
    #[arg(
        long,
        env = "LYRA_BENCH_WITHOUT_AUTH",
        hide = true,
        default_value_t = false
    )]
    pub bench_without_auth: bool,
}

impl GatekeeperConfig {
    /// The timeouts every upstream connection gets.
    pub fn upstream_timeouts(&self) -> UpstreamTimeouts {
        UpstreamTimeouts {
            connect: Duration::from_millis(self.upstream_connect_timeout_ms.max(1)),
            read: Duration::from_millis(self.upstream_read_timeout_ms.max(1)),
            write: Duration::from_millis(self.upstream_write_timeout_ms.max(1)),
            idle: Duration::from_secs(self.upstream_idle_timeout_secs.max(1)),
        }
    }

    pub fn resync_every(&self) -> Duration {
        Duration::from_secs(self.resync_secs.max(1))
    }

    /// Why this configuration must not start, if it must not.
    pub fn refusal(&self) -> Option<String> {
        if let Some(why) = self.platform.refusal() {
            return Some(why);
        }
        let listeners = [
            Some(self.rest_listen),
            Some(self.grpc_listen),
            self.plain_listen,
            Some(self.admin_listen),
        ];
        let exposed = listeners.iter().flatten().any(|a| !a.ip().is_loopback());
        (self.bench_without_auth && exposed).then(|| {
            "LYRA_BENCH_WITHOUT_AUTH serves every cluster without keys: it is allowed only when \
             every listener is on loopback"
                .to_owned()
        })
    }
}

/// Connect, read, write and idle timeouts of upstream connections.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UpstreamTimeouts {
    pub connect: Duration,
    pub read: Duration,
    pub write: Duration,
    pub idle: Duration,
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Parser)]
    struct Wrapper {
        #[command(flatten)]
        config: GatekeeperConfig,
    }

    fn parse(args: &[&str]) -> GatekeeperConfig {
        let mut argv = vec![
            "gatekeeper",
            "--gateway-key",
            "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=",
        ];
        argv.extend_from_slice(args);
        Wrapper::parse_from(argv).config
    }

    #[test]
    fn serving_without_auth_is_refused_off_loopback() {
        assert!(parse(&[]).refusal().is_none());
        assert!(
            parse(&["--bench-without-auth"]).refusal().is_none(),
            "loopback defaults"
        );
        let exposed = parse(&["--bench-without-auth", "--rest-listen", "0.0.0.0:6333"]);
        assert!(exposed.refusal().is_some_and(|r| r.contains("loopback")));
        let plain = parse(&["--bench-without-auth", "--plain-listen", "10.0.0.1:8080"]);
        assert!(plain.refusal().is_some());
        assert!(
            parse(&["--rest-listen", "0.0.0.0:6333"])
                .refusal()
                .is_none()
        );
    }

    #[test]
    fn the_platform_key_is_refused_and_never_kept() {
        let given = parse(&[
            "--master-key",
            "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=",
        ]);
        let why = given.refusal().unwrap_or_default();
        assert!(
            why.contains("LYRA_MASTER_KEY") && why.contains("LYRA_GATEWAY_KEY"),
            "{why}"
        );
        let shown = format!("{given:?}");
        assert!(!shown.contains("AAECAw"), "{shown}");
    }
}
