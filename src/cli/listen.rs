//! `agentroom listen [--once] [--from PEER]`.

use std::path::PathBuf;
use std::time::Duration;

use clap::Args;

use super::duration::parse_duration;
use super::{ExitStatus, Printer, home_of};
use crate::client::events::Event;
use crate::client::listen::ListenOptions;
use crate::client::relay_url::RelayUrl;
use crate::daemon::DaemonOptions;
use crate::daemon::consumer::run_attached;

// Options of `agentroom listen`.
#[derive(Debug, Args)]
#[command(after_help = "Examples:
  agentroom listen --json
  agentroom listen --once --from alice --timeout 5m
  agentroom listen --json --quiet        # sizes instead of texts")]
pub struct ListenArgs {
    /// Exit after the first message.
    #[arg(long)]
    pub once: bool,
    /// Only messages from this peer (label, key or prefix).
    #[arg(long, value_name = "PEER", allow_hyphen_values = true)]
    pub from: Option<String>,
    /// Stop after this long; exit 3 if no message arrived at all.
    #[arg(long, value_parser = parse_duration, value_name = "DURATION")]
    pub timeout: Option<Duration>,
    /// Delete history (and read messages) older than this, now and every second
    /// while running (e.g. 30d). Default: keep everything.
    #[arg(long, value_parser = parse_duration, value_name = "DURATION")]
    pub retain: Option<Duration>,
    /// Messages carry their size in UTF-8 bytes (`bytes`) instead of their text.
    #[arg(long, short)]
    pub quiet: bool,
    /// Relay to use (TypeScript spelling): every peer's relay is dialled here.
    #[arg(long, value_name = "URL")]
    pub server: Option<String>,
    /// Observe: print every message the home receives without consuming it
    /// (a `serve` or `mcp` in the same home still gets each one).
    #[arg(long)]
    pub follow: bool,
}

/// Run `listen`.
pub async fn run(
    home: Option<PathBuf>,
    args: ListenArgs,
    printer: Printer,
) -> anyhow::Result<ExitStatus> {
    let home = home_of(home)?;
    let (cancel, sig) = super::cancel_on_signals();
    let server = args.server.as_deref().map(RelayUrl::parse).transpose()?;
    let daemon_opts = DaemonOptions { retain: args.retain, server, ..DaemonOptions::default() };
    let opts = ListenOptions { once: args.once, from: args.from, timeout: args.timeout };
    let (follow, quiet) = (args.follow, args.quiet);
    let c = cancel.clone();
    let result = run_attached(&home, &daemon_opts, cancel.clone(), |dc, owner| {
        let (opts, c) = (opts.clone(), c.clone());
        async move {
            crate::daemon::consumer::listen(dc, owner, &opts, follow, &c, &mut |ev| {
                if quiet { print_quiet(printer, &ev) } else { print_event(printer, &ev) }
            })
            .await
        }
    })
    .await;
    cancel.cancel();
    super::hint_no_peers(result, &home)?;
    Ok(super::exit_after(&sig))
}

/// `listen --quiet`: a message shows its size, not its text.
fn print_quiet(printer: Printer, ev: &Event) {
    let Event::Received { message } = ev else { return print_event(printer, ev) };
    let mut value =
        serde_json::to_value(ev).expect("events are structs with string keys: always serialise");
    if let Some(obj) = value.as_object_mut() {
        obj.remove("event");
        obj.remove("text");
        obj.insert("bytes".into(), message.text.len().into());
    }
    printer.event("message", value, || {
        Some(format!("[{}] ({} bytes)", message.sender_name(), message.text.len()))
    });
}

/// Print one listen/serve event: NDJSON, or a human line for the ones people
/// care about (messages and replies on stdout; connection changes on stderr).
pub(crate) fn print_event(printer: Printer, ev: &Event) {
    let value =
        serde_json::to_value(ev).expect("events are structs with string keys: always serialise");
    let name = value.get("event").and_then(|v| v.as_str()).unwrap_or("event").to_owned();
    let mut fields = value;
    if let Some(obj) = fields.as_object_mut() {
        obj.remove("event");
    }
    if !printer.is_json() {
        if let Some(note) = human_note(ev) {
            printer.note(&note);
        }
    }
    printer.event(&name, fields, || human_line(ev));
}

fn human_line(ev: &Event) -> Option<String> {
    match ev {
        Event::Received { message } => {
            Some(format!("[{}] {}", message.sender_name(), message.text))
        }
        Event::Replied { text, .. } => Some(format!("[you] {text}")),
        _ => None,
    }
}

fn human_note(ev: &Event) -> Option<String> {
    Some(match ev {
        Event::Connected { relay, .. } => format!("connected to {relay}"),
        Event::Reconnect { relay, .. } => format!("reconnected to {relay}"),
        Event::Disconnect { relay, reason, retry_in_ms } => {
            format!(
                "disconnected from {relay} ({reason}); retrying in {:.1}s",
                *retry_in_ms as f64 / 1000.0
            )
        }
        Event::PeerOnline { peer, online } => {
            format!("{} is {}", peer.name(), if *online { "online" } else { "offline" })
        }
        Event::Paired { peer } => match &peer.safety_number {
            Some(n) => format!(
                "paired with {} ({}); compare the safety number {n} with them out of band",
                peer.name(),
                peer.fingerprint
            ),
            None => format!("paired with {} ({})", peer.name(), peer.fingerprint),
        },
        Event::NoReply { id, .. } => format!("handler gave no reply to {id}"),
        Event::HandlerError { id, exit_code, signal, timed_out, stderr, .. } => {
            let how = if *timed_out {
                "timed out".to_owned()
            } else if let Some(s) = signal {
                format!("killed by signal {s}")
            } else {
                format!("exited {}", exit_code.map_or_else(|| "?".to_owned(), |c| c.to_string()))
            };
            let tail = stderr.lines().last().unwrap_or("");
            format!(
                "handler {how} on {id}{}",
                if tail.is_empty() { String::new() } else { format!(": {tail}") }
            )
        }
        Event::SendFailed { id, code, message } => {
            format!("relay refused {id}: {code} ({message})")
        }
        Event::Dropped { from, reason } => {
            format!("dropped an envelope from {}: {reason}", &from[..from.len().min(8)])
        }
        Event::Done { count, reason, .. } => format!("done: {count} message(s) ({reason})"),
        Event::Serving { relays, .. } => format!("serving on {}", relays.join(", ")),
        Event::Received { .. } | Event::Replied { .. } | Event::Sent { .. } => return None,
    })
}
