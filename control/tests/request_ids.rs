//! `x-request-id`: a client's own id is kept only when it is 1 to 128 characters of
//! `A-Z a-z 0-9 . _ : -`; anything else is replaced by a fresh UUID, so the audit log and
//! the logs never carry arbitrary client text.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a test: a panic is a failed test

mod common;

use common::{Orion, body};
use reqwest::Method;
use reqwest::header::HeaderValue;
use serde_json::json;

/// Creates a token (an audited action) with `id` as the request id; returns the id Orion
/// answered with and the one the audit log recorded.
async fn audited(orion: &Orion, account: &str, id: HeaderValue) -> (String, String) {
    let created = orion
        .op(Method::POST, &format!("/api/v1/accounts/{account}/tokens"))
        .header("x-request-id", id)
        .json(&json!({"role": "viewer"}))
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), 201);
    let answered = created.headers()["x-request-id"]
        .to_str()
        .unwrap()
        .to_owned();
    let audit = body(
        orion
            .op(Method::GET, &format!("/api/v1/accounts/{account}/audit"))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(audit[0]["action"], "token.create");
    let recorded = audit[0]["request_id"].as_str().unwrap().to_owned();
    (answered, recorded)
}

#[tokio::test]
async fn a_well_formed_client_request_id_is_kept() {
    let orion = Orion::start().await;
    let account = orion.create_account("acme").await;
    for id in [
        "a".to_owned(),
        "req-42".to_owned(),
        "01J9ZQ3V7X8K2M4N6P8R0T2V4W".to_owned(),
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01".to_owned(),
        "web.host_1:8080".to_owned(),
        "x".repeat(128),
    ] {
        let (answered, recorded) =
            audited(&orion, &account, HeaderValue::from_str(&id).unwrap()).await;
        assert_eq!(answered, id);
        assert_eq!(recorded, id);
    }
}

#[tokio::test]
async fn any_other_client_request_id_is_replaced_with_a_uuid() {
    let orion = Orion::start().await;
    let account = orion.create_account("acme").await;
    let refused: Vec<HeaderValue> = vec![
        HeaderValue::from_static(""),
        HeaderValue::from_str(&"x".repeat(129)).unwrap(),
        HeaderValue::from_static("has space"),
        HeaderValue::from_static("tab\there"),
        HeaderValue::from_static("{\"forged\":\"entry\"}"),
        HeaderValue::from_static("<script>alert(1)</script>"),
        HeaderValue::from_static("a/b?c=d"),
        HeaderValue::from_static("admin@example.com"),
        HeaderValue::from_bytes("d\u{e9}j\u{e0}-vu".as_bytes()).unwrap(),
        HeaderValue::from_bytes(b"\xff\xfe").unwrap(),
    ];
    for id in refused {
        let (answered, recorded) = audited(&orion, &account, id.clone()).await;
        assert!(
            uuid::Uuid::parse_str(&answered).is_ok(),
            "{id:?} answered with {answered:?}"
        );
        assert_eq!(recorded, answered, "{id:?}");
    }
    // The first of several ids is not taken on trust either.
    let created = orion
        .op(Method::POST, &format!("/api/v1/accounts/{account}/tokens"))
        .header("x-request-id", "one")
        .header("x-request-id", "two has space")
        .json(&json!({"role": "viewer"}))
        .send()
        .await
        .unwrap();
    let answered = created.headers()["x-request-id"].to_str().unwrap();
    assert!(uuid::Uuid::parse_str(answered).is_ok(), "{answered}");

    let audit = body(
        orion
            .op(Method::GET, &format!("/api/v1/accounts/{account}/audit"))
            .send()
            .await
            .unwrap(),
    )
    .await;
    let entries = audit.as_array().unwrap();
    assert_eq!(entries.len(), 12, "{audit}");
    for entry in entries {
        let id = entry["request_id"].as_str().unwrap();
        assert!(uuid::Uuid::parse_str(id).is_ok(), "{entry}");
    }
}
