//! Checks on the ecosystem files (issue 7): `.env.example`, the Claude Code skill and
//! slash commands, the handler scripts, `install.sh` and the Docker health checks. One test binary
//! (`cargo test --test ecosystem`) so the suite links once.

// Helpers shared by the tests fail the test with a message, on purpose.
#![allow(clippy::panic)]

mod cli_lines;
mod docker;
mod env_example;
mod handlers;
mod install;
mod plugin;

use std::path::{Path, PathBuf};

/// The repository root (where `Cargo.toml` is).
pub(crate) fn repo_root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// A repository file's text; a missing file fails the test with its path.
pub(crate) fn read_repo_file(rel: &str) -> String {
    let path = repo_root().join(rel);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
}

/// Every file under `dir` (recursively) whose name ends with `suffix`, sorted.
pub(crate) fn files_with_suffix(dir: &Path, suffix: &str) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else { continue };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else if path.to_string_lossy().ends_with(suffix) {
                out.push(path);
            }
        }
    }
    out.sort();
    out
}
