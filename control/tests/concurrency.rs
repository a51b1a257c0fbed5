//! Capacity under concurrency: never oversubscribed, and waiting claims allocated in order.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a test: a panic is a failed test

mod common;

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use common::{Orion, body, room_for, spec};
use contract::keyspace;
use reqwest::Method;

fn region_counters(orion: &Orion) -> HashMap<String, i64> {
    redis::cmd("HGETALL")
        .arg(keyspace::region("local", "dev"))
        .query::<HashMap<String, String>>(&mut orion.redis())
        .unwrap()
        .into_iter()
        .filter_map(|(k, v)| v.parse().ok().map(|n| (k, n)))
        .collect()
}

fn assert_not_oversubscribed(c: &HashMap<String, i64>) {
    for dim in ["nodes", "cpu", "memory", "disk"] {
        let (alloc, total) = (c[&format!("alloc_{dim}")], c[&format!("total_{dim}")]);
        assert!(
            alloc >= 0 && alloc <= total,
            "{dim}: allocated {alloc} of {total}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_hundred_concurrent_claims_on_room_for_fifty() {
    let orion = Arc::new(Orion::start().await);
    let account = orion.create_account("busy").await;
    let admin = orion.create_token(&account, "admin").await;
    orion.put_region("local", "dev", room_for(50)).await;

    // Watch the counters while the claims race: they must never exceed the totals.
    let done = Arc::new(AtomicBool::new(false));
    let watcher = {
        let (orion, done) = (orion.clone(), done.clone());
        tokio::task::spawn_blocking(move || {
            let mut samples = 0;
            while !done.load(Ordering::Relaxed) {
                assert_not_oversubscribed(&region_counters(&orion));
                samples += 1;
            }
            samples
        })
    };

    let claims: Vec<_> = (0..500)
        .map(|i| {
            let (orion, admin, account) = (orion.clone(), admin.clone(), account.clone());
            tokio::spawn(async move {
                let r = orion
                    .create_cluster(&admin, &account, &spec(&format!("c{i}"), 1))
                    .await;
                assert_eq!(r.status(), 202);
                body(r).await
            })
        })
        .collect();
    let mut phases: HashMap<String, usize> = HashMap::new();
    for claim in claims {
        let cluster = claim.await.unwrap();
        *phases
            .entry(cluster["phase"].as_str().unwrap().to_owned())
            .or_default() += 1;
    }
    done.store(true, Ordering::Relaxed);
    let samples = watcher.await.unwrap();
    assert!(samples > 0);

    assert_eq!(phases.get("CREATING"), Some(&50), "{phases:?}");
    assert_eq!(phases.get("PENDING"), Some(&450), "{phases:?}");
    let counters = region_counters(&orion);
    assert_not_oversubscribed(&counters);
    assert_eq!(counters["alloc_nodes"], 50);
    let mut con = orion.redis();
    let queued: usize = redis::cmd("XLEN")
        .arg(keyspace::command_stream())
        .query(&mut con)
        .unwrap();
    assert_eq!(
        queued, 50,
        "one command per allocated cluster, none for waiting ones"
    );

    // Raise capacity by ten clusters' worth: the ten oldest claims get it, in order.
    let waiting: Vec<String> = redis::cmd("LRANGE")
        .arg(keyspace::region_waiting("local", "dev"))
        .arg(0)
        .arg(-1)
        .query(&mut con)
        .unwrap();
    assert_eq!(waiting.len(), 450);
    let region = orion.put_region("local", "dev", room_for(60)).await;
    assert_eq!(region["allocated"]["nodes"], 60);
    assert_eq!(region["waiting"], 440);
    for (i, id) in waiting.iter().enumerate() {
        let phase: String = redis::cmd("HGET")
            .arg(keyspace::cluster(id.parse().unwrap()))
            .arg("phase")
            .query(&mut con)
            .unwrap();
        let want = if i < 10 { "CREATING" } else { "PENDING" };
        assert_eq!(phase, want, "claim #{i} of the queue");
    }
    let queued: usize = redis::cmd("XLEN")
        .arg(keyspace::command_stream())
        .query(&mut con)
        .unwrap();
    assert_eq!(queued, 60);
    let listed = body(
        orion
            .request(
                Some(&admin),
                Method::GET,
                &format!("/api/v1/accounts/{account}/clusters?page_size=250"),
            )
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(listed["clusters"].as_array().unwrap().len(), 250);
}

#[tokio::test]
async fn a_big_early_claim_is_not_starved_by_later_small_ones() {
    let orion = Orion::start().await;
    let account = orion.create_account("fair").await;
    let admin = orion.create_token(&account, "admin").await;
    orion.put_region("local", "dev", room_for(2)).await;
    let big = body(
        orion
            .create_cluster(&admin, &account, &spec("big", 3))
            .await,
    )
    .await;
    assert_eq!(big["phase"], "PENDING");
    // It would fit, but it waits behind the earlier claim.
    let small = body(
        orion
            .create_cluster(&admin, &account, &spec("small", 1))
            .await,
    )
    .await;
    assert_eq!(small["phase"], "PENDING");
    assert!(
        small["reason"]
            .as_str()
            .unwrap()
            .contains("behind 1 earlier request")
    );
    let region = orion.put_region("local", "dev", room_for(3)).await;
    assert_eq!(
        region["allocated"]["nodes"], 3,
        "the big claim got the capacity first"
    );
    assert_eq!(region["waiting"], 1);
}
