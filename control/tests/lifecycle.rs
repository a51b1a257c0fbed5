//! The whole lifecycle through real HTTP on a real Redis: account, token, region, cluster
//! create/get/list/resize/delete, API keys create/list/revoke, and the audit trail.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a test: a panic is a failed test

mod common;

use std::collections::HashMap;

use common::{Orion, body, room_for, spec};
use contract::command::{Command, CommandEnvelope};
use contract::event::{self, ChangeEvent, Notification};
use contract::keyscheme::{KeyAccess, KeySigner};
use contract::keyspace;
use jiff::Timestamp;
use reqwest::Method;
use serde_json::json;

fn commands(orion: &Orion) -> Vec<CommandEnvelope> {
    let mut con = orion.redis();
    let reply: redis::streams::StreamRangeReply = redis::cmd("XRANGE")
        .arg(keyspace::command_stream())
        .arg("-")
        .arg("+")
        .query(&mut con)
        .unwrap();
    reply
        .ids
        .iter()
        .map(|e| {
            let json: String = e.get(keyspace::COMMAND_FIELD).unwrap();
            CommandEnvelope::from_json(json.as_bytes()).unwrap()
        })
        .collect()
}

#[tokio::test]
async fn a_cluster_from_account_to_deletion() {
    let orion = Orion::start().await;
    let account = orion.create_account("acme").await;
    let admin = orion.create_token(&account, "admin").await;
    let viewer = orion.create_token(&account, "viewer").await;
    let region = orion.put_region("local", "dev", room_for(10)).await;
    assert_eq!(region["free"]["nodes"], 10);
    // Registering a region gives it its wildcard certificate, key sealed.
    let cert: String = redis::cmd("GET")
        .arg(keyspace::certificate("local", "dev"))
        .query(&mut orion.redis())
        .unwrap();
    assert!(cert.contains("*.dev.local.localhost") && !cert.contains("PRIVATE KEY"));

    // Create: 202, Location works, the command is on the stream.
    let r = orion
        .create_cluster(&admin, &account, &spec("search", 2))
        .await;
    assert_eq!(r.status(), 202);
    let location = r.headers()["location"].to_str().unwrap().to_owned();
    let created = body(r).await;
    assert_eq!(created["phase"], "CREATING");
    let id = created["id"].as_str().unwrap().to_owned();
    assert_eq!(
        location,
        format!("/api/v1/accounts/{account}/clusters/{id}")
    );
    assert_eq!(created["endpoint"], format!("{id}.dev.local.localhost"));
    let got = body(
        orion
            .request(Some(&viewer), Method::GET, &location)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(got["id"], created["id"]);
    let queued = commands(&orion);
    assert_eq!(queued.len(), 1);
    match &queued[0].command {
        Command::Provision(p) => {
            assert_eq!(p.cluster_id.to_string(), id);
            assert_eq!(p.db_configuration.num_nodes, 2);
            assert_eq!(
                p.db_configuration.cluster_endpoint,
                format!("{id}.dev.local.localhost")
            );
        }
        other => panic!("expected a provision, got {other:?}"),
    }
    let region = body(
        orion
            .op(Method::GET, "/api/v1/regions")
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(region[0]["allocated"]["nodes"], 2);
    assert_eq!(region[0]["free"]["nodes"], 8);

    // List with pagination: 3 clusters, pages of 2.
    for name in ["second", "third"] {
        assert_eq!(
            orion
                .create_cluster(&admin, &account, &spec(name, 1))
                .await
                .status(),
            202
        );
    }
    let list = format!("/api/v1/accounts/{account}/clusters");
    let page1 = body(
        orion
            .request(Some(&viewer), Method::GET, &format!("{list}?page_size=2"))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(page1["clusters"].as_array().unwrap().len(), 2);
    let token = page1["next_page_token"].as_str().unwrap();
    let page2 = body(
        orion
            .request(
                Some(&viewer),
                Method::GET,
                &format!("{list}?page_size=2&page_token={token}"),
            )
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(page2["clusters"].as_array().unwrap().len(), 1);
    assert!(page2["next_page_token"].is_null());
    let names: Vec<_> = page1["clusters"]
        .as_array()
        .unwrap()
        .iter()
        .chain(page2["clusters"].as_array().unwrap())
        .map(|c| c["name"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(names, ["search", "second", "third"]);

    // Keys need a healthy cluster.
    let keys = format!("{location}/api-keys");
    let early = orion
        .request(Some(&admin), Method::POST, &keys)
        .json(&json!({"name": "early", "access": "manage"}))
        .send()
        .await
        .unwrap();
    assert_eq!(early.status(), 409);
    let secret = orion.finish_provisioning(&id);

    // Create keys of each scope; each verifies with the cluster's secret and no I/O.
    let signer = KeySigner::new(&secret);
    let mut key_ids = Vec::new();
    for (name, access, class) in [
        ("manage", json!("manage"), KeyAccess::Manage),
        ("reader", json!("read-only"), KeyAccess::ReadOnly),
        (
            "scoped",
            json!([{"collection": "a", "access": "r"}]),
            KeyAccess::Collections,
        ),
    ] {
        let r = orion
            .request(Some(&admin), Method::POST, &keys)
            .json(&json!({"name": name, "access": access, "expires_at": "2099-01-01T00:00:00Z"}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201);
        let created = body(r).await;
        let key = created["key"].as_str().unwrap();
        let claims = signer
            .verify(key, id.parse().unwrap(), Timestamp::now())
            .unwrap();
        assert_eq!(claims.access, class);
        assert_eq!(claims.key_id.to_string(), created["id"].as_str().unwrap());
        assert_eq!(created["postfix"], &key[key.len() - 6..]);
        key_ids.push((created["id"].as_str().unwrap().to_owned(), key.to_owned()));
    }
    let listed = orion
        .request(Some(&viewer), Method::GET, &keys)
        .send()
        .await
        .unwrap();
    let listed_text = listed.text().await.unwrap();
    for (_, key) in &key_ids {
        assert!(
            !listed_text.contains(key.as_str()),
            "a listing showed a key"
        );
    }
    let listed: serde_json::Value = serde_json::from_str(&listed_text).unwrap();
    assert_eq!(listed.as_array().unwrap().len(), 3);
    assert_eq!(
        listed[2]["access"],
        json!([{"collection": "a", "access": "r"}])
    );

    // Revoke: 204, in the revoked set, and the event reaches a subscriber.
    let mut sub = orion.redis.client().unwrap().get_connection().unwrap();
    let mut pubsub = sub.as_pubsub();
    pubsub.subscribe(keyspace::EVENTS_CHANNEL).unwrap();
    let (revoked_id, _) = &key_ids[1];
    let r = orion
        .request(
            Some(&admin),
            Method::DELETE,
            &format!("{keys}/{revoked_id}"),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    pubsub
        .set_read_timeout(Some(std::time::Duration::from_secs(5)))
        .unwrap();
    let message: String = pubsub.get_message().unwrap().get_payload().unwrap();
    match event::decode(message.as_bytes()).unwrap() {
        Notification::Event(ChangeEvent::KeyRevoked {
            key_id,
            cluster_id,
            expires_at,
            version,
        }) => {
            assert_eq!(key_id.to_string(), *revoked_id);
            assert_eq!(cluster_id.to_string(), id);
            assert_eq!(expires_at.unwrap().to_string(), "2099-01-01T00:00:00Z");
            assert!(version >= 1);
        }
        other => panic!("unexpected event {other:?}"),
    }
    let mut con = orion.redis();
    let score: Option<f64> = redis::cmd("ZSCORE")
        .arg(keyspace::revoked_keys())
        .arg(revoked_id)
        .query(&mut con)
        .unwrap();
    assert_eq!(score, Some(4_070_908_800.0));
    let again = orion
        .request(
            Some(&admin),
            Method::DELETE,
            &format!("{keys}/{revoked_id}"),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), 204, "revoking twice is not an error");

    // Resize 2 -> 3 nodes: RESIZING, the extra node reserved, a resize command queued.
    let r = orion
        .request(Some(&admin), Method::PATCH, &location)
        .json(&json!({"configuration": {"num_nodes": 3, "node_configuration": {"cpu": 1000, "memory": 2048, "disk": 10}}}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    let resized = body(r).await;
    assert_eq!(resized["phase"], "RESIZING");
    assert_eq!(resized["generation"], 2);
    let region = body(
        orion
            .op(Method::GET, "/api/v1/regions")
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(
        region[0]["allocated"]["nodes"], 5,
        "2 + 1 + 1 + the extra node"
    );
    assert!(
        matches!(commands(&orion).last().unwrap().command, Command::Resize(ref r) if r.generation == 2)
    );

    // Delete: DELETING, then deleting again is not an error.
    for _ in 0..2 {
        let r = orion
            .request(Some(&admin), Method::DELETE, &location)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 202);
        assert_eq!(body(r).await["phase"], "DELETING");
    }
    let deprovisions = commands(&orion)
        .into_iter()
        .filter(|c| matches!(c.command, Command::Deprovision(_)))
        .count();
    assert_eq!(deprovisions, 1, "deleting twice queued two deprovisions");

    // The audit log has every mutation, newest first, with who and which request.
    let audit = body(
        orion
            .request(
                Some(&viewer),
                Method::GET,
                &format!("/api/v1/accounts/{account}/audit"),
            )
            .send()
            .await
            .unwrap(),
    )
    .await;
    let actions: Vec<&str> = audit
        .as_array()
        .unwrap()
        .iter()
        .rev()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    assert_eq!(
        actions,
        [
            "account.create",
            "token.create",
            "token.create",
            "cluster.create",
            "cluster.create",
            "cluster.create",
            "api_key.create",
            "api_key.create",
            "api_key.create",
            "api_key.revoke",
            "cluster.resize",
            "cluster.delete",
            "cluster.delete",
        ]
    );
    let entry = &audit[0];
    assert!(!entry["request_id"].as_str().unwrap().is_empty());
    assert_ne!(entry["actor"], "operator");
}

#[tokio::test]
async fn usage_is_zero_until_a_gateway_reports() {
    let orion = Orion::start().await;
    let account = orion.create_account("acme").await;
    let admin = orion.create_token(&account, "admin").await;
    orion.put_region("local", "dev", room_for(1)).await;
    let created = body(orion.create_cluster(&admin, &account, &spec("c1", 1)).await).await;
    let id = created["id"].as_str().unwrap();
    let path = format!("/api/v1/accounts/{account}/clusters/{id}/usage");
    let usage = body(
        orion
            .request(Some(&admin), Method::GET, &path)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(
        usage["counters"],
        json!({"requests": 0, "bytes_in": 0, "bytes_out": 0})
    );

    let mut con = orion.redis();
    let _: () = redis::cmd("HINCRBY")
        .arg(keyspace::usage(id.parse().unwrap()))
        .arg("requests")
        .arg(42)
        .query(&mut con)
        .unwrap();
    let usage = body(
        orion
            .request(Some(&admin), Method::GET, &path)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(usage["counters"]["requests"], 42);
}

#[tokio::test]
async fn a_pending_cluster_is_deleted_at_once_and_leaves_the_queue() {
    let orion = Orion::start().await;
    let account = orion.create_account("acme").await;
    let admin = orion.create_token(&account, "admin").await;
    orion.put_region("local", "dev", room_for(0)).await;
    let created = body(orion.create_cluster(&admin, &account, &spec("c1", 1)).await).await;
    assert_eq!(created["phase"], "PENDING");
    assert!(
        created["reason"]
            .as_str()
            .unwrap()
            .contains("waiting for capacity in region local/dev")
    );
    let path = format!(
        "/api/v1/accounts/{account}/clusters/{}",
        created["id"].as_str().unwrap()
    );
    let r = orion
        .request(Some(&admin), Method::DELETE, &path)
        .send()
        .await
        .unwrap();
    assert_eq!(body(r).await["phase"], "DELETED");
    // Capacity arriving later allocates nothing for it.
    let region = orion.put_region("local", "dev", room_for(5)).await;
    assert_eq!(region["allocated"]["nodes"], 0);
    assert_eq!(region["waiting"], 0);
    assert!(commands(&orion).is_empty());
    let c: HashMap<String, String> = redis::cmd("HGETALL")
        .arg(keyspace::cluster(
            created["id"].as_str().unwrap().parse().unwrap(),
        ))
        .query(&mut orion.redis())
        .unwrap();
    assert_eq!(c["phase"], "DELETED");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_certificate_due_for_renewal_is_replaced_by_itself() {
    let orion = Orion::start().await;
    orion.put_region("local", "dev", room_for(1)).await;
    let mut conn = orion
        .redis
        .client()
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let ring = contract::seal::Keyring::from_config(common::MASTER_KEY, &[]).unwrap();
    let mut cert = certs::store::load_region(&mut conn, &ring, "local", "dev")
        .await
        .unwrap()
        .unwrap();
    let old_chain = cert.chain_pem.clone();
    // Pretend it is ten days from expiry.
    cert.not_after = Timestamp::now() + jiff::SignedDuration::from_hours(240);
    certs::store::save_region(&mut conn, &ring, &cert)
        .await
        .unwrap();
    let mut renewed = false;
    for _ in 0..50 {
        let now = certs::store::load_region(&mut conn, &ring, "local", "dev")
            .await
            .unwrap()
            .unwrap();
        if now.chain_pem != old_chain {
            assert!(!now.needs_renewal(Timestamp::now()));
            renewed = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(renewed, "Orion did not renew a certificate that was due");
}
