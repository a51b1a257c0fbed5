//! The stand-in answers like Qdrant 1.18.3, row by row of shared/QDRANT-FACTS.md.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a test: a panic is a failed test

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use jsonwebtoken::{EncodingKey, Header};
use reqwest::StatusCode;
use serde_json::{Value, json};
use testkit::standin::{StandIn, StandInOptions, wait_for_port};
use testkit::{free_port, supervised};

const RW: &str = "rwkeyrwkeyrwkeyrwkeyrwkeyrwkey12";
const RO: &str = "rokeyrokeyrokeyrokeyrokeyrokey12";

fn bin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_qdrant-standin"))
}

fn start(jwt: bool) -> StandIn {
    StandIn::start(
        bin(),
        StandInOptions {
            api_key: Some(RW.into()),
            read_only_api_key: Some(RO.into()),
            jwt_rbac: jwt,
        },
    )
    .unwrap()
}

fn jwt(claims: Value) -> String {
    jsonwebtoken::encode(
        &Header::default(),
        &claims,
        &EncodingKey::from_secret(RW.as_bytes()),
    )
    .unwrap()
}

struct Call {
    status: StatusCode,
    content_type: Option<String>,
    body: String,
}

async fn call(node: &StandIn, method: &str, path: &str, key: Option<&str>, bearer: bool) -> Call {
    let http = reqwest::Client::new();
    let mut req = http.request(method.parse().unwrap(), format!("{}{path}", node.url()));
    if let Some(k) = key {
        req = if bearer {
            req.bearer_auth(k)
        } else {
            req.header("api-key", k)
        };
    }
    if method != "GET" && method != "DELETE" {
        req = req.json(
            &json!({"limit": 3, "points": [{"id": 1, "vector": [0.1], "payload": {"k": "v"}}]}),
        );
    }
    let r = req.send().await.unwrap();
    Call {
        status: r.status(),
        content_type: r
            .headers()
            .get("content-type")
            .map(|v| v.to_str().unwrap().to_owned()),
        body: r.text().await.unwrap(),
    }
}

