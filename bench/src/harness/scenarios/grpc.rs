//! (4) gRPC over HTTP/2: unary calls through GateKeeper's gRPC port (TLS, h2) vs straight
//! to the node's gRPC port (h2c).

use super::*;

/// A unary call naming a collection (field 1), as Qdrant's requests do.
fn frame() -> Bytes {
    let message = [0x0a, 0x04, b'd', b'o', b'c', b's'];
    let mut f = vec![0u8];
    f.extend_from_slice(&(message.len() as u32).to_be_bytes());
    f.extend_from_slice(&message);
    Bytes::from(f)
}

fn grpc(mut t: Target) -> Target {
    t.method = Method::POST;
    t.path = "/qdrant.Points/Search".into();
    t.body = frame();
    t.h2 = true;
    t.grpc = true;
    t.header("content-type", "application/grpc")
        .header("te", "trailers")
}

pub async fn run(ctx: &Ctx) -> Result<Report, HarnessError> {
    let mut report = ctx.report(Scenario::Grpc, "gRPC (HTTP/2)");
    let gk = ctx.gatekeeper("gatekeeper", &[]).await?;
    let config = load::tls_client(&ctx.ca_pem, &[b"h2"]).map_err(HarnessError::Setup)?;
    let mut through = grpc(ctx.plain(gk.grpc));
    through.tls = Some((config, ctx.lyra.host.clone()));
    let mut direct = grpc(ctx.direct());
    direct.addr = ctx.lyra.upstream.grpc;
    direct.authority = ctx.lyra.upstream.grpc.to_string();
    for (name, t) in [("gatekeeper", &through), ("direct", &direct)] {
        let (status, _) = load::once(t).await.map_err(|e| HarnessError::Invalid {
            peer: name.into(),
            reason: e,
        })?;
        if status != 200 {
            return Err(HarnessError::Invalid {
                peer: name.into(),
                reason: format!("HTTP {status}"),
            });
        }
    }
    let connections = 2;
    let streams = (ctx.opts.connections / connections).max(1);
    let mode = Mode::H2 {
        connections,
        streams,
    };
    let label = format!("unary, {connections} conns x {streams} streams");
    let subjects = [
        Subject::new("gatekeeper", through, Some(gk.pid())),
        Subject::new("direct", direct, None),
    ];
    interleave(&mut report, &subjects, mode, &label, &ctx.opts).await?;
    report.notes.push(
        "Through GateKeeper the client speaks TLS 1.3 + h2 with an API key; GateKeeper speaks h2c to the node. Direct is h2c with the node's own key. The stand-in echoes each call (grpc-status 0 in trailers).".into(),
    );
    Ok(report)
}
