//! `lyra orion` as an operator runs it: the real binary on a real Redis.

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
