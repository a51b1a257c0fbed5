//! `Idempotency-Key`: a retry replays the first answer; another request under the same key
//! is refused; concurrent retries create one cluster.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a test: a panic is a failed test

mod common;

use std::sync::Arc;

use common::{Orion, body, room_for, spec};
use contract::keyspace;
use reqwest::Method;

#[tokio::test]
async fn a_retry_replays_the_first_answer() {
    let orion = Orion::start().await;
    let account = orion.create_account("acme").await;
    let admin = orion.create_token(&account, "admin").await;
    orion.put_region("local", "dev", room_for(5)).await;
    let path = format!("/api/v1/accounts/{account}/clusters");
    let send = |body: serde_json::Value, key: &'static str| {
        orion
            .request(Some(&admin), Method::POST, &path)
            .header("Idempotency-Key", key)
            .json(&body)
            .send()
    };

    let first = send(spec("once", 1), "create-once").await.unwrap();
    assert_eq!(first.status(), 202);
    let location = first.headers()["location"].clone();
    let first = body(first).await;

    let retry = send(spec("once", 1), "create-once").await.unwrap();
    assert_eq!(retry.status(), 202);
    assert_eq!(retry.headers()["idempotent-replayed"], "true");
    assert_eq!(retry.headers()["location"], location);
    assert_eq!(body(retry).await, first);

    let conflict = send(spec("other", 1), "create-once").await.unwrap();
    assert_eq!(conflict.status(), 409);
    assert_eq!(
        conflict.headers()["content-type"],
        "application/problem+json"
    );

    let mut con = orion.redis();
    let clusters: usize = redis::cmd("ZCARD")
        .arg(keyspace::account_clusters(account.parse().unwrap()))
        .query(&mut con)
        .unwrap();
    assert_eq!(clusters, 1);
    let commands: usize = redis::cmd("XLEN")
        .arg(keyspace::command_stream())
        .query(&mut con)
        .unwrap();
    assert_eq!(commands, 1);
    // The key travels with the command, for the worker's records.
    let entries: redis::streams::StreamRangeReply = redis::cmd("XRANGE")
        .arg(keyspace::command_stream())
        .arg("-")
        .arg("+")
        .query(&mut con)
        .unwrap();
    let json: String = entries.ids[0].get("command").unwrap();
    assert!(json.contains("\"idempotency_key\":\"create-once\""));

    // Another caller using the same key string is a different request altogether.
    let other = orion.create_token(&account, "admin").await;
    let theirs = orion
        .request(Some(&other), Method::POST, &path)
        .header("Idempotency-Key", "create-once")
        .json(&spec("theirs", 1))
        .send()
        .await
        .unwrap();
    assert_eq!(theirs.status(), 202);
    assert_ne!(body(theirs).await["id"], first["id"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_retries_create_one_cluster() {
    let orion = Arc::new(Orion::start().await);
    let account = orion.create_account("acme").await;
    let admin = orion.create_token(&account, "admin").await;
    orion.put_region("local", "dev", room_for(20)).await;
    let tries: Vec<_> = (0..20)
        .map(|_| {
            let (orion, admin, account) = (orion.clone(), admin.clone(), account.clone());
            tokio::spawn(async move {
                let r = orion
                    .request(
                        Some(&admin),
                        Method::POST,
                        &format!("/api/v1/accounts/{account}/clusters"),
                    )
                    .header("Idempotency-Key", "storm")
                    .json(&spec("storm", 1))
                    .send()
                    .await
                    .unwrap();
                let retry_after = r.headers().get("retry-after").is_some();
                (r.status().as_u16(), retry_after)
            })
        })
        .collect();
    let mut statuses = Vec::new();
    for t in tries {
        let (status, retry_after) = t.await.unwrap();
        // A retry that meets the first try still running is told when to come back.
        assert_eq!(
            status == 409,
            retry_after,
            "{status} with Retry-After {retry_after}"
        );
        statuses.push(status);
    }
    assert!(
        statuses.iter().all(|s| *s == 202 || *s == 409),
        "{statuses:?}"
    );
    assert!(statuses.contains(&202));
    let clusters: usize = redis::cmd("ZCARD")
        .arg(keyspace::account_clusters(account.parse().unwrap()))
        .query(&mut orion.redis())
        .unwrap();
    assert_eq!(clusters, 1);
}

/// The key belongs to a request a handler takes: a method the route does not have is 405 and
/// an unknown path 404, even with a key used before (they are not a "different request under
/// the same key"), and neither claims the key.
#[tokio::test]
async fn only_a_routed_request_uses_the_key() {
    let orion = Orion::start().await;
    let account = orion.create_account("acme").await;
    let admin = orion.create_token(&account, "admin").await;
    orion.put_region("local", "dev", room_for(5)).await;
    let clusters = format!("/api/v1/accounts/{account}/clusters");
    let used = orion
        .request(Some(&admin), Method::POST, &clusters)
        .header("Idempotency-Key", "used")
        .json(&spec("once", 1))
        .send()
        .await
        .unwrap();
    assert_eq!(used.status(), 202);
    let tokens = format!("/api/v1/accounts/{account}/tokens");
    for (method, path, status) in [
        (Method::PATCH, tokens.as_str(), 405),
        (Method::DELETE, clusters.as_str(), 405),
        (Method::POST, "/api/v1/nowhere", 404),
    ] {
        for key in ["used", "fresh"] {
            let r = orion
                .request(Some(&admin), method.clone(), path)
                .header("Idempotency-Key", key)
                .json(&serde_json::json!({"role": "admin"}))
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), status, "{method} {path} with key {key}");
        }
    }
    // "fresh" was never claimed: a real request may use it.
    let fresh = orion
        .request(Some(&admin), Method::POST, &tokens)
        .header("Idempotency-Key", "fresh")
        .json(&serde_json::json!({"role": "viewer"}))
        .send()
        .await
        .unwrap();
    assert_eq!(fresh.status(), 201);
}

