//! (6) Revocation propagation: a key under load is revoked through Orion; how long until
//! every request with it is refused. Repeated `--trials` times (default 100).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use super::*;
use crate::harness::report::Spread;

/// Requests on one connection: (sent at, accepted).
type Log = Vec<(Instant, bool)>;

async fn hammer(target: Target, stop: Arc<AtomicBool>) -> Log {
    let mut log = Log::new();
    let mut conn = None;
    while !stop.load(Ordering::Relaxed) {
        if conn.is_none() {
            conn = load::Connection::open(&target).await.ok();
            if conn.is_none() {
                tokio::time::sleep(Duration::from_millis(1)).await;
                continue;
            }
        }
        let Some(c) = conn.as_mut() else { continue };
        let sent = Instant::now();
        match c.send(&target).await {
            Ok(accepted) => log.push((sent, accepted)),
            Err(_) => conn = None,
        }
    }
    log
}

/// The first send time from which every request was refused, if the log reaches one.
fn enforced_from(logs: &[Log]) -> Option<Instant> {
    let mut all: Vec<(Instant, bool)> = logs.iter().flatten().copied().collect();
    all.sort_by_key(|(t, _)| *t);
    let last_accepted = all.iter().rposition(|(_, ok)| *ok);
    match last_accepted {
        Some(i) => all.get(i + 1).map(|(t, _)| *t),
        None => all.first().map(|(t, _)| *t),
    }
}

pub async fn run(ctx: &Ctx) -> Result<Report, HarnessError> {
    let mut report = ctx.report(Scenario::Revocation, "Revocation propagation under load");
    let gk = ctx.gatekeeper("gatekeeper", &[]).await?;
    let connections = ctx.opts.connections.clamp(1, 8);
    let mut after_request = Vec::new();
    let mut after_answer = Vec::new();
    for trial in 0..ctx.opts.trials {
        let (key, id) = ctx.lyra.new_key(&format!("revoke-{trial}")).await?;
        let mut target = ctx.plain(gk.plain);
        target = target.header("api-key", &key);
        let stop = Arc::new(AtomicBool::new(false));
        let tasks: Vec<_> = (0..connections)
            .map(|_| tokio::spawn(hammer(target.clone(), stop.clone())))
            .collect();
        tokio::time::sleep(Duration::from_millis(30)).await;
        let asked = Instant::now();
        ctx.lyra.revoke(&id).await?;
        let answered = Instant::now();
        // Long enough for any straggler to show itself, short next to the 10 ms promise x 100.
        tokio::time::sleep(Duration::from_millis(60)).await;
        stop.store(true, Ordering::Relaxed);
        let mut logs = Vec::new();
        for t in tasks {
            logs.push(t.await.map_err(|e| HarnessError::Setup(e.to_string()))?);
        }
        let accepted_before = logs
            .iter()
            .flatten()
            .filter(|(t, ok)| *ok && *t < asked)
            .count();
        if accepted_before == 0 {
            return Err(HarnessError::Invalid {
                peer: "gatekeeper".into(),
                reason: "the new key was never accepted".into(),
            });
        }
        let refused_after = logs
            .iter()
            .flatten()
            .filter(|(t, ok)| !*ok && *t > answered)
            .count();
        let enforced = enforced_from(&logs)
            .filter(|_| refused_after > 0)
            .ok_or_else(|| HarnessError::Invalid {
                peer: "gatekeeper".into(),
                reason: format!(
                    "trial {trial}: the revoked key was still accepted 60 ms after Orion answered"
                ),
            })?;
        let ms = |from: Instant| (enforced.saturating_duration_since(from)).as_secs_f64() * 1000.0;
        after_request.push(ms(asked));
        after_answer.push(if enforced > answered {
            ms(answered)
        } else {
            0.0
        });
    }
    let pct = |v: &[f64], q: f64| {
        let mut s = v.to_vec();
        s.sort_by(f64::total_cmp);
        s.get(((s.len() as f64 - 1.0) * q).round() as usize)
            .copied()
            .unwrap_or(f64::NAN)
    };
    for (name, v) in [
        ("from the revoke request", &after_request),
        ("from Orion's answer", &after_answer),
    ] {
        report.figures.insert(
            format!("refused everywhere, {name}: p50 / p99 / max (ms)"),
            serde_json::json!(format!(
                "{:.2} / {:.2} / {:.2}",
                pct(v, 0.5),
                pct(v, 0.99),
                pct(v, 1.0)
            )),
        );
    }
    if let Some(s) = Spread::of(after_request.clone()) {
        report
            .figures
            .insert("trials".into(), serde_json::json!(s.n));
    }
    report.figures.insert(
        "raw (ms from the revoke request)".into(),
        serde_json::json!(after_request),
    );
    report.notes.push(format!(
        "{connections} keep-alive connections send requests with the key back to back through one GateKeeper; the enforcement time is the first send after which every answer was 401. Orion publishes the revocation before it answers, so \"from Orion's answer\" is often 0."
    ));
    Ok(report)
}
