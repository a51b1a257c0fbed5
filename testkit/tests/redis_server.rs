//! The harness itself: a real redis-server that keeps acknowledged writes across a crash,
//! refuses to pretend when the binary is missing, and never outlives the test process.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test and benchmark tooling, not the product

use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use testkit::{HarnessError, RedisServer};

use testkit::procs::alive as pid_alive;

#[test]
fn an_acknowledged_write_survives_kill_9_and_restart() {
    let mut server = RedisServer::start().unwrap();
    let client = server.client().unwrap();
    let mut con = client.get_connection().unwrap();
    redis::cmd("SET")
        .arg("lyra:test")
        .arg("durable")
        .exec(&mut con)
        .unwrap();
    let port = server.port();
    let pid = server.pid().unwrap();

    server.kill().unwrap();
    assert!(!pid_alive(pid), "redis-server {pid} still runs after kill");
    assert!(
        client
            .get_connection_with_timeout(Duration::from_millis(200))
            .is_err(),
        "a killed server still answers"
    );

    server.restart().unwrap();
    assert_eq!(server.port(), port, "restart must keep the port");
    let mut con = server.client().unwrap().get_connection().unwrap();
    let value: Option<String> = redis::cmd("GET").arg("lyra:test").query(&mut con).unwrap();
    assert_eq!(value.as_deref(), Some("durable"));
    let aof: String = redis::cmd("CONFIG")
        .arg("GET")
        .arg("appendfsync")
        .query::<Vec<String>>(&mut con)
        .unwrap()
        .join("=");
    assert_eq!(aof, "appendfsync=always");
}

#[test]
fn two_servers_do_not_share_anything() {
    let a = RedisServer::start().unwrap();
    let b = RedisServer::start().unwrap();
    assert_ne!(a.port(), b.port());
    assert_ne!(a.dir(), b.dir());
    let mut ca = a.client().unwrap().get_connection().unwrap();
    redis::cmd("SET").arg("k").arg("a").exec(&mut ca).unwrap();
    let mut cb = b.client().unwrap().get_connection().unwrap();
    let v: Option<String> = redis::cmd("GET").arg("k").query(&mut cb).unwrap();
    assert_eq!(v, None);
}

#[test]
fn drop_kills_the_server_and_removes_its_directory() {
    let server = RedisServer::start().unwrap();
    let pid = server.pid().unwrap();
    let dir = server.dir().to_owned();
    assert!(pid_alive(pid));
    drop(server);
    assert!(!pid_alive(pid), "redis-server {pid} outlived its harness");
    assert!(!dir.exists(), "{dir:?} was left behind");
}

#[test]
fn a_missing_binary_says_how_to_install_redis() {
    let err = match RedisServer::start_with("/nonexistent/redis-server") {
        Err(e) => e,
        Ok(_) => panic!("started a server from a binary that does not exist"),
    };
    assert!(matches!(err, HarnessError::NotInstalled { .. }));
    assert!(
        err.to_string().contains("apt-get install redis-server"),
        "{err}"
    );
}

const HELPER_ENV: &str = "TESTKIT_ABORT_HELPER";

/// Not a test on its own: run by `no_orphan_when_the_test_process_aborts` in a child process.
/// It starts a server, reports its pid, and aborts, which runs no destructor at all.
#[test]
#[ignore = "helper process for no_orphan_when_the_test_process_aborts"]
fn abort_helper() {
    if std::env::var_os(HELPER_ENV).is_none() {
        return;
    }
    let server = RedisServer::start().unwrap();
    println!("REDIS_PID={}", server.pid().unwrap());
    std::process::abort();
}

#[test]
fn no_orphan_when_the_test_process_aborts() {
    let output = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "abort_helper", "--ignored", "--nocapture"])
        .env(HELPER_ENV, "1")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(!output.status.success(), "the helper was meant to abort");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let pid: u32 = stdout
        .lines()
        .find_map(|l| l.strip_prefix("REDIS_PID="))
        .unwrap_or_else(|| panic!("helper printed no pid: {stdout}"))
        .trim()
        .parse()
        .unwrap();
    // The kernel delivers SIGKILL when the parent dies; give it generous time to be reaped.
    let deadline = Instant::now() + Duration::from_secs(10);
    while pid_alive(pid) && Instant::now() < deadline {
        thread::sleep(Duration::from_millis(20));
    }
    assert!(
        !pid_alive(pid),
        "redis-server {pid} was orphaned by an aborted test"
    );
}
