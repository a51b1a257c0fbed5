//! `lyra certs` as an operator runs it, on a real Redis.

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
