//! (3) TLS 1.3: a new connection per request (full handshakes, no resumption: handshakes
//! per second) and keep-alive throughput over TLS. GateKeeper (rustls) vs nginx and HAProxy
//! (OpenSSL), all with an ECDSA P-256 certificate from the same CA.

use super::*;

pub async fn run(ctx: &Ctx) -> Result<Report, HarnessError> {
    let mut report = ctx.report(Scenario::Tls, "TLS 1.3");
    let gk = ctx.gatekeeper("gatekeeper", &[]).await?;
    let nginx = ctx.peer(Kind::Nginx)?;
    let haproxy = ctx.peer(Kind::Haproxy)?;
    let lineup = [
        ("gatekeeper", ctx.tls(gk.rest)?, Some(gk.pid())),
        ("nginx", ctx.tls(nginx.tls)?, Some(nginx.pid())),
        ("haproxy", ctx.tls(haproxy.tls)?, Some(haproxy.pid())),
    ];
    for (name, target, _) in &lineup {
        verify_proxy(name, target).await?;
    }
    let handshakes = Mode::NewConnection {
        concurrency: ctx.opts.connections,
    };
    let keep_alive = Mode::Closed {
        connections: ctx.opts.connections,
    };
    let labels = [
        (
            handshakes,
            format!(
                "new TLS connection per request, {} at once",
                ctx.opts.connections
            ),
        ),
        (
            keep_alive,
            format!("TLS keep-alive, {} conns", ctx.opts.connections),
        ),
    ];
    for (mode, label) in &labels {
        for round in 0..ctx.opts.rounds {
            for (name, target, pid) in &lineup {
                measure(
                    &mut report,
                    Subject {
                        name,
                        target,
                        pid: *pid,
                    },
                    *mode,
                    label,
                    round,
                    &ctx.opts,
                )
                .await?;
            }
        }
    }
    report.notes.push(
        "The client (rustls, ring) offers TLS 1.3 only and never resumes a session; the servers' session caches and tickets are off. With a new connection per request, req/s is handshakes per second.".into(),
    );
    Ok(report)
}
