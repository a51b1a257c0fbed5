//! One local Qdrant node: its directory, its saved ports, and its process.
//!
//! A node's process is started in its own process group and is *not* tied to Nebula's life:
//! Nebula may restart (or crash) while clusters keep serving. Its pid and ports are saved in
//! `node.json`, and a restarted Nebula adopts the process when `/proc/<pid>/cmdline` still
//! shows this node's own `--uri`, rather than starting a duplicate.

use std::fs::{self, File};
use std::io;
use std::net::{IpAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::driver::NodeSpec;

/// What is saved about a node between runs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeState {
    pub index: u32,
    pub http_port: u16,
    pub grpc_port: u16,
    pub p2p_port: u16,
    pub pid: Option<u32>,
    /// Whether the node has answered `/readyz` once. Until then its ports may still be
    /// changed (they are in no route yet).
    #[serde(default)]
    pub ready_once: bool,
}

/// `<root>/<cluster>/node-<index>/`.
#[derive(Debug, Clone)]
pub struct NodeDir(pub PathBuf);

impl NodeDir {
    pub fn new(cluster_dir: &Path, index: u32) -> Self {
        Self(cluster_dir.join(format!("node-{index}")))
    }

    fn state_file(&self) -> PathBuf {
        self.0.join("node.json")
    }

    pub fn storage(&self) -> PathBuf {
        self.0.join("storage")
    }

    pub fn log(&self) -> PathBuf {
        self.0.join("qdrant.log")
    }

    /// An exclusive lock on the node, so two workers sharing a data directory never start
    /// or stop the same node at once. The directory must exist.
    pub fn lock(&self) -> io::Result<File> {
        let file = File::create(self.0.join("node.lock"))?;
        file.lock()?;
        Ok(file)
    }

    pub fn load(&self) -> Option<NodeState> {
        let bytes = fs::read(self.state_file()).ok()?;
        serde_json::from_slice(&bytes).ok()
    }

    pub fn save(&self, state: &NodeState) -> io::Result<()> {
        let tmp = self.0.join("node.json.tmp");
        fs::write(
            &tmp,
            serde_json::to_vec_pretty(state).map_err(io::Error::other)?,
        )?;
        fs::rename(tmp, self.state_file())
    }

    /// The last lines of the node's log, for a failure reason.
    pub fn log_tail(&self, lines: usize) -> String {
        let log = fs::read_to_string(self.log()).unwrap_or_default();
        let all: Vec<&str> = log.lines().collect();
        all[all.len().saturating_sub(lines)..].join(" | ")
    }
}

/// Whether the node's three ports are distinct and nobody listens on any of them right now.
pub fn ports_free(host: IpAddr, state: &NodeState) -> bool {
    let ports = [state.http_port, state.grpc_port, state.p2p_port];
    let distinct = ports[0] != ports[1] && ports[1] != ports[2] && ports[0] != ports[2];
    // Held together, so that one bind cannot hide another's conflict.
    let listeners: Vec<_> = ports
        .iter()
        .map(|p| TcpListener::bind((host, *p)))
        .collect();
    distinct && listeners.iter().all(Result::is_ok)
}

/// `N` distinct ports nobody listens on right now, on `host`. The listeners are held until
/// all are chosen: picking them one at a time can return the same port twice, since each is
/// free again the moment its probe closes.
pub fn free_ports<const N: usize>(host: IpAddr) -> io::Result<[u16; N]> {
    let listeners = (0..N)
        .map(|_| TcpListener::bind((host, 0)))
        .collect::<io::Result<Vec<_>>>()?;
    let mut ports = [0u16; N];
    for (slot, l) in ports.iter_mut().zip(&listeners) {
        *slot = l.local_addr()?.port();
    }
    Ok(ports)
}

pub fn p2p_uri(host: IpAddr, port: u16) -> String {
    // SocketAddr writes an IPv6 host in brackets, as a URI needs it.
    format!("http://{}", std::net::SocketAddr::new(host, port))
}

/// Whether `pid` is a live process (a zombie is not).
fn alive(pid: u32) -> bool {
    match fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat
            .rsplit_once(") ")
            .is_some_and(|(_, rest)| !rest.starts_with('Z') && !rest.starts_with('X')),
        Err(_) => false,
    }
}

