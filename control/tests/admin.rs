//! Orion's admin listener: `/metrics` is served there and only there, on `--admin-listen`;
//! the probes answer on both listeners, since load balancers probe the API port.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a test: a panic is a failed test

mod common;

use std::time::Duration;

use common::{OPERATOR, body};
use testkit::{RedisServer, free_port};
use tokio::sync::oneshot;

async fn status(http: &reqwest::Client, url: &str) -> u16 {
    http.get(url)
        .send()
        .await
        .map(|r| r.status().as_u16())
        .unwrap_or(0)
}

#[tokio::test]
async fn metrics_are_served_on_the_admin_listener_not_on_the_api() {
    let redis = RedisServer::start().expect("redis-server");
    let (api_port, admin_port) = (free_port().unwrap(), free_port().unwrap());
    let mut config = common::config(redis.url());
    config.listen = format!("127.0.0.1:{api_port}").parse().unwrap();
    config.admin_listen = format!("127.0.0.1:{admin_port}").parse().unwrap();
    let (stop, stopped) = oneshot::channel::<()>();
    let orion = tokio::spawn(control::run(config, async move {
        let _ = stopped.await;
    }));
    let (api, admin) = (
        format!("http://127.0.0.1:{api_port}"),
        format!("http://127.0.0.1:{admin_port}"),
    );
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    let mut up = false;
    for _ in 0..100 {
        if status(&http, &format!("{api}/healthz")).await == 200 {
            up = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(up, "Orion did not come up");

    let created = http
        .post(format!("{api}/api/v1/accounts"))
        .bearer_auth(OPERATOR)
        .json(&serde_json::json!({"name": "metered"}))
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), 201);

    let public = http.get(format!("{api}/metrics")).send().await.unwrap();
    assert_eq!(public.status(), 404, "metrics on the public API port");
    assert_eq!(public.headers()["content-type"], "application/problem+json");
    assert_eq!(body(public).await["status"], 404);

    let metrics = http.get(format!("{admin}/metrics")).send().await.unwrap();
    assert_eq!(metrics.status(), 200);
    let metrics = metrics.text().await.unwrap();
    assert!(
        metrics.contains(
            "orion_http_requests_total{method=\"POST\",route=\"/api/v1/accounts\",status=\"201\"} 1"
        ),
        "{metrics}"
    );

    for base in [&api, &admin] {
        assert_eq!(
            status(&http, &format!("{base}/healthz")).await,
            200,
            "{base}"
        );
        assert_eq!(
            status(&http, &format!("{base}/readyz")).await,
            200,
            "{base}"
        );
    }
    // The admin listener serves nothing of the API.
    let accounts = http
        .get(format!("{admin}/api/v1/accounts"))
        .bearer_auth(OPERATOR)
        .send()
        .await
        .unwrap();
    assert_eq!(accounts.status(), 404);

    let _ = stop.send(());
    let stopped = tokio::time::timeout(Duration::from_secs(10), orion)
        .await
        .expect("Orion stops when told")
        .unwrap();
    assert!(stopped.is_ok(), "{stopped:?}");
    assert_eq!(status(&http, &format!("{admin}/healthz")).await, 0);
}

#[tokio::test]
async fn a_taken_admin_port_fails_the_start() {
    let redis = RedisServer::start().expect("redis-server");
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let mut config = common::config(redis.url());
    config.listen = format!("127.0.0.1:{}", free_port().unwrap())
        .parse()
        .unwrap();
    config.admin_listen = taken.local_addr().unwrap();
    let started = tokio::time::timeout(
        Duration::from_secs(10),
        control::run(config, std::future::pending()),
    )
    .await
    .expect("Orion gives up at once");
    let error = started.expect_err("Orion started without its admin listener");
    assert!(
        error
            .to_string()
            .contains(&taken.local_addr().unwrap().to_string()),
        "{error}"
    );
}
