//! A table of bad requests: each gets the right 4xx as problem+json (naming the field where
//! there is one) and leaves the store exactly as it was.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a test: a panic is a failed test

mod common;

use common::{Orion, body, room_for, spec};
use reqwest::Method;
use serde_json::{Value, json};

enum Body {
    None,
    Json(Value),
    Raw(&'static str, String),
}

struct Case {
    what: &'static str,
    token: Option<String>,
    method: Method,
    path: String,
    body: Body,
    status: u16,
    field: Option<&'static str>,
}

fn case(
    what: &'static str,
    token: &str,
    method: Method,
    path: &str,
    body: Body,
    status: u16,
) -> Case {
    Case {
        what,
        token: Some(token.to_owned()),
        method,
        path: path.to_owned(),
        body,
        status,
        field: None,
    }
}

impl Case {
    fn field(mut self, f: &'static str) -> Self {
        self.field = Some(f);
        self
    }
    fn anonymous(mut self) -> Self {
        self.token = None;
        self
    }
}

fn with(mut v: Value, pointer: &str, value: Value) -> Value {
    *v.pointer_mut(pointer).unwrap() = value;
    v
}

fn without(mut v: Value, parent: &str, key: &str) -> Value {
    v.pointer_mut(parent)
        .unwrap()
        .as_object_mut()
        .unwrap()
        .remove(key);
    v
}

#[tokio::test]
async fn bad_requests_get_the_right_answer_and_change_nothing() {
    let orion = Orion::start().await;
    let a = orion.create_account("tenant-a").await;
    let b = orion.create_account("tenant-b").await;
    let admin = orion.create_token(&a, "admin").await;
    let viewer = orion.create_token(&a, "viewer").await;
    let other = orion.create_token(&b, "admin").await;
    orion.put_region("local", "dev", room_for(10)).await;
    let creating = body(orion.create_cluster(&admin, &a, &spec("creating", 1)).await).await;
    let healthy = body(orion.create_cluster(&admin, &a, &spec("healthy", 1)).await).await;
    let b_cluster = body(orion.create_cluster(&other, &b, &spec("theirs", 1)).await).await;
    orion.finish_provisioning(healthy["id"].as_str().unwrap());
    let op = common::OPERATOR.to_owned();

    let clusters = format!("/api/v1/accounts/{a}/clusters");
    let creating_path = format!("{clusters}/{}", creating["id"].as_str().unwrap());
    let healthy_path = format!("{clusters}/{}", healthy["id"].as_str().unwrap());
    let keys = format!("{healthy_path}/api-keys");
    let good = spec("new-one", 1);
    let j = Body::Json;
    use Method as M;

    let cases = vec![
        case("no name", &admin, M::POST, &clusters, j(without(good.clone(), "", "name")), 422).field("name"),
        case("no provider", &admin, M::POST, &clusters, j(without(good.clone(), "", "cloud_provider")), 422).field("cloud_provider"),
        case("no region", &admin, M::POST, &clusters, j(without(good.clone(), "", "cloud_region")), 422).field("cloud_region"),
        case("no configuration", &admin, M::POST, &clusters, j(without(good.clone(), "", "configuration")), 422).field("configuration"),
        case("no num_nodes", &admin, M::POST, &clusters, j(without(good.clone(), "/configuration", "num_nodes")), 422).field("configuration.num_nodes"),
        case("no cpu", &admin, M::POST, &clusters, j(without(good.clone(), "/configuration/node_configuration", "cpu")), 422).field("configuration.node_configuration.cpu"),
        case("num_nodes is a string", &admin, M::POST, &clusters, j(with(good.clone(), "/configuration/num_nodes", json!("three"))), 422).field("configuration.num_nodes"),
        case("num_nodes 0", &admin, M::POST, &clusters, j(with(good.clone(), "/configuration/num_nodes", json!(0))), 422).field("configuration.num_nodes"),
        case("num_nodes 101", &admin, M::POST, &clusters, j(with(good.clone(), "/configuration/num_nodes", json!(101))), 422).field("configuration.num_nodes"),
        case("num_nodes negative", &admin, M::POST, &clusters, j(with(good.clone(), "/configuration/num_nodes", json!(-1))), 422).field("configuration.num_nodes"),
        case("cpu below any node", &admin, M::POST, &clusters, j(with(good.clone(), "/configuration/node_configuration/cpu", json!(5))), 422).field("configuration.node_configuration.cpu"),
        case("cpu below the region's minimum", &admin, M::POST, &clusters, j(with(good.clone(), "/configuration/node_configuration/cpu", json!(50))), 422).field("configuration.node_configuration.cpu"),
        case("memory too large", &admin, M::POST, &clusters, j(with(good.clone(), "/configuration/node_configuration/memory", json!(10_000_000))), 422).field("configuration.node_configuration.memory"),
        case("disk zero", &admin, M::POST, &clusters, j(with(good.clone(), "/configuration/node_configuration/disk", json!(0))), 422).field("configuration.node_configuration.disk"),
        case("name too short", &admin, M::POST, &clusters, j(with(good.clone(), "/name", json!("a"))), 422).field("name"),
        case("name with a space", &admin, M::POST, &clusters, j(with(good.clone(), "/name", json!("my cluster"))), 422).field("name"),
        case("unknown field", &admin, M::POST, &clusters, j(with(good.clone(), "/name", json!("ok")).as_object().map(|o| { let mut o = o.clone(); o.insert("gpu".into(), json!(1)); Value::Object(o) }).unwrap()), 422).field("gpu"),
        case("unknown nested field", &admin, M::POST, &clusters, j(with(good.clone(), "/configuration/node_configuration", json!({"cpu": 1000, "memory": 2048, "disk": 10, "gpu": 1}))), 422).field("configuration.node_configuration.gpu"),
        case("unknown provider", &admin, M::POST, &clusters, j(with(good.clone(), "/cloud_provider", json!("aws"))), 422).field("cloud_provider"),
        case("unknown region", &admin, M::POST, &clusters, j(with(good.clone(), "/cloud_region", json!("eu"))), 422).field("cloud_region"),
        case("malformed JSON", &admin, M::POST, &clusters, Body::Raw("application/json", "{\"name\":".into()), 400),
        case("empty body", &admin, M::POST, &clusters, Body::Raw("application/json", String::new()), 400),
        case("trailing garbage", &admin, M::POST, &clusters, Body::Raw("application/json", format!("{good} x")), 400),
        case("wrong content type", &admin, M::POST, &clusters, Body::Raw("text/plain", good.to_string()), 415),
        case("no content type", &admin, M::POST, &clusters, Body::None, 415),
        case("oversize body", &admin, M::POST, &clusters, Body::Raw("application/json", format!("{{\"name\":\"{}\"}}", "x".repeat(100_000))), 413),
        case("array instead of object", &admin, M::POST, &clusters, j(json!([good.clone()])), 422),
        case("bad account id", &admin, M::POST, "/api/v1/accounts/not-a-uuid/clusters", j(good.clone()), 400),
        case("bad cluster id", &admin, M::GET, &format!("{clusters}/12345"), Body::None, 400),
        case("no token", &admin, M::POST, &clusters, j(good.clone()), 401).anonymous(),
        case("unknown token", "lyra_at_0000000000000000000000000000000000000000", M::POST, &clusters, j(good.clone()), 401),
        case("viewer writes", &viewer, M::POST, &clusters, j(good.clone()), 403),
        case("viewer deletes", &viewer, M::DELETE, &creating_path, Body::None, 403),
        case("other tenant creates here", &other, M::POST, &clusters, j(good.clone()), 404),
        case("other tenant reads here", &other, M::GET, &creating_path, Body::None, 404),
        case("other tenant deletes here", &other, M::DELETE, &creating_path, Body::None, 404),
        case("other tenant lists here", &other, M::GET, &clusters, Body::None, 404),
        case("their cluster under our account", &admin, M::GET, &format!("{clusters}/{}", b_cluster["id"].as_str().unwrap()), Body::None, 404),
        case("account token creates an account", &admin, M::POST, "/api/v1/accounts", j(json!({"name": "mine"})), 403),
        case("account token sets capacity", &admin, M::PUT, "/api/v1/regions/local/dev", j(json!({"driver": "local", "capacity": room_for(99)})), 403),
        case("account token reads dead letters", &admin, M::GET, "/api/v1/dead-letters", Body::None, 403),
        case("account name too short", &op, M::POST, "/api/v1/accounts", j(json!({"name": "x"})), 422).field("name"),
        case("unknown driver", &op, M::PUT, "/api/v1/regions/local/dev", j(json!({"driver": "docker", "capacity": room_for(1)})), 422).field("driver"),
        case("upper-case provider", &op, M::PUT, "/api/v1/regions/AWS/dev", j(json!({"driver": "local", "capacity": room_for(1)})), 422).field("cloud_provider"),
        case("capacity without disk", &op, M::PUT, "/api/v1/regions/local/dev", j(json!({"driver": "local", "capacity": {"nodes": 1, "cpu": 1, "memory": 1}})), 422).field("capacity.disk"),
        case("capacity below allocated", &op, M::PUT, "/api/v1/regions/local/dev", j(json!({"driver": "local", "capacity": room_for(1)})), 409),
        case("node limit below any node", &op, M::PUT, "/api/v1/regions/local/dev", j(json!({"driver": "local", "capacity": room_for(10), "node_limits": {"cpu": {"min": 5}}})), 422).field("node_limits.cpu.min"),
        case("node limits out of order", &op, M::PUT, "/api/v1/regions/local/dev", j(json!({"driver": "local", "capacity": room_for(10), "node_limits": {"memory": {"min": 4096, "max": 1024}}})), 422).field("node_limits.memory.max"),
        case("unknown node limit", &op, M::PUT, "/api/v1/regions/local/dev", j(json!({"driver": "local", "capacity": room_for(10), "node_limits": {"gpu": {"max": 1}}})), 422).field("node_limits.gpu"),
        case("account token sets node limits", &admin, M::PUT, "/api/v1/regions/local/dev", j(json!({"driver": "local", "capacity": room_for(10), "node_limits": {"cpu": {"min": 500}}})), 403),
        case("unknown region read", &admin, M::GET, "/api/v1/regions/local/nowhere", Body::None, 404),
        case("unknown role", &admin, M::POST, &format!("/api/v1/accounts/{a}/tokens"), j(json!({"role": "owner"})), 422).field("role"),
        case("viewer makes a token", &viewer, M::POST, &format!("/api/v1/accounts/{a}/tokens"), j(json!({"role": "admin"})), 403),
        case("page_size 0", &admin, M::GET, &format!("{clusters}?page_size=0"), Body::None, 422).field("page_size"),
        case("page_size 251", &admin, M::GET, &format!("{clusters}?page_size=251"), Body::None, 422).field("page_size"),
        case("forged page token", &admin, M::GET, &format!("{clusters}?page_token=bm9wZQ"), Body::None, 422).field("page_token"),
        // "o:9223372036854775807": the offset plus the page size overflowed, and the request
        // panicked without an answer.
        case("forged page token at isize::MAX", &admin, M::GET, &format!("{clusters}?page_token=bzo5MjIzMzcyMDM2ODU0Nzc1ODA3"), Body::None, 422).field("page_token"),
        case("unknown access", &admin, M::POST, &keys, j(json!({"name": "k1", "access": "admin"})), 422).field("access"),
        case("expiry in the past", &admin, M::POST, &keys, j(json!({"name": "k1", "access": "manage", "expires_at": "2001-01-01T00:00:00Z"})), 422).field("expires_at"),
        case("expiry not a date", &admin, M::POST, &keys, j(json!({"name": "k1", "access": "manage", "expires_at": "tomorrow"})), 422).field("expires_at"),
        case("collection with a slash", &admin, M::POST, &keys, j(json!({"name": "k1", "access": [{"collection": "a/b", "access": "r"}]})), 422).field("access[0].collection"),
        case("key for a cluster still creating", &admin, M::POST, &format!("{creating_path}/api-keys"), j(json!({"name": "k1", "access": "manage"})), 409),
        case("viewer makes a key", &viewer, M::POST, &keys, j(json!({"name": "k1", "access": "manage"})), 403),
        case("revoke an unknown key", &admin, M::DELETE, &format!("{keys}/6f1d2c3b-4a59-4e87-9d6c-5b4a39281706"), Body::None, 404),
        case("resize to zero nodes", &admin, M::PATCH, &healthy_path, j(json!({"configuration": {"num_nodes": 0, "node_configuration": {"cpu": 1000, "memory": 2048, "disk": 10}}})), 422).field("configuration.num_nodes"),
        case("resize while creating", &admin, M::PATCH, &creating_path, j(json!({"configuration": {"num_nodes": 2, "node_configuration": {"cpu": 1000, "memory": 2048, "disk": 10}}})), 409),
        case("resize beyond the region", &admin, M::PATCH, &healthy_path, j(json!({"configuration": {"num_nodes": 50, "node_configuration": {"cpu": 1000, "memory": 2048, "disk": 10}}})), 409),
        case("resize below the region's minimum", &admin, M::PATCH, &healthy_path, j(json!({"configuration": {"num_nodes": 1, "node_configuration": {"cpu": 1000, "memory": 64, "disk": 10}}})), 422).field("configuration.node_configuration.memory"),
        case("replay an unknown dead letter", &op, M::POST, "/api/v1/dead-letters/1-1/replay", Body::None, 404),
        case("unknown route", &admin, M::GET, "/api/v1/nowhere", Body::None, 404),
        case("wrong method", &admin, M::PUT, &clusters, j(good.clone()), 405),
        case("audit limit 0", &admin, M::GET, &format!("/api/v1/accounts/{a}/audit?limit=0"), Body::None, 422).field("limit"),
        case("audit limit 1001", &admin, M::GET, &format!("/api/v1/accounts/{a}/audit?limit=1001"), Body::None, 422).field("limit"),
        case("audit limit not a number", &admin, M::GET, &format!("/api/v1/accounts/{a}/audit?limit=ten"), Body::None, 400),
        // Bad input is judged before anything is looked up, so it is 422 whoever asks.
        case("audit limit 0 where the token cannot see", &other, M::GET, &format!("/api/v1/accounts/{a}/audit?limit=0"), Body::None, 422).field("limit"),
        case("page_size 0 where the token cannot see", &other, M::GET, &format!("{clusters}?page_size=0"), Body::None, 422).field("page_size"),
        case("page_size not an integer", &admin, M::GET, &format!("{clusters}?page_size=1.5"), Body::None, 400),
        case("unknown query parameter", &admin, M::GET, &format!("{clusters}?sort=name"), Body::None, 400),
        // serde reads a struct from an array of its fields too; the schemas allow no such thing.
        case("node limit bounds as an array", &op, M::PUT, "/api/v1/regions/local/dev", j(json!({"driver": "local", "capacity": room_for(10), "node_limits": {"nodes": [null, null]}})), 422).field("node_limits.nodes"),
        case("capacity as an array", &op, M::PUT, "/api/v1/regions/local/dev", j(json!({"driver": "local", "capacity": [10, 10000, 20480, 100]})), 422).field("capacity"),
        case("node configuration as an array", &admin, M::POST, &clusters, j(with(good.clone(), "/configuration/node_configuration", json!([1000, 2048, 10]))), 422).field("configuration.node_configuration"),
        case("collection rule as an array", &admin, M::POST, &keys, j(json!({"name": "k1", "access": [["products", "r"]]})), 422).field("access[0]"),
        case("whole body as an array", &op, M::POST, "/api/v1/accounts", j(json!(["listed"])), 422).field("body"),
        case("cpu with a fraction", &admin, M::POST, &clusters, j(with(good.clone(), "/configuration/node_configuration/cpu", json!(1000.5))), 422).field("configuration.node_configuration.cpu"),
    ];
    assert!(cases.len() >= 30);

    let before = orion.dataset();
    for c in cases {
        let mut req = orion.request(c.token.as_deref(), c.method.clone(), &c.path);
        req = match c.body {
            Body::None => req,
            Body::Json(v) => req.json(&v),
            Body::Raw(ct, s) => req.header("content-type", ct).body(s),
        };
        let r = req.send().await.unwrap();
        let status = r.status().as_u16();
        let content_type = r
            .headers()
            .get("content-type")
            .map(|v| v.to_str().unwrap().to_owned())
            .unwrap_or_default();
        let text = r.text().await.unwrap();
        assert_eq!(status, c.status, "{}: {text}", c.what);
        assert_eq!(content_type, "application/problem+json", "{}", c.what);
        let problem: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(problem["status"], c.status, "{}", c.what);
        assert!(
            problem["type"].as_str().unwrap().starts_with("/problems/"),
            "{}",
            c.what
        );
        assert!(
            !problem["detail"].as_str().unwrap().is_empty(),
            "{}",
            c.what
        );
        if let Some(field) = c.field {
            let fields: Vec<&str> = problem["errors"]
                .as_array()
                .unwrap_or_else(|| panic!("{}: no errors in {text}", c.what))
                .iter()
                .map(|e| e["field"].as_str().unwrap())
                .collect();
            assert!(
                fields.contains(&field),
                "{}: wanted {field}, got {fields:?}",
                c.what
            );
        }
        assert!(
            !text.contains(&admin) && !text.contains(common::OPERATOR),
            "{}: a token leaked",
            c.what
        );
        let after = orion.dataset();
        let changed: Vec<&String> = before
            .keys()
            .chain(after.keys())
            .filter(|k| before.get(*k) != after.get(*k))
            .collect();
        assert!(
            changed.is_empty(),
            "{}: changed the store: {changed:?}",
            c.what
        );
    }
}
