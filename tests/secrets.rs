//! No secret reaches a log line, a metric or an error body.
//!
//! `lyra dev` runs at `RUST_LOG=debug` with all its output in one file while a tenant does
//! everything a tenant does (tokens, a 3-node cluster, keys of every scope, REST and gRPC
//! through GateKeeper, a resize, a revocation, a delete) and an attacker tries every secret
//! the platform holds where a credential goes (near-misses of real keys and tokens, the
//! cluster's own Qdrant secrets, the gateway key, the operator token as an API key). Then every
//! log line, every metric of the three admin ports, every error body (with its headers), all
//! the CLI wrote to stderr and Redis's log are searched for every secret made along the way
//! (keys, tokens, the Qdrant secrets, the CA's and the region's TLS keys; byte secrets also as
//! hex and as a byte list): none may appear, whole or in part.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a test: a panic is a failed test

mod common;

use base64::Engine as _;
use common::dev::{Dev, grpc, rest, stderr};
use common::https::Answer;
use common::until;
use contract::keyscheme::SecretKind;
use contract::keyspace;
use contract::route::UpstreamCredentials;
use contract::seal::Keyring;
use serde_json::{Value, json};

/// A secret is searched for as every run of this many of its characters: a log line that
/// shows part of a secret leaks as surely as one that shows it whole. Listings show a key's
/// last six characters on purpose; twelve random characters never occur by chance.
const WINDOW: usize = 12;

/// What was said to someone (or somewhere) that is not the secret's owner.
#[derive(Default)]
struct Said {
    texts: Vec<(String, String)>,
}

impl Said {
    fn add(&mut self, source: impl Into<String>, text: impl Into<String>) {
        self.texts.push((source.into(), text.into()));
    }

    /// Records a refusal's body (and its headers, which carry gRPC details).
    fn refusal(&mut self, what: &str, answer: &Answer) {
        self.add(
            format!("{what} ({})", answer.status),
            format!("{}{}", headers_text(&answer.headers), answer.body),
        );
    }
}

