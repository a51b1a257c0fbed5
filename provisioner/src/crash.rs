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
