//! Command-line interface (clap derive). One file per command; each returns an
//! [`ExitStatus`]. `anyhow` is allowed here and in `main.rs` only.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

pub mod compat;
pub mod completions;
pub mod daemon;
pub mod duration;
pub mod exit;
pub mod history;
pub mod invite;
pub mod listen;
pub mod mcp;
pub mod peers;
pub mod printer;
pub mod relay;
pub mod room;
pub mod send;
pub mod serve;
pub mod service;
pub mod setup;
pub mod tunnel_args;
pub mod ui;

pub use exit::ExitStatus;
pub use printer::Printer;

use crate::client::{ClientError, ErrorClass};

/// agentroom: a private, end-to-end encrypted line between two AI agents.
///
/// Exit codes: 0 ok, 1 failure, 2 usage, 3 network (relay unreachable, timed
/// out), 4 no session (no identity yet, unknown peer), 128+n stopped by signal n.
#[derive(Debug, Parser)]
#[command(name = "agentroom", version, about, long_about)]
pub struct Cli {
    /// State directory (identity, sessions, queues). Default: ~/.config/agentroom.
    #[arg(long, global = true, env = crate::env::AGENTROOM_HOME, value_name = "DIR")]
    pub home: Option<PathBuf>,

    /// Extra CA certificates (PEM) to trust for wss:// relays, beside the bundled and
    /// OS roots: a private CA, or a self-signed relay's own certificate.
    #[arg(long, global = true, env = crate::env::AGENTROOM_CA_FILE, value_name = "FILE")]
    pub ca_file: Option<PathBuf>,

    /// Machine-readable output: NDJSON on stdout, one object per line.
    #[arg(long, global = true)]
    pub json: bool,

    /// The command to run.
    #[command(subcommand)]
    pub command: Command,
}

/// Every command.
#[derive(Debug, Subcommand)]
// Each command's arguments are built only when that command runs (or its help
// is shown): building all of them cost every one-shot command about 0.1 ms.
// So the argument structs carry plain comments, not doc comments: built late,
// a struct's doc comment would replace the command's about line.
#[command(defer = true)]
pub enum Command {
    /// Create this agent's identity (once; idempotent) and print its fingerprint.
    #[command(visible_alias = "init")]
    Setup(setup::SetupArgs),
    /// Print this agent's public key and fingerprint.
    #[command(after_help = "Examples:
  agentroom whoami
  ME=$(agentroom whoami --json)")]
    Whoami,
    /// Create, list, revoke or accept single-use invites.
    #[command(
        subcommand,
        after_help = "Examples:
  agentroom invite create --relay wss://relay.example.com/ws --label bob
  agentroom invite accept 'ar1.AT…'
  agentroom invite list"
    )]
    Invite(invite::InviteCommand),
    /// List paired peers; rename, verify or remove one.
    Peers(peers::PeersArgs),
    /// Send one message to a peer; returns once the relay holds it.
    Send(send::SendArgs),
    /// Print messages as they arrive.
    Listen(listen::ListenArgs),
    /// Show the conversation history (sent and received messages).
    History(history::HistoryArgs),
    /// Answer every message with a handler command (stdin → stdout).
    Serve(serve::ServeArgs),
    /// Serve the agentroom tools to an MCP host (Claude Code, Cursor, ...) on stdio.
    #[command(after_help = "Examples:
  agentroom --home ~/.config/agentroom-bot mcp
  claude mcp add agentroom -- agentroom mcp")]
    Mcp,
    /// Run a standalone relay (HTTP + WebSocket on one port, SQLite store-and-forward).
    Relay(relay::RelayArgs),
    /// Host a room: relay + tunnel + invite + handler in one command; status; stop.
    #[command(
        subcommand,
        after_help = "Examples:
  agentroom room open --on-message ./scripts/handlers/echo.sh
  agentroom room status
  agentroom room stop"
    )]
    Room(room::RoomCommand),
    /// Same as `room open`.
    Host(room::OpenArgs),
    /// Run this home's daemon at login: a systemd user unit or a launchd agent.
    #[command(subcommand)]
    Service(service::ServiceCommand),
    /// Own this home: relay links, inbox, outbox and the local API on `<home>/agentroom.sock`.
    Daemon(daemon::DaemonArgs),
    /// Show the home's daemon: pid, socket, relay links, queue counts.
    Status,
    /// Open the local web view (starts the daemon with loopback HTTP if needed).
    Ui(ui::UiArgs),
    /// Print the version.
    #[command(after_help = "Examples:
  agentroom version
  agentroom version --json")]
    Version,
    /// Print a shell completion script (bash, zsh, fish, powershell, elvish).
    #[command(after_help = "Examples:
  agentroom completions bash > ~/.local/share/bash-completion/completions/agentroom
  agentroom completions zsh > \"${fpath[1]}/_agentroom\"
  agentroom completions fish > ~/.config/fish/completions/agentroom.fish")]
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },
    /// Internal: ends a runner's handler groups when the runner dies (see
    /// `handler::guard`); started by `serve`, `room open` and the daemon.
    #[command(name = crate::handler::guard::SUBCOMMAND, hide = true)]
    HandlerGuard,
}

