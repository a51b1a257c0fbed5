//! GateKeeper end to end: real binaries (Orion, Nebula, GateKeeper), real Redis, stand-in
//! Qdrant nodes, real TLS with a client that trusts only the Lyra CA.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a test: a panic is a failed test

mod common;

use std::time::Duration;

use bytes::Bytes;
use common::Platform;
use common::https::Https;
use http_body_util::Full;
use reqwest::Method;
use serde_json::{Value, json};

fn tls_client(ca_pem: &str, port: u16) -> Https {
    Https::new(
        ca_pem,
        format!("127.0.0.1:{port}").parse().unwrap(),
        &["h2", "http/1.1"],
    )
}

async fn call(
    c: &Https,
    method: &str,
    url: &str,
    key: Option<&str>,
    host: Option<&str>,
) -> (u16, String) {
    let mut r = http::Request::builder().method(method).uri(url);
    if let Some(k) = key {
        r = r.header("api-key", k);
    }
    if let Some(h) = host {
        r = r.header("host", h);
    }
    let body = if method == "PUT" || method == "POST" {
        r = r.header("content-type", "application/json");
        json!({"points": [{"id": 1, "vector": [0.1], "payload": {}}], "limit": 1}).to_string()
    } else {
        String::new()
    };
    let a = c
        .send(r.body(Full::new(Bytes::from(body))).unwrap())
        .await
        .unwrap();
    (a.status, a.body)
}

