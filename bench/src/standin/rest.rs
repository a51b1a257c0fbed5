//! The REST port: Qdrant's public probes, and a few collection and point routes with small
//! Qdrant-shaped answers.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use serde_json::{Value, json};

use super::auth::{Grant, Need, Refusal, credential};
use super::state::{Collection, Node};

pub const VERSION: &str = "1.18.3";
const MAX_BODY: usize = 32 << 20;

type Answer = Response<Full<Bytes>>;

/// Qdrant's plain-text answers (health checks) carry a charset.
const TEXT: &str = "text/plain; charset=utf-8";

fn respond(status: StatusCode, content_type: Option<&'static str>, body: Vec<u8>) -> Answer {
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = status;
    if let Some(ct) = content_type {
        r.headers_mut()
            .insert(header::CONTENT_TYPE, http::HeaderValue::from_static(ct));
    }
    r
}

fn ok(result: Value, started: Instant) -> Answer {
    let body = json!({"result": result, "status": "ok", "time": started.elapsed().as_secs_f64()});
    respond(
        StatusCode::OK,
        Some("application/json"),
        body.to_string().into_bytes(),
    )
}

/// Qdrant's JSON error shape.
pub fn error(status: StatusCode, message: &str, started: Instant) -> Answer {
    let body = json!({"status": {"error": message}, "time": started.elapsed().as_secs_f64()});
    respond(
        status,
        Some("application/json"),
        body.to_string().into_bytes(),
    )
}

fn refused(r: Refusal, started: Instant) -> Answer {
    let status = StatusCode::from_u16(r.status()).unwrap_or(StatusCode::FORBIDDEN);
    match r {
        // Qdrant answers these in plain text without a content type.
        Refusal::Missing | Refusal::Invalid | Refusal::Expired => {
            respond(status, None, r.message().into_bytes())
        }
        Refusal::Forbidden(m) => error(status, &m, started),
    }
}

/// Point routes that only read, though sent with POST.
fn reads_points(action: &[&str]) -> bool {
    matches!(
        action.first().copied(),
        Some("search" | "query" | "scroll" | "count" | "recommend" | "discover")
    ) || action.is_empty()
}

fn need<'a>(method: &Method, segments: &[&'a str]) -> Option<Need<'a>> {
    Some(match segments {
        ["collections"] => Need::GlobalRead,
        ["collections", c] | ["collections", c, "exists"] | ["collections", c, "cluster"]
            if method == Method::GET =>
        {
            Need::Read(c)
        }
        ["collections", _, "cluster"] => Need::Manage,
        ["cluster", "peer", _] if method == Method::DELETE => Need::Manage,
        ["collections", _] => Need::Manage,
        ["collections", c, "points", rest @ ..] => {
            if method == Method::GET || (method == Method::POST && reads_points(rest)) {
                Need::Read(c)
            } else {
                Need::Write(c)
            }
        }
        ["cluster"] | ["telemetry"] | ["metrics"] => Need::GlobalRead,
        _ => return None,
    })
}

