//! The soak: GateKeeper at half of its measured maximum for ten minutes (open loop, plain
//! HTTP/1.1 keep-alive), while every second a key is made and the one made five seconds
//! before is revoked, and a cluster is created or the oldest extra one deleted (route events).
//! Every window records the answered rate, failures and p99; after it, the RSS and open file
//! descriptors of GateKeeper, Orion and Nebula. The steady traffic must see no failure and the
//! churn no error; RSS and descriptors must stay flat after the warm-up.

use std::collections::VecDeque;
use std::fmt::Write as _;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use super::control::Tenant;
use crate::harness::HarnessError;
use crate::harness::load::{self, Mode, Target};
use crate::harness::platform::{Lyra, cluster_spec};
use crate::harness::procs::{self, Pinning};

#[derive(Debug, Clone)]
pub struct SoakOptions {
    pub duration: Duration,
    /// Measured time per point of the curve.
    pub window: Duration,
    /// The first part of the run, left out of the flatness figures (caches fill, pools grow).
    pub warmup: Duration,
    pub connections: usize,
    /// The share of the measured maximum to run at.
    pub share: f64,
    pub out: PathBuf,
}

fn open_fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, |d| d.count())
}

/// One point of the curve.
struct Point {
    at: f64,
    rate: f64,
    failed: u64,
    p99_ms: f64,
    rss_mib: [f64; 3],
    fds: [usize; 3],
}

/// Key and route churn through Orion until `stop`: the errors met, and the operations made.
async fn churn(
    lyra: Arc<Lyra>,
    tenant: Tenant,
    stop: Arc<AtomicBool>,
    made: Arc<AtomicU64>,
) -> Vec<String> {
    let mut errors = Vec::new();
    let mut keys: VecDeque<String> = VecDeque::new();
    let mut clusters: VecDeque<String> = VecDeque::new();
    let clusters_path = format!("/api/v1/accounts/{}/clusters", tenant.account);
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    let mut i = 0u64;
    while !stop.load(Ordering::Relaxed) {
        tick.tick().await;
        i += 1;
        match lyra.new_key(&format!("soak-{i}")).await {
            Ok((_, id)) => keys.push_back(id),
            Err(e) => errors.push(format!("key: {e}")),
        }
        if keys.len() > 5
            && let Some(old) = keys.pop_front()
            && let Err(e) = lyra.revoke(&old).await
        {
            errors.push(format!("revoke: {e}"));
        }
        // Route churn: a 1-node cluster made one second, the oldest extra deleted the next.
        let (method, path, body) = if i % 2 == 1 || clusters.is_empty() {
            let spec = cluster_spec(&format!("soak-{i}"), 1);
            (reqwest::Method::POST, clusters_path.clone(), Some(spec))
        } else {
            let id = clusters.pop_front().unwrap_or_default();
            (
                reqwest::Method::DELETE,
                format!("{clusters_path}/{id}"),
                None,
            )
        };
        let mut req = tenant
            .http
            .request(method.clone(), format!("{}{path}", tenant.api))
            .bearer_auth(&tenant.token);
        if let Some(b) = &body {
            req = req.json(b);
        }
        match req.send().await {
            Ok(r) if r.status().as_u16() == 202 => {
                if method == reqwest::Method::POST
                    && let Ok(v) = r.json::<serde_json::Value>().await
                    && let Some(id) = v["id"].as_str()
                {
                    clusters.push_back(id.to_owned());
                }
            }
            Ok(r) => errors.push(format!("{method} {path}: HTTP {}", r.status())),
            Err(e) => errors.push(format!("{method} {path}: {e}")),
        }
        made.fetch_add(1, Ordering::Relaxed);
    }
    errors
}

