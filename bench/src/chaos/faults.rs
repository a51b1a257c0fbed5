//! The fault run: load through GateKeeper to a known 3-node cluster (reads and writes over
//! TLS) and two tenants cycling clusters through Orion, while, one after another:
//!
//! 1. Nebula is killed (-9) and started again 2 s later;
//! 2. Redis is killed (-9) and started again 3 s later (from its AOF);
//! 3. Redis is stopped (SIGSTOP) for 10 s, then continued;
//! 4. one Qdrant node of the known cluster is killed (-9).
//!
//! What each fault cost: requests that failed at the gateway while it lasted (and how many
//! were in flight to the killed node); after Redis returns, how long until the gateway has
//! resynced and until a change made then (a key revoked through Orion) is enforced; and, at
//! the end, whether every command Orion accepted ended in its phase exactly once (the node
//! processes counted when it got there, none left for deleted clusters, nothing pending on
//! the command stream, nothing dead-lettered).

use std::fmt::Write as _;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::Method;

use super::control::{Accepted, Tenant};
use super::traffic::{self, Request, Traffic};
use crate::harness::HarnessError;
use crate::harness::load::{self, Target};
use crate::harness::platform::{Gatekeeper, Lyra};
use crate::harness::procs::Pinning;

#[derive(Debug, Clone)]
pub struct FaultOptions {
    /// Quiet time before, between and after the faults.
    pub quiet: Duration,
    /// Keep-alive connections sending reads (writes get half as many).
    pub connections: usize,
    /// Pause between a connection's requests.
    pub pause: Duration,
    pub out: PathBuf,
}

/// The faults, in the order they are made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FaultKind {
    NebulaKilled,
    RedisKilled,
    RedisStopped,
    NodeKilled,
}

impl FaultKind {
    pub fn name(self) -> &'static str {
        match self {
            FaultKind::NebulaKilled => "kill -9 Nebula, restart after 2 s",
            FaultKind::RedisKilled => "kill -9 Redis, restart after 3 s (AOF)",
            FaultKind::RedisStopped => "SIGSTOP Redis for 10 s",
            FaultKind::NodeKilled => "kill -9 one Qdrant node of three",
        }
    }

    fn takes_redis(self) -> bool {
        matches!(self, FaultKind::RedisKilled | FaultKind::RedisStopped)
    }
}

/// One fault: what, when it began, when the harness undid it.
#[derive(Debug, Clone)]
pub struct Fault {
    pub kind: FaultKind,
    pub start: Instant,
    pub end: Instant,
    /// For Redis faults: Redis back → the gateway resynced; → a revocation made then enforced.
    pub resync: Option<Duration>,
    pub converged: Option<Duration>,
    /// Whether the gateway saw Redis go (a stopped Redis may keep its connections open).
    pub noticed: bool,
}

fn redis_fault(e: impl std::fmt::Display) -> HarnessError {
    HarnessError::Setup(format!("redis-server: {e}"))
}

