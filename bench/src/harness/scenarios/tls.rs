//! (3) TLS 1.3: a new connection per request, first with full handshakes (the client never
//! resumes), then resumed from the session tickets each server issued (TLS 1.3 PSK), and
//! keep-alive throughput over TLS. GateKeeper (rustls) vs nginx and HAProxy (OpenSSL), all
//! with an ECDSA P-256 certificate from the same CA, all issuing tickets.

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
    let n = ctx.opts.connections;
    interleave(
        &mut report,
        &proxies.subjects,
        handshakes,
        &format!("new TLS connection per request, {n} at once"),
        &ctx.opts,
    )
    .await?;

    // Resumed: each peer gets a client configuration of its own that keeps its tickets.
    let mut resuming = Vec::new();
    for s in &proxies.subjects {
        let config = load::tls_client_with(&ctx.ca_pem, &[b"http/1.1"], true)
            .map_err(HarnessError::Setup)?;
        let mut target = s.target.clone();
        if let Some((_, sni)) = &s.target.tls {
            target.tls = Some((config, sni.clone()));
        }
        resuming.push(Subject::new(&s.name, target, s.pid));
    }
    let label = format!("new TLS connection per request, resumed, {n} at once");
    let _ = load::take_handshakes();
    for round in 0..ctx.opts.rounds {
        for s in &resuming {
            measure(&mut report, s, handshakes, &label, round, &ctx.opts).await?;
            let (full, resumed) = load::take_handshakes();
            let share = resumed as f64 / (full + resumed).max(1) as f64;
            report.notes.push(format!(
                "{} round {round}: {:.1}% of handshakes resumed ({resumed} of {}).",
                s.name,
                share * 100.0,
                full + resumed
            ));
        }
    }

    interleave(
        &mut report,
        &proxies.subjects,
        keep_alive,
        &format!("TLS keep-alive, {n} conns"),
        &ctx.opts,
    )
    .await?;
    report.notes.push(
        "Full handshakes: the client (rustls, ring) offers TLS 1.3 only and no session. Resumed: a client configuration per peer keeps the tickets that peer sent (rustls in-memory store, 1024 sessions). Every server issues tickets after each handshake: GateKeeper two stateful ones (rustls's default session store), nginx (ssl_session_cache shared, ssl_session_tickets on) and HAProxy (its default session cache, tickets on) OpenSSL's two stateless ones.".into(),
    );
    Ok(report)
}
