//! A Nebula handler that loses its cluster's lease in the middle of a command stops acting,
//! and the command is retried, once the lease is free again, and completes exactly once.
//!
//! The real `lyra orion` and `lyra nebula` processes on a real Redis, with stand-in Qdrant
//! nodes as real processes. Nebula's lease lasts `LYRA_NEBULA_CLAIM_IDLE_MS` (there is no
//! separate flag: the lease TTL is the claim threshold) and is renewed every third of it.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a test: a panic is a failed test

mod common;

use std::fs::File;
use std::path::Path;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{CONSUMER, OPERATOR, Platform};
use contract::keyspace;
use contract::route::RouteRecord;
use reqwest::Method;
use serde_json::Value;

/// Nebula's lease lasts this long here (so it is renewed every second).
const LEASE_TTL_MS: u64 = 3000;
/// The worker that steals the lease, as its own acquire would write it.
const THIEF: &str = "other-worker";
const NODES: usize = 2;

/// The renewal another worker's renewer runs (the same script as `provisioner/src/lease.rs`).
const RENEW: &str = "if redis.call('GET', KEYS[1]) == ARGV[1] then \
     return redis.call('PEXPIRE', KEYS[1], ARGV[2]) else return 0 end";

/// Nebula's stderr so far, without colour codes.
fn log(path: &Path) -> String {
    let raw = std::fs::read_to_string(path).unwrap_or_default();
    let mut out = String::with_capacity(raw.len());
    let mut chars = raw.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            // An SGR sequence: ESC [ ... m
            for c in chars.by_ref() {
                if c == 'm' {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

fn lines_with<'a>(log: &'a str, all: &[&str]) -> Vec<&'a str> {
    log.lines()
        .filter(|l| all.iter().all(|s| l.contains(s)))
        .collect()
}

fn lease_holder(p: &Platform, id: &str) -> Option<String> {
    redis::cmd("GET")
        .arg(keyspace::cluster_lease(id.parse().unwrap()))
        .query(&mut p.redis())
        .unwrap()
}

fn stored_phase(p: &Platform, id: &str) -> Option<String> {
    redis::cmd("HGET")
        .arg(keyspace::cluster(id.parse().unwrap()))
        .arg("phase")
        .query(&mut p.redis())
        .unwrap()
}

fn route(p: &Platform, id: &str) -> Option<RouteRecord> {
    let json: Option<String> = redis::cmd("HGET")
        .arg(keyspace::routes())
        .arg(id)
        .query(&mut p.redis())
        .unwrap();
    json.map(|j| serde_json::from_str(&j).unwrap())
}

fn pending(p: &Platform) -> usize {
    let reply: redis::Value = redis::cmd("XPENDING")
        .arg(keyspace::command_stream())
        .arg(keyspace::NEBULA_GROUP)
        .query(&mut p.redis())
        .unwrap();
    match reply {
        redis::Value::Array(items) => match items.first() {
            Some(redis::Value::Int(n)) => *n as usize,
            _ => 0,
        },
        _ => 0,
    }
}

/// Waits (up to `within`) for `check`, else fails saying what it waited for.
async fn wait_for(within: Duration, what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + within;
    while !check() {
        assert!(Instant::now() < deadline, "timed out waiting for: {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Route events published on the gateways' channel from when it started, gathered by a thread
/// of its own (it ends when Redis goes away with the platform).
struct Watch {
    seen: Arc<Mutex<Vec<(String, String)>>>,
}

impl Watch {
    fn start(p: &Platform) -> Self {
        let mut conn = p.redis.client().unwrap().get_connection().unwrap();
        redis::cmd("SUBSCRIBE")
            .arg(keyspace::EVENTS_CHANNEL)
            .exec(&mut conn)
            .unwrap();
        let seen = Arc::new(Mutex::new(Vec::new()));
        std::thread::spawn({
            let seen = seen.clone();
            move || {
                while let Ok(msg) = conn.recv_response() {
                    let redis::Value::Array(parts) = msg else {
                        continue;
                    };
                    let Some(redis::Value::BulkString(payload)) = parts.last() else {
                        continue;
                    };
                    let Ok(event) = serde_json::from_slice::<Value>(payload) else {
                        continue;
                    };
                    if event["type"] == "route.upserted" {
                        let field =
                            |f: &str| event["route"][f].as_str().unwrap_or_default().to_owned();
                        seen.lock()
                            .unwrap()
                            .push((field("cluster_id"), field("phase")));
                    }
                }
            }
        });
        Self { seen }
    }

    /// The phases of the routes published for `id` so far.
    fn route_phases(&self, id: &str) -> Vec<String> {
        self.seen
            .lock()
            .unwrap()
            .iter()
            .filter(|(c, _)| c == id)
            .map(|(_, phase)| phase.clone())
            .collect()
    }
}

/// The provision handler holds at `after_driver` (its nodes are up, the cluster not yet
/// HEALTHY) with the lease in hand; another worker takes the lease over. Nebula's renewer must
/// notice and the held handler must be dropped: once released from the hold point it must not
/// make the cluster HEALTHY while the other worker holds the lease. When that lease expires
/// the command is retried by the same worker and completes once: the same nodes, one
/// completion, no dead letter.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_handler_that_loses_its_lease_stops_and_the_command_completes_once() {
    let mut p = Platform::start().await;
    let (account, admin) = p.tenant(10).await;
    let hold_file = p.data.path().join("hold");
    let reached = p.data.path().join("hold.reached");
    std::fs::write(&hold_file, "").unwrap();
    let log_dir = tempfile::Builder::new()
        .prefix("lyra-lease-log-")
        .tempdir()
        .unwrap();
    let log_path = log_dir.path().join("nebula.log");
    let mut nebula = p.nebula_command(&p.qdrant_bin.clone());
    nebula
        .env("LYRA_HOLD_AT", "after_driver")
        .env("LYRA_HOLD_FILE", &hold_file)
        .env("LYRA_NEBULA_CLAIM_IDLE_MS", LEASE_TTL_MS.to_string())
        // The control loop stays out of the way (it takes the lease of routed clusters).
        .env("LYRA_NEBULA_RECONCILE_SECS", "3600")
        .env("RUST_LOG", "warn,provisioner=info")
        .env("NO_COLOR", "1")
        .stderr(Stdio::from(File::create(&log_path).unwrap()));
    p.nebula = Some(testkit::supervised::spawn(nebula).unwrap());
    let watch = Watch::start(&p);

    let id = p.create_cluster(&admin, &account, NODES as u32).await;
    let cluster = format!("cluster={id}");
    wait_for(
        Duration::from_secs(30),
        "the handler at its hold point",
        || reached.exists(),
    )
    .await;
    let nodes = p.node_processes(&id);
    assert_eq!(nodes.len(), NODES, "the driver started the nodes");
    assert_eq!(lease_holder(&p, &id).as_deref(), Some(CONSUMER));
    assert_eq!(stored_phase(&p, &id).as_deref(), Some("CREATING"));

    // Another worker takes the lease, as its acquire would write it.
    let lease_key = keyspace::cluster_lease(id.parse().unwrap());
    let () = redis::cmd("SET")
        .arg(&lease_key)
        .arg(THIEF)
        .arg("PX")
        .arg(LEASE_TTL_MS)
        .query(&mut p.redis())
        .unwrap();
    // Its renewer notices (within a third of the TTL) and says so. The handler is not waited
    // for: whether it stopped is what the rest of the test finds out.
    wait_for(
        Duration::from_secs(10),
        "Nebula to log that it lost the lease",
        || !lines_with(&log(&log_path), &["lost the cluster lease", &cluster]).is_empty(),
    )
    .await;
    assert_eq!(
        lease_holder(&p, &id).as_deref(),
        Some(THIEF),
        "Nebula left the other worker's lease alone"
    );

    // The other worker renews its lease (a full TTL from now), and the hold point is let go.
    // A handler still running without its lease would now go on and make the cluster HEALTHY
    // within milliseconds; Nebula's retries must not get past the lease either (they would
    // reach the hold point again and write `.reached`).
    let renewed: i64 = redis::Script::new(RENEW)
        .key(&lease_key)
        .arg(THIEF)
        .arg(LEASE_TTL_MS)
        .invoke(&mut p.redis())
        .unwrap();
    assert_eq!(renewed, 1, "the other worker still held its lease");
    std::fs::remove_file(&reached).unwrap();
    std::fs::remove_file(&hold_file).unwrap();
    let released = Instant::now();
    let mut looks = 0;
    loop {
        // Look first, then check that the other worker still held the lease: a lease it held
        // then was held all along (once expired it is never the other worker's again).
        let phase = stored_phase(&p, &id);
        let routed = route(&p, &id).is_some();
        let ran_again = reached.exists();
        let events = watch.route_phases(&id);
        if lease_holder(&p, &id).as_deref() != Some(THIEF) {
            break;
        }
        looks += 1;
        let after = released.elapsed();
        assert_eq!(
            phase.as_deref(),
            Some("CREATING"),
            "the cluster changed while another worker held its lease ({after:?} after the \
             hold point was let go)"
        );
        assert!(
            !routed && events.is_empty(),
            "a route was published while another worker held the lease ({after:?} after \
             the hold point was let go): {events:?}"
        );
        assert!(
            !ran_again,
            "a handler ran past the lease while another worker held it"
        );
        tokio::time::sleep(Duration::from_millis(30)).await;
    }
    assert!(
        looks > 10,
        "the stolen lease was watched only {looks} times"
    );

    // The stolen lease expired: the command is retried and completes.
    p.wait_phase(&admin, &account, &id, "HEALTHY").await;
    p.wait_until(|| async { pending(&p) == 0 }, "the command acknowledged")
        .await;
    assert!(
        reached.exists(),
        "the command completed through a second run of the handler"
    );

    // Exactly once: the same nodes, one node directory each, one completion, one HEALTHY route.
    assert_eq!(
        p.node_processes(&id),
        nodes,
        "the retry adopted the nodes of the first run, and started no others"
    );
    let dirs = std::fs::read_dir(p.data.path().join("nodes").join(&id))
        .unwrap()
        .count();
    assert_eq!(dirs, NODES, "exactly one directory per node");
    assert_eq!(route(&p, &id).unwrap().nodes.len(), NODES);
    assert_eq!(
        watch.route_phases(&id),
        vec!["HEALTHY".to_owned()],
        "one route, published once"
    );
    let log = log(&log_path);
    assert_eq!(
        lines_with(&log, &["started node", &cluster]).len(),
        NODES,
        "each node started once:\n{log}"
    );
    let failed = lines_with(&log, &["attempt failed; retrying"]);
    assert_eq!(failed.len(), 1, "one failed attempt:\n{log}");
    assert!(
        failed[0].contains("attempt=1") && failed[0].contains("lost the cluster's lease"),
        "{}",
        failed[0]
    );
    let done = lines_with(&log, &[": done", &cluster]);
    assert_eq!(done.len(), 1, "one completion:\n{log}");
    assert!(
        done[0].contains("attempt=2"),
        "completed on the second attempt: {}",
        done[0]
    );
    assert!(
        lines_with(&log, &["nothing to do"]).is_empty(),
        "no second delivery of the command:\n{log}"
    );
    assert!(
        lines_with(&log, &["dead-letter"]).is_empty(),
        "nothing parked:\n{log}"
    );
    let (s, dead) = p
        .call(OPERATOR, Method::GET, "/api/v1/dead-letters", None)
        .await;
    assert_eq!(s, 200);
    assert_eq!(dead.as_array().map(Vec::len), Some(0), "{dead}");
    let attempts: usize = redis::cmd("HLEN")
        .arg(keyspace::command_attempts())
        .query(&mut p.redis())
        .unwrap();
    assert_eq!(
        attempts, 0,
        "the attempt count went with the acknowledgement"
    );
    assert_eq!(
        lease_holder(&p, &id),
        None,
        "the lease is released once the command is done"
    );
}
