//! The handler guard: a small process that ends the process groups of our
//! handlers when we die, however we die.
//!
//! Why not the parent-death signal alone: it can only be set by the child
//! itself, between `fork` and `exec`, and forking a daemon copies its page
//! tables: about a millisecond per handler here, against a tenth of that for
//! `posix_spawn`, which runs no code of ours in the child. So handlers start
//! with `posix_spawn`, and this guard keeps the promise the signal made, and
//! more: it ends the *whole* group (background children included, where the
//! signal reached only the leader), and on every Unix, not only Linux.
//!
//! The guard is this binary (`agentroom __handler-guard`), started once per
//! process that runs handlers, in its own process group, with nothing of ours
//! but a pipe on its stdin. Over the pipe, one line per change:
//!
//! ```text
//! +PGID START    a handler group started; START is its leader's start time, or `-`
//! -PGID          that group is done
//! ```
//!
//! When the pipe ends (we exited, or were killed with -9), the guard ends each
//! group still listed with [`process::end_orphaned_group`] (safe against PID
//! reuse through the start time) and exits. It ignores the signals a terminal
//! or a service manager sends to stop things: it stops when we do.
//!
//! Where the guard cannot be started (the binary was replaced or removed
//! since we started) or has died, handlers start as before: forked, with the
//! parent-death signal on Linux ([`process::spawn_in_group_tied_to_us`]).

use std::collections::HashMap;
use std::ffi::{OsStr, OsString};
use std::io::{BufRead, Write};
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Stdio};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

use crate::process;

/// The hidden subcommand that runs the guard.
pub const SUBCOMMAND: &str = "__handler-guard";

enum State {
    NotStarted,
    Running {
        pipe: ChildStdin,
        child: Child,
    },
    /// Could not start, or died: handlers are forked and tied to us instead.
    Gone,
}

static GUARD: Mutex<State> = Mutex::new(State::NotStarted);

/// Set by the `agentroom` binary: the guard is this executable, so a program
/// that only links the library (a test binary, say) must not start itself.
static ENABLED: AtomicBool = AtomicBool::new(false);

/// Let handlers use the guard: `current_exe` is `agentroom` and knows
/// [`SUBCOMMAND`]. Called once by the binary's `main`.
pub fn enable() {
    ENABLED.store(true, Ordering::Relaxed);
}

/// Start the guard ahead of the first handler (no-op when it runs already or
/// is not enabled).
pub fn prepare() {
    available();
}

/// Whether handlers can start without a fork: the guard runs (started now if
/// it was not yet).
pub(crate) fn available() -> bool {
    if !ENABLED.load(Ordering::Relaxed) {
        return false;
    }
    let mut state = GUARD.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    if matches!(*state, State::NotStarted) {
        *state = match start() {
            Ok((pipe, child)) => State::Running { pipe, child },
            Err(e) => {
                tracing::warn!(error = %e, "cannot start the handler guard; handlers are forked");
                State::Gone
            }
        };
    }
    matches!(*state, State::Running { .. })
}

fn start() -> std::io::Result<(ChildStdin, Child)> {
    let exe = std::env::current_exe()?;
    let mut child = std::process::Command::new(exe)
        .arg(SUBCOMMAND)
        .env_clear()
        .current_dir("/")
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        // Out of our group: a signal to our group (Ctrl-C, `kill -- -PGID`)
        // must leave the guard to clean up after us.
        .process_group(0)
        .spawn()?;
    let pipe = child.stdin.take().expect("stdin was set to a pipe");
    Ok((pipe, child))
}

/// A handler group the guard ends if we die; dropping it tells the guard the
/// group is done.
#[derive(Debug)]
pub(crate) struct Registration {
    pgid: i32,
}

/// Tell the guard about a group that just started. `None` when the guard is
/// gone (then nothing ends the group if we die, but the group recorded with
/// the message is ended by whoever runs the message next).
pub(crate) fn register(pgid: i32, leader_start: Option<u64>) -> Option<Registration> {
    let start = leader_start.map_or_else(|| "-".to_owned(), |s| s.to_string());
    send(&format!("+{pgid} {start}\n")).then_some(Registration { pgid })
}

impl Drop for Registration {
    fn drop(&mut self) {
        send(&format!("-{}\n", self.pgid));
    }
}

/// Write one line to the guard; on failure the guard is gone for good.
fn send(line: &str) -> bool {
    let mut state = GUARD.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    let State::Running { pipe, child } = &mut *state else { return false };
    // A line is far below the pipe's buffer and the guard reads at once.
    if let Err(e) = pipe.write_all(line.as_bytes()) {
        tracing::warn!(error = %e, "the handler guard is gone; handlers are forked from now on");
        let _ = child.kill();
        let _ = child.wait();
        *state = State::Gone;
        return false;
    }
    true
}

