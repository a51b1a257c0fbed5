//! Lyra as a newcomer drives it: `lyra dev` in a fresh directory, then the `lyra` CLI and
//! Qdrant clients (REST and gRPC over TLS, trusting only the dev CA) against GateKeeper.
//! The stand-in Qdrant (a test double) is `QDRANT_BIN`.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a test: a panic is a failed test

mod common;

use std::process::Output;

use common::dev::{Dev, grpc, grpc_status, processes_of, rest, stderr, stdout};
use common::until;
use serde_json::{Value, json};
use testkit::free_port;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_newcomer_drives_a_three_node_cluster_from_the_cli() {
    let mut dev = Dev::new();
    dev.start().await;
    let data = dev.data();
    for f in ["platform.key", "operator.token", "ca.key"] {
        let mode = std::os::unix::fs::PermissionsExt::mode(
            &std::fs::metadata(data.join(f)).unwrap().permissions(),
        );
        assert_eq!(mode & 0o077, 0, "{f} is readable by others");
    }

    // The operator (the dev token, found in ./.lyra) makes an account and an admin token for
    // it; from then on the account's own token is used, as a tenant would.
    let account = dev.ok(&["account", "create", "acme", "-q"], &[]).await;
    let token = dev
        .ok(&["token", "create", "--role", "admin", "-q"], &[])
        .await;
    assert!(token.starts_with("lyra_at_"), "{token}");
    let me = [("LYRA_TOKEN", token.as_str())];
    let listed: Value =
        serde_json::from_str(&dev.ok(&["account", "list", "--json"], &me).await).unwrap();
    assert_eq!(listed.as_array().unwrap().len(), 1);
    assert_eq!(listed[0]["id"], account.as_str());

    let created = dev
        .lyra(
            &[
                "cluster", "create", "demo", "--nodes", "3", "--wait", "--json",
            ],
            &me,
        )
        .await;
    assert!(created.status.success(), "{}", stderr(&created));
    let cluster: Value = serde_json::from_str(&stdout(&created)).unwrap();
    assert_eq!(cluster["phase"], "HEALTHY");
    assert!(
        stderr(&created).lines().any(|l| l.ends_with("HEALTHY")),
        "--wait showed its progress: {}",
        stderr(&created)
    );
    let id = cluster["id"].as_str().unwrap().to_owned();
    let endpoint = cluster["endpoint"].as_str().unwrap().to_owned();
    assert_eq!(endpoint, format!("{id}.dev.local.localhost"));
    let nodes_dir = data.join("nodes").join(&id);
    assert_eq!(testkit::procs::qdrant_nodes_under(&nodes_dir).len(), 3);
    let table = dev.ok(&["cluster", "list"], &me).await;
    assert!(
        table
            .lines()
            .any(|l| l.contains(&id) && l.contains("HEALTHY") && l.contains("demo")),
        "{table}"
    );

    let manage = dev
        .ok(
            &[
                "key", "create", "demo", "--name", "admin", "--access", "manage", "-q",
            ],
            &me,
        )
        .await;
    let reader = dev
        .ok(
            &[
                "key",
                "create",
                "demo",
                "--name",
                "reader",
                "--access",
                "read-only",
                "--expires",
                "30d",
                "-q",
            ],
            &me,
        )
        .await;
    let shop = dev
        .ok(
            &[
                "key",
                "create",
                "demo",
                "--name",
                "shop",
                "--collection",
                "products:rw",
                "--collection",
                "reviews:r",
                "-q",
            ],
            &me,
        )
        .await;
    let keys: Value =
        serde_json::from_str(&dev.ok(&["key", "list", "demo", "--json"], &me).await).unwrap();
    assert_eq!(keys.as_array().unwrap().len(), 3);
    let listing = keys.to_string();
    for secret in [&manage, &reader, &shop] {
        assert!(!listing.contains(secret.as_str()), "a key was listed");
    }

    // REST over TLS, trusting only the dev CA.
    let web = dev.https(false);
    let port = dev.rest;
    let call = |method: &'static str, path: &str, key: String, body: Option<Value>| {
        let (web, endpoint, path) = (&web, endpoint.clone(), path.to_owned());
        async move {
            rest(web, &endpoint, port, method, &path, &key, body)
                .await
                .status
        }
    };
    until("the route reaches the gateway", || {
        call("GET", "/collections", manage.clone(), None).then_eq(200)
    })
    .await;
    for c in ["products", "reviews", "secret"] {
        let vectors = Some(json!({"vectors": {"size": 2, "distance": "Dot"}}));
        let status = call("PUT", &format!("/collections/{c}"), manage.clone(), vectors).await;
        assert_eq!(status, 200, "manage creates {c}");
    }
    let points =
        || Some(json!({"points": [{"id": 1, "vector": [1.0, 0.0], "payload": {"sku": "a"}}]}));
    let search = || Some(json!({"vector": [1.0, 0.0], "limit": 3}));
    // Read-only: reads anything, writes nothing.
    assert_eq!(call("GET", "/collections", reader.clone(), None).await, 200);
    assert_eq!(
        call(
            "POST",
            "/collections/products/points/search",
            reader.clone(),
            search()
        )
        .await,
        200
    );
    assert_eq!(
        call(
            "PUT",
            "/collections/products/points",
            reader.clone(),
            points()
        )
        .await,
        403
    );
    assert_eq!(
        call("PUT", "/collections/other", reader.clone(), None).await,
        403
    );
    // Collection-scoped: products read-write, reviews read-only, nothing else.
    assert_eq!(
        call(
            "PUT",
            "/collections/products/points",
            shop.clone(),
            points()
        )
        .await,
        200
    );
    assert_eq!(
        call(
            "POST",
            "/collections/reviews/points/search",
            shop.clone(),
            search()
        )
        .await,
        200
    );
    assert_eq!(
        call("PUT", "/collections/reviews/points", shop.clone(), points()).await,
        403
    );
    assert_eq!(
        call("GET", "/collections/secret", shop.clone(), None).await,
        403
    );
    assert_eq!(
        call("DELETE", "/collections/products", shop.clone(), None).await,
        403
    );
    // The node behind saw the key's own JWT: it lists only the key's collections.
    let seen = rest(&web, &endpoint, port, "GET", "/collections", &shop, None).await;
    let mut names: Vec<String> =
        serde_json::from_str::<Value>(&seen.body).unwrap()["result"]["collections"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["name"].as_str().unwrap().to_owned())
            .collect();
    names.sort();
    assert_eq!(names, ["products", "reviews"]);
    // The point written through one node is read through the others (three reads, round robin).
    for _ in 0..3 {
        let counted = rest(
            &web,
            &endpoint,
            port,
            "POST",
            "/collections/products/points/count",
            &reader,
            Some(json!({})),
        )
        .await;
        assert_eq!(
            serde_json::from_str::<Value>(&counted.body).unwrap()["result"]["count"],
            1
        );
    }

    // gRPC over TLS (h2): the node's own credential rules apply behind the gateway.
    let g = dev.https(true);
    let gp = dev.grpc;
    assert_eq!(
        grpc_status(&grpc(&g, &endpoint, gp, "Points/Upsert", "products", &manage).await),
        "0"
    );
    assert_eq!(
        grpc_status(&grpc(&g, &endpoint, gp, "Points/Search", "products", &reader).await),
        "0"
    );
    assert_eq!(
        grpc_status(&grpc(&g, &endpoint, gp, "Points/Upsert", "products", &reader).await),
        "7"
    );
    assert_eq!(
        grpc_status(&grpc(&g, &endpoint, gp, "Points/Search", "reviews", &shop).await),
        "0"
    );
    assert_eq!(
        grpc_status(&grpc(&g, &endpoint, gp, "Points/Upsert", "reviews", &shop).await),
        "7"
    );
    assert_eq!(
        grpc_status(&grpc(&g, &endpoint, gp, "Points/Search", "secret", &shop).await),
        "7"
    );
    assert_eq!(
        grpc_status(
            &grpc(
                &g,
                &endpoint,
                gp,
                "Points/Search",
                "products",
                "lyra_nonsense"
            )
            .await
        ),
        "16"
    );

    // Ctrl-C: nothing of the data directory keeps running.
    assert!(
        processes_of(&data).len() == 4,
        "redis-server and 3 nodes run: {:?}",
        processes_of(&data)
    );
    dev.interrupt().await;
    assert_eq!(
        processes_of(&data),
        Vec::<u32>::new(),
        "orphans after Ctrl-C"
    );

    // A restart on the same directory: the cluster and its keys work, nothing provisioned twice.
    dev.start().await;
    let web = dev.https(false);
    let call = |key: String| {
        let (web, endpoint) = (&web, endpoint.clone());
        async move {
            rest(
                web,
                &endpoint,
                port,
                "GET",
                "/collections/products",
                &key,
                None,
            )
            .await
            .status
        }
    };
    until("the manage key works after the restart", || {
        call(manage.clone()).then_eq(200)
    })
    .await;
    assert_eq!(call(shop.clone()).await, 200);
    assert_eq!(
        testkit::procs::qdrant_nodes_under(&nodes_dir).len(),
        3,
        "provisioned twice"
    );
    // Nebula's control loop may see the nodes come back before they all answer: the phase
    // ends HEALTHY.
    until("the cluster is HEALTHY after the restart", || async {
        let got: Value =
            serde_json::from_str(&dev.ok(&["cluster", "get", "demo", "--json"], &me).await)
                .unwrap();
        got["phase"] == "HEALTHY"
    })
    .await;

    // Revoke: refused from then on, on both ports.
    let key_id = keys
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["name"] == "admin")
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    dev.ok(&["key", "revoke", "demo", &key_id], &me).await;
    until("the revoked key is refused", || {
        call(manage.clone()).then_eq(401)
    })
    .await;
    let g = dev.https(true);
    assert_eq!(
        grpc_status(&grpc(&g, &endpoint, gp, "Points/Search", "products", &manage).await),
        "16"
    );
    assert_eq!(call(reader.clone()).await, 200, "other keys still work");

    // Delete: processes, storage and route gone.
    let deleted = dev
        .lyra(&["cluster", "delete", "demo", "--wait", "-q"], &me)
        .await;
    assert!(deleted.status.success(), "{}", stderr(&deleted));
    assert_eq!(stdout(&deleted), id);
    assert!(testkit::procs::qdrant_nodes_under(&nodes_dir).is_empty());
    assert!(!nodes_dir.exists(), "storage left behind");
    let redis_port = std::fs::read_to_string(data.join("redis.port")).unwrap();
    let redis = redis::Client::open(format!("redis://127.0.0.1:{}/", redis_port.trim())).unwrap();
    let mut conn = redis.get_multiplexed_async_connection().await.unwrap();
    let route: bool = redis::cmd("HEXISTS")
        .arg(contract::keyspace::routes())
        .arg(&id)
        .query_async(&mut conn)
        .await
        .unwrap();
    assert!(!route, "the route is still stored");
    until("the gateway forgot the host", || {
        call(reader.clone()).then_eq(404)
    })
    .await;

    dev.interrupt().await;
    assert_eq!(
        processes_of(&data),
        Vec::<u32>::new(),
        "orphans after the second stop"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mistakes_get_one_clear_line_and_a_non_zero_exit() {
    let mut dev = Dev::new();
    dev.start().await;
    dev.ok(&["account", "create", "acme"], &[]).await;

    let one_line = |out: &Output, code: i32, says: &str| {
        let err = stderr(out);
        assert_eq!(out.status.code(), Some(code), "exit code for: {err}");
        assert_eq!(err.lines().count(), 1, "one line: {err:?}");
        assert!(err.starts_with("error: "), "{err}");
        assert!(err.contains(says), "{err:?} does not say {says:?}");
        assert!(out.stdout.is_empty(), "nothing on stdout");
    };

    let wrong = "lyra_at_this-token-does-not-exist-anywhere";
    let out = dev
        .lyra(&["cluster", "list"], &[("LYRA_TOKEN", wrong)])
        .await;
    one_line(&out, 1, "refused the token");
    assert!(!stderr(&out).contains(wrong), "the token was echoed");

    let unknown = "7d0f3c2e-1b4a-4c5d-8e9f-0a1b2c3d4e5f";
    one_line(
        &dev.lyra(&["cluster", "get", unknown], &[]).await,
        1,
        "cluster not found",
    );
    one_line(
        &dev.lyra(&["key", "list", "nosuch"], &[]).await,
        1,
        "no cluster is named \"nosuch\"",
    );
    one_line(
        &dev.lyra(&["cluster", "create", "x", "--nodes", "0"], &[])
            .await,
        1,
        "configuration.num_nodes: must be between 1 and 100",
    );
    one_line(
        &dev.lyra(
            &["cluster", "create", "ok-name", "--region", "mars/base"],
            &[],
        )
        .await,
        1,
        "cloud_provider",
    );
    one_line(
        &dev.lyra(&["clustr", "list"], &[]).await,
        2,
        "unrecognized subcommand",
    );
    one_line(&dev.lyra(&["cluster", "create"], &[]).await, 2, "<NAME>");
    one_line(
        &dev.lyra(&["cluster", "create", "x", "--memory", "1G"], &[])
            .await,
        2,
        "Mi, Gi, Ti",
    );
    one_line(
        &dev.lyra(&["key", "create", "x", "--name", "k"], &[]).await,
        2,
        "--access",
    );
    one_line(
        &dev.lyra(&["key", "revoke", "x", "not-a-uuid"], &[]).await,
        2,
        "not-a-uuid",
    );
    let nowhere = format!("http://127.0.0.1:{}", free_port().unwrap());
    one_line(
        &dev.lyra(&["region", "list"], &[("LYRA_URL", &nowhere)])
            .await,
        1,
        "cannot reach Orion",
    );

    // A wait that ends without the cluster healthy says why, and exits 1.
    let out = dev
        .lyra(
            &[
                "cluster",
                "create",
                "huge",
                "--nodes",
                "100",
                "--wait",
                "--timeout",
                "1s",
                "-q",
            ],
            &[],
        )
        .await;
    assert_eq!(out.status.code(), Some(1));
    let last = stderr(&out).lines().last().unwrap_or_default().to_owned();
    assert!(
        last.starts_with("error: ") && last.contains("still PENDING: waiting for capacity"),
        "{last}"
    );
    dev.ok(&["cluster", "delete", "huge"], &[]).await;

    // None of the refused commands changed anything.
    let clusters: Value =
        serde_json::from_str(&dev.ok(&["cluster", "list", "--json"], &[]).await).unwrap();
    let names: Vec<&str> = clusters
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["huge"], "only the cluster that was accepted");
    dev.interrupt().await;
}

/// `future.then_eq(x)`: whether the future's output equals `x`, for `until`.
trait ThenEq<T> {
    fn then_eq(self, expected: T) -> impl std::future::Future<Output = bool>;
}

impl<F, T> ThenEq<T> for F
where
    F: std::future::Future<Output = T>,
    T: PartialEq,
{
    async fn then_eq(self, expected: T) -> bool {
        self.await == expected
    }
}
