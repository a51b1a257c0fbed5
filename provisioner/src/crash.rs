//! Crash points: named places where Nebula can be made to die like a `kill -9`, so tests can
//! prove that a command survives a crash at each step. Set `LYRA_CRASH_AT` to a
//! comma-separated list of names; unset (always, in production) it costs one load.

use std::sync::OnceLock;

pub const ENV: &str = "LYRA_CRASH_AT";

fn armed() -> &'static [String] {
    static ARMED: OnceLock<Vec<String>> = OnceLock::new();
    ARMED.get_or_init(|| {
        std::env::var(ENV)
            .map(|v| v.split(',').map(|s| s.trim().to_owned()).collect())
            .unwrap_or_default()
    })
}

/// Aborts the process (no destructors, no flush: as abrupt as SIGKILL) when `name` is armed.
pub fn point(name: &str) {
    if armed().iter().any(|a| a == name) {
        eprintln!("nebula: crash point {name} reached: aborting");
        std::process::abort();
    }
}

/// Hold points: named places where Nebula waits, for tests that need something to happen in
/// between two steps (a delete arriving while a cluster is being provisioned). With
/// `LYRA_HOLD_AT=<name>` and `LYRA_HOLD_FILE=<path>`, reaching `name` creates `<path>.reached`
/// and waits while `<path>` exists. Unset (always, in production) it costs one load.
pub const HOLD_AT_ENV: &str = "LYRA_HOLD_AT";
pub const HOLD_FILE_ENV: &str = "LYRA_HOLD_FILE";

fn hold_armed() -> Option<&'static (String, std::path::PathBuf)> {
    static ARMED: OnceLock<Option<(String, std::path::PathBuf)>> = OnceLock::new();
    ARMED
        .get_or_init(|| {
            let at = std::env::var(HOLD_AT_ENV).ok()?;
            let file = std::env::var_os(HOLD_FILE_ENV)?;
            Some((at, file.into()))
        })
        .as_ref()
}

pub async fn hold(name: &str) {
    let Some((at, file)) = hold_armed() else {
        return;
    };
    if at != name {
        return;
    }
    let mut reached = file.clone().into_os_string();
    reached.push(".reached");
    let _ = std::fs::write(&reached, name);
    eprintln!("nebula: holding at {name} while {} exists", file.display());
    while file.exists() {
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

/// A panic point for tests: with `LYRA_PANIC_AT=<name>`, the first time this process reaches
/// `name` it panics (later times pass), to prove a panicking handler is retried and wedges
/// nothing. Unset (always, in production) it costs one load.
pub const PANIC_AT_ENV: &str = "LYRA_PANIC_AT";

pub fn panic_once(name: &str) {
    static ARMED: OnceLock<Option<String>> = OnceLock::new();
    static FIRED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
    let armed = ARMED.get_or_init(|| std::env::var(PANIC_AT_ENV).ok());
    if armed.as_deref() == Some(name) && !FIRED.swap(true, std::sync::atomic::Ordering::SeqCst) {
        panic!("panic point {name} reached");
    }
}
