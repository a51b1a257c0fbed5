//! The `lyra` binary as a user runs it: `lyra platform-key new | id | gateway`.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a test: a panic is a failed test

use std::process::{Command, Output};

fn lyra(args: &[&str], master_key: Option<&str>) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_lyra"));
    cmd.args(args).env_remove("LYRA_MASTER_KEY");
    if let Some(key) = master_key {
        cmd.env("LYRA_MASTER_KEY", key);
    }
    cmd.output().expect("run lyra")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).trim().to_owned()
}

#[test]
fn a_new_key_has_a_stable_public_id() {
    let new = lyra(&["platform-key", "new"], None);
    assert!(new.status.success());
    let key = stdout(&new);
    assert_eq!(key.len(), 44, "32 bytes in padded base64: {key}");

    let first = lyra(&["platform-key", "id"], Some(&key));
    let second = lyra(&["platform-key", "id", "--master-key", &key], None);
    assert!(first.status.success() && second.status.success());
    assert_eq!(stdout(&first), stdout(&second));
    assert_eq!(stdout(&first).len(), 16);
    assert!(!stdout(&first).contains(&key));

    let other = stdout(&lyra(&["platform-key", "new"], None));
    assert_ne!(other, key, "two keys were the same");
}

#[test]
fn a_bad_key_is_one_clear_line_that_does_not_echo_it() {
    let bad = "c2hvcnQta2V5LXZhbHVlCg==";
    let out = lyra(&["platform-key", "id"], Some(bad));
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
    assert!(stderr.contains("LYRA_MASTER_KEY: the platform key must be 32 bytes"));
    assert!(!stderr.contains(bad));
}

#[test]
fn a_missing_key_and_an_unknown_command_fail_with_usage() {
    let out = lyra(&["platform-key", "id"], None);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--master-key"));

    let out = lyra(&["launch-rockets"], None);
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn the_gateway_key_is_derived_from_the_platform_key_and_is_not_it() {
    let platform = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";
    let out = lyra(&["platform-key", "gateway"], Some(platform));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // HKDF-SHA256(salt "lyra/seal/purpose", info "serving"), computed independently.
    assert_eq!(stdout(&out), "a9RM5wrKTQUeYkfDTJ5u2qM0tgSaTR9Xwcm/ucy/ZZw=");
    let again = lyra(&["platform-key", "gateway"], Some(platform));
    assert_eq!(stdout(&again), stdout(&out));

    let bad = lyra(&["platform-key", "gateway"], Some("c2hvcnQ="));
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("LYRA_MASTER_KEY"));
}
