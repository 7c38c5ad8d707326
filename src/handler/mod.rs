//! One message through the user's `--on-message` command.
//!
//! The contract (README "Handler contract"), same as the TypeScript agentroom's:
//! - the command runs as `sh -c CMD` (a plain `prog args` line runs directly, as the
//!   shell would run it: [`direct`]), in its own process group, with the message text
//!   on stdin (then closed) and a scrubbed environment ([`env`]): an allowlist of
//!   inherited variables, the names given with `--pass-env`, and the request's
//!   `AGENTROOM_*` variables; relay and tunnel secrets never reach it;
//! - exit 0 with non-blank stdout → that stdout, trimmed, is the reply
//!   ([`HandlerOutcome::Reply`]); exit 0 with blank stdout → no reply;
//! - any other exit, or death by a signal → [`HandlerOutcome::Failed`] with the last
//!   [`STDERR_TAIL_BYTES`] of stderr; every stderr line is also logged at debug;
//! - past its timeout the *whole group* gets SIGTERM, then SIGKILL after
//!   [`KILL_GRACE`] → [`HandlerOutcome::TimedOut`].
//!
//! Stdout is capped at [`MAX_STDOUT_BYTES`] (more is drained and dropped, with a
//! warning): a reply must fit in one message anyway, and a runaway handler must not
//! exhaust our memory. When the leader exits, the group does not outlive it:
//! stragglers get [`DRAIN_GRACE`] to close the pipes, then are terminated, so a
//! background grandchild holding stdout open can neither hang us nor be orphaned.

mod direct;
pub mod env;
pub mod guard;
mod output;

use std::os::unix::process::ExitStatusExt;
use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio::process::Command;
use tokio_util::task::AbortOnDropHandle;

use crate::process::{self, ProcessError};
use output::Capture;

/// Most stdout bytes kept from one handler run (1 MiB). Replies are smaller (a
/// text is at most 144 KiB); the cap only stops a runaway handler. Stdin is not
/// capped: it carries one received message.
pub const MAX_STDOUT_BYTES: usize = 1024 * 1024;
/// Stderr bytes kept for events and errors: enough for a stack trace's last lines.
pub const STDERR_TAIL_BYTES: usize = 2 * 1024;
/// Between SIGTERM and SIGKILL: long enough for a well-behaved program to flush
/// and exit, short enough that a stuck one costs little.
pub const KILL_GRACE: Duration = Duration::from_secs(2);
/// After the leader exits, how long its pipes may stay open (held by a background
/// grandchild) before the rest of the group is terminated.
pub const DRAIN_GRACE: Duration = Duration::from_secs(1);

/// The user's handler: a shell command line and how long one run may take.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HandlerCommand {
    /// Passed to `sh -c` as is.
    pub command: String,
    /// Run time before the group is killed; `None`: no limit (`--handler-timeout 0`).
    pub timeout: Option<Duration>,
    /// Inherited variables let through beyond the allowlist.
    pub pass_env: env::PassEnv,
}

impl HandlerCommand {
    /// A command with a timeout (`Duration::ZERO`: none) and no extra variables.
    pub fn new(command: impl Into<String>, timeout: Duration) -> Self {
        Self {
            command: command.into(),
            timeout: (!timeout.is_zero()).then_some(timeout),
            pass_env: env::PassEnv::default(),
        }
    }
}

/// One message to handle.
#[derive(Clone, PartialEq, Eq)]
pub struct HandlerRequest {
    /// The decrypted message text, written to stdin.
    pub text: String,
    /// The per-message `AGENTROOM_*` variables (added to the scrubbed environment).
    pub env: Vec<(String, String)>,
}

impl std::fmt::Debug for HandlerRequest {
    // The text is a payload: never in logs.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HandlerRequest")
            .field("text_len", &self.text.len())
            .field("env", &self.env)
            .finish()
    }
}

/// `program args` with the handler's pipes and scrubbed environment (`PATH`
/// there is what a program name is looked up in, as `sh` would).
fn handler_command(
    program: &std::ffi::OsStr,
    args: &[&str],
    env: &[(std::ffi::OsString, std::ffi::OsString)],
) -> Command {
    let mut command = Command::new(program);
    command
        .args(args)
        .env_clear()
        .envs(env.iter().map(|(k, v)| (k, v)))
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    command
}