/// Parse, set up logging, run, and map the outcome to an exit code.
pub fn main() -> ExitCode {
    // This executable is the handler guard too (`__handler-guard`).
    crate::handler::guard::enable();
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let code = if e.use_stderr() { ExitStatus::Usage } else { ExitStatus::Success };
            let _ = e.print();
            if e.use_stderr() && json_in_argv(std::env::args_os()) {
                // clap could not parse the line, so `cli.json` is unknown: the
                // flag anywhere before `--` still asks for the NDJSON object.
                Printer::new(true).event("error", parse_error_fields(&e, code), || None);
            }
            return code.into();
        }
    };
    // Client commands talk to people on stdout; their logs default to warnings.
    // `serve` also shows what handlers write to stderr, line by line.
    let detached = match &cli.command {
        Command::Room(room::RoomCommand::Open(a)) | Command::Host(a) => a.detached_child,
        _ => false,
    };
    let default_level = match cli.command {
        Command::Relay(_) => "info",
        _ if detached => "info",
        Command::Serve(_) => "warn,agentroom::handler::stderr=debug",
        _ => "warn",
    };
    init_tracing(default_level);
    // A one-shot command does one thing at a time and is done: one thread
    // starts faster (no worker threads, no CPU-quota probing), and through a
    // running daemon it is mostly process start-up. The long-running ones keep
    // the worker pool.
    let mut builder = if cli.command.is_one_shot() {
        tokio::runtime::Builder::new_current_thread()
    } else {
        tokio::runtime::Builder::new_multi_thread()
    };
    let runtime = match builder.enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            tracing::error!(error = %e, "cannot start the async runtime");
            return ExitStatus::Failure.into();
        }
    };
    let json = cli.json;
    match runtime.block_on(run(cli)) {
        Ok(status) => status.into(),
        Err(e) => {
            report_error(&e);
            let status = status_for(&e);
            if json {
                // Scripts reading NDJSON see the failure too, as one object.
                Printer::new(true).event(
                    "error",
                    serde_json::json!({"code": status.code(), "message": format!("{e:#}")}),
                    || None,
                );
            }
            status.into()
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<ExitStatus> {
    let printer = Printer::new(cli.json);
    if let Some(ca) = &cli.ca_file {
        crate::client::tls::configure(Some(ca))?;
    }
    let home = cli.home;
    match cli.command {
        Command::Setup(args) => setup::run(home, args, printer),
        Command::Whoami => setup::whoami(home, printer),
        Command::Invite(cmd) => invite::run(home, cmd, printer).await,
        Command::Peers(args) => peers::run(home, args, printer).await,
        Command::Send(args) => send::run(home, args, printer).await,
        Command::Listen(args) => listen::run(home, args, printer).await,
        Command::History(args) => history::run(home, args, printer),
        Command::Serve(args) => serve::run(home, args, printer).await,
        Command::Relay(args) => relay::run(args, cli.json, home).await,
        Command::Room(cmd) => room::run(home, cmd, printer).await,
        Command::Host(args) => room::open(home, args, printer).await,
        Command::Service(cmd) => service::run(home, cmd, printer),
        Command::Mcp => mcp::run(home).await,
        Command::Completions { shell } => completions::run(shell),
        Command::HandlerGuard => {
            crate::handler::guard::run_guard();
            Ok(ExitStatus::Success)
        }
        Command::Daemon(args) => daemon::run(home, args, printer).await,
        Command::Status => daemon::status(home, printer).await,
        Command::Ui(args) => ui::run(home, args, printer).await,
        Command::Version => {
            printer.event(
                "version",
                serde_json::json!({"version": env!("CARGO_PKG_VERSION")}),
                || Some(format!("agentroom {}", env!("CARGO_PKG_VERSION"))),
            );
            Ok(ExitStatus::Success)
        }
    }
}

impl Command {
    /// Commands that make a few calls and exit (the rest run until stopped).
    fn is_one_shot(&self) -> bool {
        match self {
            Command::Setup(_)
            | Command::Whoami
            | Command::Invite(_)
            | Command::Peers(_)
            | Command::Send(_)
            | Command::History(_)
            | Command::Service(_)
            | Command::Completions { .. }
            | Command::HandlerGuard
            | Command::Status
            | Command::Version => true,
            Command::Listen(_)
            | Command::Serve(_)
            | Command::Relay(_)
            | Command::Room(_)
            | Command::Host(_)
            | Command::Mcp
            | Command::Daemon(_)
            | Command::Ui(_) => false,
        }
    }
}

/// Whether `--json` appears among the arguments (before a `--` that ends the options).
fn json_in_argv(args: impl IntoIterator<Item = std::ffi::OsString>) -> bool {
    args.into_iter().skip(1).take_while(|a| a != "--").any(|a| a == "--json")
}

/// The fields of the `error` object for one of clap's own parse errors: the
/// exit code, clap's error kind and its one-line message (no usage, no colour).
fn parse_error_fields(e: &clap::Error, code: ExitStatus) -> serde_json::Value {
    let rendered = e.render().to_string();
    let message = rendered
        .lines()
        .find(|l| !l.trim().is_empty())
        .map(|l| l.trim().trim_start_matches("error: ").to_owned())
        .unwrap_or_else(|| e.kind().to_string());
    let kind = format!("{:?}", e.kind());
    serde_json::json!({"code": code.code(), "message": message, "kind": kind_name(&kind)})
}

/// clap's `ErrorKind` name in snake case (`UnknownArgument` → `unknown_argument`).
fn kind_name(debug: &str) -> String {
    let mut out = String::with_capacity(debug.len() + 4);
    for (i, c) in debug.chars().enumerate() {
        if c.is_ascii_uppercase() {
            if i > 0 {
                out.push('_');
            }
            out.push(c.to_ascii_lowercase());
        } else {
            out.push(c);
        }
    }
    out
}

/// The exit status for a failed command: the class of the first client error in
/// the chain, else 1.
fn status_for(e: &anyhow::Error) -> ExitStatus {
    if let Some(w) = e.downcast_ref::<exit::WithStatus>() {
        return w.status;
    }
    for cause in e.chain() {
        if cause.downcast_ref::<crate::client::relay_url::RelayUrlError>().is_some() {
            return ExitStatus::Usage;
        }
        let class = if let Some(ce) = cause.downcast_ref::<ClientError>() {
            Some(ce.class())
        } else if let Some(ie) = cause.downcast_ref::<crate::client::identity::IdentityError>() {
            matches!(ie, crate::client::identity::IdentityError::Missing(_))
                .then_some(ErrorClass::NoSession)
        } else if let Some(de) = cause.downcast_ref::<crate::daemon::DaemonError>() {
            Some(de.class())
        } else if cause.downcast_ref::<crate::client::connection::LinkError>().is_some() {
            Some(ErrorClass::Network)
        } else {
            None
        };
        if let Some(class) = class {
            return match class {
                ErrorClass::Failure => ExitStatus::Failure,
                ErrorClass::Usage => ExitStatus::Usage,
                ErrorClass::Network => ExitStatus::Network,
                ErrorClass::NoSession => ExitStatus::NoSession,
            };
        }
    }
    ExitStatus::Failure
}

/// A cancellation token fired by SIGINT or SIGTERM; the signal number is kept
/// so the command can exit 128+n like a shell.
pub(crate) fn cancel_on_signals()
-> (tokio_util::sync::CancellationToken, std::sync::Arc<std::sync::atomic::AtomicI32>) {
    use std::sync::atomic::{AtomicI32, Ordering};
    let token = tokio_util::sync::CancellationToken::new();
    let signal = std::sync::Arc::new(AtomicI32::new(0));
    let (t, s) = (token.clone(), signal.clone());
    tokio::spawn(async move {
        use tokio::signal::unix::{SignalKind, signal as unix_signal};
        let (Ok(mut int), Ok(mut term)) =
            (unix_signal(SignalKind::interrupt()), unix_signal(SignalKind::terminate()))
        else {
            return;
        };
        let n = tokio::select! {
            _ = int.recv() => 2,
            _ = term.recv() => 15,
        };
        s.store(n, Ordering::SeqCst);
        t.cancel();
    });
    (token, signal)
}

/// The exit status after a long-running command ended: 128+n if a signal stopped it.
pub(crate) fn exit_after(signal: &std::sync::atomic::AtomicI32) -> ExitStatus {
    match signal.load(std::sync::atomic::Ordering::SeqCst) {
        0 => ExitStatus::Success,
        n => ExitStatus::Signal(n),
    }
}

/// A one-shot command's result, unless a signal interrupted it: then 128+n.
pub(crate) fn unless_signalled(
    result: anyhow::Result<ExitStatus>,
    signal: &std::sync::atomic::AtomicI32,
) -> anyhow::Result<ExitStatus> {
    match signal.load(std::sync::atomic::Ordering::SeqCst) {
        0 => result,
        n => Ok(ExitStatus::Signal(n)),
    }
}

/// Resolve the home directory.
pub(crate) fn home_of(home: Option<PathBuf>) -> Result<crate::client::home::Home, ClientError> {
    Ok(crate::client::home::Home::resolve(home)?)
}

/// ` --home 'DIR'` when `home` is not the default one, so a fix-it hint pasted
/// into a shell acts on the same home (`AGENTROOM_HOME` may not be set there).
pub(crate) fn home_flag(home: &crate::client::home::Home) -> String {
    let default = crate::client::home::Home::resolve(None).ok();
    match default {
        Some(d)
            if d.dir() == home.dir() && std::env::var_os(crate::env::AGENTROOM_HOME).is_none() =>
        {
            String::new()
        }
        _ => format!(" --home '{}'", home.dir().display().to_string().replace('\'', r"'\''")),
    }
}

/// A consumer's result, with "no peers" told as a fix-it hint that repeats the
/// home's `--home` (the error itself cannot know it); exit 4 as before.
pub(crate) fn hint_no_peers<T>(
    result: Result<T, crate::daemon::DaemonError>,
    home: &crate::client::home::Home,
) -> anyhow::Result<T> {
    match result {
        Err(crate::daemon::DaemonError::Client(ClientError::NoPeers)) => {
            let h = home_flag(home);
            Err(exit::WithStatus {
                status: ExitStatus::NoSession,
                error: anyhow::anyhow!(
                    "no peers and no open invites yet: run `agentroom{h} invite create` or \
                     `agentroom{h} invite accept INVITE` first"
                ),
            }
            .into())
        }
        other => Ok(other?),
    }
}

/// Logs: JSON lines on stderr, level from `LOG_LEVEL` (default `default_level`),
/// under [`crate::logging::secret_safe_cap`] whatever `LOG_LEVEL` asks for.
fn init_tracing(default_level: &str) {
    use tracing_subscriber::EnvFilter;
    use tracing_subscriber::layer::SubscriberExt as _;
    use tracing_subscriber::util::SubscriberInitExt as _;
    let filter = std::env::var(crate::env::LOG_LEVEL)
        .ok()
        .and_then(|v| EnvFilter::try_new(v).ok())
        .unwrap_or_else(|| EnvFilter::new(default_level));
    let filter_max =
        tracing_subscriber::Layer::<tracing_subscriber::Registry>::max_level_hint(&filter);
    let _ = tracing_subscriber::fmt()
        .json()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_current_span(false)
        .finish()
        .with(crate::logging::secret_safe_cap())
        .try_init();
    // After `try_init`, which lets the `log` crate build records up to TRACE.
    log::set_max_level(crate::logging::log_crate_max_level(filter_max));
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