pub async fn handle(node: Arc<Node>, req: Request<Incoming>) -> Answer {
    let started = Instant::now();
    let path = req.uri().path().to_owned();
    if path == "/__standin/stats" {
        // Introspection of the test double itself; not a Qdrant route and not counted.
        let body = json!({
            "requests": node.requests.load(Ordering::Relaxed),
            "authorized": node.authorized.load(Ordering::Relaxed),
        });
        return respond(
            StatusCode::OK,
            Some("application/json"),
            body.to_string().into_bytes(),
        );
    }
    node.count_request();
    let method = req.method().clone();
    match path.as_str() {
        "/" => {
            // Qdrant also names its build's commit; the stand-in has none to name.
            let body = json!({"title": "qdrant - vector search engine", "version": VERSION, "commit": "qdrant-standin"});
            return respond(
                StatusCode::OK,
                Some("application/json"),
                body.to_string().into_bytes(),
            );
        }
        "/healthz" | "/livez" => {
            return respond(StatusCode::OK, Some(TEXT), b"healthz check passed".to_vec());
        }
        "/readyz" => {
            return if node.ready.load(Ordering::Relaxed) {
                respond(StatusCode::OK, Some(TEXT), b"all shards are ready".to_vec())
            } else {
                respond(
                    StatusCode::SERVICE_UNAVAILABLE,
                    Some(TEXT),
                    b"some shards are not ready".to_vec(),
                )
            };
        }
        _ => {}
    }
    let grant = match node.keys.authenticate(credential(req.headers())) {
        Ok(g) => g,
        Err(r) => return refused(r, started),
    };
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    let Some(need) = need(&method, &segments) else {
        return error(
            StatusCode::NOT_FOUND,
            &format!("Not found: {path}"),
            started,
        );
    };
    if let Err(r) = grant.allows(need) {
        return refused(r, started);
    }
    node.count_authorized();
    let body = match Limited::new(req.into_body(), MAX_BODY).collect().await {
        Ok(b) => b.to_bytes(),
        Err(_) => {
            return error(
                StatusCode::BAD_REQUEST,
                "Request body is too large or broken",
                started,
            );
        }
    };
    let json_body = || serde_json::from_slice::<Value>(&body).unwrap_or(Value::Null);
    let answer = route(&node, &grant, &method, &segments, json_body, started);
    // A removed peer leaves every node's table before anything is replicated, so no node
    // learns of it again from another.
    if let (["cluster", "peer", peer], true) = (segments.as_slice(), answer.status().is_success())
        && let Ok(peer) = peer.parse::<u64>()
    {
        super::peers::forget(&node, peer).await;
    }
    // A change is on every peer before it is acknowledged, as Qdrant's consensus does for
    // collections, so a client sees the same data whichever node it reaches next.
    let changed = matches!(need, Need::Manage | Need::Write(_)) && answer.status().is_success();
    if changed {
        super::peers::replicate(&node).await;
    }
    answer
}