/// Start `program args` in its own group, tied to our life: through the
/// [`guard`] when it runs (with `posix_spawn`, no fork), else forked with the
/// parent-death signal.
fn spawn_handler(
    program: &str,
    args: &[&str],
    env: &[(std::ffi::OsString, std::ffi::OsString)],
) -> Result<(tokio::process::Child, process::GroupKillGuard, Tie), ProcessError> {
    if guard::available() {
        let path = guard::resolve_program(program, guard::path_of(env));
        let mut command = match &path {
            Some(path) => handler_command(path.as_os_str(), args, env),
            None => handler_command(program.as_ref(), args, env),
        };
        let (child, group) = process::spawn_in_group(&mut command, program)?;
        return Ok((child, group, Tie::Guard));
    }
    let mut command = handler_command(program.as_ref(), args, env);
    let (child, group) = process::spawn_in_group_tied_to_us(&mut command, program)?;
    Ok((child, group, Tie::ParentDeathSignal))
}

/// What ends a handler's group if we die.
enum Tie {
    /// The [`guard`], once the group is registered with it.
    Guard,
    /// The leader's parent-death signal (Linux), set in the forked child.
    ParentDeathSignal,
}

/// How a run ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HandlerOutcome {
    /// Exit 0 and trimmed stdout non-empty: the reply text.
    Reply(String),
    /// Exit 0 and stdout empty or whitespace.
    NoReply,
    /// Nonzero exit or killed by a signal.
    Failed {
        /// The exit code, if it exited.
        exit_code: Option<i32>,
        /// The signal number, if a signal killed it.
        signal: Option<i32>,
        /// The last [`STDERR_TAIL_BYTES`] of stderr (valid UTF-8).
        stderr_tail: String,
    },
    /// Still running at the timeout; its group was killed.
    TimedOut {
        /// The last [`STDERR_TAIL_BYTES`] of stderr (valid UTF-8).
        stderr_tail: String,
    },
}

/// Why a handler could not be run at all (as opposed to running and failing).
#[derive(Debug, thiserror::Error)]
pub enum HandlerError {
    /// The command line is empty or only whitespace.
    #[error("the handler command is empty")]
    EmptyCommand,
    /// `sh` could not be started, or waiting on it failed.
    #[error(transparent)]
    Process(#[from] ProcessError),
}

/// Runs `cmd` once on `req`. See the module doc for the contract.
///
/// Cancel-safe: dropping the future kills the handler's whole process group.
pub async fn run(
    cmd: &HandlerCommand,
    req: HandlerRequest,
) -> Result<HandlerOutcome, HandlerError> {
    run_reporting_group(cmd, req, |_| {}).await
}

/// Where a running handler can be found again after a crash of its runner: its
/// process group id and the leader's start time (see
/// [`process::end_orphaned_group`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HandlerGroup {
    /// Process group id (= the leader's PID).
    pub pgid: i32,
    /// The leader's start time, when /proc tells it.
    pub leader_start: Option<u64>,
}

