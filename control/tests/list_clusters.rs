//! Listing clusters reads a whole page in one round trip to Redis, and answers exactly what
//! reading each cluster on its own does, in the account's creation order.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a test: a panic is a failed test

mod common;

use common::{Orion, RoundTrips, body, room_for, spec};
use contract::keyspace;
use reqwest::Method;
use serde_json::Value;
use testkit::RedisServer;

const CLUSTERS: usize = 50;

#[tokio::test]
async fn a_page_of_fifty_clusters_is_the_same_answer_in_one_round_trip() {
    let redis = RedisServer::start().expect("redis-server");
    let relay = RoundTrips::relay(&redis).await;
    let mut config = common::config(relay.url.clone());
    // No renewal rounds while round trips are counted.
    config.cert_renew_secs = 3600;
    let orion = Orion::start_on(redis, config).await;
    let account = orion.create_account("acme").await;
    let admin = orion.create_token(&account, "admin").await;
    orion
        .put_region("local", "dev", room_for(CLUSTERS as u64))
        .await;
    for i in 0..CLUSTERS {
        let r = orion
            .create_cluster(&admin, &account, &spec(&format!("c{i}"), 1))
            .await;
        assert_eq!(r.status(), 202);
    }
    // The order the API promises: the account's creation-ordered index.
    let index: Vec<String> = redis::cmd("ZRANGE")
        .arg(keyspace::account_clusters(account.parse().unwrap()))
        .arg(0)
        .arg(-1)
        .query(&mut orion.redis())
        .unwrap();
    assert_eq!(index.len(), CLUSTERS);
    let mut one_by_one = Vec::new();
    for id in &index {
        let r = orion
            .request(
                Some(&admin),
                Method::GET,
                &format!("/api/v1/accounts/{account}/clusters/{id}"),
            )
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        one_by_one.push(body(r).await);
    }

    let list = format!("/api/v1/accounts/{account}/clusters");
    let before = relay.count();
    let page = body(
        orion
            .request(Some(&admin), Method::GET, &format!("{list}?page_size=50"))
            .send()
            .await
            .unwrap(),
    )
    .await;
    let round_trips = relay.count() - before;
    assert_eq!(page["clusters"].as_array().unwrap(), &one_by_one);
    assert!(page["next_page_token"].is_null());
    // The token, the account, the index, the page: never one per cluster.
    assert!(
        round_trips <= 5,
        "{round_trips} round trips to Redis for a page of {CLUSTERS}"
    );

    // Smaller pages give the same clusters in the same order.
    let mut paged: Vec<Value> = Vec::new();
    let mut token: Option<String> = None;
    loop {
        let query = match &token {
            None => "?page_size=7".to_owned(),
            Some(t) => format!("?page_size=7&page_token={t}"),
        };
        let page = body(
            orion
                .request(Some(&admin), Method::GET, &format!("{list}{query}"))
                .send()
                .await
                .unwrap(),
        )
        .await;
        paged.extend(page["clusters"].as_array().unwrap().iter().cloned());
        match page["next_page_token"].as_str() {
            Some(t) => token = Some(t.to_owned()),
            None => break,
        }
    }
    assert_eq!(paged, one_by_one);
}
