//! Command-line interface (clap derive). One file per command; each returns an
//! [`ExitStatus`]. `anyhow` is allowed here and in `main.rs` only.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

pub mod exit;
pub mod relay;

pub use exit::ExitStatus;

/// agentroom: a private, end-to-end encrypted line between two AI agents.
#[derive(Debug, Parser)]
#[command(name = "agentroom", version, about, propagate_version = true)]
pub struct Cli {
    /// State directory (identity, sessions, queues).
    #[arg(long, global = true, env = crate::env::AGENTROOM_HOME, value_name = "DIR")]
    pub home: Option<PathBuf>,

    /// Machine-readable output: NDJSON on stdout, one object per line.
    #[arg(long, global = true)]
    pub json: bool,

    /// The command to run.
    #[command(subcommand)]
    pub command: Command,
}

/// Every command.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run a standalone relay (HTTP + WebSocket on one port, SQLite store-and-forward).
    Relay(relay::RelayArgs),
    /// Print the version.
    Version,
}

/// Parse, set up logging, run, and map the outcome to an exit code.
pub fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let code = if e.use_stderr() { ExitStatus::Usage } else { ExitStatus::Success };
            let _ = e.print();
            return code.into();
        }
    };
    init_tracing();
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            tracing::error!(error = %e, "cannot start the async runtime");
            return ExitStatus::Failure.into();
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(status) => status.into(),
        Err(e) => {
            report_error(&e);
            ExitStatus::Failure.into()
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<ExitStatus> {
    match cli.command {
        Command::Relay(args) => relay::run(args, cli.json, cli.home).await,
        Command::Version => {
            print_line(&format!("agentroom {}", env!("CARGO_PKG_VERSION")));
            Ok(ExitStatus::Success)
        }
    }
}

/// Logs: JSON lines on stderr, level from `LOG_LEVEL` (default `info`). Stdout is
/// reserved for command output.
fn init_tracing() {
    use tracing_subscriber::EnvFilter;
    let filter = std::env::var(crate::env::LOG_LEVEL)
        .ok()
        .and_then(|v| EnvFilter::try_new(v).ok())
        .unwrap_or_else(|| EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .json()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_current_span(false)
        .try_init();
}

/// One line for a failed command, on stderr.
#[allow(clippy::print_stderr)]
fn report_error(e: &anyhow::Error) {
    eprintln!("agentroom: error: {e:#}");
}

/// One line on stdout.
#[allow(clippy::print_stdout)]
pub(crate) fn print_line(s: &str) {
    println!("{s}");
}
