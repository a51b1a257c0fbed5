//! The command-stream consumer.
//!
//! - Joins the `nebula` consumer group (created at the start of the stream, so commands
//!   queued before any worker existed are not missed).
//! - On start, finishes its own pending entries (a restarted worker keeps its name), then
//!   reads new ones with a blocking XREADGROUP on a connection of its own whose response
//!   timeout outlasts the block.
//! - While a command is in hand, re-claims it regularly (`XCLAIM … JUSTID`), so only entries
//!   of dead workers grow idle; a reaper takes those over with XAUTOCLAIM.
//! - Acknowledges only after the handler's state change is stored. A failure is retried with
//!   exponential backoff and jitter; attempts are counted in Redis, so they survive restarts;
//!   after the last one (or at once, when the error says retrying cannot help) the command is
//!   parked in the dead-letter stream and its cluster shows the failure and its reason.
//!   Every failed attempt is counted by what failed (`nebula_command_failures_total`).
//! - On shutdown it stops reading, lets the commands in hand finish, and leaves commands that
//!   are waiting for a retry pending, for itself after a restart or for another worker.

use std::collections::HashMap;
use std::sync::{Arc, LazyLock};
use std::time::{Duration, Instant};

use contract::cluster::Phase;
use contract::command::{Command, CommandEnvelope};
use contract::keyspace;
use contract::scripts;
use rand::Rng;
use redis::aio::{ConnectionManager, MultiplexedConnection};
use redis::streams::{
    StreamAutoClaimOptions, StreamAutoClaimReply, StreamReadOptions, StreamReadReply,
};
use redis::{AsyncCommands, Script, Value};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};
use tokio::task::JoinSet;

use crate::handlers::{self, HandlerError, Outcome, Worker};
use crate::metrics::Metrics;

static DEAD_LETTER: LazyLock<Script> = LazyLock::new(|| Script::new(scripts::DEAD_LETTER));

/// The command name in metrics of an entry that is no readable command.
const UNREADABLE: &str = "unreadable";

/// How long one blocking read waits for new commands.
const BLOCK: Duration = Duration::from_millis(1000);

#[derive(Debug, Clone)]
pub struct Settings {
    pub consumer: String,
    pub concurrency: usize,
    pub max_attempts: u32,
    pub backoff: Duration,
    pub backoff_max: Duration,
    pub claim_idle: Duration,
}

impl Settings {
    /// The delay before retry number `attempt` (1-based): doubling from `backoff`, capped,
    /// with jitter over its upper half so that many workers do not retry in lockstep.
    pub fn delay(&self, attempt: u32) -> Duration {
        let exp = self
            .backoff
            .saturating_mul(1u32 << attempt.saturating_sub(1).min(20))
            .min(self.backoff_max);
        let half = exp / 2;
        half + half.mul_f64(rand::rng().random_range(0.0..=1.0))
    }
}

pub struct Consumer {
    worker: Arc<Worker>,
    client: redis::Client,
    settings: Settings,
    metrics: Arc<Metrics>,
}

struct Entry {
    id: String,
    command: Option<String>,
}

fn entry(id: String, map: &HashMap<String, Value>) -> Entry {
    Entry {
        command: map
            .get(keyspace::COMMAND_FIELD)
            .and_then(|v| redis::from_redis_value_ref::<String>(v).ok()),
        id,
    }
}

impl Consumer {
    pub fn new(
        worker: Arc<Worker>,
        client: redis::Client,
        settings: Settings,
        metrics: Arc<Metrics>,
    ) -> Self {
        Self {
            worker,
            client,
            settings,
            metrics,
        }
    }

    fn conn(&self) -> ConnectionManager {
        self.worker.conn.clone()
    }

    async fn ensure_group(&self) -> redis::RedisResult<()> {
        let created: redis::RedisResult<()> = self
            .conn()
            .xgroup_create_mkstream(keyspace::command_stream(), keyspace::NEBULA_GROUP, "0")
            .await;
        match created {
            Err(e) if e.code() == Some("BUSYGROUP") => Ok(()),
            other => other,
        }
    }

    async fn reader(&self) -> redis::RedisResult<MultiplexedConnection> {
        let config = redis::AsyncConnectionConfig::new()
            .set_connection_timeout(Some(Duration::from_secs(2)))
            .set_response_timeout(Some(BLOCK + Duration::from_secs(5)));
        self.client
            .get_multiplexed_async_connection_with_config(&config)
            .await
    }