/// The guard's main loop: read the list of groups from stdin until it ends,
/// then end every group still listed.
pub fn run_guard() {
    ignore_stop_signals();
    let mut groups: HashMap<i32, Option<u64>> = HashMap::new();
    let stdin = std::io::stdin().lock();
    for line in stdin.lines() {
        let Ok(line) = line else { break };
        match parse(&line) {
            Some(Change::Started { pgid, leader_start }) => {
                groups.insert(pgid, leader_start);
            }
            Some(Change::Done { pgid }) => {
                groups.remove(&pgid);
            }
            None => tracing::debug!(line, "handler guard: not a change"),
        }
    }
    for (pgid, leader_start) in groups {
        process::end_orphaned_group(pgid, leader_start);
    }
}

#[derive(Debug, PartialEq, Eq)]
enum Change {
    Started { pgid: i32, leader_start: Option<u64> },
    Done { pgid: i32 },
}

fn parse(line: &str) -> Option<Change> {
    if let Some(rest) = line.strip_prefix('+') {
        let (pgid, start) = rest.split_once(' ')?;
        let pgid = pgid.parse().ok().filter(|p| *p > 1)?;
        let leader_start = if start == "-" { None } else { Some(start.parse().ok()?) };
        return Some(Change::Started { pgid, leader_start });
    }
    let pgid = line.strip_prefix('-')?.parse().ok().filter(|p| *p > 1)?;
    Some(Change::Done { pgid })
}

fn ignore_stop_signals() {
    use nix::sys::signal::{SigHandler, Signal, signal};
    for sig in [Signal::SIGINT, Signal::SIGTERM, Signal::SIGHUP, Signal::SIGQUIT] {
        // SAFETY: SIG_IGN runs no code of ours in a signal context.
        #[allow(unsafe_code)]
        let _ = unsafe { signal(sig, SigHandler::SigIgn) };
    }
}

/// Where `exec` would find `program` along `path` (the handler's `PATH`), as
/// `execvp` and `sh` look: the first executable regular file. A name with a
/// `/` is a path already. `None`: not found (the caller lets the start fail
/// as it would have, and falls back to `sh`, which says so in its words).
///
/// Resolving it here is what lets the standard library use `posix_spawn`:
/// it forks to search itself when the child's environment sets `PATH`.
pub(crate) fn resolve_program(program: &str, path: Option<&OsStr>) -> Option<PathBuf> {
    if program.contains('/') {
        return Some(PathBuf::from(program));
    }
    if program.is_empty() {
        return None;
    }
    process::find_on_path(path?, program, process::EmptyPathEntry::CurrentDir)
}

/// The `PATH` of a handler's environment.
pub(crate) fn path_of(env: &[(OsString, OsString)]) -> Option<&OsStr> {
    env.iter().find(|(k, _)| k == "PATH").map(|(_, v)| v.as_os_str())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;
    use std::path::Path;

    #[test]
    fn parses_changes_and_refuses_the_rest() {
        assert_eq!(
            parse("+1234 5678"),
            Some(Change::Started { pgid: 1234, leader_start: Some(5678) })
        );
        assert_eq!(parse("+1234 -"), Some(Change::Started { pgid: 1234, leader_start: None }));
        assert_eq!(parse("-1234"), Some(Change::Done { pgid: 1234 }));
        for bad in ["", "+", "+1234", "+x 1", "+1234 x", "-", "-x", "1234", "+1 5", "-0", "+-5 1"] {
            assert_eq!(parse(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn resolves_like_execvp() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (dir.path().join("a"), dir.path().join("b"));
        std::fs::create_dir_all(&a).unwrap();
        std::fs::create_dir_all(&b).unwrap();
        let write = |p: &Path, mode: u32| {
            std::fs::write(p, "#!/bin/sh\n").unwrap();
            std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).unwrap();
        };
        // Not executable in a, executable in b: b's.
        write(&a.join("tool"), 0o644);
        write(&b.join("tool"), 0o755);
        // A directory of that name is skipped too.
        std::fs::create_dir_all(a.join("dirtool")).unwrap();
        write(&b.join("dirtool"), 0o755);
        let path = std::env::join_paths([&a, &b]).unwrap();
        assert_eq!(resolve_program("tool", Some(&path)), Some(b.join("tool")));
        assert_eq!(resolve_program("dirtool", Some(&path)), Some(b.join("dirtool")));
        assert_eq!(resolve_program("missing", Some(&path)), None);
        assert_eq!(resolve_program("tool", None), None);
        assert_eq!(resolve_program("", Some(&path)), None);
        // A name with a slash is taken as it is.
        assert_eq!(resolve_program("./x/tool", Some(&path)), Some(PathBuf::from("./x/tool")));
        // The first match wins.
        write(&a.join("both"), 0o755);
        write(&b.join("both"), 0o755);
        assert_eq!(resolve_program("both", Some(&path)), Some(a.join("both")));
    }
}
