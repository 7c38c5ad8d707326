//! `agentroom room open|status|stop`, and `agentroom host` (= `room open`).

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Subcommand};
use serde_json::json;

use super::duration::parse_duration;
use super::tunnel_args::{TunnelArgs, TunnelChoice};
use super::{ExitStatus, Printer, home_of};
use crate::client::relay_url::RelayUrl;
use crate::relay::RelayConfig;
use crate::room::control::{self, StopOutcome};
use crate::room::detach;
use crate::room::open::{self, OpenOptions, RoomEnd, RoomEvent};
use crate::room::{LOG_FILE, RoomError};
use crate::tunnel::{InstallError, TunnelError};

/// Room subcommands.
// Parsed once per run: boxing `OpenArgs` would buy nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Subcommand)]
#[command(defer = true)]
pub enum RoomCommand {
    /// Relay + tunnel + invite + handler in one command (alias: `agentroom host`).
    Open(OpenArgs),
    /// Is a room running in this home? URLs, peers, pending envelopes, uptime.
    /// Prints "not running" (exit 0) when none is.
    #[command(after_help = "Examples:
  agentroom room status
  agentroom room status --json")]
    Status,
    /// Stop the room running in this home (SIGTERM, wait, SIGKILL if it must).
    Stop(StopArgs),
}

// Options of `room open` / `host`.
#[derive(Debug, Args)]
#[command(after_help = "Examples:
  agentroom room open --on-message ./scripts/handlers/echo.sh --json
  agentroom room open --tunnel none --bind 0.0.0.0      # LAN only, no cloudflared
  agentroom room open --detach --on-message ./scripts/handlers/claude.sh
  agentroom room open --tunnel none --bind 0.0.0.0 --port 8443 --tls-cert fullchain.pem --tls-key privkey.pem
  agentroom room open --tunnel bore --public-url wss://relay.example.com/ws   # a TLS terminator in front of bore")]
pub struct OpenArgs {
    /// Handler, run with `sh -c` per message: text on stdin, reply = trimmed stdout.
    /// Without it the room stays up for `agentroom listen` in another shell.
    #[arg(long, value_name = "CMD")]
    pub on_message: Option<String>,
    #[command(flatten)]
    pub tunnel: TunnelArgs,
    /// Relay port (0 = the port this home's last room used, if free, else any free port).
    #[arg(long, default_value_t = 0)]
    pub port: u16,
    /// Relay bind address (`0.0.0.0` also serves the LAN; the tunnel needs only loopback).
    #[arg(long, default_value = crate::defaults::RELAY_BIND, value_name = "ADDR")]
    pub bind: IpAddr,
    /// Run in the background (logs to <home>/room.log); return once the invite is ready.
    #[arg(long)]
    pub detach: bool,
    /// Set in the re-spawned background process.
    #[arg(long, hide = true)]
    pub detached_child: bool,
    /// Invite lifetime, e.g. 30m, 24h, 7d.
    #[arg(long, value_parser = parse_duration, default_value = "24h", value_name = "DURATION")]
    pub expires: Duration,
    /// Local name for the guest.
    #[arg(long, value_name = "NAME")]
    pub label: Option<String>,
    #[command(flatten)]
    pub handler: super::serve::HandlerArgs,
    /// Close the room after the first message is handled.
    #[arg(long)]
    pub once: bool,
    /// With --on-message: send this first to --to (a peer already paired, e.g. the
    /// guest of an earlier room). It is turn 1.
    #[arg(long, value_name = "TEXT", requires_all = ["to", "on_message"], allow_hyphen_values = true)]
    pub seed: Option<String>,
    /// Peer for --seed.
    #[arg(long, value_name = "PEER", requires = "seed", allow_hyphen_values = true)]
    pub to: Option<String>,
    /// The room relay's SQLite database [default: <home>/relay.db].
    #[arg(long, value_name = "FILE")]
    pub db: Option<PathBuf>,
    /// HMAC key for the room relay's session tokens (≥ 32 bytes). Visible in `ps`:
    /// prefer the HMAC_SECRET environment variable.
    #[arg(long, value_name = "SECRET", hide_env_values = true)]
    pub hmac: Option<String>,
    /// How long to wait for /health through the tunnel before warning.
    #[arg(long, value_parser = parse_duration, default_value = "30s", value_name = "DURATION")]
    pub probe_timeout: Duration,
    /// Serve TLS (wss://) with this PEM certificate chain; needs --tls-key, and
    /// --tunnel none or bore. Without a tunnel the invite names
    /// wss://HOST:PORT/ws, HOST being the certificate's first DNS name (for a
    /// certificate of IP addresses only: the bind or LAN address); --public-url
    /// names another. Reloaded when the file changes. [env: TLS_CERT_FILE]
    #[arg(long, value_name = "FILE", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// The PEM private key of --tls-cert. [env: TLS_KEY_FILE]
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// The relay URL guests dial, when a TLS terminator or proxy sits in front of
    /// the room's port or of the bore tunnel's (e.g. wss://relay.example.com/ws).
    /// Invites and relay updates carry it instead of the tunnel's or the direct
    /// URL; the tunnel still carries the traffic behind the proxy.
    #[arg(long, value_name = "URL", value_parser = parse_public_url)]
    pub public_url: Option<RelayUrl>,
}

