//! Process exit statuses, documented in README.md ("Exit codes"). The classes match
//! the TypeScript agentroom's, so scripts written for it keep working.

use std::process::ExitCode;

/// What a command ended with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitStatus {
    /// 0: done.
    Success,
    /// 1: a failure not covered below (bad invite, handler failure, I/O error, ...).
    Failure,
    /// 2: usage: bad arguments or flags (clap's own code for these too).
    Usage,
    /// 3: network: relay unreachable, connection lost, timed out waiting.
    Network,
    /// 4: no session: no identity yet (run `agentroom setup`), or unknown peer.
    NoSession,
    /// 128+n: stopped by signal n (SIGINT → 130, SIGTERM → 143), like a shell.
    Signal(i32),
}

impl ExitStatus {
    /// The numeric code.
    pub fn code(self) -> u8 {
        match self {
            ExitStatus::Success => 0,
            ExitStatus::Failure => 1,
            ExitStatus::Usage => 2,
            ExitStatus::Network => 3,
            ExitStatus::NoSession => 4,
            ExitStatus::Signal(n) => u8::try_from(128 + n.clamp(0, 127)).unwrap_or(255),
        }
    }
}

impl From<ExitStatus> for ExitCode {
    fn from(s: ExitStatus) -> Self {
        ExitCode::from(s.code())
    }
}

/// An error that exits with a given status rather than its class's (the
/// TypeScript agentroom's code where ours would differ, e.g. `whoami` without an
/// identity exits 1). Prints exactly as the wrapped error.
#[derive(Debug)]
pub struct WithStatus {
    /// The exit status.
    pub status: ExitStatus,
    /// The error, printed as is.
    pub error: anyhow::Error,
}

impl std::fmt::Display for WithStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:#}", self.error)
    }
}

impl std::error::Error for WithStatus {}
