//! The cloudflared quick tunnel: one child process at a time, in its own process
//! group, restarted with backoff when it exits. Each run gets a new
//! `*.trycloudflare.com` URL, announced on the watch channel and logged.

use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicI32, Ordering};
use std::time::Duration;

use tokio::process::{Child, Command};
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::AbortOnDropHandle;
use url::Url;

use super::banner::BannerParser;
use super::lines::{LINE_QUEUE, forward_lines};
use super::{Backoff, TunnelError, TunnelState};
use crate::process::{self, GroupKillGuard, ProcessError};

/// Output lines kept for an error message when cloudflared fails before its URL.
const KEPT_LINES: usize = 8;
/// After the child exits, how long its last lines may take to arrive.
const EXIT_DRAIN: Duration = Duration::from_millis(500);

/// What a cloudflared run needs.
#[derive(Debug, Clone)]
pub(crate) struct Launch {
    pub(crate) bin: PathBuf,
    pub(crate) local_port: u16,
    pub(crate) url_timeout: Duration,
    pub(crate) stop_grace: Duration,
}

/// One running cloudflared.
pub(crate) struct Running {
    child: Child,
    guard: GroupKillGuard,
    lines: mpsc::Receiver<String>,
    recent: VecDeque<String>,
    _readers: Vec<AbortOnDropHandle<()>>,
}

impl Running {
    pub(crate) fn pgid(&self) -> i32 {
        self.guard.group().map_or(0, |g| g.id())
    }

    fn remember(&mut self, line: String) {
        if self.recent.len() == KEPT_LINES {
            self.recent.pop_front();
        }
        self.recent.push_back(line);
    }

    fn last_output(&self) -> String {
        self.recent.iter().map(String::as_str).collect::<Vec<_>>().join("\n")
    }

    /// SIGTERM the group, grace, SIGKILL, reap.
    pub(crate) async fn stop(mut self, grace: Duration) {
        match process::terminate(&mut self.child, &mut self.guard, grace).await {
            Ok(status) => tracing::debug!(?status, "cloudflared stopped"),
            Err(e) => tracing::warn!(error = %e, "cannot reap cloudflared"),
        }
    }
}

/// Starts cloudflared (`tunnel --url http://127.0.0.1:P --no-autoupdate`).
pub(crate) fn launch(opts: &Launch) -> Result<Running, TunnelError> {
    let mut cmd = Command::new(&opts.bin);
    cmd.arg("tunnel")
        .arg("--url")
        .arg(format!("http://127.0.0.1:{}", opts.local_port))
        .arg("--no-autoupdate")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let program = opts.bin.display().to_string();
    // Tied to us: a `kill -9` of the room takes cloudflared with it instead of
    // leaving a public tunnel to a dead port (cloudflared runs as one process).
    let (mut child, guard) = process::spawn_in_group_tied_to_us(&mut cmd, &program)?;
    let (tx, lines) = mpsc::channel(LINE_QUEUE);
    let mut readers = Vec::with_capacity(2);
    if let Some(out) = child.stdout.take() {
        readers.push(AbortOnDropHandle::new(tokio::spawn(forward_lines(
            out,
            "stdout",
            tx.clone(),
        ))));
    }
    if let Some(err) = child.stderr.take() {
        readers.push(AbortOnDropHandle::new(tokio::spawn(forward_lines(err, "stderr", tx))));
    }
    let running = Running { child, guard, lines, recent: VecDeque::new(), _readers: readers };
    tracing::debug!(pgid = running.pgid(), bin = %program, "cloudflared started");
    Ok(running)
}

/// Waits for the URL in the child's output. On failure the child is stopped.
pub(crate) async fn wait_url(
    mut running: Running,
    opts: &Launch,
    cancel: &CancellationToken,
) -> Result<(Running, Url), TunnelError> {
    let deadline = Instant::now() + opts.url_timeout;
    let mut parser = BannerParser::default();
    let mut lines_open = true;
    let failure = loop {
        tokio::select! {
            () = cancel.cancelled() => break TunnelError::Cancelled,
            () = tokio::time::sleep_until(deadline) => {
                break TunnelError::NoUrl {
                    timeout: opts.url_timeout,
                    last_output: running.last_output(),
                };
            }
            line = running.lines.recv(), if lines_open => match line {
                Some(line) => {
                    if let Some(url) = parser.feed(&line) {
                        return Ok((running, url));
                    }
                    running.remember(line);
                }
                // Both pipes closed; the child may still run: the other branches decide.
                None => lines_open = false,
            },
            status = running.child.wait() => {
                let status = status.map_err(ProcessError::Wait)?;
                // Its last words (often the reason) may still be in the pipe.
                let drain_until = Instant::now() + EXIT_DRAIN;
                while let Ok(Some(line)) = tokio::time::timeout_at(drain_until, running.lines.recv()).await {
                    running.remember(line);
                }
                break exited(&running, status);
            }
        }
    };
    running.stop(opts.stop_grace).await;
    Err(failure)
}

fn exited(running: &Running, status: std::process::ExitStatus) -> TunnelError {
    TunnelError::ExitedBeforeUrl {
        exit_code: process::shell_exit_code(status),
        last_output: running.last_output(),
    }
}

/// Watches the running child; restarts it with backoff when it exits, until
/// cancelled. Publishes every change on `state`.
pub(crate) async fn supervise(
    mut running: Running,
    opts: Launch,
    mut backoff: Backoff,
    state: watch::Sender<TunnelState>,
    pgid: Arc<AtomicI32>,
    cancel: CancellationToken,
) {
    let mut restarts: u32 = 0;
    loop {
        let up_since = Instant::now();
        tokio::select! {
            biased;
            () = cancel.cancelled() => {
                running.stop(opts.stop_grace).await;
                pgid.store(0, Ordering::Relaxed);
                state.send_replace(TunnelState::Stopped);
                return;
            }
            status = running.child.wait() => {
                let code = status.ok().and_then(process::shell_exit_code);
                tracing::warn!(exit_code = code, "cloudflared exited; restarting");
                // Stragglers of its group go too.
                running.stop(opts.stop_grace).await;
                pgid.store(0, Ordering::Relaxed);
            }
        }
        if up_since.elapsed() >= backoff.stable_after {
            backoff.reset();
        }
        // Restart until one run prints a URL, or we are cancelled.
        running = loop {
            if !super::wait_before_restart(&mut backoff, &mut restarts, &state, &cancel).await {
                return;
            }
            let attempt = match launch(&opts) {
                Ok(r) => {
                    pgid.store(r.pgid(), Ordering::Relaxed);
                    wait_url(r, &opts, &cancel).await
                }
                Err(e) => Err(e),
            };
            match attempt {
                Ok((r, url)) => {
                    tracing::info!(%url, restarts, "tunnel restarted with a new public URL");
                    state.send_replace(TunnelState::Up { url, restarts });
                    break r;
                }
                Err(TunnelError::Cancelled) => {
                    pgid.store(0, Ordering::Relaxed);
                    state.send_replace(TunnelState::Stopped);
                    return;
                }
                Err(e) => {
                    pgid.store(0, Ordering::Relaxed);
                    tracing::warn!(error = %e, restarts, "cloudflared restart failed");
                }
            }
        };
    }
}
