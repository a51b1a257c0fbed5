//! (1) Maximum throughput: HTTP/1.1 keep-alive, a small Qdrant-shaped JSON answer
//! (GET /collections), GateKeeper vs nginx vs HAProxy vs the direct path, interleaved.

use super::*;

pub async fn run(ctx: &Ctx) -> Result<Report, HarnessError> {
    let mut report = ctx.report(Scenario::Throughput, "Throughput, HTTP/1.1 keep-alive");
    let mut proxies = ctx.proxies(false).await?;
    proxies
        .subjects
        .push(Subject::new("direct", ctx.direct(), None));
    let mode = Mode::Closed {
        connections: ctx.opts.connections,
    };
    let label = format!("closed, {} conns", ctx.opts.connections);
    interleave(&mut report, &proxies.subjects, mode, &label, &ctx.opts).await?;
    report.notes.push(format!(
        "GET /collections ({} B answer from the stand-in), keep-alive on both sides; each proxy has one worker (GateKeeper --threads 1, nginx worker_processes 1, HAProxy nbthread 1).",
        load::once(&ctx.direct()).await.map(|(_, b)| b.len()).unwrap_or(0)
    ));
    Ok(report)
}
