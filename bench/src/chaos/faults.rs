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
use http::{HeaderMap, Method};

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

/// One fault: what, when it began, when the harness undid it.
#[derive(Debug, Clone)]
pub struct Fault {
    pub name: &'static str,
    pub start: Instant,
    pub end: Instant,
    /// For Redis faults: Redis back → the gateway resynced; → a revocation made then enforced.
    pub resync: Option<Duration>,
    pub converged: Option<Duration>,
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
        if let Ok((401, _)) = load::once(probe).await {
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
    let mut headers = HeaderMap::new();
    headers.insert(
        "content-type",
        http::HeaderValue::from_static("application/json"),
    );
    Ok(Target {
        addr: ([127, 0, 0, 1], gk.rest).into(),
        tls: Some((tls, host.to_owned())),
        authority: format!("{host}:{}", gk.rest),
        method,
        path: path.to_owned(),
        headers,
        body: Bytes::from(body.to_owned()),
        h2: false,
        grpc: false,
    }
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
            async move { matches!(load::once(c).await, Ok((200, _))) }
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
    lyra.kill_nebula()?;
    tokio::time::sleep(Duration::from_secs(2)).await;
    lyra.restart_nebula()?;
    faults.push(Fault {
        name: "kill -9 Nebula, restart after 2 s",
        start,
        end: Instant::now(),
        resync: None,
        converged: None,
    });
    tokio::time::sleep(opts.quiet).await;

    // 2 and 3. Redis killed, then stopped; each time a key is revoked as soon as it is back.
    for (name, kill) in [
        ("kill -9 Redis, restart after 3 s (AOF)", true),
        ("SIGSTOP Redis for 10 s", false),
    ] {
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
        if kill {
            lyra.redis.kill().map_err(redis_fault)?;
            redis_connected(&http, &gk, false, Duration::from_secs(10)).await;
            tokio::time::sleep(Duration::from_secs(3).saturating_sub(start.elapsed())).await;
            lyra.redis.restart().map_err(redis_fault)?;
        } else {
            lyra.redis.pause().map_err(redis_fault)?;
            tokio::time::sleep(Duration::from_secs(10)).await;
            lyra.redis.resume().map_err(redis_fault)?;
        }
        let back = Instant::now();
        let (resynced, enforced) = tokio::join!(
            redis_connected(&http, &gk, true, Duration::from_secs(60)),
            revocation_enforced(&lyra, &probe, &probe_id)
        );
        faults.push(Fault {
            name,
            start,
            end: back,
            resync: resynced.map(|t| t - back),
            converged: enforced.map(|t| t - back),
        });
        tokio::time::sleep(opts.quiet).await;
    }

    // 4. A node of the known cluster dies.
    let nodes = lyra.node_pids(&known);
    let Some(pid) = nodes.first().and_then(|p| libc::pid_t::try_from(*p).ok()) else {
        return Err(HarnessError::Setup(format!(
            "the known cluster has {} node processes, expected 3",
            nodes.len()
        )));
    };
    let start = Instant::now();
    // SAFETY: kill(2) on a node process this run started (found by its storage path).
    unsafe { libc::kill(pid, libc::SIGKILL) };
    tokio::time::sleep(Duration::from_millis(100)).await;
    let nodes_after_kill = lyra.node_pids(&known).len();
    faults.push(Fault {
        name: "kill -9 one Qdrant node of three",
        start,
        end: start,
        resync: None,
        converged: None,
    });
    tokio::time::sleep(opts.quiet).await;

    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let ended = Instant::now();
    let reads = read_load.stop().await;
    let writes = write_load.stop().await;
    let mut commands: Vec<Accepted> = Vec::new();
    let mut tenant_errors = Vec::new();
    for t in tenants {
        if let Ok((log, errors)) = t.await {
            commands.extend(log);
            tenant_errors.extend(errors);
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
    let pending: Vec<redis::Value> = redis::cmd("XPENDING")
        .arg(contract::keyspace::command_stream())
        .arg(contract::keyspace::NEBULA_GROUP)
        .query(&mut redis)
        .map_err(|e| HarnessError::Setup(format!("XPENDING: {e}")))?;
    let pending = match pending.first() {
        Some(redis::Value::Int(n)) => *n,
        _ => -1,
    };
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
        let (rb, ra) = traffic::failures_between(&reads, f.start, to);
        let (wb, wa) = traffic::failures_between(&writes, f.start, to);
        let flight =
            traffic::in_flight_at(&reads, f.start) + traffic::in_flight_at(&writes, f.start);
        // Commands Orion had accepted that had not ended when the fault began.
        let commands_in_flight = commands
            .iter()
            .filter(|c| c.accepted <= f.start && c.ended.is_none_or(|(t, _)| t > f.start))
            .count();
        let failed = rb + wb;
        // Only the killed node's in-flight requests may fail; nothing else here needs a node
        // to die, and GateKeeper serves known clusters from memory without Redis or Nebula.
        let allowed = if f.name.contains("node") { flight } else { 0 };
        if failed > allowed {
            broken.push(format!(
                "{}: {failed} requests failed (allowed {allowed})",
                f.name
            ));
        }
        if f.name.contains("Redis") && (f.resync.is_none() || f.converged.is_none()) {
            broken.push(format!("{}: the gateway never caught up", f.name));
        }
        let _ = writeln!(
            md,
            "| {} | {rb} of {ra} | {wb} of {wa} | {flight} | {commands_in_flight} | {} | {} |",
            f.name,
            ms(f.resync),
            ms(f.converged)
        );
    }
    let outside = |log: &[Request]| {
        log.iter()
            .filter(|r| !windows.iter().any(|(a, b)| r.sent >= *a && r.sent < *b))
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
                f.name.to_owned(),
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
