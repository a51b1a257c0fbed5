//! `lyra dev` as a newcomer runs it, for the end-to-end tests: a fresh working directory, the
//! real binary on free ports with the stand-in Qdrant (a test double) as `QDRANT_BIN`, the
//! `lyra` CLI run in that directory, and REST and gRPC calls through GateKeeper over TLS.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use serde_json::Value;
use testkit::standin::standin_bin;
use testkit::{free_port, supervised};

use super::https::{Answer, Https};
use super::until;

/// A fresh working directory with `lyra dev` running in it, on free ports.
pub struct Dev {
    _dir: tempfile::TempDir,
    /// Where the commands run: `lyra dev` keeps its data in `./.lyra` under it.
    pub cwd: PathBuf,
    pub rest: u16,
    pub grpc: u16,
    pub api: u16,
    /// The admin listeners (`/metrics`) of GateKeeper, Nebula and Orion.
    pub admin: [u16; 3],
    child: Option<Child>,
    /// Where `lyra dev` writes its output at `RUST_LOG=debug`, when asked for ([`Dev::logged`]);
    /// else it logs warnings to the test's stderr.
    log: Option<PathBuf>,
    /// What the CLI wrote to stderr, every run, when logging ([`Dev::logged`]).
    cli_stderr: std::sync::Mutex<Vec<String>>,
}

impl Dev {
    pub fn new() -> Self {
        let dir = tempfile::Builder::new()
            .prefix("lyra-e2e-")
            .tempdir()
            .unwrap();
        let cwd = dir.path().canonicalize().unwrap();
        Self {
            _dir: dir,
            cwd,
            rest: free_port().unwrap(),
            grpc: free_port().unwrap(),
            api: free_port().unwrap(),
            admin: [
                free_port().unwrap(),
                free_port().unwrap(),
                free_port().unwrap(),
            ],
            child: None,
            log: None,
            cli_stderr: std::sync::Mutex::new(Vec::new()),
        }
    }

    /// A `Dev` whose `lyra dev` logs everything (`RUST_LOG=debug`, stdout and stderr) to
    /// [`Dev::log_file`], across restarts.
    pub fn logged() -> Self {
        let mut dev = Self::new();
        dev.log = Some(dev.cwd.join("lyra-dev.log"));
        dev
    }

    pub fn log_file(&self) -> Option<&Path> {
        self.log.as_deref()
    }

    pub fn data(&self) -> PathBuf {
        self.cwd.join(".lyra")
    }

    /// Starts `lyra dev` with its defaults (data in `./.lyra`), only the ports chosen.
    pub async fn start(&mut self) {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_lyra"));
        cmd.current_dir(&self.cwd)
            .arg("dev")
            .args(["--api", &format!("127.0.0.1:{}", self.api)])
            .args(["--rest", &format!("127.0.0.1:{}", self.rest)])
            .args(["--grpc", &format!("127.0.0.1:{}", self.grpc)])
            .args(["--gateway-admin", &format!("127.0.0.1:{}", self.admin[0])])
            .args(["--nebula-admin", &format!("127.0.0.1:{}", self.admin[1])])
            .args(["--orion-admin", &format!("127.0.0.1:{}", self.admin[2])])
            .env("QDRANT_BIN", standin_bin().unwrap());
        clean_env(&mut cmd);
        cmd.stdin(Stdio::null());
        match &self.log {
            Some(path) => {
                let file = std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(path)
                    .unwrap();
                cmd.env("RUST_LOG", "debug")
                    .stdout(file.try_clone().unwrap())
                    .stderr(file);
            }
            None => {
                cmd.env("RUST_LOG", "warn").stdout(Stdio::null());
            }
        }
        self.child = Some(supervised::spawn(cmd).unwrap());
        // Ready when the CLI, finding everything in ./.lyra, sees the dev region.
        let this: &Dev = self;
        until("lyra dev is up", || async move {
            let out = this.lyra(&["region", "list", "-q"], &[]).await;
            out.status.success() && stdout(&out) == "local/dev"
        })
        .await;
    }

    /// Ctrl-C, and the exit status.
    pub async fn interrupt(&mut self) {
        let mut child = self.child.take().expect("lyra dev is running");
        let pid = libc::pid_t::try_from(child.id()).unwrap();
        // SAFETY: kill(2) on our own child.
        unsafe { libc::kill(pid, libc::SIGINT) };
        let status = tokio::task::spawn_blocking(move || child.wait().unwrap())
            .await
            .unwrap();
        assert!(status.success(), "lyra dev after Ctrl-C: {status}");
    }

    /// Runs the CLI in the working directory, as a person at a shell there would.
    pub async fn lyra(&self, args: &[&str], env: &[(&str, &str)]) -> Output {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_lyra"));
        cmd.current_dir(&self.cwd).args(args);
        clean_env(&mut cmd);
        cmd.envs(env.iter().copied()).stdin(Stdio::null());
        let out = tokio::task::spawn_blocking(move || cmd.output().unwrap())
            .await
            .unwrap();
        if self.log.is_some() {
            self.cli_stderr
                .lock()
                .unwrap()
                .push(String::from_utf8_lossy(&out.stderr).into_owned());
        }
        out
    }