/// Like [`run`]; `started` learns the handler's group as soon as it runs, so the
/// caller can record it with the message (`serve` does, in state.db). The group
/// dies with us, however we die ([`guard`]).
pub async fn run_reporting_group(
    cmd: &HandlerCommand,
    req: HandlerRequest,
    started: impl FnOnce(HandlerGroup),
) -> Result<HandlerOutcome, HandlerError> {
    if cmd.command.trim().is_empty() {
        return Err(HandlerError::EmptyCommand);
    }
    let env = env::build(std::env::vars_os(), &cmd.pass_env, &req.env);
    let spawned = match direct::argv(&cmd.command) {
        // Not found, not executable, a script without `#!` (which the shell
        // runs itself): whatever stops the direct start, `sh` does what it
        // always did, and says so in its own words.
        Some(argv) => spawn_handler(argv[0], &argv[1..], &env).ok(),
        None => None,
    };
    let (mut child, mut kill_guard, tie) = match spawned {
        Some(spawned) => spawned,
        None => spawn_handler("sh", &["-c", &cmd.command], &env)?,
    };
    let pgid = kill_guard.group().map(|g| g.id());
    let group =
        kill_guard.group().map(|g| HandlerGroup { pgid: g.id(), leader_start: g.start_time() });
    // Dropped when this returns: by then the group is ended (`terminate`, or
    // the kill guard on an early return), so the guard can forget it.
    let _registration = match (&group, tie) {
        (Some(g), Tie::Guard) => {
            let registration = guard::register(g.pgid, g.leader_start);
            if registration.is_none() {
                tracing::warn!(pgid, "the handler guard is gone: this run is not tied to us");
            }
            registration
        }
        _ => None,
    };
    if let Some(group) = group {
        started(group);
    }
    tracing::debug!(pgid, timeout_ms = cmd.timeout.map(|t| t.as_millis()), "handler started");

    let stdout = Capture::default();
    let stderr = Capture::default();
    let mut readers = Vec::with_capacity(2);
    if let Some(pipe) = child.stdout.take() {
        readers.push(spawn(output::read_head(pipe, MAX_STDOUT_BYTES, stdout.clone())));
    }
    if let Some(pipe) = child.stderr.take() {
        readers.push(spawn(output::read_tail_logging(pipe, STDERR_TAIL_BYTES, stderr.clone())));
    }
    // The writer runs on its own so a handler that never reads stdin cannot block
    // us; a closed pipe (EPIPE) just means it did not want the rest.
    let _writer = child.stdin.take().map(|mut pipe| {
        let text = req.text;
        spawn(async move {
            if let Err(e) = pipe.write_all(text.as_bytes()).await {
                tracing::debug!(error = %e, "handler did not read all of stdin");
            }
            let _ = pipe.shutdown().await;
        })
    });

    let exited = match cmd.timeout {
        Some(limit) => tokio::time::timeout(limit, child.wait()).await,
        None => Ok(child.wait().await),
    };
    let timed_out = exited.is_err();
    let status = match exited {
        Ok(status) => {
            let status = status.map_err(ProcessError::Wait)?;
            // Give the pipes a moment to drain (they close when the last holder
            // exits), then stop whatever is left of the group either way.
            let _ = tokio::time::timeout(DRAIN_GRACE, join_all(&mut readers)).await;
            process::terminate(&mut child, &mut kill_guard, KILL_GRACE).await?;
            status
        }
        Err(_) => {
            tracing::info!(pgid, "handler timed out; stopping its process group");
            process::terminate(&mut child, &mut kill_guard, KILL_GRACE).await?
        }
    };
    // Every process of the group is gone now, so the pipes are at EOF unless a
    // process escaped the group (setsid) with them; bound that wait too.
    let _ = tokio::time::timeout(DRAIN_GRACE, join_all(&mut readers)).await;
    drop(readers);

    let stderr_tail = output::tail_text(&stderr);
    if timed_out {
        return Ok(HandlerOutcome::TimedOut { stderr_tail });
    }
    if status.success() {
        let (text, dropped) = stdout.snapshot();
        if dropped > 0 {
            tracing::warn!(
                kept = MAX_STDOUT_BYTES,
                dropped,
                "handler stdout over the cap; the reply is truncated"
            );
        }
        let reply = text.trim();
        tracing::debug!(pgid, reply_len = reply.len(), "handler exited 0");
        Ok(if reply.is_empty() {
            HandlerOutcome::NoReply
        } else {
            HandlerOutcome::Reply(reply.to_owned())
        })
    } else {
        tracing::debug!(pgid, code = ?status.code(), signal = ?status.signal(), "handler failed");
        Ok(HandlerOutcome::Failed {
            exit_code: status.code(),
            signal: status.signal(),
            stderr_tail,
        })
    }
}

fn spawn<F>(f: F) -> AbortOnDropHandle<()>
where
    F: Future<Output = ()> + Send + 'static,
{
    AbortOnDropHandle::new(tokio::spawn(f))
}

/// Waits for every reader; finished handles are skipped on a second call.
async fn join_all(readers: &mut [AbortOnDropHandle<()>]) {
    for r in readers.iter_mut() {
        if !r.is_finished() {
            let _ = r.await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_debug_hides_the_text() {
        let req = HandlerRequest { text: "secret plans".into(), env: vec![] };
        assert!(!format!("{req:?}").contains("secret"));
    }

    #[tokio::test]
    async fn empty_command_is_refused() {
        let cmd = HandlerCommand::new("  ", Duration::from_secs(1));
        let req = HandlerRequest { text: String::new(), env: vec![] };
        assert!(matches!(run(&cmd, req).await, Err(HandlerError::EmptyCommand)));
    }
}