/// Whether the process `pid` is this node: alive, and started with this node's `--uri`.
pub fn is_node(pid: u32, host: IpAddr, state: &NodeState) -> bool {
    if !alive(pid) {
        return false;
    }
    let Ok(cmdline) = fs::read(format!("/proc/{pid}/cmdline")) else {
        return false;
    };
    let uri = p2p_uri(host, state.p2p_port);
    let mut args = cmdline.split(|b| *b == 0);
    while let Some(arg) = args.next() {
        if arg == b"--uri" {
            return args.next() == Some(uri.as_bytes());
        }
    }
    false
}

/// Starts a node's Qdrant process. `bootstrap` is node 0's p2p port, for every other node.
pub fn spawn(
    bin: &Path,
    host: IpAddr,
    dir: &NodeDir,
    spec: &NodeSpec,
    state: &NodeState,
    bootstrap: Option<u16>,
) -> io::Result<Child> {
    fs::create_dir_all(dir.storage())?;
    let log = File::options().create(true).append(true).open(dir.log())?;
    let mut cmd = Command::new(bin);
    cmd.current_dir(&dir.0)
        .env("QDRANT__SERVICE__HOST", host.to_string())
        .env("QDRANT__SERVICE__HTTP_PORT", state.http_port.to_string())
        .env("QDRANT__SERVICE__GRPC_PORT", state.grpc_port.to_string())
        .env("QDRANT__SERVICE__API_KEY", spec.read_write.expose())
        .env(
            "QDRANT__SERVICE__READ_ONLY_API_KEY",
            spec.read_only.expose(),
        )
        .env("QDRANT__SERVICE__JWT_RBAC", "true")
        .env("QDRANT__STORAGE__STORAGE_PATH", dir.storage())
        .env("QDRANT__CLUSTER__ENABLED", "true")
        .env("QDRANT__CLUSTER__P2P__PORT", state.p2p_port.to_string())
        .env("QDRANT__TELEMETRY_DISABLED", "true")
        .arg("--uri")
        .arg(p2p_uri(host, state.p2p_port))
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log);
    if let Some(port) = bootstrap {
        cmd.arg("--bootstrap").arg(p2p_uri(host, port));
    }
    // Its own process group: a Ctrl-C meant for Nebula's terminal does not reach the nodes.
    std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
    cmd.spawn()
}

/// Stops a node's process: SIGTERM, then SIGKILL after `grace`. Only signals `pid` if it is
/// still this node (a recycled pid is left alone).
pub fn stop(pid: u32, host: IpAddr, state: &NodeState, grace: Duration) {
    if !is_node(pid, host, state) {
        return;
    }
    let Ok(raw) = libc::pid_t::try_from(pid) else {
        return;
    };
    // SAFETY: kill(2) on a pid we just checked is our node.
    unsafe { libc::kill(raw, libc::SIGTERM) };
    let deadline = Instant::now() + grace;
    while alive(pid) && Instant::now() < deadline {
        thread::sleep(Duration::from_millis(20));
    }
    if alive(pid) {
        // SAFETY: as above.
        unsafe { libc::kill(raw, libc::SIGKILL) };
        while alive(pid) {
            thread::sleep(Duration::from_millis(5));
        }
    }
}

/// Stops the process saved in a node's state, if it still runs.
pub fn stop_saved(dir: &NodeDir, host: IpAddr, grace: Duration) {
    if let Some((state, pid)) = dir.load().and_then(|s| s.pid.map(|p| (s, p))) {
        stop(pid, host, &state, grace);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn free_ports_are_distinct_and_a_state_with_a_repeated_port_is_not_free() {
        let host: IpAddr = "127.0.0.1".parse().unwrap();
        for _ in 0..200 {
            let [a, b, c] = free_ports::<3>(host).unwrap();
            assert!(a != b && b != c && a != c, "{a} {b} {c}");
        }
        let [p, q, r] = free_ports::<3>(host).unwrap();
        let state = |http, grpc, p2p| NodeState {
            index: 0,
            http_port: http,
            grpc_port: grpc,
            p2p_port: p2p,
            pid: None,
            ready_once: false,
        };
        assert!(
            !ports_free(host, &state(p, p, q)),
            "a node cannot listen twice on one port"
        );
        assert!(ports_free(host, &state(p, q, r)));
        let taken = TcpListener::bind((host, r)).unwrap();
        assert!(
            !ports_free(host, &state(p, q, r)),
            "a port someone listens on"
        );
        drop(taken);
    }
}
