//! A real `redis-server` for one test.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use tempfile::TempDir;

use crate::{free_port, supervised};

/// Environment variable naming the `redis-server` binary; default: `redis-server` on PATH.
pub const REDIS_SERVER_BIN_ENV: &str = "REDIS_SERVER_BIN";
const READY_TIMEOUT: Duration = Duration::from_secs(15);
const START_ATTEMPTS: usize = 5;

#[derive(Debug, thiserror::Error)]
pub enum HarnessError {
    #[error(
        "{bin:?} was not found: the tests need a real Redis server. Install it with \
         `sudo apt-get install redis-server` (Debian/Ubuntu) or `brew install redis` (macOS), \
         or point {REDIS_SERVER_BIN_ENV} at a redis-server binary"
    )]
    NotInstalled { bin: PathBuf },
    #[error("could not start {bin:?}: {source}")]
    Spawn {
        bin: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("redis-server exited during start-up; its log ends with:\n{log_tail}")]
    Exited { log_tail: String },
    #[error("redis-server did not answer PING within {0:?}; its log ends with:\n{1}")]
    NotReady(Duration, String),
    #[error("{0}")]
    Io(#[from] io::Error),
}

/// A `redis-server` process on a free loopback port, with its own temporary directory,
/// AOF on with `appendfsync always` (an acknowledged write is on disk), no RDB snapshots and
/// `noeviction`, like production. Killed and its directory removed on drop.
pub struct RedisServer {
    bin: PathBuf,
    port: u16,
    child: Option<Child>,
    // Declared last: dropped after the process is gone.
    dir: TempDir,
}

impl RedisServer {
    /// Starts the server from `$REDIS_SERVER_BIN` or `redis-server` on PATH.
    pub fn start() -> Result<Self, HarnessError> {
        let bin = std::env::var_os(REDIS_SERVER_BIN_ENV)
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from("redis-server"));
        Self::start_with(bin)
    }

    /// Starts the server from the binary `bin`.
    pub fn start_with(bin: impl Into<PathBuf>) -> Result<Self, HarnessError> {
        let bin = bin.into();
        let mut attempts = 0;
        loop {
            let mut server = Self {
                bin: bin.clone(),
                port: free_port()?,
                child: None,
                dir: tempfile::Builder::new().prefix("lyra-redis-").tempdir()?,
            };
            attempts += 1;
            match server.launch() {
                Ok(()) => return Ok(server),
                // Another process may take the free port before redis binds it: try another.
                Err(HarnessError::Exited { .. }) if attempts < START_ATTEMPTS => continue,
                Err(e) => return Err(e),
            }
        }
    }

    /// `redis://127.0.0.1:<port>/`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The server's working directory (AOF and log live here).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The process id while running.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// A client for this server.
    pub fn client(&self) -> redis::RedisResult<redis::Client> {
        redis::Client::open(self.url())
    }

    /// Kills the server with SIGKILL, as a crash would: no shutdown, no final save.
    pub fn kill(&mut self) -> Result<(), HarnessError> {
        if let Some(mut child) = self.child.take() {
            supervised::kill(&mut child)?;
        }
        Ok(())
    }

    /// Freezes the server (SIGSTOP): it keeps its connections but answers nothing, like a
    /// Redis stuck on a slow disk or a network partition. [`RedisServer::resume`] undoes it.
    pub fn pause(&self) -> Result<(), HarnessError> {
        self.signal(libc::SIGSTOP)
    }

    /// Lets a paused server run again (SIGCONT).
    pub fn resume(&self) -> Result<(), HarnessError> {
        self.signal(libc::SIGCONT)
    }

    fn signal(&self, signal: libc::c_int) -> Result<(), HarnessError> {
        let child = self
            .child
            .as_ref()
            .ok_or_else(|| io::Error::other("redis-server is not running"))?;
        let pid = libc::pid_t::try_from(child.id()).map_err(io::Error::other)?;
        // SAFETY: kill(2) on our own, not yet reaped child.
        if unsafe { libc::kill(pid, signal) } != 0 {
            return Err(io::Error::last_os_error().into());
        }
        Ok(())
    }

    /// Starts the server again on the same port with the same directory, so it reloads its AOF.
    /// Kills it first if it is running.
    pub fn restart(&mut self) -> Result<(), HarnessError> {
        self.kill()?;
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            match self.launch() {
                Ok(()) => return Ok(()),
                // The old socket can linger for a moment; the port is ours, so wait for it.
                Err(HarnessError::Exited { .. }) if Instant::now() < deadline => {
                    thread::sleep(Duration::from_millis(100));
                }
                Err(e) => return Err(e),
            }
        }
    }

    pub fn is_running(&mut self) -> bool {
        match self.child.as_mut().map(Child::try_wait) {
            Some(Ok(None)) => true,
            Some(Ok(Some(_))) | Some(Err(_)) => {
                self.child = None;
                false
            }
            None => false,
        }
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("redis.log")
    }

    fn log_tail(&self) -> String {
        let log = fs::read_to_string(self.log_path()).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(10)..].join("\n")
    }

    fn launch(&mut self) -> Result<(), HarnessError> {
        let mut command = Command::new(&self.bin);
        command
            .arg("--port")
            .arg(self.port.to_string())
            .args(["--bind", "127.0.0.1", "--daemonize", "no", "--save", ""])
            .args(["--appendonly", "yes", "--appendfsync", "always"])
            .args(["--maxmemory-policy", "noeviction"])
            .arg("--dir")
            .arg(self.dir.path())
            .arg("--logfile")
            .arg(self.log_path())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let child = supervised::spawn(command).map_err(|source| {
            if source.kind() == io::ErrorKind::NotFound {
                HarnessError::NotInstalled {
                    bin: self.bin.clone(),
                }
            } else {
                HarnessError::Spawn {
                    bin: self.bin.clone(),
                    source,
                }
            }
        })?;
        self.child = Some(child);
        self.wait_until_ready()
    }

    fn wait_until_ready(&mut self) -> Result<(), HarnessError> {
        let deadline = Instant::now() + READY_TIMEOUT;
        let client = redis::Client::open(self.url())
            .map_err(|e| io::Error::other(format!("bad redis url: {e}")))?;
        loop {
            if !self.is_running() {
                return Err(HarnessError::Exited {
                    log_tail: self.log_tail(),
                });
            }
            let pong = client
                .get_connection_with_timeout(Duration::from_millis(200))
                .and_then(|mut c| redis::cmd("PING").query::<String>(&mut c));
            if pong.is_ok() {
                return Ok(());
            }
            if Instant::now() >= deadline {
                let tail = self.log_tail();
                self.kill()?;
                return Err(HarnessError::NotReady(READY_TIMEOUT, tail));
            }
            thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        if let Err(e) = self.kill() {
            eprintln!("testkit: could not kill redis-server: {e}");
        }
    }
}