/// Runs the soak; the report (Markdown) and whether no request failed, no churn erred and
/// every process stayed flat.
pub async fn run(opts: SoakOptions) -> Result<(String, bool), HarnessError> {
    let lyra = Lyra::start(Pinning::detect()).await?;
    let gk = lyra.gatekeeper("gatekeeper", &[]).await?;
    let (orion, nebula) = lyra.service_pids();
    let pids = [gk.pid(), orion, nebula];
    let target = Target::get(
        ([127, 0, 0, 1], gk.plain).into(),
        &lyra.host,
        "/collections",
    )
    .header("api-key", &lyra.key);
    let connections = opts.connections.max(1);
    let max = load::run(
        target.clone(),
        Mode::Closed { connections },
        Duration::from_secs(1),
        Duration::from_secs(5),
    )
    .await;
    if !max.clean() {
        return Err(HarnessError::Invalid {
            peer: "gatekeeper".into(),
            reason: format!("the maximum run failed: {:?}", max.first_error),
        });
    }
    let rate = max.rate() * opts.share;
    let tenant = Tenant {
        http: reqwest::Client::new(),
        api: lyra.api.clone(),
        token: lyra.token.clone(),
        account: lyra.account.clone(),
        nodes_dir: lyra.nodes_dir(),
    };
    let lyra = Arc::new(lyra);
    let stop = Arc::new(AtomicBool::new(false));
    let made = Arc::new(AtomicU64::new(0));
    let churner = tokio::spawn(churn(lyra.clone(), tenant, stop.clone(), made.clone()));

    let began = Instant::now();
    let mut points = Vec::new();
    while began.elapsed() < opts.duration {
        let out = load::run(
            target.clone(),
            Mode::Open { connections, rate },
            Duration::ZERO,
            opts.window,
        )
        .await;
        let rss = |pid| procs::rss_bytes(pid).map_or(0.0, |b| b as f64 / (1024.0 * 1024.0));
        points.push(Point {
            at: began.elapsed().as_secs_f64(),
            rate: out.rate(),
            failed: out.rejected + out.errors,
            p99_ms: out.percentile_ms(0.99),
            rss_mib: pids.map(rss),
            fds: pids.map(open_fds),
        });
        eprintln!(
            "soak {:>4.0} s: {:.0} req/s, {} failed, p99 {:.2} ms, RSS {:.1}/{:.1}/{:.1} MiB, fds {}/{}/{}",
            points.last().map_or(0.0, |p| p.at),
            out.rate(),
            out.rejected + out.errors,
            out.percentile_ms(0.99),
            rss(pids[0]),
            rss(pids[1]),
            rss(pids[2]),
            open_fds(pids[0]),
            open_fds(pids[1]),
            open_fds(pids[2]),
        );
    }
    stop.store(true, Ordering::Relaxed);
    let churn_errors = churner.await.unwrap_or_default();
    let operations = made.load(Ordering::Relaxed);

    let names = ["GateKeeper", "Orion", "Nebula"];
    let steady: Vec<&Point> = points
        .iter()
        .filter(|p| p.at > opts.warmup.as_secs_f64())
        .collect();
    let failed: u64 = points.iter().map(|p| p.failed).sum();
    let mut md = String::new();
    let _ = writeln!(md, "# Soak\n");
    let _ = writeln!(
        md,
        "{:.0} s at {:.0} req/s ({:.0}% of the {:.0} req/s GateKeeper answered at most here, {connections} connections, plain HTTP/1.1), \
         with {operations} churn rounds (each: a key made, the key of five rounds before revoked, a cluster created or deleted). \
         Flatness is judged after the first {:.0} s.\n",
        began.elapsed().as_secs_f64(),
        rate,
        opts.share * 100.0,
        max.rate(),
        opts.warmup.as_secs_f64()
    );
    let _ = writeln!(
        md,
        "Requests that failed: {failed} of {:.0}. Churn errors: {}.\n",
        points
            .iter()
            .map(|p| p.rate * opts.window.as_secs_f64())
            .sum::<f64>(),
        churn_errors.len()
    );
    let _ = writeln!(
        md,
        "| process | RSS after warm-up (MiB) | RSS spread around its median | open fds after warm-up | fds, median of the first and last quarter |"
    );
    let _ = writeln!(md, "|---|---|---|---|---|");
    // Flat: every process's RSS within 10% of its median after the warm-up, and its open
    // descriptors not growing: a sample is taken as a window's connections close, so single
    // samples jump; a leak shows as the last quarter's median above the first quarter's.
    let median_of = |mut v: Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v.get(v.len() / 2).copied().unwrap_or(0.0)
    };
    let quarter = (steady.len() / 4).max(1);
    let mut unflat = Vec::new();
    for (k, name) in names.iter().enumerate() {
        let rss: Vec<f64> = steady.iter().map(|p| p.rss_mib[k]).collect();
        let median = median_of(rss.clone()).max(1e-9);
        let (lo, hi) = (
            rss.iter().copied().fold(f64::INFINITY, f64::min),
            rss.iter().copied().fold(0.0, f64::max),
        );
        let fds: Vec<f64> = steady.iter().map(|p| p.fds[k] as f64).collect();
        let first = median_of(fds.iter().take(quarter).copied().collect());
        let last = median_of(fds.iter().rev().take(quarter).copied().collect());
        let _ = writeln!(
            md,
            "| {name} | {lo:.1} to {hi:.1} | {:+.1}% / {:+.1}% | {:.0} to {:.0} | {first:.0} and {last:.0} |",
            (lo / median - 1.0) * 100.0,
            (hi / median - 1.0) * 100.0,
            fds.iter().copied().fold(f64::INFINITY, f64::min),
            fds.iter().copied().fold(0.0, f64::max),
        );
        if rss.iter().any(|r| (r / median - 1.0).abs() > 0.10) {
            unflat.push(format!(
                "{name}'s RSS moved more than 10% from {median:.1} MiB"
            ));
        }
        if last > first + (first * 0.1).max(4.0) {
            unflat.push(format!(
                "{name}'s open descriptors grew from a median of {first:.0} to {last:.0}"
            ));
        }
    }
    let p99s: Vec<f64> = steady.iter().map(|p| p.p99_ms).collect();
    let _ = writeln!(
        md,
        "\np99 per {:.0} s window after warm-up: {:.2} to {:.2} ms.",
        opts.window.as_secs_f64(),
        p99s.iter().copied().fold(f64::INFINITY, f64::min),
        p99s.iter().copied().fold(0.0, f64::max)
    );
    if unflat.is_empty() {
        let _ = writeln!(md, "\nRSS and open descriptors stayed flat.");
    }
    for u in &unflat {
        let _ = writeln!(md, "- not flat: {u}");
    }
    for e in churn_errors.iter().take(20) {
        let _ = writeln!(md, "- churn error: {e}");
    }
    std::fs::create_dir_all(&opts.out)
        .map_err(|e| HarnessError::Setup(format!("{}: {e}", opts.out.display())))?;
    std::fs::write(opts.out.join("soak.md"), &md)
        .map_err(|e| HarnessError::Setup(e.to_string()))?;
    let series =
        |f: &dyn Fn(&Point) -> f64| points.iter().map(|p| (p.at, f(p))).collect::<Vec<_>>();
    let per_process = |f: &dyn Fn(&Point, usize) -> f64| {
        names
            .iter()
            .enumerate()
            .map(|(k, n)| {
                (
                    (*n).to_owned(),
                    points.iter().map(|p| (p.at, f(p, k))).collect(),
                )
            })
            .collect::<Vec<_>>()
    };
    super::chart::panels(
        &opts.out.join("soak.png"),
        &format!(
            "Soak: {:.0}% of GateKeeper's maximum with key, revocation and route churn every second",
            opts.share * 100.0
        ),
        &[
            (
                "answered req/s",
                vec![
                    ("answered".to_owned(), series(&|p| p.rate)),
                    ("failed".to_owned(), series(&|p| p.failed as f64)),
                ],
            ),
            ("p99 ms", vec![("p99".to_owned(), series(&|p| p.p99_ms))]),
            ("RSS MiB", per_process(&|p, k| p.rss_mib[k])),
            ("open fds", per_process(&|p, k| p.fds[k] as f64)),
        ],
    )?;
    drop(gk);
    Ok((
        md,
        failed == 0 && churn_errors.is_empty() && unflat.is_empty(),
    ))
}
