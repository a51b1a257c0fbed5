//! Per-region node limits through real HTTP on a real Redis: the defaults admit the seed's
//! small example, a stricter region refuses it by field and writes nothing, a bad policy is
//! refused whole, regions stored before limits existed keep working, and the scripts refuse
//! limits that changed after Orion checked a request against them.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a test: a panic is a failed test

mod common;

use common::{Orion, body, room_for};
use contract::keyspace;
use contract::node_limits::DEFAULT;
use contract::scripts;
use reqwest::{Method, Response};
use serde_json::{Value, json};

/// The seed's `ProvisionDBCluster` example: 3 nodes of 100 millicores, 128 MiB and 1 GiB.
fn seed_spec(region: &str) -> Value {
    json!({
        "name": "seed-example",
        "cloud_provider": "local",
        "cloud_region": region,
        "configuration": {
            "num_nodes": 3,
            "node_configuration": {"cpu": 100, "memory": 128, "disk": 1}
        }
    })
}

fn defaults() -> Value {
    serde_json::to_value(DEFAULT).unwrap()
}

async fn put(orion: &Orion, region: &str, body: Value) -> Response {
    orion
        .op(Method::PUT, &format!("/api/v1/regions/local/{region}"))
        .json(&body)
        .send()
        .await
        .unwrap()
}

