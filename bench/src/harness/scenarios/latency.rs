//! (2) Latency at fixed rates: 25, 50 and 75% of the slowest proxy's maximum, open loop
//! with coordinated omission corrected (latency counted from the intended send time).

use super::*;

pub async fn run(ctx: &Ctx) -> Result<Report, HarnessError> {
    let mut report = ctx.report(Scenario::Latency, "Latency at fixed rates (open loop)");
    let proxies = ctx.proxies(false).await?;
    // The slowest proxy's maximum, measured now, sets the rates.
    let mut slowest = f64::INFINITY;
    for subject in &proxies.subjects {
        let probe = load::run(
            subject.target.clone(),
            Mode::Closed {
                connections: ctx.opts.connections,
            },
            ctx.opts.warmup(),
            ctx.duration(),
        )
        .await;
        if !probe.clean() {
            return Err(HarnessError::Invalid {
                peer: subject.name.clone(),
                reason: probe.first_error.unwrap_or_default(),
            });
        }
        slowest = slowest.min(probe.rate());
    }
    report.figures.insert(
        "slowest maximum (req/s)".into(),
        serde_json::json!(slowest.round()),
    );
    for share in [0.25, 0.50, 0.75] {
        let rate = (slowest * share).max(1.0);
        let label = format!("{:.0}% = {rate:.0} req/s", share * 100.0);
        let mode = Mode::Open {
            connections: ctx.opts.connections,
            rate,
        };
        interleave(&mut report, &proxies.subjects, mode, &label, &ctx.opts).await?;
    }
    report.notes.push(
        "Open loop: each connection sends on a fixed schedule whether or not its last answer is in; a request held back by a slow answer is timed from when it should have been sent (wrk2's correction), one sent on a free connection from when it was sent (so the 1 ms timer of the generator is not charged to the proxy).".into(),
    );
    Ok(report)
}