/// Header fields as text, one `name: value` line each.
fn headers_text(headers: &http::HeaderMap) -> String {
    headers
        .iter()
        .map(|(k, v)| format!("{k}: {}\n", String::from_utf8_lossy(v.as_bytes())))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_secret_reaches_a_log_a_metric_or_an_error_body() {
    let mut dev = Dev::logged();
    dev.start().await;
    let data = dev.data();
    let mut said = Said::default();
    let mut secrets: Vec<(String, String)> = Vec::new();

    // The tenant: an account, its tokens, a cluster and keys of every scope.
    dev.ok(&["account", "create", "acme", "-q"], &[]).await;
    let token = dev
        .ok(&["token", "create", "--role", "admin", "-q"], &[])
        .await;
    let viewer = dev
        .ok(&["token", "create", "--role", "viewer", "-q"], &[])
        .await;
    let me = [("LYRA_TOKEN", token.as_str())];
    let created = dev
        .ok(
            &[
                "cluster", "create", "demo", "--nodes", "3", "--wait", "--json",
            ],
            &me,
        )
        .await;
    let cluster: Value = serde_json::from_str(&created).unwrap();
    let id = cluster["id"].as_str().unwrap().to_owned();
    let endpoint = cluster["endpoint"].as_str().unwrap().to_owned();
    let key = |name: &'static str, scope: &'static [&'static str]| {
        let dev = &dev;
        let me = &me;
        async move {
            let mut args = vec!["key", "create", "demo", "--name", name, "-q"];
            args.extend_from_slice(scope);
            dev.ok(&args, me).await
        }
    };
    let manage = key("admin", &["--access", "manage"]).await;
    let reader = key("reader", &["--access", "read-only", "--expires", "30d"]).await;
    let shop = key("shop", &["--collection", "products:rw"]).await;
    let doomed = key("doomed", &["--access", "manage"]).await;

    // The platform's own secrets, and the cluster's Qdrant credentials as Nebula keeps them.
    let read = |f: &str| std::fs::read_to_string(data.join(f)).unwrap();
    let platform_key = read("platform.key").trim().to_owned();
    let keyring = Keyring::from_config(&platform_key, &[]).unwrap();
    let gateway_key = keyring.gateway_key().unwrap().to_string();
    let redis_port = read("redis.port").trim().to_owned();
    let mut redis = redis::Client::open(format!("redis://127.0.0.1:{redis_port}/"))
        .unwrap()
        .get_connection()
        .unwrap();
    let stored: String = redis::cmd("GET")
        .arg(keyspace::cluster_secrets(id.parse().unwrap()))
        .query(&mut redis)
        .unwrap();
    let sealed: UpstreamCredentials = serde_json::from_str(&stored).unwrap();
    let open = |kind: SecretKind, s| {
        let plain = keyring
            .unseal(s, &kind.seal_context(id.parse().unwrap()))
            .unwrap();
        String::from_utf8(plain.to_vec()).unwrap()
    };
    let read_write = open(SecretKind::ReadWrite, &sealed.read_write);
    let read_only = open(SecretKind::ReadOnly, &sealed.read_only);
    let operator = read("operator.token").trim().to_owned();
    for (name, value) in [
        ("platform key", platform_key.clone()),
        ("gateway key", gateway_key.clone()),
        ("operator token", operator.clone()),
        ("admin token", token.clone()),
        ("viewer token", viewer.clone()),
        ("manage key", manage.clone()),
        ("read-only key", reader.clone()),
        ("collection key", shop.clone()),
        ("revoked key", doomed.clone()),
        ("Qdrant read-write secret", read_write.clone()),
        ("Qdrant read-only secret", read_only.clone()),
    ] {
        secrets.push((name.to_owned(), value));
    }
    // Secrets that are bytes may be printed as bytes: as hex, and as a Rust byte list.
    let b64 = |text: &str| {
        base64::engine::general_purpose::STANDARD
            .decode(text.trim().trim_end_matches('='))
            .or_else(|_| {
                base64::engine::general_purpose::STANDARD_NO_PAD
                    .decode(text.trim().trim_end_matches('='))
            })
            .unwrap()
    };
    for (name, bytes) in [
        ("platform key", b64(&platform_key)),
        ("gateway key", b64(&gateway_key)),
        ("Qdrant read-write secret", read_write.as_bytes().to_vec()),
    ] {
        let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
        secrets.push((format!("{name} as hex"), hex));
        let list = format!("{:?}", &bytes[..8]);
        secrets.push((
            format!("{name} as a byte list"),
            list.trim_end_matches(']').to_owned(),
        ));
    }
    // The region's TLS key, which GateKeeper unseals to serve every endpoint.
    let mut conn = redis::Client::open(format!("redis://127.0.0.1:{redis_port}/"))
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let region = certs::store::load_region(&mut conn, &keyring, "local", "dev")
        .await
        .unwrap()
        .expect("the dev region has a certificate");
    for (i, line) in region
        .key_pem
        .lines()
        .filter(|l| !l.starts_with("-----") && l.len() >= WINDOW)
        .enumerate()
    {
        secrets.push((format!("region TLS key, line {i}"), line.to_owned()));
    }
    // The CA's private key: every line of its PEM body.
    for (i, line) in read("ca.key")
        .lines()
        .filter(|l| !l.starts_with("-----") && l.len() >= WINDOW)
        .enumerate()
    {
        secrets.push((format!("CA private key, line {i}"), line.to_owned()));
    }

    // What a tenant does through GateKeeper, with every key.
    let web = dev.https(false);
    let h2 = dev.https(true);
    let (rest_port, grpc_port) = (dev.rest, dev.grpc);
    let call = |method: &'static str, path: &'static str, key: String, body: Option<Value>| {
        let (web, endpoint) = (&web, endpoint.clone());
        async move { rest(web, &endpoint, rest_port, method, path, &key, body).await }
    };
    until("the route reaches the gateway", || async {
        call("GET", "/collections", manage.clone(), None)
            .await
            .status
            == 200
    })
    .await;
    let vectors = json!({"vectors": {"size": 2, "distance": "Dot"}});
    let points = json!({"points": [{"id": 1, "vector": [0.1, 0.9]}]});
    for (path, body) in [
        ("/collections/products", vectors.clone()),
        ("/collections/private", vectors),
    ] {
        assert_eq!(
            call("PUT", path, manage.clone(), Some(body)).await.status,
            200
        );
    }
    let upsert = call(
        "PUT",
        "/collections/products/points",
        shop.clone(),
        Some(points),
    );
    assert_eq!(upsert.await.status, 200);
    let query = json!({"query": [0.2, 0.8], "limit": 1});
    for k in [&manage, &reader, &shop] {
        let found = call(
            "POST",
            "/collections/products/points/query",
            k.clone(),
            Some(query.clone()),
        );
        assert_eq!(found.await.status, 200);
        let g = grpc(&h2, &endpoint, grpc_port, "Points/Count", "products", k).await;
        assert_eq!(g.status, 200);
    }
    // Refusals a key earns by its scope: their bodies name the rule, never the key.
    for (what, answer) in [
        (
            "read-only key writes",
            call("DELETE", "/collections/products", reader.clone(), None).await,
        ),
        (
            "collection key outside its scope",
            call("GET", "/collections/private", shop.clone(), None).await,
        ),
        (
            "collection key over gRPC outside its scope",
            grpc(&h2, &endpoint, grpc_port, "Points/Count", "private", &shop).await,
        ),
    ] {
        said.refusal(what, &answer);
    }

    // Every secret the platform holds, tried where a credential goes, whole and nearly.
    let mut attempts: Vec<(String, String)> = Vec::new();
    let api_keys = [&manage, &reader, &shop, &doomed];
    for (name, value) in secrets.iter().filter(|(_, v)| !api_keys.contains(&v)) {
        attempts.push((format!("{name} as an API key"), value.clone()));
    }
    for (name, value) in [
        ("manage key", &manage),
        ("read-only key", &reader),
        ("collection key", &shop),
    ] {
        let mut flipped = value.clone();
        let last = flipped.pop().unwrap();
        flipped.push(if last == 'A' { 'B' } else { 'A' });
        attempts.push((format!("{name} with its last character changed"), flipped));
        attempts.push((
            format!("{name} cut short"),
            value[..value.len() - 3].to_owned(),
        ));
        attempts.push((format!("{name} with a character more"), format!("{value}x")));
    }
    for (what, attempt) in &attempts {
        let refused = call("GET", "/collections", attempt.clone(), None).await;
        assert_eq!(refused.status, 401, "{what}");
        said.refusal(&format!("REST: {what}"), &refused);
        let refused = grpc(
            &h2,
            &endpoint,
            grpc_port,
            "Points/Count",
            "products",
            attempt,
        )
        .await;
        said.refusal(&format!("gRPC: {what}"), &refused);
    }
    // The same near-misses at Orion, as bearer tokens.
    let orion = reqwest::Client::new();
    let api = format!("http://127.0.0.1:{}", dev.api);
    let mut orion_attempts: Vec<(String, String)> = vec![
        ("the manage key as a token".into(), manage.clone()),
        ("the gateway key as a token".into(), gateway_key.clone()),
        ("the platform key as a token".into(), platform_key.clone()),
    ];
    for (name, value) in [("admin token", &token), ("operator token", &operator)] {
        let mut flipped = value.clone();
        let last = flipped.pop().unwrap();
        flipped.push(if last == 'A' { 'B' } else { 'A' });
        orion_attempts.push((
            format!("the {name} with its last character changed"),
            flipped,
        ));
        orion_attempts.push((
            format!("the {name} cut short"),
            value[..value.len() - 3].into(),
        ));
    }
    for (what, bearer) in &orion_attempts {
        let r = orion
            .get(format!("{api}/api/v1/accounts"))
            .bearer_auth(bearer)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 401, "{what}");
        let headers = headers_text(r.headers());
        said.add(
            format!("Orion: {what}"),
            format!("{headers}{}", r.text().await.unwrap()),
        );
    }
    // A viewer writing, and bad input: refusals from Orion carrying a real token.
    let refused = dev
        .lyra(
            &["key", "create", "demo", "--name", "nope", "-q"],
            &[("LYRA_TOKEN", &viewer)],
        )
        .await;
    assert!(!refused.status.success());
    said.add("CLI: a viewer creates a key", stderr(&refused));
    let refused = dev
        .lyra(&["cluster", "create", "x", "--nodes", "0"], &me)
        .await;
    assert!(!refused.status.success());
    said.add("CLI: a cluster of no nodes", stderr(&refused));

    // The rest of a cluster's life: a revocation (seen at once), a resize, a delete.
    dev.ok(
        &[
            "key",
            "revoke",
            "demo",
            &key_id_of(&dev, &me, "doomed").await,
        ],
        &me,
    )
    .await;
    until("the revoked key is refused", || async {
        call("GET", "/collections", doomed.clone(), None)
            .await
            .status
            == 401
    })
    .await;
    said.refusal(
        "REST: the revoked key",
        &call("GET", "/collections", doomed.clone(), None).await,
    );
    dev.ok(
        &["cluster", "resize", "demo", "--nodes", "2", "--wait", "-q"],
        &me,
    )
    .await;
    let audit = dev.ok(&["audit", "--json"], &me).await;
    said.add("the audit log", audit);

    // Every metric of the three services, while they still run.
    for (service, port) in ["gatekeeper", "nebula", "orion"].iter().zip(dev.admin) {
        let metrics = orion
            .get(format!("http://127.0.0.1:{port}/metrics"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        assert!(
            metrics.contains("# TYPE"),
            "{service} serves metrics: {metrics}"
        );
        said.add(format!("{service} metrics"), metrics);
    }
    dev.ok(&["cluster", "delete", "demo", "--wait", "-q"], &me)
        .await;
    dev.interrupt().await;

    for (i, text) in dev.cli_stderr().into_iter().enumerate() {
        said.add(format!("the CLI's stderr, run {i}"), text);
    }
    // Redis's own log, which lyra dev keeps beside its data.
    if let Ok(text) = std::fs::read_to_string(data.join("redis").join("redis.log")) {
        said.add("redis.log", text);
    }
    let log = std::fs::read_to_string(dev.log_file().unwrap()).unwrap();
    let lines = log.lines().count();
    assert!(
        log.contains("DEBUG"),
        "lyra dev logged at debug level ({lines} lines)"
    );
    for service in ["control", "provisioner", "gateway"] {
        assert!(
            log.contains(&format!(" {service}")),
            "{service} logged to the file"
        );
    }
    said.add("lyra dev's log", log);

    let mut leaks = Vec::new();
    for (name, secret) in &secrets {
        assert!(secret.len() >= WINDOW, "{name} is shorter than the window");
        for (source, text) in &said.texts {
            let leaked = (0..=secret.len() - WINDOW)
                .map(|i| &secret[i..i + WINDOW])
                .find(|w| text.contains(w));
            if let Some(part) = leaked {
                // Where, not what: a failed run must not leak the secret further.
                let line = text.lines().position(|l| l.contains(part)).unwrap_or(0);
                leaks.push(format!("{name} in {source}, line {}", line + 1));
            }
        }
    }
    // The JWTs GateKeeper mints for collection keys are credentials too.
    for (source, text) in &said.texts {
        if text.contains(".eyJ") {
            leaks.push(format!("a JWT in {source}"));
        }
    }
    assert!(leaks.is_empty(), "secrets leaked:\n{}", leaks.join("\n"));
    eprintln!(
        "searched {lines} log lines and {} other texts for {} secrets: none found",
        said.texts.len() - 1,
        secrets.len()
    );
}

/// The id of the key named `name` on the cluster `demo`.
async fn key_id_of(dev: &Dev, me: &[(&str, &str)], name: &str) -> String {
    let keys: Value =
        serde_json::from_str(&dev.ok(&["key", "list", "demo", "--json"], me).await).unwrap();
    keys.as_array()
        .unwrap()
        .iter()
        .find(|k| k["name"] == name)
        .and_then(|k| k["id"].as_str())
        .unwrap()
        .to_owned()
}
