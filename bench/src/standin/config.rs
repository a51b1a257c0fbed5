//! The stand-in reads the same flags and environment variables as Qdrant.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;

use clap::Parser;

/// Qdrant's command line, as far as ports and clustering go.
#[derive(Debug, Parser)]
#[command(
    name = "qdrant-standin",
    version,
    about = "A test double of the Qdrant server (not Qdrant)"
)]
pub struct Args {
    /// This peer's own p2p URI (Qdrant: `--uri`).
    #[arg(long)]
    pub uri: Option<String>,
    /// A peer to join (Qdrant: `--bootstrap`).
    #[arg(long)]
    pub bootstrap: Option<String>,
    /// Accepted and ignored, as Qdrant's `--disable-telemetry`.
    #[arg(long)]
    pub disable_telemetry: bool,
}

#[derive(Debug, Clone)]
pub struct Config {
    pub host: IpAddr,
    pub http_port: u16,
    pub grpc_port: u16,
    pub p2p_port: u16,
    pub api_key: Option<String>,
    pub read_only_api_key: Option<String>,
    pub jwt_rbac: bool,
    pub storage_path: PathBuf,
    pub cluster_enabled: bool,
    pub uri: Option<String>,
    pub bootstrap: Option<String>,
    /// Runtime worker threads (`STANDIN_THREADS`, default 1): the stand-in is a fast upstream,
    /// and benchmarks pin it to one core.
    pub threads: usize,
}

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

fn port(name: &str, default: u16) -> Result<u16, String> {
    match env(name) {
        None => Ok(default),
        Some(v) => v.parse().map_err(|_| format!("{name}={v:?} is not a port")),
    }
}

impl Config {
    pub fn from_env(args: Args) -> Result<Self, String> {
        let host = match env("QDRANT__SERVICE__HOST") {
            None => IpAddr::from([0, 0, 0, 0]),
            Some(h) => h
                .parse()
                .map_err(|_| format!("QDRANT__SERVICE__HOST={h:?} is not an IP address"))?,
        };
        let flag = |name: &str| env(name).is_some_and(|v| v.eq_ignore_ascii_case("true"));
        Ok(Self {
            host,
            http_port: port("QDRANT__SERVICE__HTTP_PORT", 6333)?,
            grpc_port: port("QDRANT__SERVICE__GRPC_PORT", 6334)?,
            p2p_port: port("QDRANT__CLUSTER__P2P__PORT", 6335)?,
            api_key: env("QDRANT__SERVICE__API_KEY"),
            read_only_api_key: env("QDRANT__SERVICE__READ_ONLY_API_KEY"),
            jwt_rbac: flag("QDRANT__SERVICE__JWT_RBAC"),
            storage_path: env("QDRANT__STORAGE__STORAGE_PATH")
                .map(PathBuf::from)
                .unwrap_or_else(|| PathBuf::from("./storage")),
            cluster_enabled: flag("QDRANT__CLUSTER__ENABLED"),
            uri: args.uri,
            bootstrap: args.bootstrap,
            threads: env("STANDIN_THREADS")
                .and_then(|t| t.parse().ok())
                .filter(|t| *t > 0)
                .unwrap_or(1),
        })
    }

    pub fn http_addr(&self) -> SocketAddr {
        SocketAddr::new(self.host, self.http_port)
    }

    pub fn grpc_addr(&self) -> SocketAddr {
        SocketAddr::new(self.host, self.grpc_port)
    }

    pub fn p2p_addr(&self) -> SocketAddr {
        SocketAddr::new(self.host, self.p2p_port)
    }
}
