//! The OpenAPI document is generated from the routes: it parses as OpenAPI 3, every
//! reference resolves, and it lists every route of the public contract.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a test: a panic is a failed test

mod common;

use std::collections::BTreeSet;

use common::Orion;
use reqwest::Method;

const ROUTES: &[(&str, &str)] = &[
    ("POST", "/api/v1/accounts"),
    ("GET", "/api/v1/accounts"),
    ("GET", "/api/v1/accounts/{account_id}"),
    ("POST", "/api/v1/accounts/{account_id}/tokens"),
    ("GET", "/api/v1/accounts/{account_id}/audit"),
    ("PUT", "/api/v1/regions/{provider}/{region}"),
    ("GET", "/api/v1/regions/{provider}/{region}"),
    ("GET", "/api/v1/regions"),
    ("POST", "/api/v1/accounts/{account_id}/clusters"),
    ("GET", "/api/v1/accounts/{account_id}/clusters"),
    ("GET", "/api/v1/accounts/{account_id}/clusters/{cluster_id}"),
    (
        "PATCH",
        "/api/v1/accounts/{account_id}/clusters/{cluster_id}",
    ),
    (
        "DELETE",
        "/api/v1/accounts/{account_id}/clusters/{cluster_id}",
    ),
    (
        "GET",
        "/api/v1/accounts/{account_id}/clusters/{cluster_id}/usage",
    ),
    (
        "POST",
        "/api/v1/accounts/{account_id}/clusters/{cluster_id}/api-keys",
    ),
    (
        "GET",
        "/api/v1/accounts/{account_id}/clusters/{cluster_id}/api-keys",
    ),
    (
        "DELETE",
        "/api/v1/accounts/{account_id}/clusters/{cluster_id}/api-keys/{key_id}",
    ),
    ("GET", "/api/v1/dead-letters"),
    ("POST", "/api/v1/dead-letters/{id}/replay"),
];

#[tokio::test]
async fn the_document_is_valid_and_complete() {
    let orion = Orion::start().await;
    let r = orion
        .request(None, Method::GET, "/api/v1/openapi.json")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let text = r.text().await.unwrap();
    let spec = oas3::from_json(&text).expect("a valid OpenAPI document");
    assert!(spec.openapi.starts_with("3."));

    let documented: BTreeSet<(String, String)> = spec
        .operations()
        .map(|(path, method, _)| (method.as_str().to_owned(), path))
        .collect();
    let expected: BTreeSet<(String, String)> = ROUTES
        .iter()
        .map(|(m, p)| ((*m).to_owned(), (*p).to_owned()))
        .collect();
    assert_eq!(documented, expected);

    // Every schema reference points at a schema that exists.
    let value: serde_json::Value = serde_json::from_str(&text).unwrap();
    let schemas = &value["components"]["schemas"];
    let mut refs = Vec::new();
    collect_refs(&value, &mut refs);
    assert!(!refs.is_empty());
    for r in refs {
        let name = r
            .strip_prefix("#/components/schemas/")
            .unwrap_or_else(|| panic!("odd ref {r}"));
        assert!(schemas.get(name).is_some(), "dangling reference {r}");
    }
    // The regions' node limits are described: what an operator sends (every bound optional)
    // and what a region shows (every bound present), with the defaults the contract applies.
    let put = &schemas["PutRegion"]["properties"]["node_limits"];
    assert!(!put.is_null(), "PutRegion lacks node_limits");
    // Descriptions keep the doc comment's line breaks; compare words, not layout.
    let described = put.to_string().replace("\\n", " ");
    let d = contract::node_limits::DEFAULT;
    use contract::resources::limits;
    for (name, b, absolute) in [
        ("cpu", d.cpu, limits::CPU_MILLICORES),
        ("memory", d.memory, limits::MEMORY_MIB),
        ("disk", d.disk, limits::DISK_GIB),
        ("nodes", d.nodes, limits::NUM_NODES),
    ] {
        for (lo, hi) in [(b.min, b.max), absolute] {
            let said = format!("{name} {lo}..={hi}");
            assert!(
                described.contains(&said),
                "PutRegion does not say {said}: {described}"
            );
        }
        assert!(
            !schemas["NodeLimitsSpec"]["properties"][name].is_null(),
            "NodeLimitsSpec lacks {name}"
        );
    }
    assert_eq!(
        schemas["BoundsSpec"]["required"],
        serde_json::Value::Null,
        "a bound an operator sends is optional"
    );
    let view = &schemas["RegionView"];
    assert!(
        view["required"]
            .as_array()
            .is_some_and(|r| r.iter().any(|f| f == "node_limits"))
    );
    assert_eq!(
        schemas["Bounds"]["required"],
        serde_json::json!(["min", "max"])
    );
    for (_, _, op) in spec.operations() {
        assert!(
            !op.responses.as_ref().is_none_or(|r| r.is_empty()),
            "an operation without responses"
        );
    }
}

fn collect_refs(v: &serde_json::Value, out: &mut Vec<String>) {
    match v {
        serde_json::Value::Object(map) => {
            for (k, v) in map {
                if k == "$ref" {
                    out.push(v.as_str().unwrap_or_default().to_owned());
                } else {
                    collect_refs(v, out);
                }
            }
        }
        serde_json::Value::Array(items) => items.iter().for_each(|i| collect_refs(i, out)),
        _ => {}
    }
}

#[tokio::test]
async fn the_docs_page_and_metrics_are_served() {
    let orion = Orion::start().await;
    let docs = orion
        .request(None, Method::GET, "/docs")
        .send()
        .await
        .unwrap();
    assert_eq!(docs.status(), 200);
    assert!(docs.text().await.unwrap().contains("<html"));
    orion.create_account("metered").await;
    let public = orion
        .request(None, Method::GET, "/metrics")
        .send()
        .await
        .unwrap();
    assert_eq!(public.status(), 404, "metrics on the public API port");
    let metrics = orion
        .http
        .get(format!("{}/metrics", orion.admin_url))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(metrics.contains(
        "orion_http_requests_total{method=\"POST\",route=\"/api/v1/accounts\",status=\"201\"} 1"
    ));
    assert!(!metrics.contains(common::OPERATOR));
}
