//! `--wait`: follow a cluster until it settles, showing its phase and reason as they change.
//!
//! On a terminal this is a spinner on stderr; otherwise (CI logs, pipes) one line on stderr per
//! change, so stdout keeps only the final answer.

use std::io::IsTerminal;
use std::time::{Duration, Instant};

use contract::ids::{AccountId, ClusterId};
use control::api::{Cluster, Phase};
use indicatif::{ProgressBar, ProgressStyle};

use super::CliError;
use super::orion::{Answer, Orion};

const POLL: Duration = Duration::from_millis(500);

/// What a wait is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Goal {
    /// Created or resized: every node ready.
    Healthy,
    /// Deleted: processes, storage, route and capacity released.
    Deleted,
}

fn status_line(c: &Cluster) -> String {
    match c.reason.as_deref() {
        Some(reason) if !reason.is_empty() => format!("{}: {reason}", c.phase),
        _ => c.phase.to_string(),
    }
}

/// Polls the cluster until it reaches `goal`, fails, or `timeout` passes.
pub async fn wait(
    orion: &Orion,
    account: AccountId,
    cluster: ClusterId,
    goal: Goal,
    timeout: Duration,
) -> Result<Answer<Cluster>, CliError> {
    let path = format!("/api/v1/accounts/{account}/clusters/{cluster}");
    let spinner = std::io::stderr().is_terminal().then(|| {
        let bar = ProgressBar::new_spinner();
        if let Ok(style) = ProgressStyle::with_template("{spinner} {elapsed:>4} {msg}") {
            bar.set_style(style);
        }
        bar.enable_steady_tick(Duration::from_millis(100));
        bar
    });
    let started = Instant::now();
    let mut last = String::new();
    let outcome = loop {
        let answer: Answer<Cluster> = match orion.get(&path).await {
            Ok(a) => a,
            Err(e) => break Err(e),
        };
        let c = &answer.value;
        let line = status_line(c);
        if line != last {
            match &spinner {
                Some(bar) => bar.set_message(format!("cluster {cluster} {line}")),
                None => eprintln!("cluster {cluster} {line}"),
            }
            last = line;
        }
        match (goal, c.phase) {
            (Goal::Healthy, Phase::Healthy) | (Goal::Deleted, Phase::Deleted) => break Ok(answer),
            (_, Phase::FailedToCreate | Phase::FailedToUpdate) => {
                break Err(CliError::Failed(format!(
                    "cluster {cluster} is {}: {}",
                    c.phase,
                    c.reason.as_deref().unwrap_or("no reason given")
                )));
            }
            (Goal::Healthy, Phase::Deleting | Phase::Deleted) => {
                break Err(CliError::Failed(format!(
                    "cluster {cluster} is {} (deleted while waiting for it)",
                    c.phase
                )));
            }
            _ => {}
        }
        if started.elapsed() >= timeout {
            break Err(CliError::Failed(format!(
                "cluster {cluster} is still {} after {} s; it goes on in the background \
                 (follow it with `lyra cluster get {cluster}`)",
                status_line(c),
                timeout.as_secs()
            )));
        }
        tokio::time::sleep(POLL).await;
    };
    if let Some(bar) = spinner {
        bar.finish_and_clear();
    }
    outcome
}