#[tokio::test]
async fn a_bad_idempotency_key_is_refused() {
    let orion = Orion::start().await;
    let account = orion.create_account("acme").await;
    let admin = orion.create_token(&account, "admin").await;
    for key in ["has space", &"k".repeat(256)] {
        let r = orion
            .request(
                Some(&admin),
                Method::POST,
                &format!("/api/v1/accounts/{account}/clusters"),
            )
            .header("Idempotency-Key", key)
            .json(&spec("x1", 1))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 400);
    }
}

#[tokio::test]
async fn a_secret_shown_once_is_never_stored_not_even_for_replay() {
    let orion = Orion::start().await;
    let account = orion.create_account("acme").await;
    let admin = orion.create_token(&account, "admin").await;
    orion.put_region("local", "dev", room_for(1)).await;
    let cluster = body(orion.create_cluster(&admin, &account, &spec("c1", 1)).await).await;
    let id = cluster["id"].as_str().unwrap();
    orion.finish_provisioning(id);

    let keys = format!("/api/v1/accounts/{account}/clusters/{id}/api-keys");
    let create = || {
        orion
            .request(Some(&admin), Method::POST, &keys)
            .header("Idempotency-Key", "one-key")
            .json(&serde_json::json!({"name": "app", "access": "manage"}))
            .send()
    };
    let first = create().await.unwrap();
    assert_eq!(first.status(), 201);
    let key = body(first).await["key"].as_str().unwrap().to_owned();
    let retry = create().await.unwrap();
    assert_eq!(retry.status(), 409, "a replay would have to store the key");
    let detail = body(retry).await["detail"].as_str().unwrap().to_owned();
    assert!(detail.contains("shown only once") && !detail.contains(&key));

    let token = orion
        .request(
            Some(&admin),
            Method::POST,
            &format!("/api/v1/accounts/{account}/tokens"),
        )
        .header("Idempotency-Key", "one-token")
        .json(&serde_json::json!({"role": "viewer"}))
        .send()
        .await
        .unwrap();
    let token = body(token).await["token"].as_str().unwrap().to_owned();

    let everything: String = orion.dataset().into_iter().map(|(k, v)| k + &v).collect();
    assert!(!everything.contains(&key), "the API key rests in Redis");
    assert!(
        !everything.contains(&token),
        "the account token rests in Redis"
    );
    let listed = body(
        orion
            .request(Some(&admin), Method::GET, &keys)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(
        listed.as_array().unwrap().len(),
        1,
        "the retry created a second key"
    );
}

#[tokio::test]
async fn an_answer_too_large_to_keep_is_still_given_and_a_retry_is_sent_to_the_resource() {
    const LIMIT: usize = 256;
    let orion = Orion::start_with(|c| c.idempotent_answer_max_bytes = LIMIT).await;
    let account = orion.create_account("acme").await;
    let admin = orion.create_token(&account, "admin").await;
    orion.put_region("local", "dev", room_for(5)).await;
    let path = format!("/api/v1/accounts/{account}/clusters");
    let no_redirects = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let create = |http: &reqwest::Client| {
        http.post(format!("{}{path}", orion.url))
            .bearer_auth(&admin)
            .header("Idempotency-Key", "big-answer")
            .json(&spec("big", 1))
            .send()
    };

    let first = create(&no_redirects).await.unwrap();
    assert_eq!(
        first.status(),
        202,
        "the action succeeded: its answer must say so"
    );
    let location = first.headers()["location"].to_str().unwrap().to_owned();
    let text = first.text().await.unwrap();
    assert!(text.len() > LIMIT, "the answer fits: {} bytes", text.len());
    let cluster: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(cluster["name"], "big");
    assert!(location.ends_with(cluster["id"].as_str().unwrap()));

    let retry = create(&no_redirects).await.unwrap();
    assert_eq!(retry.status(), 303);
    assert_eq!(retry.headers()["location"], location.as_str());
    assert_eq!(retry.headers()["idempotent-replayed"], "true");
    // A client that follows it finds what the first request made.
    let followed = create(&orion.http).await.unwrap();
    assert_eq!(followed.status(), 200);
    assert_eq!(body(followed).await["id"], cluster["id"]);
    // The same key with another request is still refused.
    let other = no_redirects
        .post(format!("{}{path}", orion.url))
        .bearer_auth(&admin)
        .header("Idempotency-Key", "big-answer")
        .json(&spec("other", 1))
        .send()
        .await
        .unwrap();
    assert_eq!(other.status(), 409);

    let mut con = orion.redis();
    let clusters: usize = redis::cmd("ZCARD")
        .arg(keyspace::account_clusters(account.parse().unwrap()))
        .query(&mut con)
        .unwrap();
    assert_eq!(clusters, 1, "a retry acted again");
    let commands: usize = redis::cmd("XLEN")
        .arg(keyspace::command_stream())
        .query(&mut con)
        .unwrap();
    assert_eq!(commands, 1);

    // A refusal too large to keep changed nothing: it is not kept, and a retry is refused
    // afresh with the same answer.
    let refuse = || {
        no_redirects
            .post(format!("{}{path}", orion.url))
            .bearer_auth(&admin)
            .header("Idempotency-Key", "big-refusal")
            .json(&serde_json::json!({"name": "x", "cloud_provider": "nowhere", "cloud_region": "none",
                "configuration": {"num_nodes": 0, "node_configuration": {"cpu": 0, "memory": 0, "disk": 0}}}))
            .send()
    };
    let first = refuse().await.unwrap();
    assert_eq!(first.status(), 422);
    let first = first.text().await.unwrap();
    assert!(first.len() > LIMIT, "the refusal fits: {first}");
    let again = refuse().await.unwrap();
    assert_eq!(again.status(), 422);
    assert_eq!(again.text().await.unwrap(), first);
}

/// A create's Idempotency-Key is answered in the same atomic step that writes the cluster: if
/// Redis is lost right after it, before Orion records its answer, a retry with the key still
/// finds this cluster (303 to it) instead of the claim expiring and a second cluster being made.
#[tokio::test]
async fn the_create_script_answers_the_key_in_the_step_that_writes_the_cluster() {
    use contract::cluster::{Cluster, ClusterSpec};
    use contract::record::ClusterRecord;

    let orion = Orion::start().await;
    let account = orion.create_account("acme").await;
    orion.put_region("local", "dev", room_for(5)).await;
    let mut con = orion.redis();
    let limits: Option<String> = redis::cmd("HGET")
        .arg(keyspace::region("local", "dev"))
        .arg("node_limits")
        .query(&mut con)
        .unwrap();
    let spec: ClusterSpec = serde_json::from_value(spec("lost-answer", 1)).unwrap();
    let tld = contract::host::Tld::new("localhost").unwrap();
    let cluster =
        Cluster::new(account.parse().unwrap(), spec, &tld, jiff::Timestamp::now()).unwrap();
    let claim = "lyra:idempotency:test-scope:lost-answer";
    let script = redis::Script::new(contract::scripts::CREATE_CLUSTER);
    let create = |limits: &str| {
        let mut script = script.prepare_invoke();
        script
            .key(keyspace::region("local", "dev"))
            .key(keyspace::region_waiting("local", "dev"))
            .key(keyspace::cluster(cluster.id))
            .key(keyspace::account_clusters(cluster.account_id))
            .key(keyspace::command_stream())
            .key(keyspace::cluster_queued_command(cluster.id))
            .key(claim)
            .arg(keyspace::PREFIX)
            .arg("2026-12-07T00:00:00Z")
            .arg(cluster.id.to_string())
            .arg(1)
            .arg("{}")
            .arg(limits)
            .arg("the answer's reference")
            .arg(60);
        for (field, value) in ClusterRecord::cluster_fields(&cluster).unwrap() {
            script.arg(field).arg(value);
        }
        script
    };
    // Refused (the region's limits moved): nothing written, the key untouched.
    let reply: Vec<String> = create("not what is stored").invoke(&mut con).unwrap();
    assert_eq!(reply, ["LIMITS_CHANGED"]);
    let held: Option<String> = redis::cmd("GET").arg(claim).query(&mut con).unwrap();
    assert_eq!(held, None);
    // Written: the key's record with it.
    let reply: Vec<String> = create(&limits.unwrap_or_default())
        .invoke(&mut con)
        .unwrap();
    assert_eq!(reply, ["CREATING"]);
    let held: Option<String> = redis::cmd("GET").arg(claim).query(&mut con).unwrap();
    assert_eq!(held.as_deref(), Some("the answer's reference"));
    let ttl: i64 = redis::cmd("TTL").arg(claim).query(&mut con).unwrap();
    assert!((1..=60).contains(&ttl), "kept with its lifetime: {ttl}");
}

/// A 5xx leaves the outcome unknown: a write sent just before Redis stalled may still run when
/// it resumes. The key stays claimed, so a retry is told to come back (409, Retry-After), and is
/// never run a second time alongside the first. Found by the chaos run, where a create that
/// timed out on a stopped Redis ran after it resumed, and its retry made a second cluster.
#[tokio::test]
async fn a_request_answered_with_a_5xx_keeps_its_key_claimed() {
    let orion = Orion::start().await;
    let account = orion.create_account("acme").await;
    let admin = orion.create_token(&account, "admin").await;
    orion.put_region("local", "dev", room_for(5)).await;
    // The create fails with a 5xx: the account's record cannot be read.
    let _: () = redis::cmd("SET")
        .arg(keyspace::account(account.parse().unwrap()))
        .arg("{not json")
        .query(&mut orion.redis())
        .unwrap();
    let create = || {
        orion
            .request(
                Some(&admin),
                Method::POST,
                &format!("/api/v1/accounts/{account}/clusters"),
            )
            .header("Idempotency-Key", "unknown-outcome")
            .json(&spec("unknown", 1))
            .send()
    };
    let first = create().await.unwrap();
    assert!(first.status().is_server_error(), "{}", first.status());
    let retry = create().await.unwrap();
    assert_eq!(retry.status(), 409);
    assert!(retry.headers().get("retry-after").is_some());
}
