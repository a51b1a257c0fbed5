//! `lyra dev` finds its Qdrant before it starts anything, or says at once why it cannot:
//! a download of the pinned release from a local HTTP server (with a redirect, as GitHub
//! answers), checked by sha256, cached and used by the next start with no server at all;
//! offline, a wrong checksum, no redis-server: one line naming the ways out, nothing started.
//!
//! The "release" served here is a two-line script that runs the project's stand-in (a test
//! double), so its digest is given with `LYRA_QDRANT_SHA256`, as a mirror's would be.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a test: a panic is a failed test

use std::convert::Infallible;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::Full;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use sha2::{Digest, Sha256};
use testkit::standin::standin_bin;
use testkit::{free_port, supervised};

const VERSION: &str = "1.18.2";

fn asset() -> &'static str {
    match std::env::consts::ARCH {
        "aarch64" => "qdrant-aarch64-unknown-linux-musl.tar.gz",
        _ => "qdrant-x86_64-unknown-linux-gnu.tar.gz",
    }
}

/// A `.tar.gz` whose `qdrant` is a script running the stand-in.
fn release_archive() -> Vec<u8> {
    let script = format!(
        "#!/bin/sh\nexec {} \"$@\"\n",
        standin_bin().unwrap().display()
    );
    let gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    let mut tar = tar::Builder::new(gz);
    let mut header = tar::Header::new_gnu();
    header.set_size(script.len() as u64);
    header.set_mode(0o755);
    header.set_cksum();
    tar.append_data(&mut header, "qdrant", script.as_bytes())
        .unwrap();
    tar.into_inner().unwrap().finish().unwrap()
}