async fn get_region(orion: &Orion, region: &str) -> Value {
    let r = orion
        .op(Method::GET, &format!("/api/v1/regions/local/{region}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    body(r).await
}

/// The problem's field errors as `field -> reason`, after checking it is a 422 problem+json.
async fn field_errors(r: Response) -> Vec<(String, String)> {
    assert_eq!(r.status(), 422);
    assert_eq!(r.headers()["content-type"], "application/problem+json");
    let problem = body(r).await;
    problem["errors"]
        .as_array()
        .unwrap_or_else(|| panic!("no errors in {problem}"))
        .iter()
        .map(|e| {
            (
                e["field"].as_str().unwrap().to_owned(),
                e["reason"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

fn fields(errors: &[(String, String)]) -> Vec<&str> {
    errors.iter().map(|(f, _)| f.as_str()).collect()
}

#[tokio::test]
async fn the_seed_example_fits_a_region_with_default_limits() {
    let orion = Orion::start().await;
    let account = orion.create_account("acme").await;
    let admin = orion.create_token(&account, "admin").await;
    let region = orion.put_region("local", "dev", room_for(10)).await;
    assert_eq!(region["node_limits"], defaults());
    assert_eq!(
        defaults(),
        json!({
            "cpu": {"min": 100, "max": 64000},
            "memory": {"min": 128, "max": 524288},
            "disk": {"min": 1, "max": 16384},
            "nodes": {"min": 1, "max": 100}
        })
    );
    assert_eq!(get_region(&orion, "dev").await["node_limits"], defaults());

    let r = orion
        .create_cluster(&admin, &account, &seed_spec("dev"))
        .await;
    assert_eq!(r.status(), 202);
    let created = body(r).await;
    assert_eq!(created["phase"], "CREATING");
    assert_eq!(
        created["configuration"]["node_configuration"],
        json!({"cpu": 100, "memory": 128, "disk": 1})
    );
    let region = get_region(&orion, "dev").await;
    assert_eq!(
        region["allocated"],
        json!({"nodes": 3, "cpu": 300, "memory": 384, "disk": 3})
    );
}

#[tokio::test]
async fn a_stricter_region_refuses_the_same_request_by_field_and_writes_nothing() {
    let orion = Orion::start().await;
    let account = orion.create_account("acme").await;
    let admin = orion.create_token(&account, "admin").await;
    let limits =
        json!({"cpu": {"min": 500, "max": 8000}, "memory": {"min": 512}, "nodes": {"max": 2}});
    let r = put(
        &orion,
        "strict",
        json!({"driver": "local", "capacity": room_for(10), "node_limits": limits}),
    )
    .await;
    assert_eq!(r.status(), 200);
    let expected = json!({
        "cpu": {"min": 500, "max": 8000},
        "memory": {"min": 512, "max": 524288},
        "disk": {"min": 1, "max": 16384},
        "nodes": {"min": 1, "max": 2}
    });
    assert_eq!(body(r).await["node_limits"], expected);
    assert_eq!(get_region(&orion, "strict").await["node_limits"], expected);
    let listed = body(
        orion
            .op(Method::GET, "/api/v1/regions")
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(listed[0]["node_limits"], expected);

    let before = orion.dataset();
    let errors = field_errors(
        orion
            .create_cluster(&admin, &account, &seed_spec("strict"))
            .await,
    )
    .await;
    assert_eq!(
        fields(&errors),
        [
            "configuration.num_nodes",
            "configuration.node_configuration.cpu",
            "configuration.node_configuration.memory"
        ]
    );
    assert!(errors.contains(&(
        "configuration.node_configuration.cpu".into(),
        "must be between 500 and 8000 millicores in region local/strict, got 100".into()
    )));
    assert_eq!(orion.dataset(), before, "a refused create wrote something");

    // A shape inside the limits is accepted; a resize is held to the same limits.
    let mut fits = seed_spec("strict");
    fits["configuration"] =
        json!({"num_nodes": 2, "node_configuration": {"cpu": 500, "memory": 512, "disk": 1}});
    let r = orion.create_cluster(&admin, &account, &fits).await;
    assert_eq!(r.status(), 202);
    let id = body(r).await["id"].as_str().unwrap().to_owned();
    orion.finish_provisioning(&id);
    let path = format!("/api/v1/accounts/{account}/clusters/{id}");
    let before = orion.dataset();
    let resize = |cpu: u64| {
        orion
            .request(Some(&admin), Method::PATCH, &path)
            .json(&json!({"configuration": {"num_nodes": 2, "node_configuration": {"cpu": cpu, "memory": 512, "disk": 1}}}))
            .send()
    };
    let errors = field_errors(resize(100).await.unwrap()).await;
    assert_eq!(fields(&errors), ["configuration.node_configuration.cpu"]);
    assert!(errors[0].1.contains("in region local/strict"));
    assert_eq!(orion.dataset(), before, "a refused resize wrote something");
    let r = resize(1000).await.unwrap();
    assert_eq!(r.status(), 202);
    assert_eq!(body(r).await["phase"], "RESIZING");

    // A PUT describes the whole region: sent without limits, the region has the defaults.
    let r = put(
        &orion,
        "strict",
        json!({"driver": "local", "capacity": room_for(10)}),
    )
    .await;
    assert_eq!(r.status(), 200);
    assert_eq!(body(r).await["node_limits"], defaults());
}

#[tokio::test]
async fn a_bad_policy_is_refused_by_field_and_changes_nothing() {
    let orion = Orion::start().await;
    let limits = json!({"cpu": {"min": 500}});
    let r = put(
        &orion,
        "dev",
        json!({"driver": "local", "capacity": room_for(4), "node_limits": limits}),
    )
    .await;
    assert_eq!(r.status(), 200);
    let cases = [
        (json!({"cpu": {"min": 5}}), "node_limits.cpu.min"),
        (json!({"cpu": {"max": 2_000_000}}), "node_limits.cpu.max"),
        (json!({"memory": {"min": 32}}), "node_limits.memory.min"),
        (
            json!({"memory": {"min": 4096, "max": 1024}}),
            "node_limits.memory.max",
        ),
        (json!({"disk": {"min": 0}}), "node_limits.disk.min"),
        (json!({"nodes": {"max": 5000}}), "node_limits.nodes.max"),
        (json!({"cpu": {"min": 100_000}}), "node_limits.cpu.min"),
        (json!({"cpu": {"max": 50}}), "node_limits.cpu.max"),
        (json!({"cpu": {"min": "100m"}}), "node_limits.cpu.min"),
        (json!({"cpu": {"least": 100}}), "node_limits.cpu.least"),
        (json!({"gpu": {"min": 1}}), "node_limits.gpu"),
        (json!({"cpu": 100}), "node_limits.cpu"),
    ];
    let before = orion.dataset();
    for (limits, field) in cases {
        for region in ["dev", "new-one"] {
            let r = put(
                &orion,
                region,
                json!({"driver": "local", "capacity": room_for(8), "node_limits": limits}),
            )
            .await;
            let errors = field_errors(r).await;
            assert!(
                fields(&errors).contains(&field),
                "{limits} on {region}: wanted {field}, got {errors:?}"
            );
            assert_eq!(
                orion.dataset(),
                before,
                "{limits} on {region} changed the store"
            );
        }
    }
    // Every bad bound at once, and the capacity's too.
    let r = put(
        &orion,
        "dev",
        json!({"driver": "local", "capacity": {"nodes": 1u64 << 51, "cpu": 1, "memory": 1, "disk": 1},
               "node_limits": {"cpu": {"min": 5}, "disk": {"max": 0}}}),
    )
    .await;
    let errors = field_errors(r).await;
    assert_eq!(
        fields(&errors),
        [
            "capacity.nodes",
            "node_limits.cpu.min",
            "node_limits.disk.max"
        ]
    );
    assert_eq!(orion.dataset(), before);
    assert_eq!(
        get_region(&orion, "dev").await["node_limits"]["cpu"],
        json!({"min": 500, "max": 64000})
    );
}

#[tokio::test]
async fn a_region_stored_before_node_limits_still_works() {
    let orion = Orion::start().await;
    let account = orion.create_account("acme").await;
    let admin = orion.create_token(&account, "admin").await;
    // The record exactly as the previous release wrote it: no node_limits field.
    let mut con = orion.redis();
    let _: () = redis::pipe()
        .hset_multiple(
            keyspace::region("local", "old"),
            &[
                ("provider", "local"),
                ("region", "old"),
                ("driver", "local"),
                ("total_nodes", "10"),
                ("total_cpu", "10000"),
                ("total_memory", "20480"),
                ("total_disk", "100"),
                ("alloc_nodes", "0"),
                ("alloc_cpu", "0"),
                ("alloc_memory", "0"),
                ("alloc_disk", "0"),
            ],
        )
        .sadd(keyspace::regions(), "local:old")
        .query(&mut con)
        .unwrap();

    let region = get_region(&orion, "old").await;
    assert_eq!(region["node_limits"], defaults());
    assert_eq!(region["free"]["nodes"], 10);
    let r = orion
        .create_cluster(&admin, &account, &seed_spec("old"))
        .await;
    assert_eq!(r.status(), 202);
    let mut below = seed_spec("old");
    below["configuration"]["node_configuration"]["cpu"] = json!(50);
    let errors = field_errors(orion.create_cluster(&admin, &account, &below).await).await;
    assert_eq!(
        errors,
        [(
            "configuration.node_configuration.cpu".to_owned(),
            "must be between 100 and 64000 millicores in region local/old, got 50".to_owned()
        )]
    );
    // The next PUT stores the limits with the region.
    let r = put(
        &orion,
        "old",
        json!({"driver": "local", "capacity": room_for(10), "node_limits": {"disk": {"max": 100}}}),
    )
    .await;
    assert_eq!(r.status(), 200);
    let stored: Option<String> = redis::cmd("HGET")
        .arg(keyspace::region("local", "old"))
        .arg(contract::record::NODE_LIMITS)
        .query(&mut con)
        .unwrap();
    assert!(stored.unwrap().contains("\"disk\":{\"min\":1,\"max\":100}"));

    let unknown = orion
        .op(Method::GET, "/api/v1/regions/local/nowhere")
        .send()
        .await
        .unwrap();
    assert_eq!(unknown.status(), 404);
    assert!(
        body(unknown).await["detail"]
            .as_str()
            .unwrap()
            .contains("region local/nowhere")
    );
}

/// Orion reads a region's limits, checks the request, then runs the script: the script itself
/// must refuse to write when the limits it was told about are no longer the stored ones, or an
/// operator tightening them mid-request would let a refused shape in.
#[tokio::test]
async fn the_scripts_refuse_limits_that_changed_after_the_check() {
    let orion = Orion::start().await;
    let account = orion.create_account("acme").await;
    let admin = orion.create_token(&account, "admin").await;
    orion.put_region("local", "dev", room_for(4)).await;
    let created = body(
        orion
            .create_cluster(&admin, &account, &seed_spec("dev"))
            .await,
    )
    .await;
    let id = created["id"].as_str().unwrap().to_owned();
    orion.finish_provisioning(&id);
    let mut con = orion.redis();
    let before = orion.dataset();

    // Told "no limits stored" (as for an old record) while the region has some.
    let new_id = "0b8f4ec2-6f4e-4cf5-9d0e-5e4d5f0c2a11";
    let reply: Vec<String> = redis::Script::new(scripts::CREATE_CLUSTER)
        .key(keyspace::region("local", "dev"))
        .key(keyspace::region_waiting("local", "dev"))
        .key(keyspace::cluster(new_id.parse().unwrap()))
        .key(keyspace::account_clusters(account.parse().unwrap()))
        .key(keyspace::command_stream())
        .key(keyspace::cluster_queued_command(new_id.parse().unwrap()))
        .arg(keyspace::PREFIX)
        .arg("2026-01-01T00:00:00Z")
        .arg(new_id)
        .arg(1)
        .arg("{}")
        .arg("")
        .arg("")
        .arg(0)
        .arg("id")
        .arg(new_id)
        .invoke(&mut con)
        .unwrap();
    assert_eq!(reply, ["LIMITS_CHANGED"]);

    let reply: Vec<String> = redis::Script::new(scripts::RESIZE_CLUSTER)
        .key(keyspace::region("local", "dev"))
        .key(keyspace::cluster(id.parse().unwrap()))
        .key(keyspace::command_stream())
        .arg(keyspace::PREFIX)
        .arg("2026-01-01T00:00:00Z")
        .arg(created["generation"].as_u64().unwrap())
        .arg(r#"{"num_nodes":4,"node_configuration":{"cpu":100,"memory":128,"disk":1}}"#)
        .arg("{}")
        .arg(r#"{"cpu":{"min":1,"max":1}}"#)
        .invoke(&mut con)
        .unwrap();
    assert_eq!(reply, ["LIMITS_CHANGED"]);
    assert_eq!(orion.dataset(), before, "a script wrote with stale limits");
}
