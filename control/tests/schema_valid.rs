//! What the OpenAPI document admits is accepted: JSON Schema counts `2.0` and `2e3` as the
//! integers 2 and 2000, so integer fields take those spellings too (schemathesis sends them).
#![allow(clippy::unwrap_used, clippy::expect_used)] // a test: a panic is a failed test

mod common;

use common::{Orion, body};
use reqwest::Method;
use serde_json::json;

#[tokio::test]
async fn whole_numbers_in_any_spelling_are_accepted_as_integers() {
    let orion = Orion::start().await;
    let account = orion.create_account("acme").await;
    let admin = orion.create_token(&account, "admin").await;
    let region = orion
        .op(Method::PUT, "/api/v1/regions/local/dev")
        .header("content-type", "application/json")
        .body(
            r#"{"driver": "local",
                "capacity": {"nodes": 10.0, "cpu": 1e4, "memory": 20480.0, "disk": 1.0e2},
                "node_limits": {"cpu": {"min": 100.0}}}"#,
        )
        .send()
        .await
        .unwrap();
    assert_eq!(region.status(), 200);
    let region = body(region).await;
    assert_eq!(
        region["capacity"],
        json!({"nodes": 10, "cpu": 10000, "memory": 20480, "disk": 100})
    );
    assert_eq!(region["node_limits"]["cpu"]["min"], 100);

    let created = orion
        .request(
            Some(&admin),
            Method::POST,
            &format!("/api/v1/accounts/{account}/clusters"),
        )
        .header("content-type", "application/json")
        .body(
            r#"{"name": "floats", "cloud_provider": "local", "cloud_region": "dev",
                "configuration": {"num_nodes": 2.0,
                    "node_configuration": {"cpu": 1e3, "memory": 2048.0, "disk": 10.00}}}"#,
        )
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), 202);
    assert_eq!(
        body(created).await["configuration"],
        json!({"num_nodes": 2, "node_configuration": {"cpu": 1000, "memory": 2048, "disk": 10}})
    );
}
