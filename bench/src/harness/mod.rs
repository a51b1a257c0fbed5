//! The benchmark harness: `cargo run --release -p bench -- <scenario>`.
//!
//! Each scenario sets everything up itself (Redis, Orion, Nebula, GateKeeper, the stand-in
//! upstream, nginx and HAProxy), runs the peers interleaved (A B C A B C ...) for several
//! rounds, and tears it all down. Results: JSON of every run, a Markdown table and PNG charts
//! under `--out`. Speed is measured here only; tests never time anything.
//!
//! | module | job |
//! |---|---|
//! | `procs` | spawning pinned processes, CPU seconds and memory from /proc |
//! | `platform` | Lyra itself: Orion, Nebula, GateKeeper on a real Redis, one upstream node |
//! | `peers` | nginx and HAProxy configured as the same reverse proxy |
//! | `load` | the load generator (closed, open loop, new connection, h2) |
//! | `report` | JSON, Markdown, charts |
//! | `scenarios` | the eight scenarios |

pub mod load;
pub mod peers;
pub mod platform;
pub mod procs;
pub mod report;
pub mod scenarios;

use std::path::PathBuf;
use std::time::Duration;

/// Why a run could not be made or is not valid.
#[derive(Debug, thiserror::Error)]
pub enum HarnessError {
    #[error("setup: {0}")]
    Setup(String),
    /// A peer answered wrongly (a refusal is not throughput): the run is void.
    #[error("{peer} answered wrongly: {reason}")]
    Invalid { peer: String, reason: String },
}

/// How long and how hard.
#[derive(Debug, Clone)]
pub struct Options {
    /// Measured seconds per run.
    pub seconds: f64,
    /// Unrecorded seconds before each run.
    pub warmup: f64,
    /// Interleaved rounds per peer.
    pub rounds: usize,
    /// Concurrent connections of the load generator.
    pub connections: usize,
    /// Concurrent connections of the Qdrant-sized answers scenario.
    pub answer_connections: usize,
    /// Revocation trials.
    pub trials: usize,
    /// Routes and revoked keys fed to a gateway in the scale scenario.
    pub routes: usize,
    pub revoked: usize,
    pub out: PathBuf,
}

impl Options {
    pub fn duration(&self) -> Duration {
        Duration::from_secs_f64(self.seconds.max(0.1))
    }

    pub fn warmup(&self) -> Duration {
        Duration::from_secs_f64(self.warmup.max(0.0))
    }

    /// A second or two per scenario: checks the harness works, not how fast anything is.
    pub fn smoke(out: PathBuf) -> Self {
        Self {
            seconds: 0.5,
            warmup: 0.1,
            rounds: 1,
            connections: 4,
            answer_connections: 4,
            trials: 3,
            routes: 1_000,
            revoked: 10_000,
            out,
        }
    }
}