    /// Reads up to `count` entries after `id` (`>` for new ones) without blocking unless asked.
    async fn read(
        &self,
        reader: &mut MultiplexedConnection,
        id: &str,
        count: usize,
        block: bool,
    ) -> redis::RedisResult<Vec<Entry>> {
        let mut options = StreamReadOptions::default()
            .group(keyspace::NEBULA_GROUP, &self.settings.consumer)
            .count(count);
        if block {
            options = options.block(BLOCK.as_millis() as usize);
        }
        let reply: Option<StreamReadReply> = reader
            .xread_options(&[keyspace::command_stream()], &[id], &options)
            .await?;
        Ok(reply
            .into_iter()
            .flat_map(|r| r.keys)
            .flat_map(|k| k.ids)
            .map(|e| entry(e.id.clone(), &e.map))
            .collect())
    }

    /// Takes over entries idle longer than the claim threshold (their worker died).
    async fn reap(&self) -> redis::RedisResult<Vec<Entry>> {
        let reply: StreamAutoClaimReply = self
            .conn()
            .xautoclaim_options(
                keyspace::command_stream(),
                keyspace::NEBULA_GROUP,
                &self.settings.consumer,
                self.settings.claim_idle.as_millis() as u64,
                "0-0",
                StreamAutoClaimOptions::default().count(16),
            )
            .await?;
        Ok(reply
            .claimed
            .iter()
            .map(|e| entry(e.id.clone(), &e.map))
            .collect())
    }

    /// Runs until `shutdown` flips to true, then finishes the commands in hand.
    pub async fn run(self: Arc<Self>, mut shutdown: watch::Receiver<bool>) {
        let permits = Arc::new(Semaphore::new(self.settings.concurrency.max(1)));
        let mut tasks = JoinSet::new();
        let mut reader = None;
        let mut own_pending_done = false;
        let mut cursor = "0-0".to_owned();
        let mut reap_every = tokio::time::interval(self.settings.claim_idle / 2);
        reap_every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);