    /// Everything the CLI wrote to stderr so far (only for a [`Dev::logged`]).
    pub fn cli_stderr(&self) -> Vec<String> {
        self.cli_stderr.lock().unwrap().clone()
    }

    /// Runs the CLI and returns its stdout, failing the test with stderr if it fails.
    pub async fn ok(&self, args: &[&str], env: &[(&str, &str)]) -> String {
        let out = self.lyra(args, env).await;
        assert!(
            out.status.success(),
            "lyra {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        stdout(&out)
    }

    pub fn https(&self, grpc: bool) -> Https {
        let ca = std::fs::read_to_string(self.data().join("ca.pem")).unwrap();
        let (port, alpn): (u16, &[&str]) = if grpc {
            (self.grpc, &["h2"])
        } else {
            (self.rest, &["h2", "http/1.1"])
        };
        Https::new(&ca, format!("127.0.0.1:{port}").parse().unwrap(), alpn)
    }
}

impl Drop for Dev {
    /// A failed test still stops `lyra dev` with Ctrl-C, so that it stops its nodes (a
    /// killed dev leaves them running, on purpose: the next start adopts them).
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            if let Ok(pid) = libc::pid_t::try_from(child.id()) {
                // SAFETY: kill(2) on our own child, not yet reaped.
                unsafe { libc::kill(pid, libc::SIGINT) };
            }
            for _ in 0..200 {
                if matches!(child.try_wait(), Ok(Some(_))) {
                    return;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = supervised::kill(&mut child);
        }
    }
}

/// Nothing from the test runner's environment may steer the CLI.
pub fn clean_env(cmd: &mut Command) {
    for var in [
        "LYRA_URL",
        "LYRA_TOKEN",
        "LYRA_ACCOUNT",
        "LYRA_DATA_DIR",
        "LYRA_REGION",
        "LYRA_CACERT",
        "LYRA_REDIS_URL",
    ] {
        cmd.env_remove(var);
    }
}

pub fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).trim().to_owned()
}

/// The processes `lyra dev` started for the data directory `data`: the nodes (their
/// environment names their storage under it) and redis-server (which rewrites its command line
/// to `redis-server 127.0.0.1:<port>`, so it is found by the port kept in `data`).
pub fn processes_of(data: &Path) -> Vec<u32> {
    let needle = data.display().to_string();
    let redis_title = std::fs::read_to_string(data.join("redis.port"))
        .map(|p| format!("redis-server 127.0.0.1:{}", p.trim()))
        .unwrap();
    let mut pids: Vec<u32> = std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| testkit::procs::alive(*pid))
        .filter(|pid| {
            let cmd = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            let cmd = String::from_utf8_lossy(&cmd);
            let env = std::fs::read(format!("/proc/{pid}/environ")).unwrap_or_default();
            cmd.contains(&needle)
                || cmd.starts_with(&redis_title)
                || String::from_utf8_lossy(&env).contains(&needle)
        })
        .collect();
    pids.sort_unstable();
    pids.retain(|p| *p != std::process::id());
    pids
}

/// A REST call through GateKeeper to the cluster's endpoint.
pub async fn rest(
    client: &Https,
    endpoint: &str,
    port: u16,
    method: &str,
    path: &str,
    key: &str,
    body: Option<Value>,
) -> Answer {
    let request = http::Request::builder()
        .method(method)
        .uri(format!("https://{endpoint}:{port}{path}"))
        .header("api-key", key)
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(
            body.map(|b| b.to_string()).unwrap_or_default(),
        )))
        .unwrap();
    client.send(request).await.unwrap()
}

/// A unary gRPC call whose message names `collection` (field 1, as Qdrant's requests do).
pub async fn grpc(
    client: &Https,
    endpoint: &str,
    port: u16,
    method: &str,
    collection: &str,
    key: &str,
) -> Answer {
    let mut message = vec![0x0a, u8::try_from(collection.len()).unwrap()];
    message.extend_from_slice(collection.as_bytes());
    let mut frame = vec![0u8];
    frame.extend_from_slice(&u32::try_from(message.len()).unwrap().to_be_bytes());
    frame.extend_from_slice(&message);
    let request = http::Request::post(format!("https://{endpoint}:{port}/qdrant.{method}"))
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .header("api-key", key)
        .body(Full::new(Bytes::from(frame)))
        .unwrap();
    client.send(request).await.unwrap()
}

/// The status of a gRPC answer: a trailers-only refusal carries it in the headers; an
/// answered call (the stand-in echoes the message) is OK.
pub fn grpc_status(a: &Answer) -> &str {
    assert_eq!(a.status, 200, "gRPC answers are HTTP 200");
    a.headers
        .get("grpc-status")
        .and_then(|v| v.to_str().ok())
        .unwrap_or(if a.body.is_empty() { "none" } else { "0" })
}