/// `--public-url`: ws://, wss:// (or their http/https spellings) with a host, and
/// nothing a relay URL does not carry (user name, password, query).
fn parse_public_url(s: &str) -> Result<RelayUrl, String> {
    let url = RelayUrl::parse(s).map_err(|e| e.to_string())?;
    let parsed = url::Url::parse(url.as_str()).map_err(|e| e.to_string())?;
    if !parsed.username().is_empty() || parsed.password().is_some() || parsed.query().is_some() {
        return Err(format!(
            "{s:?} carries a user name, password or query: give ws://HOST[:PORT][/PATH] or \
             wss://HOST[:PORT][/PATH]"
        ));
    }
    Ok(url)
}

// Options of `room stop`.
#[derive(Debug, Args)]
#[command(after_help = "Examples:
  agentroom room stop
  agentroom room stop --timeout 30s")]
pub struct StopArgs {
    /// Wait this long after SIGTERM before SIGKILL.
    #[arg(long, value_parser = parse_duration, default_value = "15s", value_name = "DURATION")]
    pub timeout: Duration,
    /// Stop the room only if its relay listens on this port (TypeScript spelling;
    /// a home runs at most one room, so this is a check, not a choice).
    #[arg(long, value_name = "N", conflicts_with = "all")]
    pub port: Option<u16>,
    /// Stop every room of this home (TypeScript spelling: there is at most one).
    #[arg(long)]
    pub all: bool,
}

/// How often `room open` says it is still waiting for the tunnel (terminal only).
const PROGRESS_EVERY: Duration = Duration::from_secs(5);

/// Run a room subcommand.
pub async fn run(
    home: Option<PathBuf>,
    cmd: RoomCommand,
    printer: Printer,
) -> anyhow::Result<ExitStatus> {
    match cmd {
        RoomCommand::Open(args) => open(home, args, printer).await,
        RoomCommand::Status => status(home, printer).await,
        RoomCommand::Stop(args) => stop(home, args, printer).await,
    }
}