fn error_of(c: &Call) -> String {
    let v: Value = serde_json::from_str(&c.body).unwrap();
    v["status"]["error"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn without_a_key() {
    let node = start(false);
    for path in ["/", "/healthz", "/livez", "/readyz"] {
        assert_eq!(
            call(&node, "GET", path, None, false).await.status,
            200,
            "{path}"
        );
    }
    let root: Value =
        serde_json::from_str(&call(&node, "GET", "/", None, false).await.body).unwrap();
    assert_eq!(
        root,
        json!({"title": "qdrant - vector search engine", "version": "1.18.3", "commit": "qdrant-standin"})
    );
    let health = call(&node, "GET", "/healthz", None, false).await;
    assert_eq!(
        health.content_type.as_deref(),
        Some("text/plain; charset=utf-8")
    );
    for path in ["/collections", "/metrics", "/telemetry"] {
        let c = call(&node, "GET", path, None, false).await;
        assert_eq!(c.status, 401, "{path}");
        assert_eq!(
            c.content_type, None,
            "{path}: plain text without a content type"
        );
        assert_eq!(
            c.body,
            "Must provide an API key or an Authorization bearer token"
        );
    }
}

#[tokio::test]
async fn keys_and_read_only() {
    let node = start(false);
    let wrong = call(&node, "GET", "/collections", Some("nope"), false).await;
    assert_eq!(
        (wrong.status.as_u16(), wrong.body.as_str()),
        (401, "Invalid API key or JWT")
    );
    for bearer in [false, true] {
        assert_eq!(
            call(&node, "GET", "/collections", Some(RW), bearer)
                .await
                .status,
            200
        );
    }
    assert_eq!(
        call(&node, "PUT", "/collections/a", Some(RW), false)
            .await
            .status,
        200
    );
    assert_eq!(
        call(&node, "PUT", "/collections/a/points", Some(RW), false)
            .await
            .status,
        200
    );
    assert_eq!(
        call(&node, "GET", "/collections", Some(RO), false)
            .await
            .status,
        200
    );
    for read in [
        "/collections/a/points/search",
        "/collections/a/points/query",
    ] {
        let c = call(&node, "POST", read, Some(RO), false).await;
        assert_eq!(c.status, 200, "{read}: reads through POST are allowed");
    }
    let search: Value = serde_json::from_str(
        &call(
            &node,
            "POST",
            "/collections/a/points/search",
            Some(RO),
            true,
        )
        .await
        .body,
    )
    .unwrap();
    assert_eq!(search["status"], "ok");
    assert_eq!(search["result"][0]["id"], 1);
    assert!(
        search["result"][0].get("payload").is_none(),
        "as Qdrant: no payload unless with_payload"
    );
    let write = call(&node, "PUT", "/collections/b", Some(RO), false).await;
    assert_eq!(write.status, 403);
    assert_eq!(
        error_of(&write),
        "Forbidden: Global manage access is required"
    );
}

#[tokio::test]
async fn jwt_rbac() {
    let node = start(true);
    for c in ["a", "b"] {
        assert_eq!(
            call(&node, "PUT", &format!("/collections/{c}"), Some(RW), false)
                .await
                .status,
            200
        );
    }
    let read_a = jwt(json!({"access": [{"collection": "a", "access": "r"}]}));
    assert_eq!(
        call(&node, "GET", "/collections/a", Some(&read_a), false)
            .await
            .status,
        200
    );
    let b = call(&node, "GET", "/collections/b", Some(&read_a), true).await;
    assert_eq!(b.status, 403);
    assert_eq!(
        error_of(&b),
        "Forbidden: Access to collection b is required"
    );
    let list: Value = serde_json::from_str(
        &call(&node, "GET", "/collections", Some(&read_a), false)
            .await
            .body,
    )
    .unwrap();
    assert_eq!(
        list["result"]["collections"],
        json!([{"name": "a"}]),
        "the list is filtered"
    );
    let w = call(&node, "PUT", "/collections/a/points", Some(&read_a), false).await;
    assert_eq!(w.status, 403);
    assert_eq!(
        error_of(&w),
        "Forbidden: Write access to collection a is required"
    );

    let rw_a = jwt(json!({"access": [{"collection": "a", "access": "rw"}]}));
    assert_eq!(
        call(&node, "PUT", "/collections/a/points", Some(&rw_a), false)
            .await
            .status,
        200
    );
    let expired =
        jwt(json!({"access": [{"collection": "a", "access": "rw"}], "exp": 1_000_000_000}));
    let e = call(&node, "GET", "/collections/a", Some(&expired), false).await;
    assert_eq!(
        (e.status.as_u16(), e.body.as_str()),
        (403, "ExpiredSignature")
    );
    let forged = jsonwebtoken::encode(
        &Header::default(),
        &json!({"access": "m"}),
        &EncodingKey::from_secret(b"another key entirely........."),
    )
    .unwrap();
    assert_eq!(
        call(&node, "GET", "/collections", Some(&forged), false)
            .await
            .status,
        401
    );
}

async fn grpc(
    port: u16,
    path: &str,
    key: Option<&str>,
    message: &[u8],
) -> (u16, Bytes, Option<String>) {
    let client: Client<_, Full<Bytes>> = Client::builder(TokioExecutor::new())
        .http2_only(true)
        .build_http();
    let mut frame = vec![0u8];
    frame.extend_from_slice(&u32::try_from(message.len()).unwrap().to_be_bytes());
    frame.extend_from_slice(message);
    let mut req = http::Request::post(format!("http://127.0.0.1:{port}{path}"))
        .header("content-type", "application/grpc")
        .header("te", "trailers");
    if let Some(k) = key {
        req = req.header("api-key", k);
    }
    let response = client
        .request(req.body(Full::new(Bytes::from(frame))).unwrap())
        .await
        .unwrap();
    let head_status = response
        .headers()
        .get("grpc-status")
        .map(|v| v.to_str().unwrap().to_owned());
    let collected = response.into_body().collect().await.unwrap();
    let trailer_status = collected
        .trailers()
        .and_then(|t| t.get("grpc-status"))
        .map(|v| v.to_str().unwrap().to_owned());
    let status = head_status.or(trailer_status).unwrap().parse().unwrap();
    let via = if collected.trailers().is_some() {
        Some("trailers".to_owned())
    } else {
        None
    };
    (status, collected.to_bytes(), via)
}

#[tokio::test]
async fn grpc_echoes_and_refuses_with_status_codes() {
    let node = start(true);
    let search = {
        let mut m = vec![0x0a, 1];
        m.extend_from_slice(b"a");
        m
    };
    let (status, body, via) =
        grpc(node.grpc_port, "/qdrant.Points/Search", Some(RW), &search).await;
    assert_eq!(status, 0);
    assert_eq!(via.as_deref(), Some("trailers"));
    assert_eq!(&body[5..], &search[..], "a unary echo");
    let (status, body, _) = grpc(
        node.grpc_port,
        "/qdrant.Points/Search",
        Some("bad"),
        &search,
    )
    .await;
    assert_eq!(
        (status, body.len()),
        (16, 0),
        "trailers-only UNAUTHENTICATED"
    );
    let (status, _, _) = grpc(node.grpc_port, "/qdrant.Points/Search", None, &search).await;
    assert_eq!(status, 16);
    let (status, _, _) = grpc(node.grpc_port, "/qdrant.Points/Upsert", Some(RO), &search).await;
    assert_eq!(status, 7, "read-only key writing: PERMISSION_DENIED");
    let only_b = jwt(json!({"access": [{"collection": "b", "access": "rw"}]}));
    let (status, _, _) = grpc(
        node.grpc_port,
        "/qdrant.Points/Search",
        Some(&only_b),
        &search,
    )
    .await;
    assert_eq!(status, 7);
}

#[tokio::test]
async fn collections_survive_a_restart_and_requests_are_counted() {
    let mut node = start(false);
    assert_eq!(
        call(&node, "PUT", "/collections/kept", Some(RW), false)
            .await
            .status,
        200
    );
    node.restart().unwrap();
    assert_eq!(
        call(&node, "GET", "/collections/kept", Some(RW), false)
            .await
            .status,
        200
    );
    let missing = call(&node, "GET", "/collections/nope", Some(RW), false).await;
    assert_eq!(missing.status, 404);
    call(&node, "GET", "/collections", Some("bad"), false).await;
    let stats: Value = reqwest::get(format!("{}/__standin/stats", node.url()))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(stats["requests"], 3);
    assert_eq!(stats["authorized"], 2);
}

#[tokio::test]
async fn three_nodes_form_one_cluster_and_share_collections() {
    let dir = tempfile::tempdir().unwrap();
    let mut nodes = Vec::new();
    let mut http_ports = Vec::new();
    let p2p0 = free_port().unwrap();
    for i in 0..3 {
        let (http, grpc_port, p2p) = (
            free_port().unwrap(),
            free_port().unwrap(),
            if i == 0 { p2p0 } else { free_port().unwrap() },
        );
        let mut cmd = Command::new(bin());
        cmd.env("QDRANT__SERVICE__HOST", "127.0.0.1")
            .env("QDRANT__SERVICE__HTTP_PORT", http.to_string())
            .env("QDRANT__SERVICE__GRPC_PORT", grpc_port.to_string())
            .env("QDRANT__CLUSTER__ENABLED", "true")
            .env("QDRANT__CLUSTER__P2P__PORT", p2p.to_string())
            .env("QDRANT__SERVICE__API_KEY", RW)
            .env(
                "QDRANT__STORAGE__STORAGE_PATH",
                dir.path().join(format!("node{i}")),
            )
            .arg("--uri")
            .arg(format!("http://127.0.0.1:{p2p}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        if i > 0 {
            cmd.arg("--bootstrap")
                .arg(format!("http://127.0.0.1:{p2p0}"));
        }
        nodes.push(supervised::spawn(cmd).unwrap());
        wait_for_port(http, Duration::from_secs(10)).unwrap();
        http_ports.push(http);
    }
    let http = reqwest::Client::new();
    for port in &http_ports {
        let mut ready = false;
        for _ in 0..100 {
            if http
                .get(format!("http://127.0.0.1:{port}/readyz"))
                .send()
                .await
                .unwrap()
                .status()
                == 200
            {
                ready = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert!(ready, "node on {port} never became ready");
    }
    let cluster: Value = http
        .get(format!("http://127.0.0.1:{}/cluster", http_ports[0]))
        .header("api-key", RW)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(cluster["result"]["status"], "enabled");
    assert_eq!(cluster["result"]["peers"].as_object().unwrap().len(), 3);
    assert_eq!(cluster["result"]["raft_info"]["role"], "Leader");

    // Every node holds every collection: created on the last node to join (which only knew
    // the bootstrap peer when it joined), written on the second, read on the first.
    let at = |i: usize, path: &str| format!("http://127.0.0.1:{}{path}", http_ports[i]);
    let created = http
        .put(at(2, "/collections/shared"))
        .header("api-key", RW)
        .json(&json!({"vectors": {"size": 2, "distance": "Dot"}}))
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), 200);
    let upserted = http
        .put(at(1, "/collections/shared/points"))
        .header("api-key", RW)
        .json(&json!({"points": [{"id": 7, "vector": [1.0, 0.0], "payload": {"on": "node1"}}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(upserted.status(), 200);
    for i in 0..3 {
        let count: Value = http
            .post(at(i, "/collections/shared/points/count"))
            .header("api-key", RW)
            .json(&json!({}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(
            count["result"]["count"], 1,
            "node {i} did not get the point"
        );
    }
    let deleted = http
        .delete(at(0, "/collections/shared"))
        .header("api-key", RW)
        .send()
        .await
        .unwrap();
    assert_eq!(deleted.status(), 200);
    for i in 0..3 {
        let gone = http
            .get(at(i, "/collections/shared"))
            .header("api-key", RW)
            .send()
            .await
            .unwrap();
        assert_eq!(gone.status(), 404, "node {i} still has the collection");
    }
    for mut n in nodes {
        supervised::kill(&mut n).unwrap();
    }
}

/// Answers where a side-by-side run against Qdrant 1.18.3 showed the stand-in differed, each
/// as Qdrant gave it (official clients read these: `collection_exists`, `get_collection`).
#[tokio::test]
async fn shaped_as_real_qdrant_answered_side_by_side() {
    let node = start(false);
    let http = reqwest::Client::new();
    let send = |method: &str, path: &str, body: Option<Value>| {
        let mut r = http
            .request(method.parse().unwrap(), format!("{}{path}", node.url()))
            .header("api-key", RW);
        if let Some(b) = body {
            r = r.json(&b);
        }
        async move {
            let r = r.send().await.unwrap();
            (r.status(), r.json::<Value>().await.unwrap())
        }
    };
    let (s, b) = send("GET", "/collections/a/exists", None).await;
    assert_eq!(
        (s, b["result"].clone()),
        (StatusCode::OK, json!({"exists": false}))
    );
    let vectors = json!({"size": 2, "distance": "Dot"});
    let (s, _) = send(
        "PUT",
        "/collections/a",
        Some(json!({"vectors": vectors, "shard_number": 3})),
    )
    .await;
    assert_eq!(s, 200);
    let (_, b) = send("GET", "/collections/a/exists", None).await;
    assert_eq!(b["result"], json!({"exists": true}));
    let (_, info) = send("GET", "/collections/a", None).await;
    let info = &info["result"];
    assert_eq!(info["config"]["params"]["vectors"], vectors, "{info}");
    assert_eq!(info["config"]["params"]["shard_number"], 3, "{info}");
    for field in ["segments_count", "indexed_vectors_count", "payload_schema"] {
        assert!(!info[field].is_null(), "{field} missing: {info}");
    }
    for part in ["hnsw_config", "optimizer_config", "wal_config"] {
        assert!(info["config"][part].is_object(), "{part} missing: {info}");
    }
    let points = json!({"points": [{"id": 1, "vector": [1.0, 0.0], "payload": {"k": "v"}}]});
    let (s, _) = send("PUT", "/collections/a/points?wait=true", Some(points)).await;
    assert_eq!(s, 200);
    let (_, plain) = send(
        "POST",
        "/collections/a/points/search",
        Some(json!({"vector": [1.0, 0.0], "limit": 1})),
    )
    .await;
    assert!(
        plain["result"][0].get("payload").is_none(),
        "no payload unless asked: {plain}"
    );
    let (_, asked) = send(
        "POST",
        "/collections/a/points/query",
        Some(json!({"query": [1.0, 0.0], "with_payload": true})),
    )
    .await;
    assert_eq!(asked["result"]["points"][0]["payload"], json!({"k": "v"}));
    // Started without --uri: no cluster mode, and /cluster says only that.
    let (_, cluster) = send("GET", "/cluster", None).await;
    assert_eq!(cluster["result"], json!({"status": "disabled"}));
}
