//! Processes of a benchmark run: spawned pinned to a CPU, never outliving the harness, and
//! measured in CPU seconds from /proc.

use std::io;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::HarnessError;

/// Which CPU each side of a run gets. On a machine with two or more CPUs the proxy under test
/// runs alone on CPU 0 and everything else (load generator, upstream, Redis) on CPU 1, so a
/// proxy cannot borrow cycles from its load; with one CPU nothing is pinned.
#[derive(Debug, Clone, Copy)]
pub struct Pinning {
    pub proxy: Option<usize>,
    pub rest: Option<usize>,
}

impl Pinning {
    pub fn detect() -> Self {
        let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
        if cpus >= 2 {
            Self {
                proxy: Some(0),
                rest: Some(1),
            }
        } else {
            Self {
                proxy: None,
                rest: None,
            }
        }
    }

    pub fn describe(&self) -> String {
        match (self.proxy, self.rest) {
            (Some(p), Some(r)) => format!("proxy on CPU {p}; load, upstream and Redis on CPU {r}"),
            _ => "not pinned (one CPU)".to_owned(),
        }
    }
}

fn cpu_set(cpu: usize) -> libc::cpu_set_t {
    // SAFETY: cpu_set_t is plain data; CPU_ZERO/CPU_SET only write inside it.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_ZERO(&mut set);
        libc::CPU_SET(cpu, &mut set);
        set
    }
}

/// Pins the calling thread (and the threads it starts later) to `cpu`.
pub fn pin_current_thread(cpu: Option<usize>) -> Result<(), HarnessError> {
    let Some(cpu) = cpu else { return Ok(()) };
    let set = cpu_set(cpu);
    // SAFETY: sched_setaffinity on this thread with a valid set.
    let rc = unsafe { libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) };
    if rc != 0 {
        return Err(HarnessError::Setup(format!(
            "cannot pin to CPU {cpu}: {}",
            io::Error::last_os_error()
        )));
    }
    Ok(())
}

/// Spawns `command` pinned to `cpu` (all its threads inherit it), killed when the harness
/// ends however it ends, with its output in `log`.
pub fn spawn(mut command: Command, cpu: Option<usize>, log: &Path) -> Result<Child, HarnessError> {
    // Appended to: a process started again (after a crash the harness caused) keeps the log
    // of its first life.
    let out = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .map_err(|e| HarnessError::Setup(format!("cannot create {}: {e}", log.display())))?;
    let err = out
        .try_clone()
        .map_err(|e| HarnessError::Setup(e.to_string()))?;
    command.stdin(Stdio::null()).stdout(out).stderr(err);
    if let Some(cpu) = cpu {
        let set = cpu_set(cpu);
        // SAFETY: only sched_setaffinity between fork and exec.
        unsafe {
            command.pre_exec(move || {
                if libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) != 0 {
                    return Err(io::Error::last_os_error());
                }
                Ok(())
            });
        }
    }
    let program = command.get_program().to_string_lossy().into_owned();
    testkit::supervised::spawn(command)
        .map_err(|e| HarnessError::Setup(format!("cannot start {program}: {e}")))
}

/// Waits until something accepts TCP connections on `port`.
pub fn wait_for_port(port: u16, what: &str) -> Result<(), HarnessError> {
    testkit::standin::wait_for_port(port, Duration::from_secs(30))
        .map_err(|e| HarnessError::Setup(format!("{what} did not listen on {port}: {e}")))
}

/// CPU seconds (user + system) used so far by `pid` and all its descendants.
pub fn cpu_seconds(pid: u32) -> f64 {
    // SAFETY: sysconf has no preconditions.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    tree(pid)
        .into_iter()
        .filter_map(|p| {
            let stat = std::fs::read_to_string(format!("/proc/{p}/stat")).ok()?;
            // Fields after the parenthesised name: state is field 3, utime 14, stime 15.
            let rest = stat.rsplit_once(") ")?.1;
            let fields: Vec<&str> = rest.split_whitespace().collect();
            let utime: f64 = fields.get(11)?.parse().ok()?;
            let stime: f64 = fields.get(12)?.parse().ok()?;
            Some((utime + stime) / ticks)
        })
        .sum()
}

/// Resident memory of `pid` in bytes.
pub fn rss_bytes(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// `pid` and its descendants (nginx's workers, for one).
fn tree(root: u32) -> Vec<u32> {
    let mut all = vec![root];
    let mut i = 0;
    while i < all.len() {
        let pid = all[i];
        if let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) {
            for task in tasks.flatten() {
                let children =
                    std::fs::read_to_string(task.path().join("children")).unwrap_or_default();
                all.extend(
                    children
                        .split_whitespace()
                        .filter_map(|c| c.parse::<u32>().ok()),
                );
            }
        }
        i += 1;
    }
    all.sort_unstable();
    all.dedup();
    all
}

/// A binary of this workspace, next to the harness's own (`target/<profile>/`), or where
/// `env` says.
pub fn sibling_binary(name: &str, env: &str) -> Result<PathBuf, HarnessError> {
    if let Some(p) = std::env::var_os(env) {
        return Ok(PathBuf::from(p));
    }
    let exe = std::env::current_exe().map_err(|e| HarnessError::Setup(e.to_string()))?;
    exe.ancestors()
        .skip(1)
        .take(2)
        .map(|dir| dir.join(name))
        .find(|p| p.exists())
        .ok_or_else(|| {
            HarnessError::Setup(format!(
                "{name} not found next to {}: build it with `cargo build --release -p lyra -p bench --bins`, or set {env}",
                exe.display()
            ))
        })
}

/// Polls `check` until it holds or `timeout` passes.
pub async fn until<F, Fut>(what: &str, timeout: Duration, mut check: F) -> Result<(), HarnessError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if check().await {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Err(HarnessError::Setup(format!("timed out: {what}")))
}

/// Builds the binaries the harness starts, in the harness's own profile, when run by cargo.
pub fn build_siblings() -> Result<(), String> {
    let Some(cargo) = std::env::var_os("CARGO") else {
        return Ok(());
    };
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let release = exe.parent().is_some_and(|d| d.ends_with("release"));
    let mut cmd = std::process::Command::new(cargo);
    cmd.args([
        "build",
        "--locked",
        "-p",
        "lyra",
        "--bin",
        "lyra",
        "-p",
        "bench",
        "--bin",
        "qdrant-standin",
    ]);
    if release {
        cmd.arg("--release");
    }
    let status = cmd.status().map_err(|e| format!("cannot run cargo: {e}"))?;
    if status.success() {
        Ok(())
    } else {
        Err("building lyra and qdrant-standin failed".into())
    }
}
