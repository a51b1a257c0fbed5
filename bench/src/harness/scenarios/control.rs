//! (7) The control plane: POST /clusters rate and latency (Orion alone: the command is
//! queued and answered 202), and the time from 202 to HEALTHY with Nebula and the local
//! driver running the stand-in, for 1 and 3 nodes.

use super::*;
use crate::harness::report::Spread;

pub async fn run(ctx: &Ctx) -> Result<Report, HarnessError> {
    let mut report = ctx.report(Scenario::Control, "Control plane");
    let orion = ctx.lyra.orion_alone().await?;
    let spec = serde_json::json!({"name": "load", "cloud_provider": "local", "cloud_region": "dev",
        "configuration": {"num_nodes": 1, "node_configuration": {"cpu": 1000, "memory": 1024, "disk": 1}}});
    let target = Target {
        addr: std::net::SocketAddr::from(([127, 0, 0, 1], orion.port)),
        tls: None,
        authority: format!("127.0.0.1:{}", orion.port),
        method: Method::POST,
        path: format!("/api/v1/accounts/{}/clusters", orion.account),
        headers: HeaderMap::new(),
        body: Bytes::from(spec.to_string()),
        h2: false,
        grpc: false,
    }
    .header("authorization", &format!("Bearer {}", orion.token))
    .header("content-type", "application/json");
    let mode = Mode::Closed {
        connections: ctx.opts.connections,
    };
    let label = format!("POST /clusters, {} conns", ctx.opts.connections);
    let subjects = [Subject::new("orion", target, Some(orion.child.id()))];
    interleave(&mut report, &subjects, mode, &label, &ctx.opts).await?;
    let trials = ctx.opts.trials.clamp(1, 11);
    for nodes in [1, 3] {
        let mut ms = Vec::new();
        for _ in 0..trials {
            ms.push(ctx.lyra.time_to_healthy(nodes).await?.as_secs_f64() * 1000.0);
        }
        if let Some(s) = Spread::of(ms) {
            report.figures.insert(
                format!(
                    "202 -> HEALTHY, {nodes} node(s), median (min–max) ms over {} runs",
                    s.n
                ),
                serde_json::json!(s.show(1)),
            );
        }
    }
    report.notes.push("POST /clusters: Orion on its own Redis (AOF, appendfsync always), every request a new cluster reserved atomically and queued; Nebula not running so nothing is built. 202 -> HEALTHY: Nebula with the local driver starts stand-in nodes; polled every 2 ms.".into());
    Ok(report)
}
