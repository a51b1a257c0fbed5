//! (3) TLS 1.3: a new connection per request (full handshakes, no resumption: handshakes
//! per second) and keep-alive throughput over TLS. GateKeeper (rustls) vs nginx and HAProxy
//! (OpenSSL), all with an ECDSA P-256 certificate from the same CA.

use super::*;

pub async fn run(ctx: &Ctx) -> Result<Report, HarnessError> {
    let mut report = ctx.report(Scenario::Tls, "TLS 1.3");
    let proxies = ctx.proxies(true).await?;
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
        interleave(&mut report, &proxies.subjects, *mode, label, &ctx.opts).await?;
    }
    report.notes.push(
        "The client (rustls, ring) offers TLS 1.3 only and never resumes a session; the servers' session caches and tickets are off. With a new connection per request, req/s is handshakes per second.".into(),
    );
    Ok(report)
}