fn route(
    node: &Node,
    grant: &Grant,
    method: &Method,
    segments: &[&str],
    body: impl Fn() -> Value,
    started: Instant,
) -> Answer {
    let Ok(mut collections) = node.collections.lock() else {
        return error(StatusCode::INTERNAL_SERVER_ERROR, "poisoned", started);
    };
    let missing = |c: &str| {
        error(
            StatusCode::NOT_FOUND,
            &format!("Not found: Collection `{c}` doesn't exist!"),
            started,
        )
    };
    match (method.clone(), segments) {
        (Method::GET, ["collections"]) => {
            let list: Vec<Value> = collections
                .keys()
                .filter(|c| grant.sees(c))
                .map(|c| json!({"name": c}))
                .collect();
            ok(json!({"collections": list}), started)
        }
        (Method::GET, ["collections", c]) => match collections.get(*c) {
            Some(col) => ok(collection_info(col), started),
            None => missing(c),
        },
        (Method::GET, ["collections", c, "cluster"]) => match collections.get(*c) {
            Some(col) => ok(collection_cluster(node.peer_id, col), started),
            None => missing(c),
        },
        (Method::POST, ["collections", c, "cluster"]) => {
            let Some(col) = collections.get_mut(*c) else {
                return missing(c);
            };
            let known = node.peers.lock().map(|p| p.clone()).unwrap_or_default();
            match shard_operation(col, &body(), |peer| known.contains_key(&peer)) {
                Ok(()) => {
                    drop(collections);
                    node.persist();
                    ok(json!(true), started)
                }
                Err(message) => error(StatusCode::BAD_REQUEST, &message, started),
            }
        }
        (Method::DELETE, ["cluster", "peer", peer]) => {
            let Ok(peer) = peer.parse::<u64>() else {
                return error(
                    StatusCode::BAD_REQUEST,
                    "Bad request: peer id is not a number",
                    started,
                );
            };
            if !node.peers.lock().is_ok_and(|p| p.contains_key(&peer)) {
                return error(
                    StatusCode::NOT_FOUND,
                    &format!("Not found: Peer {peer} doesn't exist"),
                    started,
                );
            }
            if collections
                .values()
                .any(|c| c.shards.values().any(|r| r.contains(&peer)))
            {
                return error(
                    StatusCode::BAD_REQUEST,
                    &format!("Bad request: Cannot remove peer {peer} as there are shards on it"),
                    started,
                );
            }
            drop(collections);
            if let Ok(mut peers) = node.peers.lock() {
                peers.remove(&peer);
            }
            // Told to every peer in `handle`, after the answer is made: see `peers::forget`.
            ok(json!(true), started)
        }
        (Method::GET, ["collections", c, "exists"]) => {
            ok(json!({"exists": collections.contains_key(*c)}), started)
        }
        (Method::PUT, ["collections", c]) => {
            if collections.contains_key(*c) {
                return error(
                    StatusCode::BAD_REQUEST,
                    &format!("Wrong input: Collection `{c}` already exists!"),
                    started,
                );
            }
            let b = body();
            let params = json!({
                "vectors": b["vectors"],
                // Qdrant's default in a cluster: one shard per peer.
                "shard_number": b["shard_number"].as_u64().unwrap_or(peer_count(node)),
                "replication_factor": b["replication_factor"].as_u64().unwrap_or(1),
                "write_consistency_factor": b["write_consistency_factor"].as_u64().unwrap_or(1),
                "on_disk_payload": b["on_disk_payload"].as_bool().unwrap_or(true),
            });
            let shards = place_shards(node, &params);
            let col = Collection {
                params,
                shards,
                ..Collection::default()
            };
            collections.insert((*c).to_owned(), col);
            drop(collections);
            node.persist();
            ok(json!(true), started)
        }
        (Method::DELETE, ["collections", c]) => {
            let existed = collections.remove(*c).is_some();
            drop(collections);
            node.persist();
            ok(json!(existed), started)
        }
        (Method::PUT, ["collections", c, "points"]) => {
            let Some(col) = collections.get_mut(*c) else {
                return missing(c);
            };
            let body = body();
            let points = body["points"].as_array().cloned().unwrap_or_default();
            for p in &points {
                col.points.insert(p["id"].to_string(), p["payload"].clone());
            }
            drop(collections);
            node.persist();
            ok(
                json!({"operation_id": points.len(), "status": "acknowledged"}),
                started,
            )
        }
        (Method::POST, ["collections", c, "points", action, ..]) => {
            let Some(col) = collections.get(*c) else {
                return missing(c);
            };
            let body = body();
            let limit = body["limit"].as_u64().unwrap_or(10) as usize;
            // Qdrant leaves the payload out unless asked for it (`with_payload`), except on
            // scroll, where it is in by default.
            let with_payload = match &body["with_payload"] {
                Value::Null => *action == "scroll",
                Value::Bool(b) => *b,
                _ => true,
            };
            let hits: Vec<Value> = col
                .points
                .iter()
                .take(limit)
                .map(|(id, payload)| {
                    let id: Value = serde_json::from_str(id).unwrap_or(Value::Null);
                    let mut hit = json!({"id": id, "version": 0, "score": 1.0});
                    if with_payload {
                        hit["payload"] = payload.clone();
                    }
                    hit
                })
                .collect();
            match *action {
                "count" => ok(json!({"count": col.points.len()}), started),
                "query" => ok(json!({"points": hits}), started),
                "scroll" => ok(json!({"points": hits, "next_page_offset": null}), started),
                _ => ok(json!(hits), started),
            }
        }
        // A node started without a p2p URI runs without cluster mode, and says only that.
        (Method::GET, ["cluster"]) if node.uri.is_none() => {
            ok(json!({"status": "disabled"}), started)
        }
        (Method::GET, ["cluster"]) => {
            let peers: serde_json::Map<String, Value> = node
                .peers
                .lock()
                .map(|p| {
                    p.iter()
                        .map(|(id, uri)| (id.to_string(), json!({"uri": uri})))
                        .collect()
                })
                .unwrap_or_default();
            ok(
                json!({
                    "status": "enabled",
                    "peer_id": node.peer_id,
                    "peers": peers,
                    "raft_info": {"leader": node.leader.load(Ordering::Relaxed), "role": if node.leader.load(Ordering::Relaxed) == node.peer_id { "Leader" } else { "Follower" }},
                }),
                started,
            )
        }
        (Method::GET, ["telemetry"]) => ok(
            json!({
                "id": node.peer_id.to_string(),
                "app": {"version": VERSION},
                "collections": {
                    "number_of_collections": collections.len(),
                    "collections": collections
                        .iter()
                        .map(|(name, col)| collection_telemetry(node.peer_id, name, col))
                        .collect::<Vec<_>>(),
                },
            }),
            started,
        ),
        (Method::GET, ["metrics"]) => respond(
            StatusCode::OK,
            Some("text/plain"),
            format!("app_info{{name=\"qdrant\",version=\"{VERSION}\"}} 1\n").into_bytes(),
        ),
        _ => error(StatusCode::NOT_FOUND, "Not found", started),
    }
}

