//! `agentroom send PEER TEXT|-`.

use std::io::Read;
use std::path::PathBuf;
use std::time::Duration;

use clap::Args;
use serde_json::json;

use super::duration::parse_duration;
use super::{ExitStatus, Printer, home_of};
use crate::client::events::MessageInfo;
use crate::client::{Client, send, store};

// Options of `agentroom send`.
#[derive(Debug, Args)]
#[command(after_help = "Examples:
  agentroom send alice \"hello from my agent\"
  echo 'long text' | agentroom send alice -
  agentroom send alice 'what is 2+2?' --wait-reply --timeout 2m --json")]
pub struct SendArgs {
    /// Peer: label, public key, or a unique prefix of the key or fingerprint.
    #[arg(allow_hyphen_values = true)]
    pub peer: String,
    /// The message; `-` reads it from stdin.
    #[arg(allow_hyphen_values = true)]
    pub text: String,
    /// After sending, wait for the peer's answer (a message naming ours in `reply_to`, or its next message) and print it.
    #[arg(long)]
    pub wait_reply: bool,
    /// How long `--wait-reply` waits (e.g. 90s, 5m).
    #[arg(long, value_parser = parse_duration, default_value = "120s", value_name = "DURATION", requires = "wait_reply")]
    pub timeout: Duration,
    /// Relay to use (TypeScript spelling): every peer's relay is dialled here.
    #[arg(long, value_name = "URL")]
    pub server: Option<String>,
}

/// Run `send`.
pub async fn run(
    home: Option<PathBuf>,
    args: SendArgs,
    printer: Printer,
) -> anyhow::Result<ExitStatus> {
    let text = if args.text == "-" {
        let mut s = String::new();
        std::io::stdin().read_to_string(&mut s)?;
        s.trim_end_matches(['\n', '\r']).to_owned()
    } else {
        args.text.clone()
    };
    if text.trim().is_empty() {
        anyhow::bail!("refusing to send an empty message");
    }
    let home = home_of(home)?;
    let _lock = match super::daemon::one_shot(&home).await? {
        super::daemon::Via::Daemon(dc) => return via_daemon(&dc, &args, text, printer).await,
        super::daemon::Via::Direct(lock) => lock,
    };
    let (cancel, sig) = super::cancel_on_signals();
    let mut client = Client::open(&home, cancel.clone())?;
    super::compat::redirect_relays(&mut client, args.server.as_deref())?;
    let wait = args.wait_reply.then_some(args.timeout);
    let result = send::send(&mut client, &args.peer, &text, wait).await;
    // Acks of what we received go out before the socket closes.
    client.close_links().await;
    cancel.cancel();
    let out = match result {
        Ok(out) => out,
        Err(_) if sig.load(std::sync::atomic::Ordering::SeqCst) != 0 => {
            return Ok(super::exit_after(&sig));
        }
        Err(e) => {
            let queued = store::outbox_pending_count(client.conn()).unwrap_or(0);
            if queued > 0 && e.class() == crate::client::ErrorClass::Network {
                printer.note(&format!(
                    "agentroom: {queued} message(s) stay queued and go out on the next connection (send, listen or serve)"
                ));
            }
            return Err(e.into());
        }
    };
    let status = match out.status {
        crate::protocol::DeliveryStatus::Delivered => "delivered",
        crate::protocol::DeliveryStatus::Stored => "stored",
    };
    printer.event(
        "sent",
        json!({"id": out.id.to_b64u(), "to": out.peer.pk.to_b64u(), "status": status}),
        || Some(out.id.to_b64u()),
    );
    if let Some(reply) = out.reply {
        let peer = store::get_peer(client.conn(), &reply.peer)?;
        let message = MessageInfo::new(&reply, peer.as_ref());
        let ev = crate::client::events::Event::Received { message };
        super::listen::print_event(printer, &ev);
    }
    if let Some(e) = out.reply_error {
        return Err(e.into());
    }
    Ok(ExitStatus::Success)
}

/// `send` through the home's daemon: same output, no relay connection of our own.
async fn via_daemon(
    dc: &crate::daemon::DaemonClient,
    args: &SendArgs,
    text: String,
    printer: Printer,
) -> anyhow::Result<ExitStatus> {
    use crate::daemon::types::{SendRequest, SendStatus};
    let wait_ms = u64::try_from(args.timeout.as_millis()).unwrap_or(u64::MAX);
    let req = SendRequest {
        peer: args.peer.clone(),
        text,
        wait_reply_ms: args.wait_reply.then_some(wait_ms),
        wait_sent_ms: None,
        hold_reply_ms: None,
    };
    let out = dc.send(&req).await?;
    let status = match out.status {
        SendStatus::Delivered => "delivered",
        SendStatus::Stored => "stored",
        SendStatus::Queued => {
            printer.note(
                "agentroom: the message stays queued and goes out when the relay is reachable (the daemon keeps trying)",
            );
            return Err(crate::client::ClientError::Timeout(
                send::SENT_TIMEOUT,
                "the relay to take the message",
            )
            .into());
        }
    };
    printer.event("sent", json!({"id": out.id, "to": out.to, "status": status}), || {
        Some(out.id.clone())
    });
    if let Some(m) = out.reply {
        let message = MessageInfo {
            id: m.id,
            from: m.from,
            label: m.label,
            fingerprint: m.fingerprint,
            sent_at: m.sent_at,
            text: m.text,
            reply_to: m.reply_to,
        };
        super::listen::print_event(printer, &crate::client::events::Event::Received { message });
    }
    if out.reply_error.is_some() && args.wait_reply {
        return Err(crate::client::ClientError::Timeout(args.timeout, "a reply").into());
    }
    Ok(ExitStatus::Success)
}