/// `room open` / `host`.
pub async fn open(
    home: Option<PathBuf>,
    args: OpenArgs,
    printer: Printer,
) -> anyhow::Result<ExitStatus> {
    let handler = args.on_message.clone().map(|c| args.handler.command(c)).transpose()?;
    let home = home_of(home)?;
    let choice = args.tunnel.choice(TunnelChoice::Cloudflared);
    let mut relay = RelayConfig::from_env()?;
    relay.bind = SocketAddr::new(args.bind, args.port);
    if let (Some(cert), Some(key)) = (&args.tls_cert, &args.tls_key) {
        relay.tls = Some(crate::relay::TlsFiles { cert: cert.clone(), key: key.clone() });
    }
    if args.detach {
        // Refused here, not in the background room's log.
        let kind = args.tunnel.options(choice, args.port, home.dir()).kind;
        crate::room::stack::check_tls(&relay, &kind, args.public_url.as_ref())
            .map_err(room_error)?;
        return detach_open(home.dir(), args, printer).await;
    }
    if args.detached_child {
        detach::become_session_leader();
    }
    let (cancel, sig) = super::cancel_on_signals();
    let hangup = cancel_on_hangup(&cancel);
    if let Some(secret) = args.hmac.as_deref() {
        relay.hmac_secret = Some(super::relay::hmac_flag(secret, printer)?);
    }
    let opts = OpenOptions {
        relay,
        tunnel: args.tunnel.options(choice, args.port, home.dir()),
        tunnel_name: choice.name().to_owned(),
        probe_timeout: args.probe_timeout,
        invite_ttl: args.expires,
        label: args.label,
        handler,
        max_turns: args.handler.max_turns(),
        once: args.once,
        relay_db: args.db,
        seed: args.seed.zip(args.to).map(|(text, to)| (to, text)),
        concurrency: usize::from(args.handler.concurrency),
        log_file: args.detached_child.then(|| home.dir().join(LOG_FILE)),
        public_url: args.public_url,
        home,
    };
    let tunnel = choice.name();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let room = open::run(opts, cancel.clone(), tx);
    // A tunnel can take a while to print its URL: on a terminal (not --json), say
    // so every few seconds instead of staying silent.
    let progress = !printer.is_json() && std::io::IsTerminal::is_terminal(&std::io::stderr());
    let print = async {
        let started = tokio::time::Instant::now();
        let mut tick = tokio::time::interval(PROGRESS_EVERY);
        tick.tick().await;
        let mut ready = false;
        loop {
            tokio::select! {
                ev = rx.recv() => {
                    let Some(ev) = ev else { break };
                    ready |= matches!(ev, RoomEvent::Ready(_));
                    print_event(printer, tunnel, &ev);
                }
                _ = tick.tick(), if progress && !ready => {
                    printer.note(&format!(
                        "waiting for the {tunnel} tunnel's public URL ({}s)…",
                        started.elapsed().as_secs()
                    ));
                }
            }
        }
    };
    let (result, ()) = tokio::join!(room, print);
    match result {
        Ok(RoomEnd::MaxTurns) => {
            printer.event("room_closed", json!({"reason": "max_turns"}), || {
                Some("Room closed: --max-turns reached.".into())
            });
            Ok(ExitStatus::Success)
        }
        Ok(RoomEnd::Cancelled) => {
            printer.event("room_closed", json!({"reason": "signal"}), || {
                Some("Room closed: tunnel stopped, relay shut down.".into())
            });
            if hangup.load(std::sync::atomic::Ordering::SeqCst) {
                return Ok(ExitStatus::Signal(nix::sys::signal::Signal::SIGHUP as i32));
            }
            Ok(super::exit_after(&sig))
        }
        Err(RoomError::Client(e)) => Err(e.into()),
        Err(RoomError::Daemon(e)) => Err(e.into()),
        Err(RoomError::Tunnel(t)) => {
            printer.note(&format!("agentroom: error: tunnel: {}", crate::client::error_text(&t)));
            if matches!(t, TunnelError::Install(_)) {
                printer.note(
                    "agentroom: hint: offline, or no cloudflared? `--tunnel none` serves loopback \
                     (add `--bind 0.0.0.0` for the LAN); `--tunnel bore` uses a bore server",
                );
            }
            // A missing or bad binary is the user's to fix, not the network's.
            let status = match t {
                TunnelError::Install(
                    InstallError::NotFound
                    | InstallError::NotExecutable(_)
                    | InstallError::UnsupportedPlatform { .. },
                ) => ExitStatus::Failure,
                _ => ExitStatus::Network,
            };
            // Reported here rather than returned (for the hint above): scripts
            // reading NDJSON still get the one `error` object.
            let message = format!("tunnel: {}", crate::client::error_text(&t));
            printer.event("error", json!({"code": status.code(), "message": message}), || None);
            Ok(status)
        }
        Err(e) => Err(room_error(e)),
    }
}