/// `GET /collections/{c}` as Qdrant shapes it (clients parse every field), with the stand-in's
/// defaults where Qdrant reports its optimizer's and index's state.
fn collection_info(col: &Collection) -> Value {
    let params = if col.params.is_null() {
        json!({"shard_number": 1, "replication_factor": 1, "write_consistency_factor": 1, "on_disk_payload": true})
    } else {
        col.params.clone()
    };
    json!({
        "status": "green",
        "optimizer_status": "ok",
        "indexed_vectors_count": 0,
        "points_count": col.points.len(),
        "segments_count": 1,
        "config": {
            "params": params,
            "hnsw_config": {"m": 16, "ef_construct": 100, "full_scan_threshold": 10000, "max_indexing_threads": 0, "on_disk": false},
            "optimizer_config": {
                "deleted_threshold": 0.2, "vacuum_min_vector_number": 1000, "default_segment_number": 0,
                "max_segment_size": null, "memmap_threshold": null, "indexing_threshold": 10000,
                "flush_interval_sec": 5, "max_optimization_threads": null, "prevent_unoptimized": null,
            },
            "wal_config": {"wal_capacity_mb": 32, "wal_segments_ahead": 0, "wal_retain_closed": 1},
            "quantization_config": null,
        },
        "payload_schema": {},
        "update_queue": {"length": 0},
    })
}

fn peer_count(node: &Node) -> u64 {
    node.peers.lock().map_or(1, |p| p.len().max(1) as u64)
}

/// Qdrant's placement of a new collection: shard `i`'s replicas on consecutive peers from
/// peer `i`, as many as the replication factor and the peers allow.
fn place_shards(node: &Node, params: &Value) -> BTreeMap<u32, Vec<u64>> {
    let mut peers: Vec<u64> = node
        .peers
        .lock()
        .map(|p| p.keys().copied().collect())
        .unwrap_or_default();
    if peers.is_empty() {
        peers.push(node.peer_id);
    }
    let shards = params["shard_number"].as_u64().unwrap_or(1).max(1) as usize;
    let copies =
        (params["replication_factor"].as_u64().unwrap_or(1).max(1) as usize).min(peers.len());
    (0..shards)
        .map(|i| {
            let holders = (0..copies).map(|r| peers[(i + r) % peers.len()]).collect();
            (i as u32, holders)
        })
        .collect()
}