fn hex_sha256(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// A release mirror on loopback: `/mirror/v<version>/<asset>` redirects to `/files/<asset>`,
/// which serves the archive. Counts the archives it served.
struct Mirror {
    port: u16,
    served: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl Mirror {
    async fn start(archive: Vec<u8>) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let served = Arc::new(AtomicUsize::new(0));
        let archive = Bytes::from(archive);
        let counter = served.clone();
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let (archive, counter) = (archive.clone(), counter.clone());
                tokio::spawn(async move {
                    let service = service_fn(move |req: http::Request<hyper::body::Incoming>| {
                        let (archive, counter) = (archive.clone(), counter.clone());
                        async move {
                            let path = req.uri().path().to_owned();
                            let answer = if path == format!("/mirror/v{VERSION}/{}", asset()) {
                                http::Response::builder()
                                    .status(302)
                                    .header("location", format!("/files/{}", asset()))
                                    .body(Full::new(Bytes::new()))
                            } else if path == format!("/files/{}", asset()) {
                                counter.fetch_add(1, Ordering::SeqCst);
                                http::Response::builder()
                                    .header("content-length", archive.len())
                                    .body(Full::new(archive))
                            } else {
                                http::Response::builder()
                                    .status(404)
                                    .body(Full::new(Bytes::new()))
                            };
                            Ok::<_, Infallible>(answer.unwrap())
                        }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Self { port, served, task }
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}/mirror", self.port)
    }
}

impl Drop for Mirror {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A fresh directory, with a cache, an empty PATH and `lyra dev` to run in it.
struct Sandbox {
    _dir: tempfile::TempDir,
    root: PathBuf,
}

impl Sandbox {
    fn new() -> Self {
        let dir = tempfile::Builder::new()
            .prefix("lyra-dev-qdrant-")
            .tempdir()
            .unwrap();
        let root = dir.path().canonicalize().unwrap();
        std::fs::create_dir_all(root.join("empty-path")).unwrap();
        Self { _dir: dir, root }
    }

    fn cache(&self) -> PathBuf {
        self.root.join("cache")
    }

    fn cached_binary(&self) -> PathBuf {
        self.cache()
            .join("lyra")
            .join("qdrant")
            .join(VERSION)
            .join("qdrant")
    }

    fn data(&self) -> PathBuf {
        self.root.join(".lyra")
    }

    /// `lyra dev` with nothing on PATH (so no `qdrant` is found there), the cache under the
    /// sandbox, and redis-server named explicitly.
    fn dev(&self, env: &[(&str, &str)], args: &[&str]) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_lyra"));
        cmd.current_dir(&self.root)
            .arg("dev")
            .args(["--api", &format!("127.0.0.1:{}", free_port().unwrap())])
            .args(["--rest", &format!("127.0.0.1:{}", free_port().unwrap())])
            .args(["--grpc", &format!("127.0.0.1:{}", free_port().unwrap())])
            .args([
                "--gateway-admin",
                &format!("127.0.0.1:{}", free_port().unwrap()),
            ])
            .args([
                "--nebula-admin",
                &format!("127.0.0.1:{}", free_port().unwrap()),
            ])
            .args([
                "--orion-admin",
                &format!("127.0.0.1:{}", free_port().unwrap()),
            ])
            .args(args)
            .env("PATH", self.root.join("empty-path"))
            .env("XDG_CACHE_HOME", self.cache())
            .env("REDIS_SERVER_BIN", redis_server())
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null());
        for var in [
            "QDRANT_BIN",
            "LYRA_DATA_DIR",
            "LYRA_REDIS_URL",
            "LYRA_QDRANT_CACHE",
        ] {
            cmd.env_remove(var);
        }
        cmd.envs(env.iter().copied());
        cmd
    }

    /// Runs `lyra dev` expecting it to refuse to start: its output.
    async fn refused(&self, env: &[(&str, &str)]) -> Output {
        let mut cmd = self.dev(env, &[]);
        let out = tokio::task::spawn_blocking(move || cmd.output().unwrap())
            .await
            .unwrap();
        assert!(!out.status.success(), "lyra dev started: {out:?}");
        assert!(out.stdout.is_empty(), "nothing on stdout: {out:?}");
        assert!(
            !self.data().exists(),
            "nothing was created before the refusal"
        );
        out
    }

    /// Starts `lyra dev` and waits for its banner: the child and everything it printed.
    async fn start(&self, env: &[(&str, &str)], args: &[&str]) -> (Child, String) {
        let log = self.root.join("dev.out");
        let mut cmd = self.dev(env, args);
        cmd.stdout(std::fs::File::create(&log).unwrap());
        let mut child = supervised::spawn(cmd).unwrap();
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let out = std::fs::read_to_string(&log).unwrap_or_default();
            if out.contains("Try, in another shell") {
                return (child, out);
            }
            if let Ok(Some(status)) = child.try_wait() {
                panic!("lyra dev exited with {status}: {out}");
            }
            assert!(Instant::now() < deadline, "lyra dev did not start: {out}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn lyra(&self, args: &[&str]) -> Output {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_lyra"));
        cmd.current_dir(&self.root).args(args).stdin(Stdio::null());
        for var in ["LYRA_URL", "LYRA_TOKEN", "LYRA_ACCOUNT", "LYRA_DATA_DIR"] {
            cmd.env_remove(var);
        }
        tokio::task::spawn_blocking(move || cmd.output().unwrap())
            .await
            .unwrap()
    }
}

fn redis_server() -> PathBuf {
    std::env::var_os("REDIS_SERVER_BIN")
        .map(PathBuf::from)
        .or_else(|| which("redis-server"))
        .expect("redis-server on PATH or REDIS_SERVER_BIN")
}

fn which(name: &str) -> Option<PathBuf> {
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

/// Ctrl-C, then the exit status.
fn interrupt(mut child: Child) -> std::process::ExitStatus {
    let pid = libc::pid_t::try_from(child.id()).unwrap();
    // SAFETY: kill(2) on our own child.
    unsafe { libc::kill(pid, libc::SIGINT) };
    child.wait().unwrap()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// The one error line says what failed and every way out.
fn assert_names_the_ways_out(err: &str) {
    let lines: Vec<&str> = err.lines().filter(|l| l.starts_with("error:")).collect();
    assert_eq!(lines.len(), 1, "one error line: {err}");
    for way in ["install Qdrant", "QDRANT_BIN=", "lyra dev --standin"] {
        assert!(lines[0].contains(way), "{way:?} missing from: {err}");
    }
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    path.metadata()
        .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_pinned_release_is_downloaded_once_verified_and_then_served_from_the_cache() {
    let archive = release_archive();
    let digest = hex_sha256(&archive);
    let mirror = Mirror::start(archive).await;
    let sandbox = Sandbox::new();
    let url = mirror.url();
    let env = [
        ("LYRA_QDRANT_RELEASE_URL", url.as_str()),
        ("LYRA_QDRANT_SHA256", digest.as_str()),
    ];
    let (child, banner) = sandbox.start(&env, &[]).await;
    assert_eq!(mirror.served.load(Ordering::SeqCst), 1, "one download");
    assert!(is_executable(&sandbox.cached_binary()), "cached: {banner}");
    assert!(
        banner.contains("just downloaded, sha256 verified"),
        "{banner}"
    );
    assert!(
        banner.contains("qdrant-standin"),
        "it asked the binary its version: {banner}"
    );
    assert!(
        banner.contains("NOT Qdrant"),
        "the stand-in is named: {banner}"
    );
    // The nodes run the downloaded binary: a cluster becomes HEALTHY on it.
    let out = sandbox.lyra(&["account", "create", "me"]).await;
    assert!(out.status.success(), "{}", stderr(&out));
    let out = sandbox
        .lyra(&["cluster", "create", "demo", "--nodes", "1", "--wait", "-q"])
        .await;
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(interrupt(child).success());

    // The mirror is gone: the next start uses the cache and asks nobody.
    drop(mirror);
    let (child, banner) = sandbox.start(&env, &[]).await;
    assert!(banner.contains("downloaded earlier"), "{banner}");
    assert!(interrupt(child).success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offline_is_one_line_naming_every_way_out_and_nothing_starts() {
    let sandbox = Sandbox::new();
    let closed = format!("http://127.0.0.1:{}/mirror", free_port().unwrap());
    let started = Instant::now();
    let out = sandbox
        .refused(&[("LYRA_QDRANT_RELEASE_URL", closed.as_str())])
        .await;
    let err = stderr(&out);
    assert_names_the_ways_out(&err);
    assert!(err.contains("cannot reach"), "{err}");
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "refused at once"
    );
    assert!(!sandbox.cached_binary().exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_archive_that_is_not_the_pinned_release_is_refused_and_not_cached() {
    // No digest given: the archive must match the pinned release's, and this one does not.
    let mirror = Mirror::start(release_archive()).await;
    let sandbox = Sandbox::new();
    let url = mirror.url();
    let out = sandbox
        .refused(&[("LYRA_QDRANT_RELEASE_URL", url.as_str())])
        .await;
    let err = stderr(&out);
    assert_names_the_ways_out(&err);
    assert!(err.contains("sha256"), "{err}");
    assert_eq!(mirror.served.load(Ordering::SeqCst), 1);
    assert!(
        !sandbox.cached_binary().exists(),
        "an unverified binary is never kept"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_redis_server_is_said_at_start_with_the_install_line() {
    let sandbox = Sandbox::new();
    let out = sandbox
        .refused(&[("REDIS_SERVER_BIN", "/nonexistent/redis-server")])
        .await;
    let err = stderr(&out);
    for hint in [
        "apt-get install redis-server",
        "brew install redis",
        "--redis-url",
    ] {
        assert!(err.contains(hint), "{hint:?} missing from: {err}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_given_binary_that_is_not_there_is_refused_at_once() {
    let sandbox = Sandbox::new();
    let out = sandbox
        .refused(&[("QDRANT_BIN", "/nonexistent/qdrant")])
        .await;
    let err = stderr(&out);
    assert!(err.contains("/nonexistent/qdrant"), "{err}");
    assert_names_the_ways_out(&err);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn standin_mode_says_on_every_start_that_it_is_not_qdrant() {
    let sandbox = Sandbox::new();
    let standin_dir = standin_bin().unwrap().parent().unwrap().to_owned();
    let mut env_path = standin_dir.into_os_string();
    env_path.push(":");
    env_path.push(sandbox.root.join("empty-path"));
    let path = env_path.to_string_lossy().into_owned();
    for _ in 0..2 {
        let (child, banner) = sandbox.start(&[("PATH", &path)], &["--standin"]).await;
        assert!(banner.contains("NOT Qdrant"), "{banner}");
        assert!(banner.contains("--standin"), "{banner}");
        assert!(interrupt(child).success());
    }
}
