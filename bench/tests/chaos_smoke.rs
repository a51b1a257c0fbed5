//! Lyra keeps its promises while its parts fail: the fault run (`lyra-chaos faults`, see
//! `bench::chaos::faults`) with three-second quiet periods (longer than a fault's window
//! lasts after it is undone, so there is time outside every fault), on the real binaries. It kills Nebula,
//! kills and stops Redis, and kills a Qdrant node of a 3-node cluster under load, and exits
//! non-zero if a request to a known cluster failed where none may, or an accepted command was
//! lost, ran twice (wrong node count) or left processes behind. How fast anything recovered is
//! reported by the run, never judged here.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a test: a panic is a failed test

use std::process::Command;

#[test]
fn every_promise_holds_while_nebula_redis_and_a_node_fail_under_load() {
    let out = tempfile::tempdir().unwrap();
    let run = Command::new(env!("CARGO_BIN_EXE_lyra-chaos"))
        .args(["faults", "--quiet", "3", "--no-build", "--out"])
        .arg(out.path())
        .output()
        .unwrap();
    let report = String::from_utf8_lossy(&run.stdout);
    assert!(
        run.status.success(),
        "lyra-chaos faults failed:\n{report}\n{}",
        String::from_utf8_lossy(&run.stderr)
    );
    assert!(report.contains("Every promise held."), "{report}");
    for fault in ["Nebula", "kill -9 Redis", "SIGSTOP Redis", "Qdrant node"] {
        assert!(report.contains(fault), "the run reports {fault}: {report}");
    }
    assert!(out.path().join("chaos.md").exists());
}