/// A room error for the exit code: TLS files or names that do not work together
/// are the user's to fix (2).
fn room_error(e: RoomError) -> anyhow::Error {
    match e {
        RoomError::TlsWithCloudflared
        | RoomError::CertificateName { .. }
        | RoomError::Relay(crate::relay::RelayError::Tls(_)) => {
            super::exit::WithStatus { status: ExitStatus::Usage, error: e.into() }.into()
        }
        e => e.into(),
    }
}

/// A closed terminal sends SIGHUP, whose default action would kill the room
/// without cleanup and orphan the tunnel child (it sits in its own process group,
/// so the terminal's hangup does not reach it). Treat it like SIGTERM.
fn cancel_on_hangup(
    cancel: &tokio_util::sync::CancellationToken,
) -> std::sync::Arc<std::sync::atomic::AtomicBool> {
    use std::sync::atomic::{AtomicBool, Ordering};
    let flag = std::sync::Arc::new(AtomicBool::new(false));
    let (c, f) = (cancel.clone(), std::sync::Arc::clone(&flag));
    match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) {
        Ok(mut hup) => {
            tokio::spawn(async move {
                if hup.recv().await.is_some() {
                    tracing::info!("SIGHUP: closing the room");
                    f.store(true, Ordering::SeqCst);
                    c.cancel();
                }
            });
        }
        Err(e) => tracing::warn!(error = %e, "cannot watch SIGHUP"),
    }
    flag
}

fn print_event(printer: Printer, tunnel: &str, ev: &RoomEvent) {
    match ev {
        RoomEvent::IdentityCreated { fingerprint } => {
            printer.event("identity_created", json!({"fingerprint": fingerprint}), || None);
            printer.note(&format!("Created a new identity (fingerprint {fingerprint})."));
        }
        RoomEvent::ProbeFailed { error } => {
            printer.event("tunnel_unreachable", json!({"error": error}), || None);
            printer.note(&format!(
                "warning: the relay did not answer through the tunnel yet ({error}); \
                 continuing: a fresh tunnel can take a minute to resolve everywhere"
            ));
        }
        RoomEvent::Ready(r) => {
            printer.event(
                "room_ready",
                json!({
                    "relay": r.relay_url,
                    // Deprecated alias of `relay` (README: field names).
                    "relay_url": r.relay_url,
                    "public_url": r.public_url,
                    "local_url": r.local_url,
                    "lan_url": r.lan_url,
                    "tunnel": tunnel,
                    "invite": r.invite,
                    "invite_id": r.invite_id,
                    "expires_at": r.expires_at,
                    "accept_command": r.accept_command,
                    "pid": std::process::id(),
                }),
                || Some(ready_text(tunnel, r)),
            );
        }
        RoomEvent::TunnelDown { restarts, retry_in } => {
            let ms = u64::try_from(retry_in.as_millis()).unwrap_or(u64::MAX);
            printer.event("tunnel_down", json!({"restarts": restarts, "retry_in_ms": ms}), || None);
            printer.note(&format!("tunnel down; restarting in {:.1}s", ms as f64 / 1000.0));
        }
        RoomEvent::TunnelUrlChanged { public_url, relay_url, peers_notified } => {
            printer.event(
                "tunnel_url_changed",
                json!({"public_url": public_url, "relay": relay_url, "relay_url": relay_url, "peers_notified": peers_notified}),
                || {
                    Some(format!(
                        "Tunnel restarted: the relay is now at {relay_url} ({peers_notified} peer(s) told)."
                    ))
                },
            );
        }
        RoomEvent::InviteRenewed { invite, accept_command, expires_at } => {
            printer.event(
                "invite_renewed",
                json!({"invite": invite, "accept_command": accept_command, "expires_at": expires_at}),
                || Some(format!("The old invite no longer works. New invite:\n  {accept_command}")),
            );
        }
        RoomEvent::RelayUpdate { relay_url, update, apply_command } => {
            printer.event(
                "relay_update",
                json!({"relay": relay_url, "relay_url": relay_url, "update": update, "apply_command": apply_command}),
                || {
                    Some(format!(
                        "This room's relay URL changed to {relay_url}. Guests paired earlier run (signed by this identity):\n  {apply_command}"
                    ))
                },
            );
        }
        RoomEvent::Serve(ev) => super::listen::print_event(printer, ev),
    }
}

