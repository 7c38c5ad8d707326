//! Looking at processes through /proc, to prove nothing we started survives.

use std::time::{Duration, Instant};

/// Live (non-zombie) processes whose process group is `pgid`. Zombies are left out:
/// they are dead, merely not yet collected by whoever reaps orphans here.
pub(crate) fn live_group_members(pgid: i32) -> Vec<i32> {
    let mut found = Vec::new();
    let Ok(entries) = std::fs::read_dir("/proc") else { return found };
    for entry in entries.flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else { continue };
        // "pid (comm) state ppid pgrp ..."; comm may hold spaces or parens, so split
        // after the last ')'.
        let Some(rest) = stat.rfind(')').map(|i| &stat[i + 1..]) else { continue };
        let fields: Vec<&str> = rest.split_whitespace().collect();
        if fields.len() < 3 {
            continue;
        }
        if fields[0] != "Z" && fields[2].parse::<i32>().ok() == Some(pgid) {
            found.push(pid);
        }
    }
    found
}

/// Polls until the group has no live member, with a generous deadline (a SIGKILLed
/// process takes a moment to die). Returns the survivors if the deadline passes.
pub(crate) async fn wait_group_gone(pgid: i32) -> Vec<i32> {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let left = live_group_members(pgid);
        if left.is_empty() || Instant::now() > deadline {
            return left;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Reads an integer a script wrote to `path`, polling until it appears.
pub(crate) async fn read_pid_file(path: &std::path::Path) -> i32 {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        if let Ok(s) = std::fs::read_to_string(path) {
            if let Ok(n) = s.trim().parse() {
                return n;
            }
        }
        assert!(Instant::now() < deadline, "{} never written", path.display());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
