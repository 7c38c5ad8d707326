//! `agentroom peers [list]` and `agentroom peers remove PEER`.

use std::path::PathBuf;

use clap::{Args, Subcommand};
use serde_json::json;

use super::{ExitStatus, Printer, home_of};
use crate::client::relay_url::RelayUrl;
use crate::client::{Client, Incoming, now_secs, peers, store};
use crate::crypto::fingerprint;
use crate::protocol::ClientFrame;

/// Options of `agentroom peers`.
#[derive(Debug, Args)]
pub struct PeersArgs {
    /// What to do (default: list).
    #[command(subcommand)]
    pub command: Option<PeersCommand>,
}

/// Peers subcommands.
#[derive(Debug, Subcommand)]
pub enum PeersCommand {
    /// List paired peers (label, fingerprint, relay, last seen).
    #[command(visible_alias = "ls")]
    List,
    /// Forget a peer: its session, queued messages and inbox; tells the relay to unpair.
    #[command(visible_alias = "rm")]
    Remove {
        /// Label, public key, or a unique prefix of the key or fingerprint.
        #[arg(allow_hyphen_values = true)]
        peer: String,
    },
}

/// Run `peers`.
pub async fn run(
    home: Option<PathBuf>,
    args: PeersArgs,
    printer: Printer,
) -> anyhow::Result<ExitStatus> {
    let home = home_of(home)?;
    let is_list = matches!(args.command, None | Some(PeersCommand::List));
    let _lock = if is_list {
        match super::daemon::one_shot(&home).await? {
            super::daemon::Via::Daemon(dc) => return list_via_daemon(&dc, printer).await,
            super::daemon::Via::Direct(lock) => lock,
        }
    } else {
        None
    };
    let (cancel, sig) = super::cancel_on_signals();
    let mut client = Client::open(&home, cancel.clone())?;
    let result = match args.command.unwrap_or(PeersCommand::List) {
        PeersCommand::List => {
            // A guest may have accepted an open invite while we were offline:
            // take in its queued hello first (best effort, bounded).
            if !store::open_invite_relays(client.conn(), now_secs())?.is_empty() {
                if let Err(e) = client.sync(std::time::Duration::from_secs(5)).await {
                    tracing::debug!(error = %e, "peers: could not catch up with the relay");
                }
            }
            list(&client, printer)
        }
        PeersCommand::Remove { peer } => remove(&mut client, &peer, printer).await,
    };
    cancel.cancel();
    super::unless_signalled(result, &sig)
}

fn list(client: &Client, printer: Printer) -> anyhow::Result<ExitStatus> {
    let rows = store::list_peers(client.conn())?;
    if rows.is_empty() {
        printer.human("No peers yet. Create an invite (`agentroom invite create`) or accept one.");
    }
    let now = now_secs();
    for p in rows {
        let fp = fingerprint(&p.pk);
        printer.event(
            "peer",
            json!({
                "pk": p.pk.to_b64u(),
                "label": p.label,
                "fingerprint": fp,
                "role": p.role.name(),
                "relay": p.relay_url,
                "paired_at": p.created_at,
                "last_seen": p.last_seen,
            }),
            || {
                let seen = p.last_seen.map_or_else(
                    || "never".to_owned(),
                    |t| format!("{} ago", super::invite::human_duration(now.saturating_sub(t))),
                );
                Some(format!(
                    "{:<12} {}  {}  {}  last seen {seen}\n             {fp}",
                    p.label.as_deref().unwrap_or("-"),
                    p.pk.to_b64u(),
                    p.role.name(),
                    p.relay_url,
                ))
            },
        );
    }
    Ok(ExitStatus::Success)
}

/// `peers` through the home's daemon.
async fn list_via_daemon(
    dc: &crate::daemon::DaemonClient,
    printer: Printer,
) -> anyhow::Result<ExitStatus> {
    let peers = dc.peers().await?.peers;
    if peers.is_empty() {
        printer.human("No peers yet. Create an invite (`agentroom invite create`) or accept one.");
    }
    let now = now_secs();
    for p in peers {
        printer.event(
            "peer",
            json!({
                "pk": p.pk,
                "label": p.label,
                "fingerprint": p.fingerprint,
                "role": p.role,
                "relay": p.relay,
                "paired_at": p.paired_at,
                "last_seen": p.last_seen,
            }),
            || {
                let seen = p.last_seen.map_or_else(
                    || "never".to_owned(),
                    |t| format!("{} ago", super::invite::human_duration(now.saturating_sub(t))),
                );
                Some(format!(
                    "{:<12} {}  {}  {}  last seen {seen}\n             {}",
                    p.label.as_deref().unwrap_or("-"),
                    p.pk,
                    p.role,
                    p.relay,
                    p.fingerprint,
                ))
            },
        );
    }
    Ok(ExitStatus::Success)
}

async fn remove(client: &mut Client, query: &str, printer: Printer) -> anyhow::Result<ExitStatus> {
    let peer = peers::remove(client, query).await?;
    // Best effort: ask the relay to unpair and drop queued envelopes.
    let mut relay_told = false;
    if let Ok(relay) = RelayUrl::parse(&peer.relay_url) {
        let pk = peer.pk;
        if let Ok(rid) = client.request(&relay, |rid| ClientFrame::PeerRevoke { rid, peer: pk }) {
            relay_told = client
                .wait_for(std::time::Duration::from_secs(10), "the relay", |_, inc| match inc {
                    Incoming::Reply { rid: r, result } if *r == rid => Some(Ok(result.is_ok())),
                    _ => None,
                })
                .await
                .unwrap_or(false);
        }
    }
    printer.event(
        "peer_removed",
        json!({"pk": peer.pk.to_b64u(), "label": peer.label, "relay_confirmed": relay_told}),
        || Some(format!("Removed {}.", peer.display_name())),
    );
    Ok(ExitStatus::Success)
}
