//! The OpenAPI document is generated from the routes: it parses as OpenAPI 3, every
//! reference resolves, and it lists every route of the public contract.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a test: a panic is a failed test

mod common;

use std::collections::BTreeSet;

use common::Orion;
use reqwest::Method;
use serde_json::Value;

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

async fn document() -> Value {
    let orion = Orion::start().await;
    let r = orion
        .request(None, Method::GET, "/api/v1/openapi.json")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    r.json().await.unwrap()
}

/// Every operation of the document: (method, path, operation).
fn operations(doc: &Value) -> Vec<(String, String, Value)> {
    let mut all = Vec::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            if ["get", "put", "post", "delete", "patch"].contains(&method.as_str()) {
                all.push((method.to_uppercase(), path.clone(), op.clone()));
            }
        }
    }
    assert_eq!(all.len(), ROUTES.len());
    all
}

fn parameter<'a>(op: &'a Value, name: &str) -> &'a Value {
    op["parameters"]
        .as_array()
        .and_then(|ps| ps.iter().find(|p| p["name"] == name))
        .unwrap_or_else(|| panic!("no parameter {name} in {op}"))
}

/// Answers every operation can give come from the layers in front of the handlers, and the
/// document says so for each: 401 where a token is needed, 503 when the store is away, 400
/// for a malformed path or query, the body's 400/413/415/422, the `Idempotency-Key` answers;
/// and every refusal is problem+json.
#[tokio::test]
async fn every_operation_documents_the_answers_of_the_layers_it_passes() {
    let doc = document().await;
    for (method, path, op) in operations(&doc) {
        let what = format!("{method} {path}");
        let responses = op["responses"].as_object().unwrap();
        let has = |status: &str| responses.contains_key(status);
        for (status, response) in responses {
            let content = &response["content"];
            if status.starts_with(['3', '4', '5']) {
                let types: Vec<&String> = content.as_object().unwrap().keys().collect();
                assert_eq!(types, ["application/problem+json"], "{what} {status}");
                assert_eq!(
                    content["application/problem+json"]["schema"]["$ref"],
                    "#/components/schemas/Problem",
                    "{what} {status}"
                );
                assert!(
                    !response["description"].as_str().unwrap().is_empty(),
                    "{what} {status} does not say when"
                );
            }
        }
        let secured = op["security"].as_array().is_some_and(|s| {
            s.iter()
                .all(|r| r.as_object().is_some_and(|r| !r.is_empty()))
        });
        assert!(secured, "{what} is not secured");
        assert!(has("401"), "{what} lacks 401");
        assert!(has("503"), "{what} lacks 503");
        assert!(
            responses["503"]["headers"]["Retry-After"].is_object(),
            "{what}: 503 without Retry-After"
        );

        let params = op["parameters"].as_array().cloned().unwrap_or_default();
        // A path parameter is in the path template, and every placeholder is a parameter: a
        // query parameter documented `in: path` is what this guards against.
        let placeholders: BTreeSet<String> = path
            .split('/')
            .filter_map(|s| s.strip_prefix('{')?.strip_suffix('}'))
            .map(str::to_owned)
            .collect();
        let in_path: BTreeSet<String> = params
            .iter()
            .filter(|p| p["in"] == "path")
            .map(|p| p["name"].as_str().unwrap().to_owned())
            .collect();
        assert_eq!(in_path, placeholders, "{what}: path parameters");
        if params
            .iter()
            .any(|p| p["in"] == "path" || p["in"] == "query")
        {
            assert!(has("400"), "{what}: a malformed parameter is 400");
        }
        if !op["requestBody"].is_null() {
            for status in ["400", "413", "415", "422"] {
                assert!(has(status), "{what} has a body but lacks {status}");
            }
        }
        let key = params.iter().find(|p| p["name"] == "Idempotency-Key");
        if ["POST", "PATCH", "DELETE"].contains(&method.as_str()) {
            let key = key.unwrap_or_else(|| panic!("{what} does not document Idempotency-Key"));
            assert_eq!(key["in"], "header");
            assert_eq!(key["schema"]["maxLength"], 255);
            for status in ["400", "409", "303"] {
                assert!(has(status), "{what}: Idempotency-Key answers {status}");
            }
            assert!(responses["303"]["headers"]["Location"].is_object());
            assert!(responses["409"]["headers"]["Retry-After"].is_object());
            for (status, response) in responses.iter().filter(|(s, _)| s.starts_with('2')) {
                assert!(
                    response["headers"]["Idempotent-Replayed"].is_object(),
                    "{what} {status}"
                );
            }
        } else {
            assert!(key.is_none(), "{what} takes no Idempotency-Key");
        }
    }
}

