//! (5) What key checks and limits cost: GateKeeper as configured vs GateKeeper started
//! with its benchmark-only switch that skips keys, scopes and limits (loopback only).

use super::*;

pub async fn run(ctx: &Ctx) -> Result<Report, HarnessError> {
    let mut report = ctx.report(Scenario::Auth, "GateKeeper: auth and limits on vs off");
    let on = ctx.gatekeeper("gatekeeper-auth-on", &[]).await?;
    // Limits at their defaults here would refuse the load; set generously but still checked.
    let off = ctx
        .gatekeeper(
            "gatekeeper-auth-off",
            &[("LYRA_BENCH_WITHOUT_AUTH", "true")],
        )
        .await?;
    verify_proxy("auth on", &ctx.plain(on.plain)).await?;
    let (status, _) =
        load::once(&ctx.plain(off.plain))
            .await
            .map_err(|e| HarnessError::Invalid {
                peer: "auth off".into(),
                reason: e,
            })?;
    if status != 200 {
        return Err(HarnessError::Invalid {
            peer: "auth off".into(),
            reason: format!("HTTP {status}"),
        });
    }
    let mode = Mode::Closed {
        connections: ctx.opts.connections,
    };
    let label = format!("closed, {} conns", ctx.opts.connections);
    let subjects = [
        Subject::new("auth on", ctx.plain(on.plain), Some(on.pid())),
        Subject::new("auth off", ctx.plain(off.plain), Some(off.pid())),
    ];
    interleave(&mut report, &subjects, mode, &label, &ctx.opts).await?;
    if let (Some(a), Some(b)) = (
        report.median(&label, "auth on", |r| Some(r.rate)),
        report.median(&label, "auth off", |r| Some(r.rate)),
    ) {
        report.figures.insert(
            "throughput cost of auth and limits".into(),
            serde_json::json!(format!("{:.1}%", (1.0 - a / b) * 100.0)),
        );
    }
    report.notes.push("\"on\": key verified (HMAC), revocation set, scope, per-key and per-cluster GCRA limits, in-flight cap; \"off\": none of these, same routing and credential swap.".into());
    Ok(report)
}