async fn standin_requests(rest: &str) -> u64 {
    let stats: Value = reqwest::get(format!("http://{rest}/__standin/stats"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    stats["requests"].as_u64().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_scopes_and_answers_through_the_gateway() {
    let mut p = Platform::start().await;
    let (account, admin) = p.tenant(10).await;
    p.start_nebula(&[]);
    // One node: stand-in nodes do not replicate collections to each other as Qdrant does.
    let id = p.create_cluster(&admin, &account, 1).await;
    p.wait_phase(&admin, &account, &id, "HEALTHY").await;
    let (rest, _grpc) = p.start_gatekeeper().await;
    let host = format!("{id}.dev.local.localhost");
    let stranger = format!("{}.dev.local.localhost", contract::ids::ClusterId::new());
    let client = tls_client(&p.ca_pem(), rest);
    let base = format!("https://{host}:{rest}");

    let keys = format!("/api/v1/accounts/{account}/clusters/{id}/api-keys");
    let key = |name: &'static str, access: Value| {
        let p = &p;
        let keys = keys.clone();
        let admin = admin.clone();
        async move {
            let (s, k) = p
                .call(
                    &admin,
                    Method::POST,
                    &keys,
                    Some(json!({"name": name, "access": access})),
                )
                .await;
            assert_eq!(s, 201, "{k}");
            (
                k["id"].as_str().unwrap().to_owned(),
                k["key"].as_str().unwrap().to_owned(),
            )
        }
    };
    let (_, manage) = key("manage", json!("manage")).await;
    let (_, reader) = key("reader", json!("read-only")).await;
    let (_, scoped) = key("scoped", json!([{"collection": "a", "access": "r"}])).await;

    // A manage key does everything; the client's key is not Qdrant's, so a 200 proves the swap.
    assert_eq!(
        call(
            &client,
            "PUT",
            &format!("{base}/collections/a"),
            Some(&manage),
            None
        )
        .await
        .0,
        200
    );
    assert_eq!(
        call(
            &client,
            "PUT",
            &format!("{base}/collections/b"),
            Some(&manage),
            None
        )
        .await
        .0,
        200
    );
    let (s, body) = call(
        &client,
        "GET",
        &format!("{base}/collections"),
        Some(&manage),
        None,
    )
    .await;
    assert_eq!(s, 200, "{body}");
    assert!(body.contains("\"a\"") && body.contains("\"b\""));

    // Read-only: reads (POST searches included), no writes.
    assert_eq!(
        call(
            &client,
            "GET",
            &format!("{base}/collections/a"),
            Some(&reader),
            None
        )
        .await
        .0,
        200
    );
    assert_eq!(
        call(
            &client,
            "POST",
            &format!("{base}/collections/a/points/search"),
            Some(&reader),
            None
        )
        .await
        .0,
        200
    );
    let (s, body) = call(
        &client,
        "PUT",
        &format!("{base}/collections/c"),
        Some(&reader),
        None,
    )
    .await;
    assert_eq!(s, 403);
    assert!(body.contains("Global manage access is required"), "{body}");

    // Collection-scoped: only its collections, read only; the upstream sees a JWT.
    assert_eq!(
        call(
            &client,
            "GET",
            &format!("{base}/collections/a"),
            Some(&scoped),
            None
        )
        .await
        .0,
        200
    );
    let (s, body) = call(
        &client,
        "GET",
        &format!("{base}/collections/b"),
        Some(&scoped),
        None,
    )
    .await;
    assert_eq!(s, 403);
    assert!(
        body.contains("Access to collection b is required"),
        "{body}"
    );
    assert_eq!(
        call(
            &client,
            "PUT",
            &format!("{base}/collections/a/points"),
            Some(&scoped),
            None
        )
        .await
        .0,
        403
    );

    // No request without a valid key reaches the cluster, and all get the same answer.
    let route_nodes: Vec<String> = {
        let json: String = redis::cmd("HGET")
            .arg(contract::keyspace::routes())
            .arg(&id)
            .query(&mut p.redis())
            .unwrap();
        let r: contract::route::RouteRecord = serde_json::from_str(&json).unwrap();
        r.nodes.into_iter().map(|n| n.rest).collect()
    };
    let mut before = 0;
    for n in &route_nodes {
        before += standin_requests(n).await;
    }
    let other_cluster_key = {
        let other = p.create_cluster(&admin, &account, 1).await;
        p.wait_phase(&admin, &account, &other, "HEALTHY").await;
        let (s, k) = p
            .call(
                &admin,
                Method::POST,
                &format!("/api/v1/accounts/{account}/clusters/{other}/api-keys"),
                Some(json!({"name": "elsewhere", "access": "manage"})),
            )
            .await;
        assert_eq!(s, 201);
        k["key"].as_str().unwrap().to_owned()
    };
    let mut tampered = manage.clone();
    tampered.replace_range(40..41, if &manage[40..41] == "A" { "B" } else { "A" });
    let mut bodies = std::collections::HashSet::new();
    for bad in [
        None,
        Some("garbage"),
        Some(tampered.as_str()),
        Some(other_cluster_key.as_str()),
    ] {
        let (s, body) = call(&client, "GET", &format!("{base}/collections"), bad, None).await;
        assert_eq!(s, 401, "{bad:?}");
        bodies.insert(body);
    }
    assert_eq!(
        bodies.len(),
        1,
        "every bad credential gets the same answer: {bodies:?}"
    );
    let mut after = 0;
    for n in &route_nodes {
        after += standin_requests(n).await;
    }
    assert_eq!(after, before, "a refused request reached a node");

    // Unknown host: 404. SNI of one cluster with the Host of another: 421.
    let (s, _) = call(
        &client,
        "GET",
        &format!("https://{stranger}:{rest}/collections"),
        Some(&manage),
        None,
    )
    .await;
    assert_eq!(s, 404);
    // (HTTP/1.1, where Host is a header: on h2 a conflicting Host is malformed, 400.)
    let http1 = Https::new(
        &p.ca_pem(),
        format!("127.0.0.1:{rest}").parse().unwrap(),
        &["http/1.1"],
    );
    let (s, _) = call(
        &http1,
        "GET",
        &format!("{base}/collections"),
        Some(&manage),
        Some(&stranger),
    )
    .await;
    assert_eq!(s, 421);
    let (s, _) = call(
        &http1,
        "GET",
        &format!("{base}/collections"),
        Some(&manage),
        None,
    )
    .await;
    assert_eq!(s, 200, "HTTP/1.1 through TLS works too");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoked_key_is_refused_and_a_new_key_works_at_once() {
    let mut p = Platform::start().await;
    let (account, admin) = p.tenant(10).await;
    p.start_nebula(&[]);
    let id = p.create_cluster(&admin, &account, 1).await;
    p.wait_phase(&admin, &account, &id, "HEALTHY").await;
    let (rest, _) = p.start_gatekeeper().await;
    let host = format!("{id}.dev.local.localhost");
    let client = tls_client(&p.ca_pem(), rest);
    let url = format!("https://{host}:{rest}/collections");

    let keys = format!("/api/v1/accounts/{account}/clusters/{id}/api-keys");
    let (s, k) = p
        .call(
            &admin,
            Method::POST,
            &keys,
            Some(json!({"name": "soon-gone", "access": "manage"})),
        )
        .await;
    assert_eq!(s, 201);
    let key = k["key"].as_str().unwrap().to_owned();
    assert_eq!(
        call(&client, "GET", &url, Some(&key), None).await.0,
        200,
        "a new key works at once"
    );

    let (s, _) = p
        .call(
            &admin,
            Method::DELETE,
            &format!("{keys}/{}", k["id"].as_str().unwrap()),
            None,
        )
        .await;
    assert_eq!(s, 204);
    let mut refused = false;
    for _ in 0..100 {
        if call(&client, "GET", &url, Some(&key), None).await.0 == 401 {
            refused = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(refused, "a revoked key was still accepted after 5 s");
}

/// A cluster with one node behind a gateway started with `env`, and a manage key.
async fn one_node_behind_a_gateway(
    p: &mut Platform,
    env: &[(&str, &str)],
) -> (String, String, String, u16, u16) {
    let (account, admin) = p.tenant(10).await;
    p.start_nebula(&[]);
    let id = p.create_cluster(&admin, &account, 1).await;
    p.wait_phase(&admin, &account, &id, "HEALTHY").await;
    let (rest, grpc) = p.start_gatekeeper_with(env).await;
    let keys = format!("/api/v1/accounts/{account}/clusters/{id}/api-keys");
    let (s, k) = p
        .call(
            &admin,
            Method::POST,
            &keys,
            Some(json!({"name": "app", "access": "manage"})),
        )
        .await;
    assert_eq!(s, 201);
    (
        account,
        id,
        k["key"].as_str().unwrap().to_owned(),
        rest,
        grpc,
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_over_tls_reaches_the_node_and_refusals_are_grpc_statuses() {
    let mut p = Platform::start().await;
    let (_, id, key, _, grpc) = one_node_behind_a_gateway(&mut p, &[]).await;
    let host = format!("{id}.dev.local.localhost");
    let channel = common::grpc::channel(&p.ca_pem(), grpc, &host, &host).await;
    let message = Bytes::from_static(b"\x0a\x01a");
    let echoed = common::grpc::unary(
        &channel,
        "/qdrant.Points/Search",
        Some(&key),
        message.clone(),
    )
    .await
    .expect("a manage key's call reaches the node");
    assert_eq!(echoed, message, "the node echoed the call");
    // A real gRPC client must read the gateway's refusal as a status, not a broken stream.
    for bad in [None, Some("not-a-key"), Some(&key[..key.len() - 1])] {
        let (code, text) =
            common::grpc::code(&channel, "/qdrant.Points/Search", bad, message.clone()).await;
        assert_eq!(code, tonic::Code::Unauthenticated, "{bad:?}: {text}");
        assert_eq!(
            text,
            gateway::answers::UNAUTHENTICATED,
            "one generic message"
        );
    }
    // The refusal did not spoil the connection: the next call on it still works.
    assert!(
        common::grpc::unary(&channel, "/qdrant.Points/Search", Some(&key), message)
            .await
            .is_ok()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_the_rate_limit_is_429_with_retry_after() {
    let mut p = Platform::start().await;
    let (_, id, key, rest, _) =
        one_node_behind_a_gateway(&mut p, &[("LYRA_KEY_RPS", "1"), ("LYRA_KEY_BURST", "2")]).await;
    let client = tls_client(&p.ca_pem(), rest);
    let url = format!("https://{id}.dev.local.localhost:{rest}/collections");
    let mut statuses = Vec::new();
    for _ in 0..4 {
        let mut r = http::Request::get(&url).header("api-key", &key);
        r = r.header("accept", "application/json");
        let a = client
            .send(r.body(Full::new(Bytes::new())).unwrap())
            .await
            .unwrap();
        if a.status == 429 {
            assert!(a.headers.contains_key("retry-after"));
            assert!(a.body.contains("rate limit"));
        }
        statuses.push(a.status);
    }
    assert_eq!(&statuses[..2], [200, 200], "the burst is allowed");
    assert!(statuses[2..].contains(&429), "{statuses:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_gone_the_gateway_keeps_serving_and_catches_up_after() {
    let mut p = Platform::start().await;
    let (account, id, key, rest, _) =
        one_node_behind_a_gateway(&mut p, &[("LYRA_RESYNC_SECS", "1")]).await;
    let client = tls_client(&p.ca_pem(), rest);
    let url = format!("https://{id}.dev.local.localhost:{rest}/collections");
    let keys = format!("/api/v1/accounts/{account}/clusters/{id}/api-keys");
    let (_, listed) = p.call(common::OPERATOR, Method::GET, &keys, None).await;
    let key_id = listed[0]["id"].as_str().unwrap().to_owned();
    p.kill_nebula();
    p.redis.kill().unwrap();
    for _ in 0..5 {
        assert_eq!(
            call(&client, "GET", &url, Some(&key), None).await.0,
            200,
            "last known good state"
        );
    }
    p.redis.restart().unwrap();
    // A revocation written while the gateway was away, never published: only a resync
    // can bring it.
    let _: () = redis::cmd("ZADD")
        .arg(contract::keyspace::revoked_keys())
        .arg("+inf")
        .arg(&key_id)
        .query(&mut p.redis())
        .unwrap();
    let mut refused = false;
    for _ in 0..100 {
        if call(&client, "GET", &url, Some(&key), None).await.0 == 401 {
            refused = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(refused, "the gateway never resynced after Redis came back");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_node_answering_is_a_502_in_qdrants_shape() {
    let mut p = Platform::start().await;
    let (_, id, key, rest, _) = one_node_behind_a_gateway(&mut p, &[]).await;
    p.kill_nebula(); // nobody restarts the node now
    p.kill_all_nodes();
    let client = tls_client(&p.ca_pem(), rest);
    let (s, body) = call(
        &client,
        "GET",
        &format!("https://{id}.dev.local.localhost:{rest}/collections"),
        Some(&key),
        None,
    )
    .await;
    assert_eq!(s, 502, "{body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    assert!(v["status"]["error"].as_str().unwrap().contains("no node"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn usage_reaches_orion_within_seconds() {
    let mut p = Platform::start().await;
    let (account, id, key, rest, _) = one_node_behind_a_gateway(&mut p, &[]).await;
    let client = tls_client(&p.ca_pem(), rest);
    for _ in 0..7 {
        assert_eq!(
            call(
                &client,
                "GET",
                &format!("https://{id}.dev.local.localhost:{rest}/collections"),
                Some(&key),
                None
            )
            .await
            .0,
            200
        );
    }
    let path = format!("/api/v1/accounts/{account}/clusters/{id}/usage");
    let mut seen = Value::Null;
    for _ in 0..50 {
        seen = p.call(common::OPERATOR, Method::GET, &path, None).await.1;
        if seen["counters"]["requests"] == 7 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(seen["counters"]["requests"], 7, "{seen}");
    assert!(seen["counters"]["bytes_out"].as_u64().unwrap() > 0);
}

/// Sends raw bytes over TLS (HTTP/1.1) and returns every status line the gateway answered.
async fn raw_exchange(ca_pem: &str, port: u16, sni: &str, request: &[u8]) -> Vec<u16> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let _ = rustls::crypto::ring::default_provider().install_default();
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls::pki_types::pem::PemObject::pem_slice_iter(ca_pem.as_bytes()) {
        roots.add(cert.unwrap()).unwrap();
    }
    let config = rustls::ClientConfig::builder()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(std::sync::Arc::new(config));
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    let name = rustls::pki_types::ServerName::try_from(sni.to_owned()).unwrap();
    let mut tls = connector.connect(name, tcp).await.unwrap();
    tls.write_all(request).await.unwrap();
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), tls.read_to_end(&mut out)).await;
    String::from_utf8_lossy(&out)
        .lines()
        .filter_map(|l| l.strip_prefix("HTTP/1.1 "))
        .filter_map(|l| l.get(..3)?.parse().ok())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_smuggling_probes_are_refused() {
    let mut p = Platform::start().await;
    let (_, id, key, rest, _) = one_node_behind_a_gateway(&mut p, &[]).await;
    let host = format!("{id}.dev.local.localhost");
    let ca = p.ca_pem();
    let route: contract::route::RouteRecord = p.route_record(&id);
    let before = standin_requests(&route.nodes[0].rest).await;
    let head =
        format!("POST /collections/a/points/search HTTP/1.1\r\nHost: {host}\r\napi-key: {key}\r\n");
    let smuggled = "GET /collections HTTP/1.1\r\nHost: x\r\n\r\n";
    // Ambiguous framing is refused before routing: nothing reaches the node.
    let framing = [
        (
            "CL+TE",
            format!(
                "{head}Content-Length: 6\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n{smuggled}"
            ),
        ),
        (
            "duplicate CL",
            format!(
                "{head}Content-Length: 2\r\nContent-Length: 40\r\nConnection: close\r\n\r\n{{}}{smuggled}"
            ),
        ),
        (
            "TE not chunked",
            format!("{head}Transfer-Encoding: gzip, chunked\r\nConnection: close\r\n\r\n0\r\n\r\n"),
        ),
    ];
    for (what, probe) in framing {
        let statuses = raw_exchange(&ca, rest, &host, probe.as_bytes()).await;
        assert_eq!(
            statuses,
            [400],
            "{what}: the probe or its smuggled request was answered"
        );
    }
    assert_eq!(
        standin_requests(&route.nodes[0].rest).await,
        before,
        "a framing probe reached the node"
    );
    // A broken chunk is found while the body streams (pingora re-frames the body, so no byte
    // passes through raw): the client gets 400 and nothing after it on the connection is served.
    let bad_chunk =
        format!("{head}Transfer-Encoding: chunked\r\n\r\nzz\r\n{{}}\r\n0\r\n\r\n{smuggled}");
    assert_eq!(
        raw_exchange(&ca, rest, &host, bad_chunk.as_bytes()).await,
        [400]
    );
    // A well-formed request on the same path works.
    let fine = format!(
        "PUT /collections/a HTTP/1.1\r\nHost: {host}\r\napi-key: {key}\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{{}}"
    );
    assert_eq!(raw_exchange(&ca, rest, &host, fine.as_bytes()).await, [200]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_being_deleted_is_a_503_with_retry_after_and_metrics_tell_no_secret() {
    let mut p = Platform::start().await;
    let (account, id, key, rest, _) = one_node_behind_a_gateway(&mut p, &[]).await;
    let client = tls_client(&p.ca_pem(), rest);
    let url = format!("https://{id}.dev.local.localhost:{rest}/collections");
    assert_eq!(call(&client, "GET", &url, Some(&key), None).await.0, 200);
    p.kill_nebula(); // the deletion stays in progress
    let (s, _) = p
        .call(
            common::OPERATOR,
            Method::DELETE,
            &format!("/api/v1/accounts/{account}/clusters/{id}"),
            None,
        )
        .await;
    assert_eq!(s, 202);
    let mut answered = (0, String::new());
    for _ in 0..50 {
        let mut r = http::Request::get(&url).header("api-key", &key);
        r = r.header("accept", "application/json");
        let a = client
            .send(r.body(Full::new(Bytes::new())).unwrap())
            .await
            .unwrap();
        if a.status == 503 {
            assert_eq!(a.headers["retry-after"], "2");
            answered = (a.status, a.body);
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(answered.0, 503, "a cluster being deleted was still served");
    assert!(answered.1.contains("not ready"));

    let admin = p.gatekeeper.as_ref().unwrap().admin;
    let metrics = reqwest::get(format!("http://127.0.0.1:{admin}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("gatekeeper_requests_total{class=\"2xx\",listener=\"rest\"}"),
        "{metrics}"
    );
    assert!(metrics.contains("gatekeeper_routes_known"));
    assert!(
        !metrics.contains(&key) && !metrics.contains(&id),
        "metrics named a key or a cluster"
    );
}

/// Every status the gateway makes on the gRPC port, as a real gRPC client (tonic) reads it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_grpc_refusal_is_its_status_code() {
    use tonic::Code;
    let mut p = Platform::start().await;
    let (account, id, key, _, grpc) =
        one_node_behind_a_gateway(&mut p, &[("LYRA_KEY_RPS", "1"), ("LYRA_KEY_BURST", "3")]).await;
    let keys = format!("/api/v1/accounts/{account}/clusters/{id}/api-keys");
    let new_key = async |name: &str, access: &str| {
        let (s, k) = p
            .call(
                common::OPERATOR,
                Method::POST,
                &keys,
                Some(json!({"name": name, "access": access})),
            )
            .await;
        assert_eq!(s, 201);
        k["key"].as_str().unwrap().to_owned()
    };
    let reader = new_key("ro", "read-only").await;
    let operator = new_key("ops", "manage").await;
    let ca = p.ca_pem();
    let host = format!("{id}.dev.local.localhost");
    let message = || Bytes::from_static(b"\x0a\x01a");
    let channel = common::grpc::channel(&ca, grpc, &host, &host).await;

    let nowhere = format!("{}.dev.local.localhost", contract::ids::ClusterId::new());
    let unknown = common::grpc::channel(&ca, grpc, &nowhere, &nowhere).await;
    let (code, text) =
        common::grpc::code(&unknown, "/qdrant.Points/Search", Some(&key), message()).await;
    assert_eq!(code, Code::NotFound, "unknown host: {text}");
    assert!(text.contains("no cluster"), "{text}");

    // TLS names one cluster, :authority another: 421 on REST, UNAVAILABLE on gRPC.
    let misdirected = common::grpc::channel(&ca, grpc, &nowhere, &host).await;
    let (code, text) =
        common::grpc::code(&misdirected, "/qdrant.Points/Search", Some(&key), message()).await;
    assert_eq!(code, Code::Unavailable, "SNI and :authority differ: {text}");
    assert!(text.contains("Misdirected"), "{text}");

    // A read-only key writing: the node refuses with its own trailers-only 7, which the
    // gateway passes through intact.
    let (code, text) =
        common::grpc::code(&channel, "/qdrant.Points/Upsert", Some(&reader), message()).await;
    assert_eq!(code, Code::PermissionDenied, "{text}");

    let mut codes = Vec::new();
    for _ in 0..4 {
        codes.push(
            common::grpc::code(&channel, "/qdrant.Points/Search", Some(&key), message()).await,
        );
    }
    let limited = codes.iter().find(|(c, _)| *c == Code::ResourceExhausted);
    assert!(
        limited.is_some(),
        "RESOURCE_EXHAUSTED after the burst: {codes:?}"
    );
    assert!(
        limited.is_some_and(|(_, t)| t.contains("rate limit")),
        "{codes:?}"
    );

    // No node answers (Nebula is gone, so nobody restarts them): UNAVAILABLE, not a hang.
    p.kill_nebula();
    p.kill_all_nodes();
    let (code, text) = common::grpc::code(
        &channel,
        "/qdrant.Points/Search",
        Some(&operator),
        message(),
    )
    .await;
    assert_eq!(code, Code::Unavailable, "no node: {text}");
    assert!(text.contains("no node"), "{text}");

    let (s, _) = p
        .call(
            common::OPERATOR,
            Method::DELETE,
            &format!("/api/v1/accounts/{account}/clusters/{id}"),
            None,
        )
        .await;
    assert_eq!(s, 202);
    let mut last = (Code::Ok, String::new());
    for _ in 0..50 {
        last =
            common::grpc::code(&channel, "/qdrant.Points/Search", Some(&reader), message()).await;
        if last.0 == Code::Unavailable && last.1.contains("not ready") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        last.0,
        Code::Unavailable,
        "a cluster being deleted: {last:?}"
    );
    assert!(last.1.contains("not ready"), "{last:?}");
}

/// What grpcio, the C-core client under qdrant-client, reads of every status the gateway
/// makes: each must be a trailers-only answer (one HEADERS frame that ends the stream), which
/// grpcio reads as the status; anything after it (an empty DATA frame) it reports as
/// `UNKNOWN: Stream removed`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpcio_reads_every_gateway_refusal_as_its_status() {
    use common::grpc::{GrpcioCall, grpcio};
    let mut p = Platform::start().await;
    let (account, id, key, _, grpc) =
        one_node_behind_a_gateway(&mut p, &[("LYRA_KEY_RPS", "1"), ("LYRA_KEY_BURST", "2")]).await;
    let keys = format!("/api/v1/accounts/{account}/clusters/{id}/api-keys");
    let mut others = Vec::new();
    for (name, access) in [("ro", "read-only"), ("ops", "manage"), ("late", "manage")] {
        let (s, k) = p
            .call(
                common::OPERATOR,
                Method::POST,
                &keys,
                Some(json!({"name": name, "access": access})),
            )
            .await;
        assert_eq!(s, 201);
        others.push(k["key"].as_str().unwrap().to_owned());
    }
    let (reader, operator, late) = (&others[0], &others[1], &others[2]);
    let ca = p.ca_pem();
    let host = format!("{id}.dev.local.localhost");
    let nowhere = format!("{}.dev.local.localhost", contract::ids::ClusterId::new());
    let call = |method, key, sni, authority| GrpcioCall {
        method,
        key,
        sni,
        authority,
        message: b"\x0a\x01a",
    };
    let search = "/qdrant.Points/Search";
    let answers = tokio::task::block_in_place(|| {
        grpcio(
            &ca,
            grpc,
            &[
                call(search, Some(&key), &host, &host),
                call(search, None, &host, &host),
                call(search, Some("lyra_forged"), &host, &host),
                call(search, Some(&key), &nowhere, &nowhere),
                call(search, Some(&key), &nowhere, &host),
                call("/qdrant.Points/Upsert", Some(reader), &host, &host),
                call(search, Some(&key), &host, &host),
                call(search, Some(&key), &host, &host),
            ],
        )
    });
    let codes: Vec<&str> = answers.iter().map(|(c, _)| c.as_str()).collect();
    assert_eq!(
        codes,
        [
            "OK",
            "UNAUTHENTICATED",
            "UNAUTHENTICATED",
            "NOT_FOUND",
            "UNAVAILABLE",
            "PERMISSION_DENIED",
            "OK",
            "RESOURCE_EXHAUSTED",
        ],
        "{answers:?}"
    );
    assert_eq!(answers[1].1, gateway::answers::UNAUTHENTICATED);
    assert!(answers[4].1.contains("Misdirected"), "{answers:?}");
    assert!(answers[7].1.contains("rate limit"), "{answers:?}");

    // No node answers: UNAVAILABLE. Then the cluster is being deleted: UNAVAILABLE, not ready.
    p.kill_nebula();
    p.kill_all_nodes();
    let down = tokio::task::block_in_place(|| {
        grpcio(&ca, grpc, &[call(search, Some(operator), &host, &host)])
    });
    assert_eq!(down[0].0, "UNAVAILABLE", "{down:?}");
    assert!(down[0].1.contains("no node"), "{down:?}");
    let (s, _) = p
        .call(
            common::OPERATOR,
            Method::DELETE,
            &format!("/api/v1/accounts/{account}/clusters/{id}"),
            None,
        )
        .await;
    assert_eq!(s, 202);
    let mut last = Vec::new();
    for _ in 0..50 {
        last = tokio::task::block_in_place(|| {
            grpcio(&ca, grpc, &[call(search, Some(late), &host, &host)])
        });
        if last[0].1.contains("not ready") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(last[0].0, "UNAVAILABLE", "{last:?}");
    assert!(last[0].1.contains("not ready"), "{last:?}");
}

/// A node that takes connections and never answers (stopped: the kernel still accepts them)
/// holds a request only as long as the read timeout: the client gets a Qdrant-shaped 504
/// (gRPC 14), not a hang, and the node serves again once it runs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_that_accepts_and_never_answers_is_a_504_not_a_hang() {
    let mut p = Platform::start().await;
    let (_, id, key, rest, grpc) =
        one_node_behind_a_gateway(&mut p, &[("LYRA_UPSTREAM_READ_TIMEOUT_MS", "300")]).await;
    let pids = p.node_processes(&id);
    assert_eq!(pids.len(), 1);
    let signal = |sig| {
        // SAFETY: kill(2) on this test's own node process.
        unsafe { libc::kill(pids[0] as libc::pid_t, sig) };
    };
    signal(libc::SIGSTOP);
    let client = tls_client(&p.ca_pem(), rest);
    let url = format!("https://{id}.dev.local.localhost:{rest}/collections");
    // Without a read timeout the gateway would wait as long as the node: the bound here is
    // only so the test itself ends.
    let (status, body) = tokio::time::timeout(
        Duration::from_secs(20),
        call(&client, "GET", &url, Some(&key), None),
    )
    .await
    .expect("the gateway answered instead of waiting for the node");
    assert_eq!(status, 504, "{body}");
    assert!(body.contains("did not answer in time"), "{body}");
    let host = format!("{id}.dev.local.localhost");
    let channel = common::grpc::channel(&p.ca_pem(), grpc, &host, &host).await;
    let (code, text) = tokio::time::timeout(
        Duration::from_secs(20),
        common::grpc::code(
            &channel,
            "/qdrant.Points/Search",
            Some(&key),
            Bytes::from_static(b"\x0a\x01a"),
        ),
    )
    .await
    .expect("the gateway answered instead of waiting for the node");
    assert_eq!(code, tonic::Code::Unavailable, "{text}");
    signal(libc::SIGCONT);
    // Nebula's control loop may have marked the cluster NOT_READY meanwhile: it is served
    // again at its next pass.
    let mut back = 0;
    for _ in 0..300 {
        back = call(&client, "GET", &url, Some(&key), None).await.0;
        if back == 200 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(back, 200, "the node serves again once it runs");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_regions_certificate_is_served_by_a_running_gateway() {
    let mut p = Platform::start().await;
    let (_, _, _, rest, _) = one_node_behind_a_gateway(&mut p, &[]).await;
    let client = tls_client(&p.ca_pem(), rest);
    let url = format!(
        "https://{}.new.local.localhost:{rest}/collections",
        contract::ids::ClusterId::new()
    );
    let before = client
        .send(
            http::Request::get(&url)
                .body(Full::new(Bytes::new()))
                .unwrap(),
        )
        .await;
    assert!(
        before.is_err(),
        "no certificate is served for a region that does not exist yet"
    );
    let (s, _) = p
        .call(common::OPERATOR, Method::PUT, "/api/v1/regions/local/new", Some(json!({"driver": "local", "capacity": {"nodes": 1, "cpu": 1000, "memory": 1024, "disk": 10}})))
        .await;
    assert_eq!(s, 200);
    let mut served = None;
    for _ in 0..50 {
        if let Ok(a) = client
            .send(
                http::Request::get(&url)
                    .body(Full::new(Bytes::new()))
                    .unwrap(),
            )
            .await
        {
            served = Some(a.status);
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        served,
        Some(404),
        "the handshake now succeeds (and the unknown cluster is a 404)"
    );
}

/// What `Https::send` gives for a request to the cluster: its status, or `None` when the TLS
/// handshake or the exchange failed.
async fn status_of(ca_pem: &str, rest: u16, id: &str, key: &str) -> Option<u16> {
    let url = format!("https://{id}.dev.local.localhost:{rest}/collections");
    tls_client(ca_pem, rest)
        .send(
            http::Request::get(&url)
                .header("api-key", key)
                .body(Full::new(Bytes::new()))
                .unwrap(),
        )
        .await
        .ok()
        .map(|a| a.status)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gatekeeper_holds_only_the_gateway_key_and_old_sealed_values_are_resealed_for_it() {
    let mut p = Platform::start().await;
    // The harness gives GateKeeper only LYRA_GATEWAY_KEY: it serves TLS and opens the route.
    let (_, id, key, rest, _) = one_node_behind_a_gateway(&mut p, &[]).await;
    let ca = p.ca_pem();
    assert_eq!(status_of(&ca, rest, &id, &key).await, Some(200));

    // What GateKeeper is configured with cannot open the CA's private key in this Redis.
    let gateway =
        contract::seal::Keyring::serving_from_config(&common::gateway_key(), &[]).unwrap();
    let full = contract::seal::Keyring::from_config(common::MASTER_KEY, &[]).unwrap();
    let client = p.redis.client().unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let refused = certs::store::load_ca(&mut conn, &gateway).await.err();
    assert!(
        refused
            .as_ref()
            .is_some_and(|e| e.to_string().contains("holds no authority key")),
        "{refused:?}"
    );
    assert!(
        certs::store::load_ca(&mut conn, &full)
            .await
            .unwrap()
            .is_some()
    );

    // Given the platform key, it refuses to start, and says what to give it instead.
    let out = common::lyra()
        .arg("gatekeeper")
        .env("LYRA_REDIS_URL", p.redis.url())
        .env("LYRA_MASTER_KEY", common::MASTER_KEY)
        .env("LYRA_GATEWAY_KEY", common::gateway_key())
        .env(
            "LYRA_GATEKEEPER_REST",
            format!("127.0.0.1:{}", testkit::free_port().unwrap()),
        )
        .env(
            "LYRA_GATEKEEPER_GRPC",
            format!("127.0.0.1:{}", testkit::free_port().unwrap()),
        )
        .env(
            "LYRA_GATEKEEPER_ADMIN",
            format!("127.0.0.1:{}", testkit::free_port().unwrap()),
        )
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(stderr.contains("LYRA_GATEWAY_KEY"), "{stderr}");
    assert!(!stderr.contains(common::MASTER_KEY), "{stderr}");

    // Everything sealed the way releases before purposes did (under the platform key itself):
    // a GateKeeper with only the gateway key can serve none of it...
    p.stop_gatekeeper();
    let platform_key = contract::seal::PlatformKey::from_base64(common::MASTER_KEY).unwrap();
    let old_ways = contract::seal::Keyring::before_purposes(platform_key);
    let downgraded = control::reseal::run(&mut conn, &old_ways).await.unwrap();
    assert!(
        downgraded.resealed >= 6,
        "CA, region, secrets and route: {downgraded:?}"
    );
    let (rest, _) = p.start_gatekeeper().await;
    assert_eq!(
        status_of(&ca, rest, &id, &key).await,
        None,
        "no certificate it can open"
    );
    p.stop_gatekeeper();

    // ...until Orion starts: it reseals every value for its purpose, once.
    let cluster: contract::ids::ClusterId = id.parse().unwrap();
    let stored = |conn: &mut redis::Connection| -> Vec<String> {
        let get = |c: &mut redis::Connection, k: String| -> String {
            redis::cmd("GET").arg(k).query(c).unwrap()
        };
        vec![
            get(conn, contract::keyspace::ca()),
            get(conn, contract::keyspace::certificate("local", "dev")),
            get(conn, contract::keyspace::cluster_secrets(cluster)),
            redis::cmd("HGET")
                .arg(contract::keyspace::routes())
                .arg(&id)
                .query(conn)
                .unwrap(),
        ]
    };
    let legacy_kid = "\"kid\":\"11d3111c37a361c4\"";
    let mut sync = p.redis();
    for v in stored(&mut sync) {
        assert!(v.contains(legacy_kid), "{v}");
    }
    p.restart_orion().await;
    p.wait_until(
        || {
            let values = stored(&mut p.redis());
            async move {
                values
                    .iter()
                    .all(|v| !v.contains(legacy_kid) && v.contains("\"kid\""))
            }
        },
        "Orion resealed every stored value",
    )
    .await;
    let (rest, _) = p.start_gatekeeper().await;
    assert_eq!(
        status_of(&ca, rest, &id, &key).await,
        Some(200),
        "the same key works again"
    );
    assert!(certs::store::load_ca(&mut conn, &gateway).await.is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oversized_header_block_is_431_before_any_upstream_work() {
    let mut p = Platform::start().await;
    let (_, id, key, rest, _) = one_node_behind_a_gateway(&mut p, &[]).await;
    let ca = p.ca_pem();
    let url = format!("https://{id}.dev.local.localhost:{rest}/collections");
    let route: contract::route::RouteRecord = p.route_record(&id);
    let node = route.nodes[0].rest.clone();
    let send = |alpn: &'static [&'static str], filler: usize| {
        let (ca, url, key) = (ca.clone(), url.clone(), key.clone());
        async move {
            let c = Https::new(&ca, format!("127.0.0.1:{rest}").parse().unwrap(), alpn);
            c.send(
                http::Request::get(&url)
                    .header("api-key", key)
                    .header("x-filler", "a".repeat(filler))
                    .body(Full::new(Bytes::new()))
                    .unwrap(),
            )
            .await
            .unwrap()
        }
    };
    for alpn in [&["http/1.1"][..], &["h2"][..]] {
        let before = standin_requests(&node).await;
        // Real Qdrant takes even 100 KiB of headers; the gateway stops at 32 KiB, as nginx.
        let big = send(alpn, 40 * 1024).await;
        assert_eq!(big.status, 431, "{alpn:?}: {}", big.body);
        let body: Value = serde_json::from_str(&big.body).unwrap();
        assert!(
            body["status"]["error"]
                .as_str()
                .is_some_and(|e| e.contains("too large")),
            "{}",
            big.body
        );
        assert_eq!(
            standin_requests(&node).await,
            before,
            "the node saw nothing"
        );
        let fine = send(alpn, 20 * 1024).await;
        assert_eq!(fine.status, 200, "{alpn:?}: {}", fine.body);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_published_by_host_name_are_resolved_and_an_unresolvable_one_is_skipped() {
    let mut p = Platform::start().await;
    let (_, id, key, _, _) = one_node_behind_a_gateway(&mut p, &[]).await;
    // As the kubernetes driver publishes them: names, one of which does not resolve.
    let node = p.route_record(&id).nodes[0].clone();
    let by_name = |addr: &str| addr.replace("127.0.0.1", "localhost");
    let nodes = vec![
        contract::route::NodeEndpoint {
            rest: "qdrant-0.no-such-cluster.invalid:6333".into(),
            grpc: "qdrant-0.no-such-cluster.invalid:6334".into(),
        },
        contract::route::NodeEndpoint {
            rest: by_name(&node.rest),
            grpc: by_name(&node.grpc),
        },
    ];
    let before = standin_requests(&node.rest).await;
    let rest = reroute(&mut p, &id, nodes).await;
    let ca = p.ca_pem();
    for _ in 0..6 {
        assert_eq!(status_of(&ca, rest, &id, &key).await, Some(200));
    }
    assert_eq!(
        standin_requests(&node.rest).await,
        before + 6,
        "every request reached the node"
    );
    let metrics = gateway_metrics(&p).await;
    assert!(
        metrics.contains("gatekeeper"),
        "the gateway is alive and serving its metrics"
    );
}

/// The running gateway's Prometheus metrics, as text.
async fn gateway_metrics(p: &Platform) -> String {
    let admin = p.gatekeeper.as_ref().unwrap().admin;
    reqwest::get(format!("http://127.0.0.1:{admin}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

/// Points the cluster's route at `nodes` (the gateway is restarted to load it).
async fn reroute(p: &mut Platform, id: &str, nodes: Vec<contract::route::NodeEndpoint>) -> u16 {
    p.stop_gatekeeper();
    let mut route = p.route_record(id);
    route.nodes = nodes;
    let _: () = redis::cmd("HSET")
        .arg(contract::keyspace::routes())
        .arg(id)
        .arg(serde_json::to_string(&route).unwrap())
        .query(&mut p.redis())
        .unwrap();
    p.start_gatekeeper().await.0
}

/// Points the cluster's route at one node answering REST and gRPC on `addr`.
async fn reroute_to_one(p: &mut Platform, id: &str, addr: String) -> u16 {
    let node = contract::route::NodeEndpoint {
        rest: addr.clone(),
        grpc: addr,
    };
    reroute(p, id, vec![node]).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_is_retried_on_the_next_node_only_when_nothing_was_sent() {
    let mut p = Platform::start().await;
    let (_, id, key, _, _) = one_node_behind_a_gateway(&mut p, &[]).await;
    let live = p.route_record(&id).nodes[0].clone();
    let ca = p.ca_pem();
    let post = |rest: u16| {
        let (ca, id, key) = (ca.clone(), id.clone(), key.clone());
        async move {
            let url =
                format!("https://{id}.dev.local.localhost:{rest}/collections/c/points/search");
            tls_client(&ca, rest)
                .send(
                    http::Request::post(&url)
                        .header("api-key", key)
                        .header("content-type", "application/json")
                        .body(Full::new(Bytes::from_static(
                            b"{\"vector\":[0.1],\"limit\":1}",
                        )))
                        .unwrap(),
                )
                .await
                .unwrap()
                .status
        }
    };

    // A node that refuses connections: nothing was sent, so every request goes on to the next.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let closed_addr = closed.local_addr().unwrap().to_string();
    drop(closed);
    let refusing = contract::route::NodeEndpoint {
        rest: closed_addr.clone(),
        grpc: closed_addr,
    };
    let rest = reroute(&mut p, &id, vec![refusing, live.clone()]).await;
    let before = standin_requests(&live.rest).await;
    for _ in 0..4 {
        assert_ne!(
            post(rest).await,
            502,
            "a refused connection is retried on the next node"
        );
    }
    assert_eq!(standin_requests(&live.rest).await, before + 4);

    // A node that takes the request and then drops the connection: the request may have been
    // acted on, so it is not sent again to another node.
    let dropper = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let dropper_addr = dropper.local_addr().unwrap().to_string();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = dropper.accept().await {
            let mut buf = [0u8; 4096];
            let _ = tokio::io::AsyncReadExt::read(&mut s, &mut buf).await;
            drop(s);
        }
    });
    let dropping = contract::route::NodeEndpoint {
        rest: dropper_addr.clone(),
        grpc: dropper_addr,
    };
    let rest = reroute(&mut p, &id, vec![dropping, live.clone()]).await;
    let before = standin_requests(&live.rest).await;
    let mut failed = 0;
    for _ in 0..6 {
        if post(rest).await == 502 {
            failed += 1;
        }
    }
    let reached = standin_requests(&live.rest).await - before;
    assert_eq!(
        failed, 3,
        "round-robin sends every other request to the dropping node"
    );
    assert_eq!(
        reached, 3,
        "none of the dropped requests was sent to the live node"
    );
}

/// Reads one request (header, then a Content-Length body) from `s`, after what `buf` already
/// holds; its body, or `None` when the connection ends first.
async fn read_one_request(s: &mut tokio::net::TcpStream, buf: &mut Vec<u8>) -> Option<String> {
    use tokio::io::AsyncReadExt;
    let mut chunk = [0u8; 4096];
    let end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        match s.read(&mut chunk).await {
            Ok(0) | Err(_) => return None,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    };
    let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
    let length: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .map(|v| v.trim().parse().unwrap())
        .unwrap_or(0);
    while buf.len() < end + length {
        match s.read(&mut chunk).await {
            Ok(0) | Err(_) => return None,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
    let body = String::from_utf8_lossy(&buf[end..end + length]).into_owned();
    buf.drain(..end + length);
    Some(body)
}

/// Answers a request as Qdrant would (200, keep-alive).
async fn answer_ok(s: &mut tokio::net::TcpStream) {
    use tokio::io::AsyncWriteExt;
    let answer = b"{\"result\":[],\"status\":\"ok\",\"time\":0.0}";
    let head = format!(
        "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
        answer.len()
    );
    let _ = s.write_all(head.as_bytes()).await;
    let _ = s.write_all(answer).await;
}

type Seen = std::sync::Arc<std::sync::Mutex<Vec<String>>>;

/// A node that answers the first request of every connection and keeps the connection open,
/// then drops the connection when a second request arrives on it without answering: what a
/// node that closed an idle keep-alive connection looks like to a gateway that reuses it.
/// Returns its address and the bodies of the requests it answered.
async fn node_closing_reused_connections() -> (String, Seen) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let answered = Seen::default();
    let seen = answered.clone();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            let seen = seen.clone();
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let Some(body) = read_one_request(&mut s, &mut buf).await else {
                    return;
                };
                seen.lock().unwrap().push(body);
                answer_ok(&mut s).await;
                // The next request on this connection is read and the connection dropped.
                let _ = read_one_request(&mut s, &mut buf).await;
            });
        }
    });
    (addr, answered)
}

/// A node that closes a keep-alive connection after it has been idle for 100 ms (Qdrant
/// closes idle connections after its own keep-alive timeout). Returns its address, the bodies
/// it answered and how many connections it accepted.
async fn node_closing_idle_connections()
-> (String, Seen, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let answered = Seen::default();
    let accepted = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let (seen, count) = (answered.clone(), accepted.clone());
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            count.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            let seen = seen.clone();
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let idle = Duration::from_millis(100);
                while let Ok(Some(body)) =
                    tokio::time::timeout(idle, read_one_request(&mut s, &mut buf)).await
                {
                    seen.lock().unwrap().push(body);
                    answer_ok(&mut s).await;
                }
            });
        }
    });
    (addr, answered, accepted)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_connection_keeps_its_node_connection_until_the_node_closes_it() {
    let mut p = Platform::start().await;
    let (_, id, key, _, _) = one_node_behind_a_gateway(&mut p, &[]).await;
    let (node, answered, accepted) = node_closing_idle_connections().await;
    let rest = reroute_to_one(&mut p, &id, node).await;
    // One keep-alive client connection for every request below.
    let client = Https::new(
        &p.ca_pem(),
        format!("127.0.0.1:{rest}").parse().unwrap(),
        &["http/1.1"],
    );
    // Taking a snapshot: a POST without a body that must not be sent twice (a body written
    // to a closed connection would fail before the node could act, and be sent again).
    let snapshot = || {
        let url = format!("https://{id}.dev.local.localhost:{rest}/collections/c/snapshots");
        let req = http::Request::post(&url)
            .header("api-key", key.as_str())
            .body(Full::new(Bytes::new()))
            .unwrap();
        let client = &client;
        async move { client.send(req).await.unwrap().status }
    };
    assert_eq!(snapshot().await, 200);
    assert_eq!(snapshot().await, 200);
    assert_eq!(
        accepted.load(std::sync::atomic::Ordering::SeqCst),
        1,
        "back-to-back requests of one client connection share one node connection"
    );
    // The node closes the idle connection; the gateway lets it go while the client is idle,
    // so the next request (which may not be sent twice) goes on a new connection.
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(
        snapshot().await,
        200,
        "a request after the node closed the idle connection"
    );
    assert_eq!(accepted.load(std::sync::atomic::Ordering::SeqCst), 2);
    assert_eq!(
        answered.lock().unwrap().len(),
        3,
        "each request reached the node once"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stale_pooled_connection_is_retried_for_reads_and_never_for_writes() {
    let mut p = Platform::start().await;
    let (_, id, key, _, _) = one_node_behind_a_gateway(&mut p, &[]).await;
    let ca = p.ca_pem();
    // The lean HTTP/1 path, then REST over h2 (pingora-proxy): the same rule on both.
    for (round, alpn) in [(1, "http/1.1"), (2, "h2")] {
        let (node, answered) = node_closing_reused_connections().await;
        let rest = reroute_to_one(&mut p, &id, node).await;
        let send = |path: &'static str, body: String| {
            let (ca, id, key) = (ca.clone(), id.clone(), key.clone());
            async move {
                let url = format!("https://{id}.dev.local.localhost:{rest}{path}");
                let client = Https::new(&ca, format!("127.0.0.1:{rest}").parse().unwrap(), &[alpn]);
                client
                    .send(
                        http::Request::post(&url)
                            .header("api-key", key)
                            .header("content-type", "application/json")
                            .body(Full::new(Bytes::from(body)))
                            .unwrap(),
                    )
                    .await
                    .unwrap()
                    .status
            }
        };

        // Searches: every one after the first finds its pooled connection dead, and is sent
        // again on a new one with the same body.
        let bodies: Vec<String> = (0..5)
            .map(|i| format!("{{\"vector\":[0.{i}],\"limit\":{i}}}"))
            .collect();
        for body in &bodies {
            assert_eq!(
                send("/collections/c/points/search", body.clone()).await,
                200,
                "{alpn}: a search on a stale connection is sent again"
            );
        }
        assert_eq!(
            *answered.lock().unwrap(),
            bodies,
            "{alpn}: each search reached the node once, its body intact"
        );
        // Each gateway restart (reroute) starts its counters at zero.
        let metrics = gateway_metrics(&p).await;
        assert!(
            metrics.contains("gatekeeper_upstream_stale_retries_total 4"),
            "{alpn} (round {round}): four stale connections were met"
        );

        // A write the node may have acted on is not sent twice: the client is told 502. (The
        // last search's connection is in the pool, and the node drops the next request on it.)
        answered.lock().unwrap().clear();
        assert_eq!(
            send("/collections/c/points/delete", "{\"points\":[1]}".into()).await,
            502,
            "{alpn}: a write on a stale connection is not sent again"
        );
        assert_eq!(
            send("/collections/c/points/delete", "{\"points\":[2]}".into()).await,
            200,
            "{alpn}: the next write goes on a new connection"
        );
        assert_eq!(*answered.lock().unwrap(), ["{\"points\":[2]}"], "{alpn}");
    }
}
