//! The benchmark harness keeps working: every scenario runs for a moment against real
//! peers (nginx, HAProxy, GateKeeper, Orion, Nebula, the stand-in) and each answered
//! correctly. How fast is not looked at: speed is measured by the harness, never in a test.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a test: a panic is a failed test

use std::process::Command;

use serde_json::Value;

#[test]
fn every_scenario_runs_and_every_peer_answers_correctly() {
    let out = tempfile::tempdir().unwrap();
    // The run's own temporary directory: everything it starts inherits it or keeps its data
    // under it (the nodes' storage), so what is left afterwards is found by it, and never
    // confused with another test's processes (the chaos smoke test runs the same platform).
    let tmp = tempfile::tempdir().unwrap();
    let run = Command::new(env!("CARGO_BIN_EXE_lyra-bench"))
        .args(["all", "--smoke", "--no-build", "--out"])
        .arg(out.path())
        .env("TMPDIR", tmp.path())
        .output()
        .unwrap();
    assert!(
        run.status.success(),
        "lyra-bench all --smoke failed:\n{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let report = |name: &str| -> Value {
        let text = std::fs::read_to_string(out.path().join(format!("{name}.json")))
            .unwrap_or_else(|e| panic!("{name}.json: {e}"));
        serde_json::from_str(&text).unwrap()
    };
    let peers_of = |r: &Value| -> Vec<String> {
        let mut p: Vec<String> = r["runs"]
            .as_array()
            .unwrap()
            .iter()
            .inspect(|run| {
                assert!(
                    run["ok"].as_u64().unwrap() > 0,
                    "a run without answers: {run}"
                );
                assert_eq!(run["rejected"], 0, "{run}");
                assert_eq!(run["errors"], 0, "{run}");
            })
            .map(|run| run["peer"].as_str().unwrap().to_owned())
            .collect();
        p.sort();
        p.dedup();
        p
    };
    assert_eq!(
        peers_of(&report("throughput")),
        ["direct", "gatekeeper", "haproxy", "nginx"]
    );
    assert_eq!(
        peers_of(&report("latency")),
        ["gatekeeper", "haproxy", "nginx"]
    );
    assert_eq!(peers_of(&report("tls")), ["gatekeeper", "haproxy", "nginx"]);
    assert_eq!(peers_of(&report("grpc")), ["direct", "gatekeeper"]);
    assert_eq!(peers_of(&report("auth")), ["auth off", "auth on"]);
    assert_eq!(peers_of(&report("control")), ["orion"]);
    assert_eq!(peers_of(&report("scale")).len(), 2);
    assert_eq!(
        peers_of(&report("answers")),
        ["direct", "gatekeeper", "haproxy", "nginx"]
    );
    let tls = report("tls");
    let resumed = tls["runs"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|run| run["mode"].as_str().unwrap_or_default().contains("resumed"))
        .count();
    assert_eq!(resumed, 3, "one resumed-handshake run per peer: {tls}");
    let revocation = report("revocation");
    let raw = revocation["figures"]["raw (ms from the revoke request)"]
        .as_array()
        .unwrap();
    assert_eq!(raw.len(), 3, "one figure per trial");
    assert!(raw.iter().all(|v| v.as_f64().is_some_and(|ms| ms >= 0.0)));
    // Nothing of the run is left: the local driver's nodes outlive Nebula by design, so the
    // harness must stop them itself.
    let leftovers: Vec<u32> = std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| testkit::procs::alive(*pid))
        .filter(|pid| {
            let env = std::fs::read(format!("/proc/{pid}/environ")).unwrap_or_default();
            String::from_utf8_lossy(&env).contains(&tmp.path().display().to_string())
        })
        .collect();
    assert!(leftovers.is_empty(), "processes left behind: {leftovers:?}");
    let md = std::fs::read_to_string(out.path().join("throughput.md")).unwrap();
    assert!(md.contains("| closed, 4 conns | nginx |"), "{md}");
}
