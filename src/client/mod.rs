//! The client half of `lyra`: subcommands that drive Orion's API from a terminal.
//!
//! | module | job |
//! |---|---|
//! | [`connection`] | where Orion is and which token to send (flags, env, the dev data dir) |
//! | `orion` | the HTTP client: TLS, retries of idempotent requests, problem+json as one line |
//! | `output` | tables, `--json`, `--quiet` |
//! | `quantity` | `500m`, `2Gi`: resource amounts as people write them |
//! | `progress` | `--wait`: a spinner with the phase and reason until a cluster settles |
//! | one file per resource | account, token, region, cluster, key, usage, audit, dead-letter |
//!
//! Every answer is decoded with the wire types Orion itself uses (`control::api`).

pub mod account;
pub mod audit;
pub mod cluster;
pub mod connection;
pub mod dead_letter;
pub mod key;
mod orion;
pub use orion::{error_chain, tls_client_config};
mod output;
mod progress;
mod quantity;
pub mod region;
pub mod token;
pub mod usage;

use std::fmt;

use clap::{Args, Subcommand};

pub use connection::Connection;

/// A client command group: the connection flags plus one of the group's subcommands.
#[derive(Debug, Args)]
pub struct Group<C: Subcommand> {
    #[command(flatten)]
    pub conn: Connection,
    #[command(subcommand)]
    pub command: C,
}

/// Why a client command failed. Each is printed as one line, after `error: `.
#[derive(Debug)]
pub enum CliError {
    /// Orion refused the request; `message` already names the field that was wrong.
    Api { status: u16, message: String },
    /// Orion could not be reached at all.
    Unreachable { url: String, reason: String },
    /// The answer was not what the API documents.
    BadAnswer(String),
    /// The command line or the environment does not say enough (e.g. which account).
    Usage(String),
    /// A `--wait` ended with the cluster failed, or out of time.
    Failed(String),
}

impl fmt::Display for CliError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CliError::Api { status, message } => write!(f, "{message} (HTTP {status})"),
            CliError::Unreachable { url, reason } => write!(
                f,
                "cannot reach Orion at {url}: {reason} (is `lyra dev` running? set LYRA_URL or --url)"
            ),
            CliError::BadAnswer(m) | CliError::Usage(m) | CliError::Failed(m) => f.write_str(m),
        }
    }
}

impl std::error::Error for CliError {}

/// Runs a client command on a small runtime of its own.
pub fn block_on<F>(work: F) -> Result<(), CliError>
where
    F: std::future::Future<Output = Result<(), CliError>>,
{
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| CliError::Usage(format!("cannot start: {e}")))?
        .block_on(work)
}