fn ready_text(tunnel: &str, r: &open::Ready) -> String {
    let mut s = String::from("Room open.\n");
    s.push_str(&format!("  relay:  {}", r.relay_url));
    if let Some(p) = &r.public_url {
        s.push_str(&format!("  ({tunnel} tunnel {p})"));
    }
    s.push_str(&format!("\n  local:  {}\n", r.local_url));
    match (&r.lan_url, tunnel) {
        (Some(lan), _) => s.push_str(&format!("  LAN:    {lan}\n")),
        (None, "none") => {
            if let Some(ip) = crate::room::stack::lan_ip() {
                s.push_str(&format!(
                    "  (loopback only: add --bind 0.0.0.0 to serve the LAN at {ip})\n"
                ));
            }
        }
        _ => {}
    }
    let left = r.expires_at.saturating_sub(crate::client::now_secs());
    s.push_str(&format!(
        "\nGive this line to the other agent (single use, expires in {}):\n  {}\n\n",
        super::invite::human_duration(left),
        r.accept_command
    ));
    if r.handler {
        s.push_str("Answering every message with the handler. ");
    } else {
        s.push_str(&format!(
            "No --on-message: read and answer messages from another shell with\n  agentroom --home '{}' listen\n",
            r.home.display()
        ));
    }
    s.push_str("Stop with Ctrl-C or `agentroom room stop`.");
    s
}

/// `room open --detach`: start the background room and print its invite.
async fn detach_open(
    home: &std::path::Path,
    args: OpenArgs,
    printer: Printer,
) -> anyhow::Result<ExitStatus> {
    if let Some(existing) = crate::room::state::read(home)? {
        if crate::room::state::pid_alive(existing.pid) {
            return Err(RoomError::AlreadyRunning { pid: existing.pid }.into());
        }
    }
    let log = home.join(LOG_FILE);
    let child_args = detach::child_args(std::env::args_os());
    let mut child = detach::spawn(home, &log, &child_args)?;
    // Tunnel URL, then the reachability probe, then the invite's publish.
    let timeout = args.tunnel.tunnel_timeout + args.probe_timeout + Duration::from_secs(60);
    let state = detach::wait_ready(home, &log, &mut child, timeout).await?;
    let invite = state.invite.clone().unwrap_or_default();
    let accept = crate::room::invite::accept_command(&invite);
    printer.event(
        "room_ready",
        json!({
            "relay": state.public_url,
            "relay_url": state.public_url,
            "local_url": state.local_url,
            "lan_url": state.lan_url,
            "tunnel": state.tunnel,
            "invite": invite,
            "accept_command": accept,
            "pid": state.pid,
            "log_file": log,
        }),
        || {
            Some(format!(
                "Room running in the background (pid {}, log {}).\n  relay:  {}\n\nGive this line to the other agent (single use):\n  {accept}\n\nStatus: `agentroom room status`; stop: `agentroom room stop`.",
                state.pid,
                log.display(),
                state.public_url,
            ))
        },
    );
    Ok(ExitStatus::Success)
}