        loop {
            if *shutdown.borrow() {
                break;
            }
            tokio::select! {
                _ = shutdown.changed() => break,
                Some(_) = tasks.join_next(), if !tasks.is_empty() => continue,
                _ = reap_every.tick(), if own_pending_done => {
                    match self.reap().await {
                        Ok(claimed) => {
                            for e in claimed {
                                tracing::info!(id = %e.id, "claimed a command from a dead worker");
                                let Ok(permit) = permits.clone().acquire_owned().await else { break };
                                tasks.spawn(self.clone().process(e, permit, shutdown.clone()));
                            }
                        }
                        Err(e) => tracing::warn!(error = %e, "cannot claim idle commands"),
                    }
                }
                permit = permits.clone().acquire_owned() => {
                    let Ok(permit) = permit else { break };
                    if reader.is_none() {
                        match self.ensure_group().await.and(Ok(())) {
                            Ok(()) => {}
                            Err(e) => {
                                tracing::warn!(error = %e, "cannot reach the command stream; retrying");
                                drop(permit);
                                tokio::time::sleep(Duration::from_secs(1)).await;
                                continue;
                            }
                        }
                        match self.reader().await {
                            Ok(r) => reader = Some(r),
                            Err(e) => {
                                tracing::warn!(error = %e, "cannot open the stream reader; retrying");
                                drop(permit);
                                tokio::time::sleep(Duration::from_secs(1)).await;
                                continue;
                            }
                        }
                    }
                    let Some(conn) = reader.as_mut() else { continue };
                    let read = if own_pending_done {
                        self.read(conn, ">", 1, true).await
                    } else {
                        self.read(conn, &cursor, 1, false).await
                    };
                    match read {
                        Ok(entries) if entries.is_empty() => {
                            if !own_pending_done {
                                tracing::info!(consumer = %self.settings.consumer, "own pending commands handed out; reading new ones");
                                own_pending_done = true;
                            }
                        }
                        Ok(mut entries) => {
                            let e = entries.remove(0);
                            if !own_pending_done {
                                cursor = e.id.clone();
                            }
                            tasks.spawn(self.clone().process(e, permit, shutdown.clone()));
                        }
                        Err(e) => {
                            tracing::warn!(error = %e, "reading the command stream failed; retrying");
                            reader = None;
                            tokio::time::sleep(Duration::from_millis(500)).await;
                        }
                    }
                }
            }
        }
        tracing::info!(
            in_hand = tasks.len(),
            "stopping: finishing the commands in hand"
        );
        while tasks.join_next().await.is_some() {}
    }

    /// Handles one entry to its end: acknowledged, parked, or (on shutdown) left pending.
    async fn process(
        self: Arc<Self>,
        entry: Entry,
        _permit: OwnedSemaphorePermit,
        shutdown: watch::Receiver<bool>,
    ) {
        let heartbeat = tokio::spawn(heartbeat(
            self.conn(),
            entry.id.clone(),
            self.settings.consumer.clone(),
            self.settings.claim_idle / 3,
        ));
        self.process_entry(&entry, shutdown).await;
        heartbeat.abort();
    }

    async fn process_entry(&self, entry: &Entry, mut shutdown: watch::Receiver<bool>) {
        let raw = entry.command.clone().unwrap_or_default();
        let envelope = match CommandEnvelope::from_json(raw.as_bytes()) {
            Ok(e) => e,
            Err(e) => {
                let reason = format!("the command cannot be read: {e}");
                tracing::error!(id = %entry.id, %reason, "parking an unreadable command");
                self.metrics.failed(UNREADABLE, "command_unreadable");
                self.park(entry, &raw, None, &reason, 1).await;
                return;
            }
        };
        let name = envelope.command.name();
        loop {
            let attempt: u32 = match self
                .conn()
                .hincr(keyspace::command_attempts(), &entry.id, 1)
                .await
            {
                Ok(a) => a,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot count the attempt; retrying");
                    if sleep_or_stop(Duration::from_secs(1), &mut shutdown).await {
                        return;
                    }
                    continue;
                }
            };
            let started = Instant::now();
            let result = handlers::handle(&self.worker, &envelope).await;
            self.metrics.observe(name, started.elapsed());
            match result {
                Ok(outcome) => {
                    if let Outcome::Skipped(why) = &outcome {
                        tracing::info!(id = %entry.id, command = name, cluster = %envelope.command.cluster_id(), why, "nothing to do");
                    } else {
                        tracing::info!(id = %entry.id, command = name, cluster = %envelope.command.cluster_id(), attempt, "done");
                    }
                    self.metrics.finished(
                        name,
                        if outcome == Outcome::Done {
                            "done"
                        } else {
                            "skipped"
                        },
                    );
                    self.ack(entry, &mut shutdown).await;
                    return;
                }
                // Not a failed attempt: it counts neither towards the attempts nor in the
                // failures metric (it recurs every 200 ms while another worker holds the cluster).
                Err(HandlerError::Busy) => {
                    let _: redis::RedisResult<i64> = self
                        .conn()
                        .hincr(keyspace::command_attempts(), &entry.id, -1)
                        .await;
                    if sleep_or_stop(Duration::from_millis(200), &mut shutdown).await {
                        return;
                    }
                }
                Err(e) => {
                    let kind = e.kind();
                    self.metrics.failed(name, kind);
                    // The reason users read on the parked command and on the cluster.
                    let reason = e.to_string();
                    if !e.retryable() || attempt >= self.settings.max_attempts {
                        self.park(entry, &raw, Some(&envelope.command), &reason, attempt)
                            .await;
                        return;
                    }
                    let delay = self.settings.delay(attempt);
                    self.metrics.retried(name);
                    tracing::warn!(id = %entry.id, command = name, attempt, ?delay, kind, %reason, "attempt failed; retrying");
                    if sleep_or_stop(delay, &mut shutdown).await {
                        return; // left pending: picked up after restart or by another worker
                    }
                }
            }
        }
    }

    async fn ack(&self, entry: &Entry, shutdown: &mut watch::Receiver<bool>) {
        loop {
            let acked: redis::RedisResult<()> = redis::pipe()
                .atomic()
                .xack(
                    keyspace::command_stream(),
                    keyspace::NEBULA_GROUP,
                    &[&entry.id],
                )
                .hdel(keyspace::command_attempts(), &entry.id)
                .query_async(&mut self.conn())
                .await;
            match acked {
                Ok(()) => return,
                Err(e) => {
                    tracing::warn!(id = %entry.id, error = %e, "cannot acknowledge; retrying");
                    // The work is done and idempotent: if we stop now, a redelivery skips it.
                    if sleep_or_stop(Duration::from_secs(1), shutdown).await {
                        return;
                    }
                }
            }
        }
    }

    async fn park(
        &self,
        entry: &Entry,
        raw: &str,
        command: Option<&Command>,
        reason: &str,
        attempts: u32,
    ) {
        let (phase, replaces) = match command {
            Some(Command::Provision(_)) => {
                (Phase::FailedToCreate.as_str(), "CREATING,FAILED_TO_CREATE")
            }
            Some(Command::Resize(_)) => (
                Phase::FailedToUpdate.as_str(),
                "RESIZING,SCALING,FAILED_TO_UPDATE",
            ),
            Some(Command::Deprovision(_)) => (Phase::Deleting.as_str(), "DELETING"),
            None => ("", ""),
        };
        // An unreadable command names no cluster; the script reads KEYS[4] only with a phase.
        let cluster_key = command
            .map(|c| keyspace::cluster(c.cluster_id()))
            .unwrap_or_else(keyspace::command_attempts);
        let reply: redis::RedisResult<Vec<String>> = DEAD_LETTER
            .key(keyspace::command_stream())
            .key(keyspace::dead_letter_stream())
            .key(keyspace::command_attempts())
            .key(cluster_key)
            .arg(keyspace::PREFIX)
            .arg(jiff::Timestamp::now().to_string())
            .arg(&entry.id)
            .arg(raw)
            .arg(reason)
            .arg(attempts)
            .arg(keyspace::NEBULA_GROUP)
            .arg(phase)
            .arg(replaces)
            .invoke_async(&mut self.conn())
            .await;
        match reply {
            Ok(r) => {
                self.metrics.finished(
                    command.map(Command::name).unwrap_or(UNREADABLE),
                    "dead_lettered",
                );
                tracing::error!(id = %entry.id, attempts, %reason, dead_letter = ?r.get(1), "command parked in the dead-letter stream");
            }
            // Left pending: the next attempt (or another worker) parks it.
            Err(e) => tracing::error!(id = %entry.id, error = %e, "cannot park the command"),
        }
    }
}

