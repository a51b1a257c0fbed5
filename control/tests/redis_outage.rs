//! Redis away: Orion answers 503 with Retry-After instead of hanging, and recovers by itself.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a test: a panic is a failed test

mod common;

use std::time::Duration;

use common::{Orion, body, room_for, spec};
use reqwest::Method;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn orion_answers_503_while_redis_is_down_and_recovers_without_restart() {
    let mut orion = Orion::start().await;
    let account = orion.create_account("acme").await;
    let admin = orion.create_token(&account, "admin").await;
    orion.put_region("local", "dev", room_for(5)).await;
    let list = format!("/api/v1/accounts/{account}/clusters");
    assert_eq!(
        orion
            .request(Some(&admin), Method::GET, &list)
            .send()
            .await
            .unwrap()
            .status(),
        200
    );

    orion.redis.kill().unwrap();
    // The client gives up after 10 s: a hang fails this test, a 503 passes it.
    for (method, path) in [
        (Method::GET, list.as_str()),
        (Method::POST, list.as_str()),
        (Method::GET, "/readyz"),
    ] {
        let mut req = orion.request(Some(&admin), method.clone(), path);
        if method == Method::POST {
            req = req.json(&spec("while-down", 1));
        }
        let r = req.send().await.unwrap();
        assert_eq!(r.status(), 503, "{method} {path}");
        assert_eq!(r.headers()["retry-after"], "2");
        assert_eq!(r.headers()["content-type"], "application/problem+json");
    }
    // Liveness does not depend on Redis.
    assert_eq!(
        orion
            .request(None, Method::GET, "/healthz")
            .send()
            .await
            .unwrap()
            .status(),
        200
    );

    orion.redis.restart().unwrap();
    let mut recovered = None;
    for _ in 0..50 {
        let r = orion
            .request(Some(&admin), Method::GET, &list)
            .send()
            .await
            .unwrap();
        if r.status() == 200 {
            recovered = Some(body(r).await);
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let listed = recovered.expect("Orion did not recover after Redis came back");
    assert_eq!(
        listed["clusters"].as_array().unwrap().len(),
        0,
        "the refused create wrote nothing"
    );
    let r = orion
        .create_cluster(&admin, &account, &spec("after", 1))
        .await;
    assert_eq!(r.status(), 202);
    assert_eq!(
        orion
            .request(None, Method::GET, "/readyz")
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
}

#[tokio::test]
async fn orion_starts_without_redis_and_says_it_is_not_ready() {
    let mut orion = Orion::start().await;
    orion.redis.kill().unwrap();
    let r = orion
        .request(None, Method::GET, "/readyz")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 503);
    orion.redis.restart().unwrap();
    let mut ready = false;
    for _ in 0..50 {
        if orion
            .request(None, Method::GET, "/readyz")
            .send()
            .await
            .unwrap()
            .status()
            == 200
        {
            ready = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(ready);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hung_redis_is_a_503_not_a_hang() {
    let orion = Orion::start().await;
    let account = orion.create_account("acme").await;
    let admin = orion.create_token(&account, "admin").await;
    let list = format!("/api/v1/accounts/{account}/clusters");
    assert_eq!(
        orion
            .request(Some(&admin), Method::GET, &list)
            .send()
            .await
            .unwrap()
            .status(),
        200
    );

    orion.redis.pause().unwrap();
    // Orion's Redis deadline is 1 s; the client's 10 s timeout turns a hang into a failure.
    let r = orion
        .request(Some(&admin), Method::GET, &list)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 503);
    assert_eq!(r.headers()["retry-after"], "2");
    orion.redis.resume().unwrap();

    let mut recovered = false;
    for _ in 0..50 {
        if orion
            .request(Some(&admin), Method::GET, &list)
            .send()
            .await
            .unwrap()
            .status()
            == 200
        {
            recovered = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(recovered, "Orion did not recover after Redis resumed");
}