async fn status(home: Option<PathBuf>, printer: Printer) -> anyhow::Result<ExitStatus> {
    let home = home_of(home)?;
    let st = control::status(home.dir()).await?;
    let value = serde_json::to_value(&st)?;
    printer.event("room_status", value, || Some(status_text(&st)));
    // Not running is an answer, not a failure (exit 0, as in the TypeScript agentroom).
    Ok(ExitStatus::Success)
}

fn status_text(st: &control::RoomStatus) -> String {
    let mut s = String::new();
    match &st.room {
        None => {
            s.push_str("not running");
            if st.stale_cleaned {
                s.push_str(" (a stale state file from a crashed room was removed)");
            }
        }
        Some(r) => {
            s.push_str(&format!(
                "Room running (pid {}, up {}).\n  relay:   {}  (tunnel: {})\n  local:   {}\n",
                r.pid,
                super::invite::human_duration(st.uptime_secs.unwrap_or(0)),
                r.public_url,
                r.tunnel,
                r.local_url,
            ));
            if let Some(lan) = &r.lan_url {
                s.push_str(&format!("  LAN:     {lan}\n"));
            }
            if let Some(t) = &r.tunnel_url {
                s.push_str(&format!("  tunnel:  {t}  (forward --public-url here)\n"));
            }
            match &r.on_message {
                Some(h) => s.push_str(&format!("  handler: {h}\n")),
                None => s.push_str("  handler: none (read messages with `agentroom listen`)\n"),
            }
            if let Some(l) = &r.log_file {
                s.push_str(&format!("  log:     {}\n", l.display()));
            }
            match st.relay_pending {
                Some(0) => s.push_str("  pending: 0 envelope(s) queued in the relay\n"),
                Some(n) => s.push_str(&format!(
                    "  pending: {n} envelope(s) queued in the relay (for a peer that is offline: \
                     it gets them when it connects)\n"
                )),
                None => s.push_str("  pending: unknown (the relay's /health did not answer)\n"),
            }
            if st.invite_open {
                if let Some(i) = &r.invite {
                    s.push_str(&format!(
                        "  invite:  waiting for a guest:\n    {}\n",
                        crate::room::invite::accept_command(i)
                    ));
                }
            }
        }
    }
    if !st.peers.is_empty() {
        s.push_str(&format!("\nPeers ({}):\n", st.peers.len()));
        for p in &st.peers {
            s.push_str(&format!(
                "  {}  {}  {}  via {}\n",
                p.display_name(),
                p.role,
                p.fingerprint,
                p.relay
            ));
            let mark = if p.verified { "  (verified)" } else { "" };
            s.push_str(&format!("    safety number {}{mark}\n", p.safety_number));
        }
    }
    if st.outbox_pending > 0 {
        s.push_str(&format!(
            "Outbox: {} message(s) not yet taken by a relay.\n",
            st.outbox_pending
        ));
    }
    s.trim_end().to_owned()
}

async fn stop(
    home: Option<PathBuf>,
    args: StopArgs,
    printer: Printer,
) -> anyhow::Result<ExitStatus> {
    let home = home_of(home)?;
    if let Some(port) = args.port {
        let room = crate::room::state::read(home.dir())?;
        let on_port = room.as_ref().is_some_and(|r| {
            url::Url::parse(&r.local_url).ok().and_then(|u| u.port()) == Some(port)
        });
        if !on_port {
            printer.event(
                "room_stop",
                json!({"outcome": StopOutcome::NotRunning, "port": port}),
                || Some(format!("No room of this home listens on port {port}.")),
            );
            return Ok(ExitStatus::Success);
        }
    }
    let outcome = control::stop(home.dir(), args.timeout).await?;
    printer.event("room_stop", json!({"outcome": outcome}), || {
        Some(
            match outcome {
                StopOutcome::NotRunning => "No room was running in this home.",
                StopOutcome::Stopped => "Room stopped.",
                StopOutcome::Killed => {
                    "The room did not stop in time and was killed (with its tunnel)."
                }
            }
            .to_owned(),
        )
    });
    Ok(ExitStatus::Success)
}
