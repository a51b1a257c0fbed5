//! `lyra certs` as an operator runs it, on a real Redis.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a test: a panic is a failed test

use std::process::{Command, Output};

use testkit::RedisServer;

const MASTER_KEY: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";

fn certs(redis: &RedisServer, args: &[&str], key: Option<&str>) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_lyra"));
    cmd.arg("certs")
        .args(args)
        .env("LYRA_REDIS_URL", redis.url())
        .env_remove("LYRA_MASTER_KEY");
    if let Some(k) = key {
        cmd.env("LYRA_MASTER_KEY", k);
    }
    cmd.output().unwrap()
}

#[test]
fn the_ca_is_printed_the_same_every_time_and_regions_get_certificates() {
    let redis = RedisServer::start().unwrap();
    let first = certs(&redis, &["ca"], Some(MASTER_KEY));
    assert!(
        first.status.success(),
        "{}",
        String::from_utf8_lossy(&first.stderr)
    );
    let pem = String::from_utf8(first.stdout).unwrap();
    assert!(pem.starts_with("-----BEGIN CERTIFICATE-----"));
    assert!(!pem.contains("PRIVATE KEY"));
    let again = certs(&redis, &["ca"], Some(MASTER_KEY));
    assert_eq!(
        String::from_utf8(again.stdout).unwrap(),
        pem,
        "one CA, created once"
    );

    let issued = certs(
        &redis,
        &["issue", "aws", "eu-west-1", "--tld", "cloud.example.com"],
        Some(MASTER_KEY),
    );
    let line = String::from_utf8(issued.stdout).unwrap();
    assert!(
        line.starts_with("issued *.eu-west-1.aws.cloud.example.com"),
        "{line}"
    );
    let current = certs(
        &redis,
        &["issue", "aws", "eu-west-1", "--tld", "cloud.example.com"],
        Some(MASTER_KEY),
    );
    assert!(
        String::from_utf8(current.stdout)
            .unwrap()
            .starts_with("current ")
    );
}

#[test]
fn missing_or_wrong_keys_and_bad_names_are_clear_errors() {
    let redis = RedisServer::start().unwrap();
    let no_key = certs(&redis, &["ca"], None);
    assert!(!no_key.status.success());
    assert!(String::from_utf8_lossy(&no_key.stderr).contains("LYRA_MASTER_KEY is not set"));

    assert!(certs(&redis, &["ca"], Some(MASTER_KEY)).status.success());
    let other = "ZmZmZmZmZmZmZmZmZmZmZmZmZmZmZmZmZmZmZmZmZmY=";
    let wrong = certs(&redis, &["ca"], Some(other));
    assert!(
        !wrong.status.success(),
        "another platform key must not open the CA"
    );
    assert!(!String::from_utf8_lossy(&wrong.stderr).contains(other));

    let bad = certs(
        &redis,
        &["issue", "AWS", "eu west", "--tld", "x"],
        Some(MASTER_KEY),
    );
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("invalid name"));
}

#[test]
fn an_operator_can_bring_a_regions_certificate_and_lyra_keeps_it() {
    let redis = RedisServer::start().unwrap();
    let mut conn = redis.client().unwrap().get_connection().unwrap();
    for region in ["aws:eu-west-1", "aws:us-west-2"] {
        let _: () = redis::cmd("SADD")
            .arg(contract::keyspace::regions())
            .arg(region)
            .query(&mut conn)
            .unwrap();
    }
    // The operator's own PKI, here another CA made the same way.
    let tld = contract::host::Tld::new("cloud.example.com").unwrap();
    let theirs = certs::ca::PlatformCa::generate().unwrap();
    let cert = theirs.issue_region("aws", "eu-west-1", &tld).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (chain, key) = (
        dir.path().join("fullchain.pem"),
        dir.path().join("privkey.pem"),
    );
    std::fs::write(&chain, &cert.chain_pem).unwrap();
    std::fs::write(&key, cert.key_pem.as_bytes()).unwrap();
    let (chain, key) = (chain.to_str().unwrap(), key.to_str().unwrap());
    let import = |region: &str| {
        certs(
            &redis,
            &[
                "import",
                "aws",
                region,
                "--tld",
                "cloud.example.com",
                "--cert",
                chain,
                "--key",
                key,
            ],
            Some(MASTER_KEY),
        )
    };

    let imported = import("eu-west-1");
    assert!(
        imported.status.success(),
        "{}",
        String::from_utf8_lossy(&imported.stderr)
    );
    let line = String::from_utf8(imported.stdout).unwrap();
    assert!(
        line.starts_with("imported *.eu-west-1.aws.cloud.example.com"),
        "{line}"
    );
    // Lyra's own issuance leaves it in place.
    let current = certs(
        &redis,
        &["issue", "aws", "eu-west-1", "--tld", "cloud.example.com"],
        Some(MASTER_KEY),
    );
    assert!(
        String::from_utf8(current.stdout)
            .unwrap()
            .starts_with("current ")
    );
    let stored: String = redis::cmd("GET")
        .arg(contract::keyspace::certificate("aws", "eu-west-1"))
        .query(&mut conn)
        .unwrap();
    assert!(
        stored.contains(cert.chain_pem.lines().nth(1).unwrap()),
        "the provided chain is served"
    );
    assert!(!stored.contains("PRIVATE KEY"), "its key is stored sealed");

    for (region, says) in [
        ("us-west-2", "does not name *.us-west-2"),
        ("ap-south-1", "not registered"),
    ] {
        let refused = import(region);
        assert_eq!(refused.status.code(), Some(1));
        let err = String::from_utf8(refused.stderr).unwrap();
        assert_eq!(err.lines().count(), 1, "{err}");
        assert!(err.contains(says), "{err}");
    }
}
