//! (9) Qdrant-sized answers: a search whose answer is about 4 KiB, then about 64 KiB (hits
//! with payloads, as a real search returns them), over 256 keep-alive connections
//! (`--answer-connections`): what the proxies cost when they move bytes, not only when they
//! turn requests around.

use super::*;

/// Hits per answer for each size, and how the runs are labelled.
const SIZES: [(usize, &str); 2] = [(16, "4 KiB"), (256, "64 KiB")];

/// Characters of payload text per point: a hit is then about 256 bytes of JSON.
const TEXT: usize = 200;

pub async fn run(ctx: &Ctx) -> Result<Report, HarnessError> {
    let mut report = ctx.report(Scenario::Answers, "Qdrant-sized answers");
    seed(ctx).await?;
    let mut proxies = ctx.proxies(false).await?;
    proxies
        .subjects
        .push(Subject::new("direct", ctx.direct(), None));
    let connections = ctx.opts.answer_connections;
    let mode = Mode::Closed { connections };
    for (limit, size) in SIZES {
        let subjects: Vec<Subject> = proxies
            .subjects
            .iter()
            .map(|s| Subject::new(&s.name, search(&s.target, limit), s.pid))
            .collect();
        let bytes = load::once(&search(&ctx.direct(), limit))
            .await
            .map(|(_, body)| body.len())
            .unwrap_or(0);
        let label = format!("{size} answer ({bytes} B), {connections} conns");
        interleave(&mut report, &subjects, mode, &label, &ctx.opts).await?;
    }
    report.notes.push(format!(
        "POST /collections/bench/points/search with `limit` 16 or 256 and `with_payload`; each hit carries a {TEXT}-character payload. Keep-alive on both sides; one worker each."
    ));
    Ok(report)
}

/// The search request, sent to wherever `base` goes, with its credential.
fn search(base: &Target, limit: usize) -> Target {
    let mut t = base.clone().header("content-type", "application/json");
    t.method = Method::POST;
    t.path = "/collections/bench/points/search".to_owned();
    t.body = Bytes::from(format!(
        r#"{{"vector":[0.1,0.2,0.3,0.4],"limit":{limit},"with_payload":true}}"#
    ));
    t
}

/// The collection every search reads: as many points as the largest answer needs, written
/// straight to the node.
async fn seed(ctx: &Ctx) -> Result<(), HarnessError> {
    let setup = |what: &str, status: u16, body: &str| {
        HarnessError::Setup(format!(
            "seeding the search collection ({what}): HTTP {status} {body}"
        ))
    };
    let mut create = ctx.direct().header("content-type", "application/json");
    create.method = Method::PUT;
    create.path = "/collections/bench".to_owned();
    create.body = Bytes::from_static(br#"{"vectors":{"size":4,"distance":"Dot"}}"#);
    let (status, body) = load::once(&create).await.map_err(HarnessError::Setup)?;
    if status != 200 {
        return Err(setup("create", status, &body));
    }
    let text = "q".repeat(TEXT);
    let points: Vec<serde_json::Value> = (1..=SIZES[1].0)
        .map(|id| serde_json::json!({"id": id, "vector": [0.1, 0.2, 0.3, 0.4], "payload": {"text": text}}))
        .collect();
    let mut upsert = create.clone();
    upsert.path = "/collections/bench/points?wait=true".to_owned();
    upsert.body = Bytes::from(serde_json::json!({ "points": points }).to_string());
    let (status, body) = load::once(&upsert).await.map_err(HarnessError::Setup)?;
    if status != 200 {
        return Err(setup("points", status, &body));
    }
    Ok(())
}
