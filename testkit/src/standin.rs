//! Running the stand-in Qdrant (the test double in `bench/`) as a real process.

use std::io;
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use tempfile::TempDir;

use crate::{free_port, supervised};

/// Environment variable naming the stand-in binary; default: `qdrant-standin` beside the
/// running test's own target directory (built by `cargo nextest run --workspace`).
pub const STANDIN_BIN_ENV: &str = "LYRA_STANDIN_BIN";

/// Where the stand-in binary is.
pub fn standin_bin() -> io::Result<PathBuf> {
    if let Some(p) = std::env::var_os(STANDIN_BIN_ENV) {
        return Ok(PathBuf::from(p));
    }
    // A test runs as target/<profile>/deps/<test>, a tool as target/<profile>/<tool>: the
    // stand-in is in target/<profile>/ either way.
    let exe = std::env::current_exe()?;
    let candidate = exe
        .ancestors()
        .skip(1)
        .take(2)
        .map(|dir| dir.join("qdrant-standin"))
        .find(|p| p.exists());
    candidate.ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::NotFound,
            format!(
                "qdrant-standin not found next to {exe:?}: build it with \
                 `cargo build -p bench --bin qdrant-standin` or set {STANDIN_BIN_ENV}"
            ),
        )
    })
}

/// Keys and options of one stand-in node.
#[derive(Debug, Clone, Default)]
pub struct StandInOptions {
    pub api_key: Option<String>,
    pub read_only_api_key: Option<String>,
    pub jwt_rbac: bool,
}

/// One stand-in node on free loopback ports with its own storage; killed on drop.
pub struct StandIn {
    pub http_port: u16,
    pub grpc_port: u16,
    bin: PathBuf,
    options: StandInOptions,
    child: Option<Child>,
    storage: TempDir,
}

impl StandIn {
    pub fn start(bin: &Path, options: StandInOptions) -> io::Result<Self> {
        let mut node = Self {
            http_port: free_port()?,
            grpc_port: free_port()?,
            bin: bin.to_owned(),
            options,
            child: None,
            storage: tempfile::Builder::new().prefix("lyra-standin-").tempdir()?,
        };
        node.launch()?;
        Ok(node)
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.http_port)
    }

    pub fn kill(&mut self) -> io::Result<()> {
        if let Some(mut c) = self.child.take() {
            supervised::kill(&mut c)?;
        }
        Ok(())
    }

    /// Starts it again on the same ports and storage.
    pub fn restart(&mut self) -> io::Result<()> {
        self.kill()?;
        self.launch()
    }

    fn launch(&mut self) -> io::Result<()> {
        let mut cmd = Command::new(&self.bin);
        cmd.env("QDRANT__SERVICE__HOST", "127.0.0.1")
            .env("QDRANT__SERVICE__HTTP_PORT", self.http_port.to_string())
            .env("QDRANT__SERVICE__GRPC_PORT", self.grpc_port.to_string())
            .env("QDRANT__STORAGE__STORAGE_PATH", self.storage.path())
            .env("QDRANT__TELEMETRY_DISABLED", "true")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        if let Some(k) = &self.options.api_key {
            cmd.env("QDRANT__SERVICE__API_KEY", k);
        }
        if let Some(k) = &self.options.read_only_api_key {
            cmd.env("QDRANT__SERVICE__READ_ONLY_API_KEY", k);
        }
        if self.options.jwt_rbac {
            cmd.env("QDRANT__SERVICE__JWT_RBAC", "true");
        }
        self.child = Some(supervised::spawn(cmd)?);
        wait_for_port(self.http_port, Duration::from_secs(10))
    }
}

impl Drop for StandIn {
    fn drop(&mut self) {
        let _ = self.kill();
    }
}

/// Waits until something accepts connections on `127.0.0.1:port`.
pub fn wait_for_port(port: u16, timeout: Duration) -> io::Result<()> {
    let deadline = Instant::now() + timeout;
    loop {
        if TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!("nothing listens on 127.0.0.1:{port} after {timeout:?}"),
            ));
        }
        thread::sleep(Duration::from_millis(10));
    }
}
