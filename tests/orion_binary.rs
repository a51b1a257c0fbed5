//! `lyra orion` as an operator runs it: the real binary on a real Redis.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a test: a panic is a failed test

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::json;
use testkit::{RedisServer, free_port, supervised};

const OPERATOR: &str = "an-operator-token-long-enough";
const MASTER_KEY: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";

fn orion(redis: &RedisServer, port: u16, master_key: &str, operator: &str) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_lyra"));
    cmd.arg("orion")
        .arg("--listen")
        .arg(format!("127.0.0.1:{port}"))
        .arg("--admin-listen")
        .arg(format!("127.0.0.1:{}", free_port().unwrap()))
        .env("LYRA_REDIS_URL", redis.url())
        .env("LYRA_MASTER_KEY", master_key)
        .env("LYRA_OPERATOR_TOKEN", operator)
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null());
    cmd
}

async fn wait_healthy(url: &str, child: &mut Child) {
    let http = reqwest::Client::new();
    for _ in 0..200 {
        let answer = http.get(format!("{url}/healthz")).send().await;
        if answer.is_ok_and(|r| r.status() == 200) {
            return;
        }
        assert!(
            child.try_wait().unwrap().is_none(),
            "lyra orion exited early"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("lyra orion did not become healthy");
}

#[tokio::test]
async fn serves_the_api_and_stops_cleanly_on_sigterm() {
    let redis = RedisServer::start().unwrap();
    let port = free_port().unwrap();
    let mut child = supervised::spawn(orion(&redis, port, MASTER_KEY, OPERATOR)).unwrap();
    let url = format!("http://127.0.0.1:{port}");
    wait_healthy(&url, &mut child).await;

    let http = reqwest::Client::new();
    let r = http
        .post(format!("{url}/api/v1/accounts"))
        .bearer_auth(OPERATOR)
        .json(&json!({"name": "from-the-binary"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    assert!(!r.headers()["x-request-id"].is_empty());
    assert_eq!(
        http.get(format!("{url}/readyz"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );

    supervised::terminate(&child).unwrap();
    let status = tokio::task::spawn_blocking(move || child.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(status.success(), "exit after SIGTERM: {status}");
}

#[test]
fn bad_configuration_is_one_clear_line_without_secrets() {
    let redis = RedisServer::start().unwrap();
    let bad_key = "dG9vLXNob3J0";
    for (key, operator, expected) in [
        (
            bad_key,
            OPERATOR,
            "LYRA_MASTER_KEY: the platform key must be 32 bytes",
        ),
        (
            MASTER_KEY,
            "short",
            "the operator token must be at least 16 characters",
        ),
    ] {
        let out = orion(&redis, free_port().unwrap(), key, operator)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .output()
            .unwrap();
        assert!(!out.status.success());
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(expected), "{stderr}");
        assert!(!stderr.contains(bad_key) && !stderr.contains(MASTER_KEY));
    }
}

#[tokio::test]
async fn a_ca_given_as_files_signs_the_regions_and_is_the_one_clients_get() {
    let redis = RedisServer::start().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let ca = certs::ca::PlatformCa::generate().unwrap();
    std::fs::write(dir.path().join("ca.pem"), ca.cert_pem()).unwrap();
    std::fs::write(dir.path().join("ca.key"), ca.key_pem().as_bytes()).unwrap();
    let port = free_port().unwrap();
    let mut cmd = orion(&redis, port, MASTER_KEY, OPERATOR);
    cmd.env("LYRA_CA_CERT", dir.path().join("ca.pem"))
        .env("LYRA_CA_KEY", dir.path().join("ca.key"));
    let mut child = supervised::spawn(cmd).unwrap();
    let url = format!("http://127.0.0.1:{port}");
    wait_healthy(&url, &mut child).await;
    let r = reqwest::Client::new()
        .put(format!("{url}/api/v1/regions/aws/eu-west-1"))
        .bearer_auth(OPERATOR)
        .json(&json!({"driver": "local", "capacity": {"nodes": 1, "cpu": 1000, "memory": 1024, "disk": 10}}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);

    let printed = Command::new(env!("CARGO_BIN_EXE_lyra"))
        .args(["certs", "ca"])
        .env("LYRA_REDIS_URL", redis.url())
        .env("LYRA_MASTER_KEY", MASTER_KEY)
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8(printed.stdout).unwrap().trim(),
        ca.cert_pem().trim(),
        "clients get the operator's CA"
    );
    let mut conn = redis
        .client()
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let ring = contract::seal::Keyring::from_config(MASTER_KEY, &[]).unwrap();
    let region = certs::store::load_region(&mut conn, &ring, "aws", "eu-west-1")
        .await
        .unwrap()
        .unwrap();
    assert!(
        region.chain_pem.ends_with(ca.cert_pem()),
        "the region's chain ends with the operator's CA"
    );
}
