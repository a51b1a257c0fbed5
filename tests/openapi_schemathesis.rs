//! schemathesis against the OpenAPI document Orion serves, on a real `lyra dev` (the stand-in
//! Qdrant as `QDRANT_BIN`): every operation, authenticated as the operator, every check. It
//! generates requests from the document (valid and invalid ones, and sequences that follow
//! created resources) and fails when an answer breaks the document: an undocumented status or
//! content type, a body that does not match its schema, valid input refused, invalid input
//! accepted, a 5xx. The only exceptions allowed are the commented ones in `schemathesis.toml`.
//!
//! Needs `schemathesis` on `PATH` (`.ci/run` installs the pinned version); without it the test
//! says `SKIPPED:` and passes. `LYRA_SCHEMATHESIS_MAX_EXAMPLES` sets the cases per operation
//! and phase (default [`DEFAULT_MAX_EXAMPLES`]); the seed is fixed, so a run can be repeated.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a test: a panic is a failed test

mod common;

use std::path::Path;
use std::process::{Command, Stdio};

use common::dev::Dev;
use testkit::supervised;

/// Cases per operation: some 1300 test cases in all (most come from the coverage phase, which
/// does not depend on it), in 15 to 20 seconds on a 2-core machine.
const DEFAULT_MAX_EXAMPLES: u32 = 20;
const MAX_EXAMPLES_ENV: &str = "LYRA_SCHEMATHESIS_MAX_EXAMPLES";
const SEED: &str = "1";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schemathesis_finds_nothing_against_the_served_document() {
    let Ok(schemathesis) = which::which("schemathesis") else {
        println!("SKIPPED: schemathesis is not on PATH (bash .ci/run installs it)");
        return;
    };
    let max_examples = match std::env::var(MAX_EXAMPLES_ENV) {
        Ok(n) => n
            .parse::<u32>()
            .ok()
            .filter(|n| *n > 0)
            .unwrap_or_else(|| panic!("{MAX_EXAMPLES_ENV}={n:?} is not a positive number")),
        Err(_) => DEFAULT_MAX_EXAMPLES,
    };

    let mut dev = Dev::new();
    dev.start().await;
    let token = std::fs::read_to_string(dev.data().join("operator.token")).unwrap();
    // schemathesis keeps its example database and cache in its working directory.
    let work = tempfile::Builder::new()
        .prefix("lyra-schemathesis-")
        .tempdir()
        .unwrap();
    let config = Path::new(env!("CARGO_MANIFEST_DIR")).join("schemathesis.toml");
    let mut cmd = Command::new(schemathesis);
    cmd.current_dir(work.path())
        .arg("--config-file")
        .arg(&config)
        .arg("run")
        .arg(format!("http://127.0.0.1:{}/api/v1/openapi.json", dev.api))
        .args(["--checks", "all"])
        .args(["--max-examples", &max_examples.to_string()])
        .args(["--seed", SEED])
        .arg("--no-color")
        .arg("--header")
        .arg(format!("Authorization: Bearer {}", token.trim()))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let child = supervised::spawn(cmd).unwrap();
    let out = tokio::task::spawn_blocking(move || child.wait_with_output().unwrap())
        .await
        .unwrap();
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success(),
        "schemathesis failed ({}):\n{report}",
        out.status
    );
    // The summary's "Test cases:" line, e.g. "1312 generated, 1312 passed, 32 skipped".
    let generated = report
        .lines()
        .find_map(|l| l.trim().split_once(" generated, ")?.0.parse::<u64>().ok())
        .unwrap_or_else(|| panic!("no test case count in schemathesis's report:\n{report}"));
    assert!(
        generated >= 100,
        "schemathesis generated only {generated} test cases:\n{report}"
    );
    println!("schemathesis: {generated} test cases, no failure (--max-examples {max_examples})");
    dev.interrupt().await;
}
