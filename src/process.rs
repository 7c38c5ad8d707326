//! Child processes in their own process group: spawn, signal the whole group, reap,
//! and map exit statuses the way a shell does.
//!
//! Handlers (`serve --on-message`) and tunnels (cloudflared) are arbitrary programs that
//! may fork: `sh -c 'agent | tee log &'` leaves grandchildren behind that a plain
//! `Child::kill` would orphan. So every child we start becomes the leader of a fresh
//! process group (`setpgid(0, 0)` in the child, via `process_group(0)`), and every stop
//! signals the *group*: SIGTERM first, then SIGKILL after a grace period, as uv's
//! `child.rs` and mini-redis's `DbDropGuard` do for their own resources. A
//! [`GroupKillGuard`] sends SIGKILL to the group if its owner is dropped early (a
//! cancelled future, a panic, an early `?`), so nothing outlives us by accident.
//!
//! Why it is safe to signal a group after its leader was reaped: Linux does not hand
//! out a PID number again while any live process still uses it as its process-group
//! id, so `killpg(pgid)` reaches only the stragglers of *our* group; when the group
//! is empty it fails with `ESRCH`, which we treat as "already gone".

use std::process::ExitStatus;
use std::time::Duration;

use nix::errno::Errno;
use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use tokio::process::{Child, Command};
use tokio::time::Instant;

/// How often [`terminate`] looks whether the group has emptied during its grace period.
/// Short enough that a prompt exit costs little, long enough not to spin.
const GROUP_POLL_INTERVAL: Duration = Duration::from_millis(20);

/// Errors from spawning or stopping a child.
#[derive(Debug, thiserror::Error)]
pub enum ProcessError {
    /// The program could not be started (not found, not executable, fork failed).
    #[error("cannot start {program}")]
    Spawn {
        /// The program we tried to run.
        program: String,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// The child started but the OS gave us no PID (it was already reaped).
    #[error("{program} exited before its process id could be read")]
    NoPid {
        /// The program we ran.
        program: String,
    },
    /// Waiting for the child failed (an OS error, not the child's own failure).
    #[error("cannot wait for the child process: {0}")]
    Wait(std::io::Error),
    /// A signal handler could not be installed.
    #[error("cannot listen for signals: {0}")]
    Signal(std::io::Error),
}

/// A process group we created, identified by its leader's PID.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProcessGroup {
    pgid: Pid,
}

impl ProcessGroup {
    /// The group led by `child` (which must have been spawned with `process_group(0)`).
    /// `None` if the child has already been reaped.
    pub fn of_child(child: &Child) -> Option<Self> {
        let pid = i32::try_from(child.id()?).ok()?;
        Some(Self { pgid: Pid::from_raw(pid) })
    }

    /// The group id (= the leader's PID).
    pub fn id(self) -> i32 {
        self.pgid.as_raw()
    }