/// The schemas carry the rules the server validates with, taken from the same constants, so a
/// client (or a fuzzer) that keeps to the document is not refused for breaking an unstated rule.
#[tokio::test]
async fn the_schemas_state_the_rules_the_server_enforces() {
    use contract::resources::limits;
    use contract::validation::{
        DNS_LABEL_MAX, DNS_LABEL_PATTERN, NAME_MAX, NAME_MIN, NAME_PATTERN,
    };

    let doc = document().await;
    let schemas = &doc["components"]["schemas"];
    let range = |v: &Value, (lo, hi): (u64, u64), what: &str| {
        assert_eq!(v["minimum"], lo, "{what} minimum: {v}");
        assert_eq!(v["maximum"], hi, "{what} maximum: {v}");
    };
    let node = &schemas["NodeResources"]["properties"];
    range(&node["cpu"], limits::CPU_MILLICORES, "cpu");
    range(&node["memory"], limits::MEMORY_MIB, "memory");
    range(&node["disk"], limits::DISK_GIB, "disk");
    range(
        &schemas["ClusterConfiguration"]["properties"]["num_nodes"],
        limits::NUM_NODES,
        "num_nodes",
    );
    for dim in ["nodes", "cpu", "memory", "disk"] {
        let total = &schemas["Capacity"]["properties"][dim];
        assert_eq!(total["maximum"], limits::CAPACITY_TOTAL, "capacity {dim}");
    }
    let spec = &schemas["NodeLimitsSpec"]["properties"];
    for (dim, absolute) in [
        ("cpu", limits::CPU_MILLICORES),
        ("memory", limits::MEMORY_MIB),
        ("disk", limits::DISK_GIB),
        ("nodes", limits::NUM_NODES),
    ] {
        assert_eq!(
            spec[dim]["additionalProperties"], false,
            "node_limits.{dim}"
        );
        for bound in ["min", "max"] {
            range(
                &spec[dim]["properties"][bound],
                absolute,
                &format!("node_limits.{dim}.{bound}"),
            );
        }
    }
    for (schema, field) in [
        ("ClusterSpec", "name"),
        ("CreateAccount", "name"),
        ("CreateApiKey", "name"),
    ] {
        let name = &schemas[schema]["properties"][field];
        assert_eq!(name["minLength"], NAME_MIN, "{schema}.{field}");
        assert_eq!(name["maxLength"], NAME_MAX, "{schema}.{field}");
        assert_eq!(name["pattern"], NAME_PATTERN, "{schema}.{field}");
    }
    for field in ["cloud_provider", "cloud_region"] {
        let label = &schemas["ClusterSpec"]["properties"][field];
        assert_eq!(label["minLength"], 1, "{field}");
        assert_eq!(label["maxLength"], DNS_LABEL_MAX, "{field}");
        assert_eq!(label["pattern"], DNS_LABEL_PATTERN, "{field}");
    }
    let rules = schemas["KeyScope"]["oneOf"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["type"] == "array")
        .unwrap();
    assert_eq!(rules["minItems"], 1);
    assert_eq!(rules["maxItems"], contract::api_key::MAX_COLLECTION_RULES);
    let collection = &schemas["CollectionRule"]["properties"]["collection"];
    assert_eq!(collection["minLength"], 1);
    assert_eq!(
        collection["maxLength"],
        contract::api_key::COLLECTION_NAME_MAX
    );
    assert!(collection["pattern"].is_string());
    for (schema, request) in [
        ("ClusterSpec", true),
        ("ResizeCluster", true),
        ("PutRegion", true),
        ("CreateApiKey", true),
        ("CreateAccount", true),
        ("CreateToken", true),
    ] {
        assert_eq!(
            schemas[schema]["additionalProperties"] == false,
            request,
            "{schema}: unknown fields are refused, and the schema says so"
        );
    }

    // Parameters: in the query, with their ranges, and the regions' names as DNS labels.
    let ops = operations(&doc);
    let op = |method: &str, path: &str| {
        ops.iter()
            .find(|(m, p, _)| m == method && p == path)
            .map(|(_, _, op)| op.clone())
            .unwrap()
    };
    let audit = op("GET", "/api/v1/accounts/{account_id}/audit");
    let limit = parameter(&audit, "limit");
    assert_eq!(limit["in"], "query");
    assert_eq!(limit["required"], false);
    let max = control::api::MAX_AUDIT_LIMIT as u64;
    range(&limit["schema"], (1, max), "limit");
    let list = op("GET", "/api/v1/accounts/{account_id}/clusters");
    let page_size = parameter(&list, "page_size");
    assert_eq!(page_size["in"], "query");
    range(
        &page_size["schema"],
        (1, u64::from(control::api::MAX_PAGE_SIZE)),
        "page_size",
    );
    assert_eq!(parameter(&list, "page_token")["in"], "query");
    for method in ["GET", "PUT"] {
        let region = op(method, "/api/v1/regions/{provider}/{region}");
        for name in ["provider", "region"] {
            assert_eq!(
                parameter(&region, name)["schema"]["pattern"],
                DNS_LABEL_PATTERN,
                "{method} {name}"
            );
        }
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
