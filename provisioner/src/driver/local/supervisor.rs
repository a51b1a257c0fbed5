//! Keeps local nodes running: a node whose process died is started again, on the same ports
//! and storage, within about a second.

use std::sync::Arc;
use std::time::Duration;

use super::LocalDriver;

const EVERY: Duration = Duration::from_secs(1);

/// Runs until `shutdown` resolves.
pub async fn supervise(driver: Arc<LocalDriver>, shutdown: tokio::sync::watch::Receiver<bool>) {
    let mut shutdown = shutdown;
    loop {
        tokio::select! {
            _ = shutdown.changed() => return,
            _ = tokio::time::sleep(EVERY) => {}
        }
        driver.reap();
        let specs: Vec<_> = driver
            .specs
            .lock()
            .map(|s| s.values().cloned().collect())
            .unwrap_or_default();
        for spec in specs {
            // Live nodes are left alone, dead ones started; an error is retried next tick.
            if let Err(e) = driver.restart_dead_nodes(&spec).await {
                tracing::warn!(cluster = %spec.cluster_id, error = %e, "cannot restart a node");
            }
        }
    }
}
