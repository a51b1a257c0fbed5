//! (1) Maximum throughput: HTTP/1.1 keep-alive, a small Qdrant-shaped JSON answer
//! (GET /collections), GateKeeper vs nginx vs HAProxy vs the direct path, interleaved.

use super::*;

pub async fn run(ctx: &Ctx) -> Result<Report, HarnessError> {
    let mut report = ctx.report(Scenario::Throughput, "Throughput, HTTP/1.1 keep-alive");
    let gk = ctx.gatekeeper("gatekeeper", &[]).await?;
    let nginx = ctx.peer(Kind::Nginx)?;
    let haproxy = ctx.peer(Kind::Haproxy)?;
    let lineup = [
        ("gatekeeper", ctx.plain(gk.plain), Some(gk.pid())),
        ("nginx", ctx.plain(nginx.plain), Some(nginx.pid())),
        ("haproxy", ctx.plain(haproxy.plain), Some(haproxy.pid())),
    ];
    for (name, target, _) in &lineup {
        verify_proxy(name, target).await?;
    }
    let direct = ("direct", ctx.direct(), None);
    let mode = Mode::Closed {
        connections: ctx.opts.connections,
    };
    let label = format!("closed, {} conns", ctx.opts.connections);
    for round in 0..ctx.opts.rounds {
        for (name, target, pid) in lineup.iter().chain(std::iter::once(&direct)) {
            measure(
                &mut report,
                Subject {
                    name,
                    target,
                    pid: *pid,
                },
                mode,
                &label,
                round,
                &ctx.opts,
            )
            .await?;
        }
    }
    report.notes.push(format!(
        "GET /collections ({} B answer from the stand-in), keep-alive on both sides; each proxy has one worker (GateKeeper --threads 1, nginx worker_processes 1, HAProxy nbthread 1).",
        load::once(&ctx.direct()).await.map(|(_, b)| b.len()).unwrap_or(0)
    ));
    Ok(report)
}