/// Sleeps, or returns `true` at once if shutdown is asked for.
async fn sleep_or_stop(d: Duration, shutdown: &mut watch::Receiver<bool>) -> bool {
    if *shutdown.borrow() {
        return true;
    }
    tokio::select! {
        _ = tokio::time::sleep(d) => false,
        _ = shutdown.changed() => true,
    }
}

/// Keeps an entry ours while we work on it: claiming it again resets its idle time.
async fn heartbeat(mut conn: ConnectionManager, id: String, consumer: String, every: Duration) {
    loop {
        tokio::time::sleep(every).await;
        let claimed: redis::RedisResult<Value> = redis::cmd("XCLAIM")
            .arg(keyspace::command_stream())
            .arg(keyspace::NEBULA_GROUP)
            .arg(&consumer)
            .arg(0)
            .arg(&id)
            .arg("JUSTID")
            .query_async(&mut conn)
            .await;
        if let Err(e) = claimed {
            tracing::warn!(%id, error = %e, "cannot refresh the command's claim");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> Settings {
        Settings {
            consumer: "t".into(),
            concurrency: 1,
            max_attempts: 5,
            backoff: Duration::from_millis(100),
            backoff_max: Duration::from_millis(1000),
            claim_idle: Duration::from_secs(30),
        }
    }

    #[test]
    fn delays_double_with_jitter_and_stop_at_the_cap() {
        let s = settings();
        for (attempt, full) in [
            (1u32, 100u64),
            (2, 200),
            (3, 400),
            (4, 800),
            (5, 1000),
            (30, 1000),
        ] {
            for _ in 0..200 {
                let d = s.delay(attempt).as_millis() as u64;
                assert!(
                    d >= full / 2 && d <= full,
                    "attempt {attempt}: {d} ms not in [{}, {full}]",
                    full / 2
                );
            }
        }
        let spread: std::collections::HashSet<_> = (0..50).map(|_| s.delay(3)).collect();
        assert!(spread.len() > 1, "no jitter");
    }

    use contract::command::{DbConfiguration, ProvisionDbCluster};
    use contract::region::Driver;

    use crate::driver::{DriverError, Drivers};
    use crate::testing::{Harness, StubDriver, sample};

    /// Queues a provision of `c`, runs a consumer until the command is parked, and returns
    /// the dead-letter entry and the metrics.
    async fn park_one(
        h: &Harness,
        c: &contract::cluster::Cluster,
        max_attempts: u32,
    ) -> (HashMap<String, String>, String) {
        let command = Command::Provision(ProvisionDbCluster {
            account_id: c.account_id,
            cloud_provider: c.cloud_provider.clone(),
            cloud_region: c.cloud_region.clone(),
            cluster_id: c.id,
            cluster_name: c.name.clone(),
            cluster_version: c.version.clone(),
            db_configuration: DbConfiguration {
                cluster_endpoint: c.endpoint.clone(),
                cluster_id: c.id,
                num_nodes: c.configuration.num_nodes,
                node_configuration: c.configuration.node_configuration,
            },
        });
        let json = CommandEnvelope::new(command, None, jiff::Timestamp::now())
            .to_json()
            .unwrap();
        let _: String = h
            .conn()
            .xadd(
                keyspace::command_stream(),
                "*",
                &[(keyspace::COMMAND_FIELD, json)],
            )
            .await
            .unwrap();
        let metrics = Arc::new(Metrics::new().unwrap());
        let settings = Settings {
            max_attempts,
            backoff: Duration::from_millis(1),
            backoff_max: Duration::from_millis(5),
            ..settings()
        };
        let consumer = Arc::new(Consumer::new(
            h.worker.clone(),
            h.client.clone(),
            settings,
            metrics.clone(),
        ));
        let (stop, stopping) = watch::channel(false);
        let running = tokio::spawn(consumer.run(stopping));
        let mut parked = Vec::new();
        for _ in 0..200 {
            let reply: StreamReadReply = h
                .conn()
                .xread(&[keyspace::dead_letter_stream()], &["0"])
                .await
                .unwrap();
            parked = reply.keys.into_iter().flat_map(|k| k.ids).collect();
            if !parked.is_empty() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        let _ = stop.send(true);
        running.await.unwrap();
        assert_eq!(parked.len(), 1, "the command was not parked");
        let fields = parked[0]
            .map
            .iter()
            .map(|(k, v)| (k.clone(), redis::from_redis_value_ref::<String>(v).unwrap()))
            .collect();
        (fields, metrics.render())
    }

    #[tokio::test]
    async fn a_permanent_driver_error_parks_at_once_and_is_counted_by_kind() {
        let stub = StubDriver::new(|| DriverError::Unsupported("this driver cannot provision"));
        let h = Harness::start(Drivers::default().with(Driver::Kubernetes, Arc::new(stub))).await;
        h.region(Driver::Kubernetes).await;
        let c = h.cluster(Phase::Creating, 1).await;

        let (parked, metrics) = park_one(&h, &c, 5).await;
        assert_eq!(
            parked["attempts"], "1",
            "retrying cannot help: parked at once"
        );
        assert_eq!(parked["error"], "this driver cannot provision");
        assert_eq!(
            h.cluster_field(c.id, "phase").await.as_deref(),
            Some("FAILED_TO_CREATE")
        );
        assert_eq!(
            h.cluster_field(c.id, "reason").await.as_deref(),
            Some("this driver cannot provision")
        );
        let name = ("name", "ProvisionDBCluster");
        assert_eq!(
            sample(
                &metrics,
                "nebula_command_failures_total",
                &[name, ("kind", "unsupported")]
            ),
            Some(1.0),
            "{metrics}"
        );
        assert_eq!(
            sample(&metrics, "nebula_command_retries_total", &[name]),
            None
        );
    }

    #[tokio::test]
    async fn a_retryable_error_is_retried_then_parked_and_every_attempt_counted() {
        // No region registered: the worker cannot tell which driver to use yet.
        let h = Harness::start(Drivers::default()).await;
        let c = h.cluster(Phase::Creating, 1).await;

        let (parked, metrics) = park_one(&h, &c, 3).await;
        assert_eq!(parked["attempts"], "3");
        assert_eq!(parked["error"], "region test/r1 is not registered");
        let name = ("name", "ProvisionDBCluster");
        assert_eq!(
            sample(
                &metrics,
                "nebula_command_failures_total",
                &[name, ("kind", "region_unknown")]
            ),
            Some(3.0),
            "{metrics}"
        );
        assert_eq!(
            sample(&metrics, "nebula_command_retries_total", &[name]),
            Some(2.0)
        );
        assert_eq!(
            sample(
                &metrics,
                "nebula_commands_total",
                &[name, ("outcome", "dead_lettered")]
            ),
            Some(1.0)
        );
    }
}
