//! Looking at processes through /proc, as tests that count or hunt processes need to.

use std::fs;
use std::path::Path;

/// Whether `pid` is a live process. A zombie counts as dead: it runs nothing, and an orphan
/// killed by the kernel is reaped by whoever adopted it, maybe later.
pub fn alive(pid: u32) -> bool {
    match fs::read_to_string(format!("/proc/{pid}/stat")) {
        // The state follows the parenthesised command name: "pid (comm) S ...".
        Ok(stat) => stat
            .rsplit_once(") ")
            .is_some_and(|(_, rest)| !rest.starts_with('Z') && !rest.starts_with('X')),
        Err(_) => false,
    }
}

/// Live processes whose Qdrant storage (`QDRANT__STORAGE__STORAGE_PATH`) lies under `dir`:
/// the nodes of one cluster of the local driver.
pub fn qdrant_nodes_under(dir: &Path) -> Vec<u32> {
    let needle = format!("QDRANT__STORAGE__STORAGE_PATH={}", dir.display());
    let Ok(entries) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    let mut pids: Vec<u32> = entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            let env = fs::read(format!("/proc/{pid}/environ")).unwrap_or_default();
            alive(*pid)
                && env
                    .split(|b| *b == 0)
                    .any(|v| v.starts_with(needle.as_bytes()))
        })
        .collect();
    pids.sort_unstable();
    pids
}
