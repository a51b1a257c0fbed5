//! (8) Scale: one gateway fed `--routes` clusters (default 100k) and `--revoked` revoked keys
//! (default 1M): resident memory, time to its first full sync (start to ready), and the cost
//! of a route lookup seen end to end: throughput on one real cluster with 1k routes in the
//! table vs with all of them.

use std::time::Instant;

use contract::ids::{AccountId, ClusterId, KeyId};
use contract::keyscheme::SecretKind;
use contract::route::{NodeEndpoint, RateLimits, RouteRecord, UpstreamCredentials};
use contract::seal::Keyring;
use testkit::RedisServer;

use super::*;

fn setup<E: std::fmt::Display>(e: E) -> HarnessError {
    HarnessError::Setup(format!("scale: {e}"))
}

/// A Redis holding the real cluster's route plus `routes - 1` others and `revoked` keys.
async fn fed(ctx: &Ctx, routes: usize, revoked: usize) -> Result<RedisServer, HarnessError> {
    let redis = RedisServer::start().map_err(setup)?;
    let mut to = redis
        .client()
        .map_err(setup)?
        .get_multiplexed_async_connection()
        .await
        .map_err(setup)?;
    let mut from = ctx
        .lyra
        .redis
        .client()
        .map_err(setup)?
        .get_multiplexed_async_connection()
        .await
        .map_err(setup)?;
    let real: String = redis::cmd("HGET")
        .arg(contract::keyspace::routes())
        .arg(ctx.lyra.cluster.to_string())
        .query_async(&mut from)
        .await
        .map_err(setup)?;
    redis::cmd("HSET")
        .arg(contract::keyspace::routes())
        .arg(ctx.lyra.cluster.to_string())
        .arg(real)
        .query_async::<()>(&mut to)
        .await
        .map_err(setup)?;
    let keyring = Keyring::from_config(&ctx.lyra.master_key, &[]).map_err(setup)?;
    let secret = contract::keyscheme::ClusterSecret::generate().map_err(setup)?;
    let mut pipe = redis::pipe();
    for i in 1..routes {
        let id = ClusterId::new();
        let seal =
            |kind: SecretKind| keyring.seal(secret.expose().as_bytes(), &kind.seal_context(id));
        let record = RouteRecord {
            cluster_id: id,
            account_id: AccountId::new(),
            host: format!("{id}.dev.local.localhost"),
            phase: contract::cluster::Phase::Healthy,
            nodes: vec![NodeEndpoint {
                rest: "127.0.0.1:9".into(),
                grpc: "127.0.0.1:9".into(),
            }],
            credentials: UpstreamCredentials {
                read_write: seal(SecretKind::ReadWrite).map_err(setup)?,
                read_only: seal(SecretKind::ReadOnly).map_err(setup)?,
            },
            limits: RateLimits::default(),
            version: i as u64,
        };
        let json = serde_json::to_string(&record).map_err(setup)?;
        pipe.hset(contract::keyspace::routes(), id.to_string(), json)
            .ignore();
        if i.is_multiple_of(2_000) {
            pipe.query_async::<()>(&mut to).await.map_err(setup)?;
            pipe = redis::pipe();
        }
    }
    if !(routes - 1).is_multiple_of(2_000) {
        pipe.query_async::<()>(&mut to).await.map_err(setup)?;
    }
    let mut pipe = redis::pipe();
    for i in 0..revoked {
        pipe.cmd("ZADD")
            .arg(contract::keyspace::revoked_keys())
            .arg("+inf")
            .arg(KeyId::new().to_string())
            .ignore();
        if (i + 1).is_multiple_of(20_000) {
            pipe.query_async::<()>(&mut to).await.map_err(setup)?;
            pipe = redis::pipe();
        }
    }
    if !revoked.is_multiple_of(20_000) {
        pipe.query_async::<()>(&mut to).await.map_err(setup)?;
    }
    Ok(redis)
}

pub async fn run(ctx: &Ctx) -> Result<Report, HarnessError> {
    let mut report = ctx.report(
        Scenario::Scale,
        "Scale: routes and revoked keys in one gateway",
    );
    let (routes, revoked) = (ctx.opts.routes.max(2), ctx.opts.revoked);
    // The small table: 1k routes, or a tenth of a smaller run.
    let small = if routes > 1_000 {
        1_000
    } else {
        (routes / 10).max(2)
    };
    eprintln!("  writing {routes} routes and {revoked} revoked keys to Redis");
    let big_redis = fed(ctx, routes, revoked).await?;
    let small_redis = fed(ctx, small, 0).await?;
    // The gateways resync only at start: the measured runs see the tables they started with.
    let start = |redis: &RedisServer, name: &'static str| {
        let url = redis.url();
        async move {
            let began = Instant::now();
            let gk = ctx
                .gatekeeper(
                    name,
                    &[
                        ("LYRA_REDIS_URL", url.as_str()),
                        ("LYRA_RESYNC_SECS", "86400"),
                    ],
                )
                .await?;
            Ok::<_, HarnessError>((gk, began.elapsed()))
        }
    };
    let (big, big_sync) = start(&big_redis, "gatekeeper-big").await?;
    let (little, little_sync) = start(&small_redis, "gatekeeper-small").await?;
    let rss = |pid: u32| {
        procs::rss_bytes(pid).map_or("?".to_owned(), |b| {
            format!("{:.1} MiB", b as f64 / 1048576.0)
        })
    };
    report.figures.insert(
        format!("start to ready (full sync), {routes} routes + {revoked} revoked"),
        serde_json::json!(format!("{:.0} ms", big_sync.as_secs_f64() * 1000.0)),
    );
    report.figures.insert(
        format!("start to ready, {small} routes"),
        serde_json::json!(format!("{:.0} ms", little_sync.as_secs_f64() * 1000.0)),
    );
    report.figures.insert(
        format!("resident memory, {routes} routes + {revoked} revoked"),
        serde_json::json!(rss(big.pid())),
    );
    report.figures.insert(
        format!("resident memory, {small} routes"),
        serde_json::json!(rss(little.pid())),
    );
    let mode = Mode::Closed {
        connections: ctx.opts.connections,
    };
    let label = format!("closed, {} conns", ctx.opts.connections);
    let (t_small, t_big) = (ctx.plain(little.plain), ctx.plain(big.plain));
    verify_proxy("gatekeeper-small", &t_small).await?;
    verify_proxy("gatekeeper-big", &t_big).await?;
    let (small_name, big_name) = (format!("table of {small}"), format!("table of {routes}"));
    let subjects = [
        Subject::new(&small_name, t_small, Some(little.pid())),
        Subject::new(&big_name, t_big, Some(big.pid())),
    ];
    interleave(&mut report, &subjects, mode, &label, &ctx.opts).await?;
    report.notes.push("Routes carry sealed credentials like real ones (opened at load); revoked keys never expire. Start to ready covers process start, reading the snapshot from Redis and building the tables. The per-lookup cost in isolation: `cargo bench -p gateway --bench hot_path` (route_lookup at 1k and 100k).".into());
    Ok(report)
}