/// A collection in `/telemetry` as node `me` reports it: per shard, the local replica's
/// vectors and payloads in bytes as Qdrant counts them (4 bytes per dimension; payloads as
/// their JSON here), `null` for a shard held elsewhere.
fn collection_telemetry(me: u64, name: &str, col: &Collection) -> Value {
    let vectors = &col.params["vectors"];
    let dims: u64 = match vectors["size"].as_u64() {
        Some(size) => size,
        // Named vectors: `{"name": {"size": ..}, ..}`.
        None => vectors
            .as_object()
            .map(|named| named.values().filter_map(|v| v["size"].as_u64()).sum())
            .unwrap_or(0),
    };
    let shards = col.shards.len().max(1) as u64;
    let points = col.points.len() as u64;
    let payload_bytes: u64 = col
        .points
        .values()
        .map(|p| p.to_string().len() as u64)
        .sum();
    let per_shard = json!({
        "variant_name": "local shard",
        "status": "green",
        "vectors_size_bytes": points * dims * 4 / shards,
        "payloads_size_bytes": payload_bytes / shards,
        "num_points": points / shards,
    });
    json!({
        "id": name,
        "shards": col.shards.iter().map(|(shard, holders)| json!({
            "id": shard,
            "key": null,
            "local": if holders.contains(&me) { per_shard.clone() } else { Value::Null },
            "remote": [],
        })).collect::<Vec<_>>(),
        "transfers": [],
    })
}

/// `GET /collections/{c}/cluster` as node `me` sees it. Transfers finish at once here.
fn collection_cluster(me: u64, col: &Collection) -> Value {
    let per_shard = col.points.len() / col.shards.len().max(1);
    let mut local = Vec::new();
    let mut remote = Vec::new();
    for (shard, holders) in &col.shards {
        for peer in holders {
            if *peer == me {
                local
                    .push(json!({"shard_id": shard, "points_count": per_shard, "state": "Active"}));
            } else {
                remote.push(json!({"shard_id": shard, "peer_id": peer, "state": "Active"}));
            }
        }
    }
    json!({
        "peer_id": me,
        "shard_count": col.shards.len(),
        "local_shards": local,
        "remote_shards": remote,
        "shard_transfers": [],
    })
}

/// Qdrant's `move_shard`, `replicate_shard` and `drop_replica`, with its refusals.
fn shard_operation(
    col: &mut Collection,
    op: &Value,
    known: impl Fn(u64) -> bool,
) -> Result<(), String> {
    let shard_of = |o: &Value| {
        o["shard_id"]
            .as_u64()
            .and_then(|s| u32::try_from(s).ok())
            .ok_or_else(|| "Bad request: shard_id is required".to_owned())
    };
    let peer = |o: &Value, field: &str| {
        o[field]
            .as_u64()
            .ok_or_else(|| format!("Bad request: {field} is required"))
    };
    if let Some(o) = op.get("move_shard").or_else(|| op.get("replicate_shard")) {
        let moving = op.get("move_shard").is_some();
        let (shard, from, to) = (
            shard_of(o)?,
            peer(o, "from_peer_id")?,
            peer(o, "to_peer_id")?,
        );
        if !known(to) {
            return Err(format!("Bad request: Peer {to} does not exist"));
        }
        let holders = col
            .shards
            .get_mut(&shard)
            .ok_or_else(|| format!("Bad request: Shard {shard} does not exist"))?;
        if !holders.contains(&from) {
            return Err(format!("Bad request: Shard {shard} is not on peer {from}"));
        }
        if holders.contains(&to) {
            return Err(format!(
                "Bad request: Shard {shard} is already on peer {to}"
            ));
        }
        holders.push(to);
        if moving {
            holders.retain(|p| *p != from);
        }
        return Ok(());
    }
    if let Some(o) = op.get("drop_replica") {
        let (shard, gone) = (shard_of(o)?, peer(o, "peer_id")?);
        let holders = col
            .shards
            .get_mut(&shard)
            .ok_or_else(|| format!("Bad request: Shard {shard} does not exist"))?;
        if !holders.contains(&gone) {
            return Err(format!("Bad request: Shard {shard} is not on peer {gone}"));
        }
        if holders.len() == 1 {
            return Err(format!("Bad request: Shard {shard} has no other replica"));
        }
        holders.retain(|p| *p != gone);
        return Ok(());
    }
    Err("Bad request: unknown cluster operation".into())
}
