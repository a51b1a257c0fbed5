//! Dead letters: an operator sees why a command was parked and puts it back on the stream.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a test: a panic is a failed test

mod common;

use common::{Orion, body, room_for, spec};
use contract::command::CommandEnvelope;
use contract::keyspace::{self, dead_letter};
use reqwest::Method;

#[tokio::test]
async fn a_parked_command_is_listed_and_replayed_once() {
    let orion = Orion::start().await;
    let account = orion.create_account("acme").await;
    let admin = orion.create_token(&account, "admin").await;
    orion.put_region("local", "dev", room_for(2)).await;
    let cluster = body(
        orion
            .create_cluster(&admin, &account, &spec("doomed", 1))
            .await,
    )
    .await;
    let id = cluster["id"].as_str().unwrap().to_owned();

    // What the worker does when it gives up: park the command, mark the cluster failed.
    let mut con = orion.redis();
    let entries: redis::streams::StreamRangeReply = redis::cmd("XRANGE")
        .arg(keyspace::command_stream())
        .arg("-")
        .arg("+")
        .query(&mut con)
        .unwrap();
    let command: String = entries.ids[0].get(keyspace::COMMAND_FIELD).unwrap();
    let parked: String = redis::cmd("XADD")
        .arg(keyspace::dead_letter_stream())
        .arg("*")
        .arg(dead_letter::COMMAND)
        .arg(&command)
        .arg(dead_letter::ERROR)
        .arg("qdrant binary not found: set QDRANT_BIN")
        .arg(dead_letter::ATTEMPTS)
        .arg(5)
        .arg(dead_letter::FAILED_AT)
        .arg("2026-11-23T10:00:00Z")
        .arg(dead_letter::SOURCE_ID)
        .arg(&entries.ids[0].id)
        .query(&mut con)
        .unwrap();
    let _: () = redis::cmd("HSET")
        .arg(keyspace::cluster(id.parse().unwrap()))
        .arg("phase")
        .arg("FAILED_TO_CREATE")
        .query(&mut con)
        .unwrap();

    let listed = body(
        orion
            .op(Method::GET, "/api/v1/dead-letters")
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(listed.as_array().unwrap().len(), 1);
    let entry = &listed[0];
    assert_eq!(entry["id"], parked);
    assert_eq!(entry["name"], "ProvisionDBCluster");
    assert_eq!(entry["cluster_id"], id);
    assert_eq!(entry["attempts"], 5);
    assert_eq!(entry["error"], "qdrant binary not found: set QDRANT_BIN");

    let replay = format!("/api/v1/dead-letters/{parked}/replay");
    let r = orion.op(Method::POST, &replay).send().await.unwrap();
    assert_eq!(r.status(), 202);
    let new_id = body(r).await["stream_id"].as_str().unwrap().to_owned();
    let entries: redis::streams::StreamRangeReply = redis::cmd("XRANGE")
        .arg(keyspace::command_stream())
        .arg(&new_id)
        .arg(&new_id)
        .query(&mut con)
        .unwrap();
    let replayed: String = entries.ids[0].get(keyspace::COMMAND_FIELD).unwrap();
    let from: String = entries.ids[0].get("replayed_from").unwrap();
    assert_eq!(replayed, command, "the command goes back exactly as it was");
    assert_eq!(from, parked);
    assert!(CommandEnvelope::from_json(replayed.as_bytes()).is_ok());

    let after = body(
        orion
            .request(
                Some(&admin),
                Method::GET,
                &format!("/api/v1/accounts/{account}/clusters/{id}"),
            )
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(after["phase"], "CREATING");
    assert!(after["reason"].as_str().unwrap().contains("replayed"));

    let left = body(
        orion
            .op(Method::GET, "/api/v1/dead-letters")
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert!(left.as_array().unwrap().is_empty());
    assert_eq!(
        orion
            .op(Method::POST, &replay)
            .send()
            .await
            .unwrap()
            .status(),
        404,
        "replayed twice"
    );
}

/// Found by schemathesis: an id of digits whose parts do not fit Redis's 64-bit stream ids was
/// passed to XRANGE, which refused it, and the replay answered 500. No entry can have such an
/// id: 404, like any other id that names no dead letter.
#[tokio::test]
async fn an_id_no_stream_entry_can_have_is_not_found() {
    let orion = Orion::start().await;
    for id in [
        "458873620665668674071-1",
        "1-18446744073709551616",
        "18446744073709551615-18446744073709551615",
        "1-",
        "-1",
        "1-2-3",
    ] {
        let r = orion
            .op(Method::POST, &format!("/api/v1/dead-letters/{id}/replay"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 404, "{id}");
        assert_eq!(r.headers()["content-type"], "application/problem+json");
    }
}
