//! `lyra region set|get` with node limits, against the real `lyra orion` on a real Redis.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a test: a panic is a failed test

use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use serde_json::Value;
use testkit::{RedisServer, free_port, supervised};

const OPERATOR: &str = "an-operator-token-long-enough";
const MASTER_KEY: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";

struct Orion {
    url: String,
    child: Child,
    // Kept for the test's length: the CLI must not find a `lyra dev` directory by accident.
    dir: tempfile::TempDir,
    _redis: RedisServer,
}

impl Orion {
    async fn start() -> Self {
        let redis = RedisServer::start().unwrap();
        let port = free_port().unwrap();
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_lyra"));
        cmd.arg("orion")
            .arg("--listen")
            .arg(format!("127.0.0.1:{port}"))
            .arg("--admin-listen")
            .arg(format!("127.0.0.1:{}", free_port().unwrap()))
            .env("LYRA_REDIS_URL", redis.url())
            .env("LYRA_MASTER_KEY", MASTER_KEY)
            .env("LYRA_OPERATOR_TOKEN", OPERATOR)
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null());
        let mut child = supervised::spawn(cmd).unwrap();
        let url = format!("http://127.0.0.1:{port}");
        let http = reqwest::Client::new();
        for _ in 0..200 {
            let answer = http.get(format!("{url}/healthz")).send().await;
            if answer.is_ok_and(|r| r.status() == 200) {
                return Self {
                    url,
                    child,
                    dir: tempfile::tempdir().unwrap(),
                    _redis: redis,
                };
            }
            assert!(
                child.try_wait().unwrap().is_none(),
                "lyra orion exited early"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("lyra orion did not become healthy");
    }

    fn lyra(&self, args: &[&str]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_lyra"))
            .args(args)
            .current_dir(self.dir.path())
            .env("LYRA_URL", &self.url)
            .env("LYRA_TOKEN", OPERATOR)
            .env_remove("LYRA_ACCOUNT")
            .env_remove("LYRA_REGION")
            .output()
            .unwrap()
    }

    fn ok(&self, args: &[&str]) -> String {
        let out = self.lyra(args);
        assert!(
            out.status.success(),
            "lyra {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }
}

impl Drop for Orion {
    fn drop(&mut self) {
        let _ = supervised::kill(&mut self.child);
    }
}

const SET: &[&str] = &[
    "region",
    "set",
    "local/dev",
    "--driver",
    "local",
    "--nodes",
    "8",
    "--cpu",
    "8",
    "--memory",
    "16Gi",
    "--disk",
    "100Gi",
];

fn with<'a>(base: &[&'a str], more: &[&'a str]) -> Vec<&'a str> {
    base.iter().chain(more).copied().collect()
}

#[tokio::test]
async fn node_limits_are_set_shown_and_enforced() {
    let orion = Orion::start().await;

    // Without limit flags the region has the defaults, which admit the seed's example.
    let shown = orion.ok(SET);
    for line in [
        "cpu per node:      100m to 64",
        "memory per node:   128Mi to 512Gi",
        "disk per node:     1Gi to 16Ti",
        "nodes per cluster: 1 to 100",
    ] {
        assert!(shown.contains(line), "{line:?} not in\n{shown}");
    }
    orion.ok(&["account", "create", "acme"]);
    let seed = [
        "cluster",
        "create",
        "seed",
        "--account",
        "acme",
        "--nodes",
        "3",
        "--cpu",
        "100m",
        "--memory",
        "128Mi",
        "--disk",
        "1Gi",
        "-q",
    ];
    orion.ok(&seed);

    // Limits in Kubernetes notation; the ones left out keep their defaults.
    orion.ok(&with(
        SET,
        &[
            "--min-cpu",
            "0.5",
            "--max-memory",
            "64Gi",
            "--max-nodes",
            "3",
        ],
    ));
    let shown = orion.ok(&["region", "get", "local/dev"]);
    for line in [
        "cpu per node:      500m to 64",
        "memory per node:   128Mi to 64Gi",
        "nodes per cluster: 1 to 3",
        "allocated:         3 nodes, 300m cpu, 384Mi mem, 3Gi disk",
    ] {
        assert!(shown.contains(line), "{line:?} not in\n{shown}");
    }
    let json: Value =
        serde_json::from_str(&orion.ok(&["region", "get", "local/dev", "--json"])).unwrap();
    assert_eq!(json["node_limits"]["cpu"]["min"], 500);
    assert_eq!(json["node_limits"]["memory"]["max"], 65536);

    // The same small cluster is refused now, naming the field and the region's bound.
    let mut again = seed;
    again[2] = "seed-two";
    let out = orion.lyra(&again);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(
            "configuration.node_configuration.cpu: must be between 500 and 64000 millicores in region local/dev, got 100"
        ),
        "{stderr}"
    );

    // A bad bound is refused by field and changes nothing.
    let out = orion.lyra(&with(SET, &["--min-cpu", "5m"]));
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("node_limits.cpu.min"), "{stderr}");
    let unchanged: Value =
        serde_json::from_str(&orion.ok(&["region", "get", "local/dev", "--json"])).unwrap();
    assert_eq!(unchanged["node_limits"], json["node_limits"]);

    for (name, says) in [
        ("local/nowhere", "region local/nowhere not found"),
        ("local/dev?x=1", "not found"),
    ] {
        let out = orion.lyra(&["region", "get", name]);
        assert_eq!(out.status.code(), Some(1), "{name}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(says), "{name}: {stderr}");
    }
}