    /// Sends `signal` to every process of the group. `Ok(false)` if the group no
    /// longer exists.
    pub fn signal(self, signal: Signal) -> Result<bool, Errno> {
        match killpg(self.pgid, signal) {
            Ok(()) => Ok(true),
            Err(Errno::ESRCH) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Whether any process (zombies included) is still in the group.
    pub fn is_alive(self) -> bool {
        // Signal 0 checks existence and permission without sending anything; EPERM
        // means a process exists that we may not signal, so the group is not empty.
        !matches!(killpg(self.pgid, None), Err(Errno::ESRCH))
    }
}

/// Sends SIGKILL to its process group when dropped, unless [`disarm`](Self::disarm)ed.
///
/// Hold one beside every `Child` you spawn with [`spawn_in_group`]: dropping the
/// future that owns it (a timeout, `select!` losing, a task aborted) then kills the
/// whole group instead of leaking it. `Child::kill_on_drop` alone would reach only the
/// leader.
#[derive(Debug)]
pub struct GroupKillGuard {
    group: Option<ProcessGroup>,
}

impl GroupKillGuard {
    /// A guard for `group`.
    pub fn new(group: ProcessGroup) -> Self {
        Self { group: Some(group) }
    }

    /// The guarded group, unless disarmed.
    pub fn group(&self) -> Option<ProcessGroup> {
        self.group
    }

    /// Stops guarding: the group will not be killed on drop (it was already stopped).
    pub fn disarm(&mut self) {
        self.group = None;
    }
}

impl Drop for GroupKillGuard {
    fn drop(&mut self) {
        if let Some(group) = self.group.take() {
            match group.signal(Signal::SIGKILL) {
                Ok(true) => tracing::debug!(pgid = group.id(), "killed process group on drop"),
                Ok(false) => {}
                Err(e) => {
                    tracing::warn!(pgid = group.id(), error = %e, "cannot kill process group")
                }
            }
        }
    }
}

/// Spawns `cmd` as the leader of a new process group, with `kill_on_drop` set, and
/// returns it with a guard that kills the whole group on drop.
pub fn spawn_in_group(
    cmd: &mut Command,
    program: &str,
) -> Result<(Child, GroupKillGuard), ProcessError> {
    cmd.process_group(0).kill_on_drop(true);
    let child = cmd
        .spawn()
        .map_err(|source| ProcessError::Spawn { program: program.to_owned(), source })?;
    let group = ProcessGroup::of_child(&child)
        .ok_or(ProcessError::NoPid { program: program.to_owned() })?;
    Ok((child, GroupKillGuard::new(group)))
}

/// Like [`spawn_in_group`], and on Linux the child is also tied to our life: it
/// gets SIGKILL when we die, even by `kill -9` (`PR_SET_PDEATHSIG`). For handlers:
/// a handler that outlives its `serve` would run beside the restarted one. Only
/// the leader is tied (the kernel has no group-wide form); the rest of an orphaned
/// group is ended by [`end_orphaned_group`] on the next run, from the group id and
/// leader start time recorded with [`ProcessGroup::start_time`].
///
/// The signal fires when the *thread* that forked exits; tokio's worker threads
/// live as long as the runtime, so spawn from async code, not from a blocking pool.
pub fn spawn_in_group_tied_to_us(
    cmd: &mut Command,
    program: &str,
) -> Result<(Child, GroupKillGuard), ProcessError> {
    #[cfg(target_os = "linux")]
    {
        let parent = nix::unistd::getpid();
        // SAFETY: the closure runs in the forked child before exec and calls only
        // async-signal-safe functions (prctl, getppid); it allocates nothing.
        #[allow(unsafe_code)]
        unsafe {
            cmd.pre_exec(move || {
                nix::sys::prctl::set_pdeathsig(Signal::SIGKILL)?;
                // We may have died between fork and prctl: then nobody will signal.
                if nix::unistd::getppid() != parent {
                    return Err(std::io::Error::from_raw_os_error(nix::libc::ESRCH));
                }
                Ok(())
            });
        }
    }
    spawn_in_group(cmd, program)
}

impl ProcessGroup {
    /// The start time (clock ticks since boot, /proc/PID/stat field 22) of the
    /// group's leader, to recognise this group later despite PID reuse. `None`
    /// where /proc is unavailable or the leader is gone.
    pub fn start_time(self) -> Option<u64> {
        proc_start_time(self.id())
    }
}

fn proc_start_time(pid: i32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name (which may hold spaces and parentheses).
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.split_whitespace().nth(19)?.parse().ok()
}

/// End what is left of a handler group recorded by an earlier run of this home
/// (killed with -9 while the handler ran), before its message runs again.
///
/// Safe against PID reuse: a live process whose PID is `pgid` but whose start
/// time differs from `leader_start` leads some other group and is left alone.
/// With the leader gone, Linux does not reuse its PID while members of the group
/// live, so any member still there is ours. Returns whether a signal was sent.
pub fn end_orphaned_group(pgid: i32, leader_start: Option<u64>) -> bool {
    if pgid <= 1 {
        return false;
    }
    if let Some(now) = proc_start_time(pgid) {
        if leader_start != Some(now) {
            return false;
        }
    }
    let group = ProcessGroup { pgid: Pid::from_raw(pgid) };
    match group.signal(Signal::SIGKILL) {
        Ok(sent) => {
            if sent {
                tracing::info!(pgid, "ended an orphaned handler group of an earlier run");
            }
            sent
        }
        Err(e) => {
            tracing::warn!(pgid, error = %e, "cannot end an orphaned handler group");
            false
        }
    }
}

/// Stops a child's whole process group and reaps the leader: SIGTERM to the group,
/// up to `grace` for the leader to exit and the group to empty, then SIGKILL to
/// whatever is left. Returns the leader's exit status.
///
/// Works whether or not the leader has already exited (stragglers are still signalled).
/// Disarms `guard`: the group has been dealt with.
pub async fn terminate(
    child: &mut Child,
    guard: &mut GroupKillGuard,
    grace: Duration,
) -> Result<ExitStatus, ProcessError> {
    let Some(group) = guard.group() else {
        return child.wait().await.map_err(ProcessError::Wait);
    };
    if let Err(e) = group.signal(Signal::SIGTERM) {
        tracing::warn!(pgid = group.id(), error = %e, "cannot send SIGTERM to process group");
    }
    let deadline = Instant::now() + grace;
    let mut status = None;
    loop {
        if status.is_none() {
            status = child.try_wait().map_err(ProcessError::Wait)?;
        }
        // Grandchildren we cannot reap may linger as zombies until init collects
        // them; they hold the group "alive" but are harmless, so the leader's exit
        // plus the deadline bound this loop either way.
        if status.is_some() && !group.is_alive() {
            break;
        }
        if Instant::now() >= deadline {
            if group.signal(Signal::SIGKILL).unwrap_or(false) {
                tracing::debug!(pgid = group.id(), "process group outlived SIGTERM; sent SIGKILL");
            }
            break;
        }
        tokio::time::sleep(GROUP_POLL_INTERVAL).await;
    }
    guard.disarm();
    match status {
        Some(status) => Ok(status),
        None => child.wait().await.map_err(ProcessError::Wait),
    }
}

/// Waits for SIGINT (Ctrl-C) or SIGTERM (`kill`, `room stop`) and returns its
/// number, so a foreground command can stop its children cleanly and then exit
/// with 128+n like a shell (uv's `child.rs` does the same dance). Its children sit
/// in their own process groups, so a terminal's Ctrl-C reaches only us: we decide
/// how they stop.
pub async fn shutdown_signal() -> Result<i32, ProcessError> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut int = signal(SignalKind::interrupt()).map_err(ProcessError::Signal)?;
    let mut term = signal(SignalKind::terminate()).map_err(ProcessError::Signal)?;
    let number = tokio::select! {
        _ = int.recv() => Signal::SIGINT as i32,
        _ = term.recv() => Signal::SIGTERM as i32,
    };
    tracing::info!(signal = number, "shutdown requested");
    Ok(number)
}

/// Whether `path` is a regular file with an execute bit.
pub fn is_executable_file(path: &std::path::Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// What an empty entry of a `PATH` value (`a::b`, a leading or trailing `:`)
/// stands for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EmptyPathEntry {
    /// The current directory, as for `sh` and `execvp`.
    CurrentDir,
    /// Nothing: never pick a program out of wherever we happen to run.
    Skip,
}

/// The first executable regular file named `name` along `path` (a `PATH`
/// value), directories and non-executables skipped.
pub fn find_on_path(
    path: &std::ffi::OsStr,
    name: &str,
    empty: EmptyPathEntry,
) -> Option<std::path::PathBuf> {
    std::env::split_paths(path).find_map(|dir| {
        let dir = match (dir.as_os_str().is_empty(), empty) {
            (false, _) => dir,
            (true, EmptyPathEntry::CurrentDir) => std::path::PathBuf::from("."),
            (true, EmptyPathEntry::Skip) => return None,
        };
        let candidate = dir.join(name);
        is_executable_file(&candidate).then_some(candidate)
    })
}

/// The exit code a shell would report: the code itself, or 128+n for signal n.
/// `None` only for a status that is neither (not seen on Unix).
pub fn shell_exit_code(status: ExitStatus) -> Option<i32> {
    use std::os::unix::process::ExitStatusExt;
    status.code().or_else(|| status.signal().map(|n| 128 + n))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn signal_maps_to_128_plus_n() {
        let mut cmd = Command::new("sh");
        cmd.args(["-c", "kill -TERM $$"]);
        let (mut child, mut guard) = spawn_in_group(&mut cmd, "sh").unwrap();
        let status = child.wait().await.unwrap();
        guard.disarm();
        assert_eq!(shell_exit_code(status), Some(143));
    }

    #[tokio::test]
    async fn exit_code_passes_through_terminate() {
        let mut cmd = Command::new("sh");
        cmd.args(["-c", "exit 7"]);
        let (mut child, mut guard) = spawn_in_group(&mut cmd, "sh").unwrap();
        let waited = child.wait().await.unwrap();
        // Terminating after the leader exited (to sweep stragglers) keeps its status.
        let status = terminate(&mut child, &mut guard, Duration::from_secs(5)).await.unwrap();
        assert_eq!(status, waited);
        assert_eq!(shell_exit_code(status), Some(7));
        assert!(guard.group().is_none());
    }

    #[tokio::test]
    async fn terminate_stops_a_sleeping_group() {
        let mut cmd = Command::new("sh");
        cmd.args(["-c", "sleep 600 & sleep 600; wait"]);
        let (mut child, mut guard) = spawn_in_group(&mut cmd, "sh").unwrap();
        let group = guard.group().unwrap();
        assert!(group.is_alive());
        let status = terminate(&mut child, &mut guard, Duration::from_secs(5)).await.unwrap();
        assert!(shell_exit_code(status).unwrap() > 128, "{status:?}");
    }

    #[tokio::test]
    async fn an_orphaned_group_is_ended_but_a_reused_pid_is_not() {
        let mut cmd = Command::new("sh");
        cmd.args(["-c", "sleep 600 & sleep 600; wait"]);
        let (mut child, mut guard) = spawn_in_group_tied_to_us(&mut cmd, "sh").unwrap();
        let group = guard.group().unwrap();
        let start = group.start_time();
        assert!(start.is_some());
        let other_start = start.map(|s| s + 1);
        assert!(!end_orphaned_group(group.id(), other_start), "another leader's start time");
        assert!(group.is_alive());
        assert!(end_orphaned_group(group.id(), start));
        let status = child.wait().await.unwrap();
        assert_eq!(shell_exit_code(status), Some(137));
        guard.disarm();
    }

    #[tokio::test]
    async fn missing_program_is_a_spawn_error() {
        let mut cmd = Command::new("/nonexistent/agentroom-test-program");
        let err = spawn_in_group(&mut cmd, "/nonexistent/agentroom-test-program").unwrap_err();
        assert!(matches!(err, ProcessError::Spawn { .. }), "{err}");
    }
}
