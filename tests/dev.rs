//! `lyra dev` as a newcomer runs it: everything on loopback, kept in the data directory,
//! stopped cleanly by Ctrl-C.

mod common;

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use bytes::Bytes;
use common::https::Https;
use http_body_util::Full;
use serde_json::{Value, json};
use testkit::standin::standin_bin;
use testkit::{free_port, supervised};

struct Ports {
    api: u16,
    rest: u16,
}

fn dev(data: &Path, ports: &Ports) -> Child {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_lyra"));
    cmd.arg("dev")
        .arg("--data-dir")
        .arg(data)
        .args(["--api", &format!("127.0.0.1:{}", ports.api)])
        .args(["--rest", &format!("127.0.0.1:{}", ports.rest)])
        .args(["--grpc", &format!("127.0.0.1:{}", free_port().unwrap())])
        .args([
            "--gateway-admin",
            &format!("127.0.0.1:{}", free_port().unwrap()),
        ])
        .args([
            "--nebula-admin",
            &format!("127.0.0.1:{}", free_port().unwrap()),
        ])
        .env("QDRANT_BIN", standin_bin().unwrap())
        .env_remove("LYRA_REDIS_URL")
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::null());
    supervised::spawn(cmd).unwrap()
}

async fn api(
    http: &reqwest::Client,
    token: &str,
    method: reqwest::Method,
    url: String,
    body: Option<Value>,
) -> (u16, Value) {
    let mut r = http.request(method, url).bearer_auth(token);
    if let Some(b) = body {
        r = r.json(&b);
    }
    match r.send().await {
        Ok(r) => (r.status().as_u16(), r.json().await.unwrap_or(Value::Null)),
        Err(_) => (0, Value::Null),
    }
}

async fn until<F, Fut>(what: &str, mut f: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    for _ in 0..600 {
        if f().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("timed out: {what}");
}

/// Processes whose command line mentions the data directory (redis-server's --dir, nodes).
fn processes_of(data: &Path) -> Vec<u32> {
    let needle = data.display().to_string();
    let mut pids: Vec<u32> = std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| testkit::procs::alive(*pid))
        .filter(|pid| {
            let cmd = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            let env = std::fs::read(format!("/proc/{pid}/environ")).unwrap_or_default();
            String::from_utf8_lossy(&cmd).contains(&needle)
                || String::from_utf8_lossy(&env).contains(&needle)
        })
        .collect();
    pids.sort_unstable();
    pids.retain(|p| *p != std::process::id());
    pids
}

async fn interrupt(mut child: Child) {
    let pid = libc::pid_t::try_from(child.id()).unwrap();
    // SAFETY: kill(2) on our own child.
    unsafe { libc::kill(pid, libc::SIGINT) };
    let status = tokio::task::spawn_blocking(move || child.wait().unwrap())
        .await
        .unwrap();
    assert!(status.success(), "lyra dev after Ctrl-C: {status}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn from_a_fresh_data_dir_to_a_query_and_back_after_a_restart() {
    let data = tempfile::Builder::new()
        .prefix("lyra-dev-")
        .tempdir()
        .unwrap();
    let data = data.path().join("data");
    let ports = Ports {
        api: free_port().unwrap(),
        rest: free_port().unwrap(),
    };
    let base = format!("http://127.0.0.1:{}", ports.api);
    let http = reqwest::Client::new();

    let child = dev(&data, &ports);
    until("the dev region is registered", || {
        let (http, base, data) = (http.clone(), base.clone(), data.clone());
        async move {
            let Ok(token) = std::fs::read_to_string(data.join("operator.token")) else {
                return false;
            };
            let (s, regions) = api(
                &http,
                token.trim(),
                reqwest::Method::GET,
                format!("{base}/api/v1/regions"),
                None,
            )
            .await;
            s == 200 && regions.as_array().is_some_and(|r| !r.is_empty())
        }
    })
    .await;
    for f in ["platform.key", "operator.token", "ca.key"] {
        let mode = std::os::unix::fs::PermissionsExt::mode(
            &std::fs::metadata(data.join(f)).unwrap().permissions(),
        );
        assert_eq!(mode & 0o077, 0, "{f} is readable by others");
    }
    let operator = std::fs::read_to_string(data.join("operator.token"))
        .unwrap()
        .trim()
        .to_owned();
    let (_, account) = api(
        &http,
        &operator,
        reqwest::Method::POST,
        format!("{base}/api/v1/accounts"),
        Some(json!({"name": "newcomer"})),
    )
    .await;
    let account = account["id"].as_str().unwrap().to_owned();
    let clusters = format!("{base}/api/v1/accounts/{account}/clusters");
    let spec = json!({"name": "first", "cloud_provider": "local", "cloud_region": "dev",
        "configuration": {"num_nodes": 1, "node_configuration": {"cpu": 1000, "memory": 1024, "disk": 1}}});
    let (s, cluster) = api(
        &http,
        &operator,
        reqwest::Method::POST,
        clusters.clone(),
        Some(spec),
    )
    .await;
    assert_eq!(s, 202);
    let id = cluster["id"].as_str().unwrap().to_owned();
    until("HEALTHY", || {
        let (http, operator, url) = (http.clone(), operator.clone(), format!("{clusters}/{id}"));
        async move {
            api(&http, &operator, reqwest::Method::GET, url, None)
                .await
                .1["phase"]
                == "HEALTHY"
        }
    })
    .await;
    let (_, key) = api(
        &http,
        &operator,
        reqwest::Method::POST,
        format!("{clusters}/{id}/api-keys"),
        Some(json!({"name": "k1", "access": "manage"})),
    )
    .await;
    let key = key["key"].as_str().unwrap().to_owned();

    let query = |ca: String| {
        let (key, url) = (
            key.clone(),
            format!(
                "https://{id}.dev.local.localhost:{}/collections",
                ports.rest
            ),
        );
        async move {
            let client = Https::new(
                &ca,
                format!("127.0.0.1:{}", ports.rest).parse().unwrap(),
                &["h2", "http/1.1"],
            );
            let req = http::Request::get(url)
                .header("api-key", key)
                .body(Full::new(Bytes::new()))
                .unwrap();
            client.send(req).await.map(|a| a.status).unwrap_or(0)
        }
    };
    let ca = std::fs::read_to_string(data.join("ca.pem")).unwrap();
    until("a query through GateKeeper", || {
        let q = query(ca.clone());
        async move { q.await == 200 }
    })
    .await;
    assert!(
        processes_of(&data).len() >= 2,
        "redis-server and a node run"
    );

    // Ctrl-C leaves nothing behind.
    interrupt(child).await;
    assert!(
        processes_of(&data).is_empty(),
        "orphans: {:?}",
        processes_of(&data)
    );

    // A restart on the same data dir: the same cluster and key work, nothing provisioned twice.
    let child = dev(&data, &ports);
    until("the key works again after a restart", || {
        let ca = ca.clone();
        let q = query(ca);
        async move { q.await == 200 }
    })
    .await;
    assert_eq!(
        testkit::procs::qdrant_nodes_under(&data.join("nodes").join(&id)).len(),
        1
    );
    interrupt(child).await;
    assert!(
        processes_of(&data).is_empty(),
        "orphans after the second stop"
    );
}
