//! Per-cluster usage: requests and bytes, counted in memory on every admitted request and
//! added to Redis about once a second (HINCRBY), where Orion's usage endpoint reads them. A
//! flush that fails keeps its counts for the next one.
//!
//! The counters are never evicted while they may hold counts: an evicted entry would take its
//! unflushed counts with it (and a request holding its `Arc` would count into nothing). There
//! is one entry per served cluster, a few dozen bytes each; an entry goes only after its
//! cluster's route is gone and its last counts were sent.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use contract::ids::ClusterId;
use contract::keyspace::{self, usage_fields};
use moka::sync::Cache;
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;

use crate::state::GatewayState;

#[derive(Default)]
pub struct Counters {
    requests: AtomicU64,
    bytes_in: AtomicU64,
    bytes_out: AtomicU64,
}

pub struct Usage {
    by_cluster: Cache<ClusterId, Arc<Counters>>,
}

impl Default for Usage {
    fn default() -> Self {
        Self {
            by_cluster: Cache::builder().build(),
        }
    }
}

impl Usage {
    pub fn record(&self, cluster: ClusterId, bytes_in: u64, bytes_out: u64) {
        let c = self.by_cluster.get_with(cluster, Default::default);
        c.requests.fetch_add(1, Ordering::Relaxed);
        c.bytes_in.fetch_add(bytes_in, Ordering::Relaxed);
        c.bytes_out.fetch_add(bytes_out, Ordering::Relaxed);
    }

    /// Takes the counts accumulated since the last call.
    fn drain(&self) -> Vec<(ClusterId, [u64; 3])> {
        self.by_cluster
            .iter()
            .map(|(id, c)| {
                let taken = [
                    c.requests.swap(0, Ordering::Relaxed),
                    c.bytes_in.swap(0, Ordering::Relaxed),
                    c.bytes_out.swap(0, Ordering::Relaxed),
                ];
                (*id, taken)
            })
            .filter(|(_, t)| t.iter().any(|v| *v > 0))
            .collect()
    }

    /// Forgets the counters of clusters no longer served, once they hold nothing.
    fn forget_unserved(&self, served: impl Fn(&ClusterId) -> bool) {
        let gone: Vec<ClusterId> = self
            .by_cluster
            .iter()
            .filter(|(id, c)| {
                !served(id)
                    && c.requests.load(Ordering::Relaxed) == 0
                    && c.bytes_in.load(Ordering::Relaxed) == 0
                    && c.bytes_out.load(Ordering::Relaxed) == 0
            })
            .map(|(id, _)| *id)
            .collect();
        for id in gone {
            self.by_cluster.invalidate(&id);
        }
    }

    fn give_back(&self, cluster: ClusterId, counts: [u64; 3]) {
        let c = self.by_cluster.get_with(cluster, Default::default);
        c.requests.fetch_add(counts[0], Ordering::Relaxed);
        c.bytes_in.fetch_add(counts[1], Ordering::Relaxed);
        c.bytes_out.fetch_add(counts[2], Ordering::Relaxed);
    }
}

pub struct UsageFlush {
    pub state: Arc<GatewayState>,
}

impl UsageFlush {
    async fn flush(&self) {
        let s = &self.state;
        let taken = s.usage.drain();
        if taken.is_empty() {
            s.usage.forget_unserved(|id| s.routes.get(id).is_some());
            return;
        }
        let Ok(mut conn) = s.redis.connection() else {
            taken
                .into_iter()
                .for_each(|(id, c)| s.usage.give_back(id, c));
            return;
        };
        let mut pipe = redis::pipe();
        for (id, c) in &taken {
            let key = keyspace::usage(*id);
            pipe.hincr(&key, usage_fields::REQUESTS, c[0]).ignore();
            pipe.hincr(&key, usage_fields::BYTES_IN, c[1]).ignore();
            pipe.hincr(&key, usage_fields::BYTES_OUT, c[2]).ignore();
        }
        let sent =
            tokio::time::timeout(Duration::from_secs(2), pipe.query_async::<()>(&mut conn)).await;
        if !matches!(sent, Ok(Ok(()))) {
            taken
                .into_iter()
                .for_each(|(id, c)| s.usage.give_back(id, c));
        }
    }
}

#[async_trait]
impl BackgroundService for UsageFlush {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let mut every = tokio::time::interval(Duration::from_secs(1));
        loop {
            tokio::select! {
                _ = shutdown.changed() => {
                    self.flush().await;
                    return;
                }
                _ = every.tick() => self.flush().await,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_of_many_clusters_are_all_drained_and_idle_unserved_ones_forgotten() {
        let usage = Usage::default();
        let clusters: Vec<ClusterId> = (0..5_000).map(|_| ClusterId::new()).collect();
        for id in &clusters {
            usage.record(*id, 10, 20);
            usage.record(*id, 1, 2);
        }
        let drained = usage.drain();
        assert_eq!(
            drained.len(),
            clusters.len(),
            "no cluster's counts were dropped"
        );
        let total: u64 = drained.iter().map(|(_, c)| c[0]).sum();
        assert_eq!(total, 10_000);
        assert!(drained.iter().all(|(_, c)| *c == [2, 11, 22]));
        let kept = clusters[0];
        usage.forget_unserved(|id| *id == kept);
        usage.by_cluster.run_pending_tasks();
        assert_eq!(
            usage.by_cluster.entry_count(),
            1,
            "only the served cluster stays"
        );
    }
}