/// Polls GateKeeper's metrics until `gatekeeper_redis_connected` reads `want`.
async fn redis_connected(
    http: &reqwest::Client,
    gk: &Gatekeeper,
    want: bool,
    within: Duration,
) -> Option<Instant> {
    let url = format!("http://127.0.0.1:{}/metrics", gk.admin);
    let line = format!("gatekeeper_redis_connected {}", u8::from(want));
    let started = Instant::now();
    while started.elapsed() < within {
        if let Ok(r) = http.get(&url).send().await
            && let Ok(text) = r.text().await
            && text.lines().any(|l| l == line)
        {
            return Some(Instant::now());
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    None
}

/// One request on a fresh connection, given up after [`traffic::REQUEST_TIMEOUT`].
async fn once(target: &Target) -> Option<u16> {
    match tokio::time::timeout(traffic::REQUEST_TIMEOUT, load::once(target)).await {
        Ok(Ok((status, _))) => Some(status),
        _ => None,
    }
}

/// Revokes a fresh key as soon as Orion can, and returns when the gateway refuses it.
async fn revocation_enforced(lyra: &Lyra, probe: &Target, key_id: &str) -> Option<Instant> {
    let started = Instant::now();
    while lyra.revoke(key_id).await.is_err() {
        if started.elapsed() > Duration::from_secs(60) {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    while started.elapsed() < Duration::from_secs(60) {
        if once(probe).await == Some(401) {
            return Some(Instant::now());
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    None
}

fn target(
    gk: &Gatekeeper,
    ca: &str,
    host: &str,
    key: &str,
    method: Method,
    path: &str,
    body: &str,
) -> Result<Target, HarnessError> {
    let tls = load::tls_client(ca, &[b"http/1.1"]).map_err(HarnessError::Setup)?;
    let mut t = Target::get(
        ([127, 0, 0, 1], gk.rest).into(),
        &format!("{host}:{}", gk.rest),
        path,
    );
    t.tls = Some((tls, host.to_owned()));
    t.method = method;
    t.body = Bytes::from(body.to_owned());
    Ok(t.header("content-type", "application/json")
        .header("api-key", key))
}

/// Runs the faults; the report (Markdown) and the promises broken, if any.
pub async fn run(opts: FaultOptions) -> Result<(String, Vec<String>), HarnessError> {
    let mut lyra = Lyra::start(Pinning::detect()).await?;
    let gk = lyra.gatekeeper("gatekeeper", &[]).await?;
    let ca = lyra.ca_pem()?;
    let (known, host, key) = lyra.healthy_cluster("known", 3).await?;
    let collection = target(
        &gk,
        &ca,
        &host,
        &key,
        Method::PUT,
        "/collections/chaos",
        r#"{"vectors": {"size": 2, "distance": "Dot"}}"#,
    )?;
    crate::harness::procs::until(
        "the known cluster's collection made",
        Duration::from_secs(30),
        || {
            let c = &collection;
            async move { once(c).await == Some(200) }
        },
    )
    .await?;
    let reads = target(&gk, &ca, &host, &key, Method::GET, "/collections/chaos", "")?;
    let writes = target(
        &gk,
        &ca,
        &host,
        &key,
        Method::PUT,
        "/collections/chaos/points?wait=true",
        r#"{"points": [{"id": 1, "vector": [0.1, 0.9]}]}"#,
    )?;
    let http = reqwest::Client::new();
    let tenant = Tenant {
        http: http.clone(),
        api: lyra.api.clone(),
        token: lyra.token.clone(),
        account: lyra.account.clone(),
        nodes_dir: lyra.nodes_dir(),
    };

    let began = Instant::now();
    let read_load = Traffic::start(reads, opts.connections, opts.pause);
    let write_load = Traffic::start(writes, opts.connections.div_ceil(2), opts.pause);
    let stop = Arc::new(AtomicBool::new(false));
    let tenants: Vec<_> = (0..2)
        .map(|i| tokio::spawn(tenant.clone().churn(format!("chaos-{i}"), stop.clone())))
        .collect();
    tokio::time::sleep(opts.quiet).await;

    let mut faults = Vec::new();
    // 1. Nebula dies mid-command and comes back.
    let start = Instant::now();
    tokio::task::block_in_place(|| lyra.kill_nebula())?;
    tokio::time::sleep(Duration::from_secs(2)).await;
    tokio::task::block_in_place(|| lyra.restart_nebula())?;
    faults.push(Fault {
        kind: FaultKind::NebulaKilled,
        start,
        end: Instant::now(),
        resync: None,
        converged: None,
        noticed: false,
    });
    tokio::time::sleep(opts.quiet).await;

    // 2 and 3. Redis killed, then stopped; each time a key is revoked as soon as it is back.
    for kind in [FaultKind::RedisKilled, FaultKind::RedisStopped] {
        let (probe_key, probe_id) = lyra.new_key("probe").await?;
        let probe = target(
            &gk,
            &ca,
            &lyra.host,
            &probe_key,
            Method::GET,
            "/collections",
            "",
        )?;
        let start = Instant::now();
        let noticed = if kind == FaultKind::RedisKilled {
            tokio::task::block_in_place(|| lyra.redis.kill()).map_err(redis_fault)?;
            let noticed = redis_connected(&http, &gk, false, Duration::from_secs(3)).await;
            tokio::time::sleep(Duration::from_secs(3).saturating_sub(start.elapsed())).await;
            tokio::task::block_in_place(|| lyra.redis.restart()).map_err(redis_fault)?;
            noticed.is_some()
        } else {
            tokio::task::block_in_place(|| lyra.redis.pause()).map_err(redis_fault)?;
            tokio::time::sleep(Duration::from_secs(10)).await;
            let noticed = redis_connected(&http, &gk, false, Duration::from_millis(50)).await;
            tokio::task::block_in_place(|| lyra.redis.resume()).map_err(redis_fault)?;
            noticed.is_some()
        };
        let back = Instant::now();
        let (resynced, enforced) = tokio::join!(
            redis_connected(&http, &gk, true, Duration::from_secs(60)),
            revocation_enforced(&lyra, &probe, &probe_id)
        );
        faults.push(Fault {
            kind,
            start,
            end: back,
            resync: resynced.map(|t| t - back),
            converged: enforced.map(|t| t - back),
            noticed,
        });
        tokio::time::sleep(opts.quiet).await;
    }

    // 4. A node of the known cluster dies.
    let nodes = lyra.node_pids(&known);
    let victim = match nodes.as_slice() {
        [first, _, _] => *first,
        _ => {
            return Err(HarnessError::Setup(format!(
                "the known cluster has {} node processes, expected 3",
                nodes.len()
            )));
        }
    };
    let start = Instant::now();
    let killed = libc::pid_t::try_from(victim)
        // SAFETY: kill(2) on a node process this run started (found by its storage path).
        .is_ok_and(|pid| unsafe { libc::kill(pid, libc::SIGKILL) } == 0);
    tokio::time::sleep(Duration::from_millis(100)).await;
    let node_gone = killed && !testkit::procs::alive(victim);
    let nodes_after_kill = lyra.node_pids(&known).len();
    faults.push(Fault {
        kind: FaultKind::NodeKilled,
        start,
        end: start,
        resync: None,
        converged: None,
        noticed: false,
    });
    tokio::time::sleep(opts.quiet).await;

    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let ended = Instant::now();
    let (reads, reads_died) = read_load.stop().await;
    let (writes, writes_died) = write_load.stop().await;
    let mut commands: Vec<Accepted> = Vec::new();
    let mut tenant_errors = Vec::new();
    for t in tenants {
        match t.await {
            Ok((log, errors)) => {
                commands.extend(log);
                tenant_errors.extend(errors);
            }
            Err(e) => tenant_errors.push(format!("a tenant died: {e}")),
        }
    }
    let finished = Instant::now();

    // Exactly once: every accepted command ended, with the nodes it should have had; no
    // deleted cluster keeps a process; nothing pending or dead-lettered.
    let lost = commands.iter().filter(|c| c.ended.is_none()).count();
    let wrong_nodes: Vec<String> = commands
        .iter()
        .filter_map(|c| {
            let (_, n) = c.ended?;
            (n != c.nodes)
                .then(|| format!("{} of {}: {n} nodes, want {}", c.op, c.cluster, c.nodes))
        })
        .collect();
    let orphans: usize = commands
        .iter()
        .filter(|c| c.op == "delete" && c.ended.is_some())
        .map(|c| lyra.node_pids(&c.cluster).len())
        .sum();
    let mut redis = lyra
        .redis
        .client()
        .and_then(|c| c.get_connection())
        .map_err(|e| HarnessError::Setup(format!("redis: {e}")))?;
    // Nebula acknowledges a command just after the phase it set is visible: give the last
    // acknowledgements a moment before calling anything pending.
    let mut pending = -1;
    let asked = Instant::now();
    while asked.elapsed() < Duration::from_secs(10) {
        let summary: Vec<redis::Value> = redis::cmd("XPENDING")
            .arg(contract::keyspace::command_stream())
            .arg(contract::keyspace::NEBULA_GROUP)
            .query(&mut redis)
            .map_err(|e| HarnessError::Setup(format!("XPENDING: {e}")))?;
        pending = match summary.first() {
            Some(redis::Value::Int(n)) => *n,
            _ => -1,
        };
        if pending == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // A command run twice (a create retried after its first try was lost) makes a cluster no
    // tenant knows of: every cluster with live nodes must be one somebody asked for and kept.
    let deleted: Vec<&str> = commands
        .iter()
        .filter(|c| c.op == "delete" && c.ended.is_some())
        .map(|c| c.cluster.as_str())
        .collect();
    let mut kept: Vec<String> = commands
        .iter()
        .map(|c| c.cluster.clone())
        .filter(|c| !deleted.contains(&c.as_str()))
        .collect();
    kept.extend([known.clone(), lyra.cluster.to_string()]);
    let unasked: Vec<String> = std::fs::read_dir(lyra.nodes_dir())
        .map(|d| {
            d.filter_map(|e| e.ok()?.file_name().into_string().ok())
                .filter(|c| !kept.contains(c) && !lyra.node_pids(c).is_empty())
                .collect()
        })
        .unwrap_or_default();
    let dead: i64 = redis::cmd("XLEN")
        .arg(contract::keyspace::dead_letter_stream())
        .query(&mut redis)
        .map_err(|e| HarnessError::Setup(format!("XLEN: {e}")))?;

    let settle = Duration::from_secs(2);
    let mut md = String::new();
    let _ = writeln!(md, "# Chaos under load\n");
    let _ = writeln!(
        md,
        "{} reads and {} writes through GateKeeper (TLS, keep-alive, {} + {} connections) to a 3-node cluster; \
         {} commands accepted by Orion from two tenants cycling clusters (create 1 node, resize to 2, delete). \
         Run: {:.0} s.\n",
        reads.len(),
        writes.len(),
        opts.connections,
        opts.connections.div_ceil(2),
        commands.len(),
        (ended - began).as_secs_f64()
    );
    let _ = writeln!(
        md,
        "| fault | reads failed | writes failed | requests in flight at the fault | commands in flight at the fault | gateway resynced after Redis returned | revocation enforced after Redis returned |"
    );
    let _ = writeln!(md, "|---|---|---|---|---|---|---|");
    let ms = |d: Option<Duration>| {
        d.map_or("-".to_owned(), |d| {
            format!("{:.0} ms", d.as_secs_f64() * 1000.0)
        })
    };
    // Promises broken (not speed: a slow resync is reported, never judged here).
    let mut broken: Vec<String> = Vec::new();
    let mut windows = Vec::new();
    for f in &faults {
        // A fault's window: from its start until two seconds after the harness undid it.
        let to = f.end + settle;
        windows.push((f.start, to));
        let (rb, ra) = traffic::failures_during(&reads, f.start, to);
        let (wb, wa) = traffic::failures_during(&writes, f.start, to);
        let flight =
            traffic::in_flight_at(&reads, f.start) + traffic::in_flight_at(&writes, f.start);
        // Commands Orion had accepted that had not ended when the fault began.
        let commands_in_flight = commands
            .iter()
            .filter(|c| c.accepted <= f.start && c.ended.is_none_or(|(t, _)| t > f.start))
            .count();
        if ra == 0 || wa == 0 {
            broken.push(format!("{}: no traffic while it lasted", f.kind.name()));
        }
        if f.kind == FaultKind::NodeKilled {
            // Requests in flight to the killed node may fail; every one sent after it died
            // must find another node.
            let failed_after = traffic::failed_sent_between(&reads, f.start, to)
                + traffic::failed_sent_between(&writes, f.start, to);
            if failed_after > 0 {
                broken.push(format!(
                    "{}: {failed_after} requests sent after the node died failed",
                    f.kind.name()
                ));
            }
            if !node_gone {
                broken.push(format!("{}: the node did not die", f.kind.name()));
            }
        } else if rb + wb > 0 {
            // GateKeeper serves known clusters from memory, without Redis or Nebula.
            broken.push(format!("{}: {} requests failed", f.kind.name(), rb + wb));
        }
        if f.kind.takes_redis() && f.converged.is_none() {
            broken.push(format!(
                "{}: a revocation made after it was never enforced",
                f.kind.name()
            ));
        }
        let _ = writeln!(
            md,
            "| {} | {rb} of {ra} | {wb} of {wa} | {flight} | {commands_in_flight} | {} | {} |",
            f.kind.name(),
            if f.kind.takes_redis() && !f.noticed {
                "kept its connection".to_owned()
            } else {
                ms(f.resync)
            },
            ms(f.converged)
        );
    }
    let outside = |log: &[Request]| {
        log.iter()
            .filter(|r| !windows.iter().any(|(a, b)| r.sent < *b && r.done > *a))
            .filter(|r| r.outcome != traffic::Outcome::Ok)
            .count()
    };
    let _ = writeln!(
        md,
        "\nThe known cluster had {} node processes before one was killed, {nodes_after_kill} just after, {} at the end.",
        nodes.len(),
        lyra.node_pids(&known).len()
    );
    let _ = writeln!(
        md,
        "\nOutside the faults' windows: {} reads and {} writes failed.\n",
        outside(&reads),
        outside(&writes)
    );
    let _ = writeln!(
        md,
        "| commands | accepted | ended in their phase | lost | wrong node count | processes left by deleted clusters | pending on the stream | dead-lettered |"
    );
    let _ = writeln!(md, "|---|---|---|---|---|---|---|---|");
    let _ = writeln!(
        md,
        "| create, resize, delete | {} | {} | {lost} | {} | {orphans} | {pending} | {dead} |",
        commands.len(),
        commands.len() - lost,
        wrong_nodes.len()
    );
    let mut took: Vec<f64> = commands
        .iter()
        .filter_map(|c| c.ended.map(|(t, _)| (t - c.accepted).as_secs_f64()))
        .collect();
    took.sort_by(f64::total_cmp);
    if let (Some(median), Some(slowest)) = (took.get(took.len() / 2), took.last()) {
        let _ = writeln!(
            md,
            "\nFrom 202 to the final phase: median {:.2} s, slowest {slowest:.2} s.",
            median
        );
    }
    let _ = writeln!(
        md,
        "\nClusters with live nodes that no tenant asked for or kept (a command run twice): {}.",
        unasked.len()
    );
    let retried: u32 = commands.iter().map(|c| c.unanswered).sum();
    let _ = writeln!(
        md,
        "\nRequests to Orion sent again with their Idempotency-Key after a 503 or a lost connection: {retried}."
    );
    for w in &wrong_nodes {
        let _ = writeln!(md, "- {w}");
    }
    for e in &tenant_errors {
        let _ = writeln!(md, "- tenant error: {e}");
    }
    let _ = writeln!(
        md,
        "\nTeardown took {:.1} s.",
        (finished - ended).as_secs_f64()
    );
    let outside_failed = outside(&reads) + outside(&writes);
    for (broke, what) in [
        (
            outside_failed > 0,
            format!("{outside_failed} requests failed outside any fault"),
        ),
        (lost > 0, format!("{lost} accepted commands never ended")),
        (
            !wrong_nodes.is_empty(),
            format!(
                "{} commands ended with the wrong node count",
                wrong_nodes.len()
            ),
        ),
        (
            orphans > 0,
            format!("{orphans} node processes outlived their deleted clusters"),
        ),
        (
            pending != 0,
            format!("{pending} commands left pending on the stream"),
        ),
        (dead != 0, format!("{dead} commands dead-lettered")),
        (
            !tenant_errors.is_empty(),
            format!("{} tenant errors", tenant_errors.len()),
        ),
        (commands.is_empty(), "no command was accepted".to_owned()),
        (
            !unasked.is_empty(),
            format!(
                "clusters nobody asked for have nodes: {}",
                unasked.join(", ")
            ),
        ),
        (
            reads_died + writes_died > 0,
            format!("{} traffic clients died", reads_died + writes_died),
        ),
    ] {
        if broke {
            broken.push(what);
        }
    }
    if broken.is_empty() {
        let _ = writeln!(md, "\nEvery promise held.");
    } else {
        let _ = writeln!(md, "\nPromises broken:");
        for b in &broken {
            let _ = writeln!(md, "- {b}");
        }
    }

    std::fs::create_dir_all(&opts.out)
        .map_err(|e| HarnessError::Setup(format!("{}: {e}", opts.out.display())))?;
    std::fs::write(opts.out.join("chaos.md"), &md)
        .map_err(|e| HarnessError::Setup(e.to_string()))?;
    let marks: Vec<(String, f64, f64)> = faults
        .iter()
        .zip(&windows)
        .map(|(f, (a, b))| {
            (
                f.kind.name().to_owned(),
                (*a - began).as_secs_f64(),
                (*b - began).as_secs_f64(),
            )
        })
        .collect();
    super::chart::timeline(
        &opts.out.join("chaos.png"),
        "Chaos under load: requests through GateKeeper per 250 ms",
        began,
        &[("reads", &reads), ("writes", &writes)],
        &marks,
    )?;
    drop(gk);
    Ok((md, broken))
}
