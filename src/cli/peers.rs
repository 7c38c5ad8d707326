//! `agentroom peers [list]`, `agentroom peers remove PEER` and
//! `agentroom peers set PEER --expire 1h|off`.

use std::path::PathBuf;

use clap::{Args, Subcommand};
use serde_json::json;

use super::{ExitStatus, Printer, home_of};
use crate::client::{Client, history, now_secs, peers, store};
use crate::daemon::types::{PeerInfo, VerifyRequest};

// Options of `agentroom peers`.
#[derive(Debug, Args)]
#[command(after_help = "Examples:
  agentroom peers
  agentroom peers rename xVtlF_xz alice
  agentroom peers verify alice
  agentroom peers remove alice")]
pub struct PeersArgs {
    /// What to do (default: list).
    #[command(subcommand)]
    pub command: Option<PeersCommand>,
}

// Peers subcommands (a plain comment: see `Command`).
#[derive(Debug, Subcommand)]
#[command(defer = true)]
pub enum PeersCommand {
    /// List paired peers (label, fingerprint, safety number, verified, relay, last seen).
    #[command(
        visible_alias = "ls",
        after_help = "Examples:
  agentroom peers list
  agentroom peers ls --json"
    )]
    List,
    /// Give a peer a new local label (a peer accepted without `--label` shows its short key).
    #[command(
        visible_alias = "mv",
        after_help = "Examples:
  agentroom peers rename xVtlF_xz alice"
    )]
    Rename {
        /// Label, public key, or a unique prefix of the key or fingerprint.
        #[arg(allow_hyphen_values = true)]
        peer: String,
        /// The new label.
        new_label: String,
    },
    /// Mark a peer verified after comparing the safety number out of band.
    ///
    /// Compare the safety number with the peer over a channel you trust first. The
    /// mark shows in `peers`, `room status`, the MCP tools, the web view and events,
    /// and drops by itself if either side's key changes.
    #[command(after_help = "Examples:
  agentroom peers verify alice
  agentroom peers verify alice '65953 08148 61518 47343 65379 65209'
  agentroom peers verify alice --undo")]
    Verify {
        /// Label, public key, or a unique prefix of the key or fingerprint.
        #[arg(allow_hyphen_values = true)]
        peer: String,
        /// The safety number the peer read to you: when given, the peer is marked
        /// only if it matches (spaces ignored), else nothing changes (exit 1).
        safety_number: Option<String>,
        /// Take the verified mark away.
        #[arg(long, conflicts_with = "safety_number")]
        undo: bool,
    },
    /// Forget a peer: its session, queued messages and inbox; tells the relay to unpair.
    #[command(
        visible_alias = "rm",
        after_help = "Examples:
  agentroom peers remove alice"
    )]
    Remove {
        /// Label, public key, or a unique prefix of the key or fingerprint.
        #[arg(allow_hyphen_values = true)]
        peer: String,
    },
    /// Apply a relay update a host printed after its room moved (`arru1.…`):
    /// checked against the host's signature and refused if older than the last.
    Update {
        /// The `arru1.…` string.
        update: String,
    },
    /// Change a peer's settings.
    Set {
        /// Label, public key, or a unique prefix of the key or fingerprint.
        #[arg(allow_hyphen_values = true)]
        peer: String,
        /// Disappearing messages: delete this peer's messages (history, read
        /// inbox, sent envelopes) this long after each was sent or received
        /// (e.g. 1h, 7d), existing ones included; `off` keeps them.
        #[arg(long, value_parser = parse_expire, value_name = "DURATION|off")]
        expire: Expire,
    },
}

/// A `--expire` value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expire {
    /// Keep messages.
    Off,
    /// Delete them this long after.
    After(std::time::Duration),
}

/// Parse `--expire`: a duration of at least one second, or `off`.
pub fn parse_expire(input: &str) -> Result<Expire, String> {
    if input.trim() == "off" {
        return Ok(Expire::Off);
    }
    let d = super::duration::parse_duration(input)?;
    if d.as_secs() == 0 {
        return Err(format!("--expire {input:?} is under a second: use at least 1s, or off"));
    }
    Ok(Expire::After(d))
}

/// Run `peers`.
pub async fn run(
    home: Option<PathBuf>,
    args: PeersArgs,
    printer: Printer,
) -> anyhow::Result<ExitStatus> {
    let home = home_of(home)?;
    let probe =
        matches!(args.command, None | Some(PeersCommand::List | PeersCommand::Verify { .. }));
    // A running daemon holds the relay link: the list is then read from the
    // store it keeps up to date (the same rows, safety numbers and expiry), and
    // a verify goes through it (its events and the web view see the mark).
    let (_lock, daemon) = if probe {
        match super::daemon::one_shot(&home).await? {
            super::daemon::Via::Daemon(dc) => (None, Some(dc)),
            super::daemon::Via::Direct(lock) => (lock, None),
        }
    } else {
        (None, None)
    };
    let daemon_runs = daemon.is_some();
    let (cancel, sig) = super::cancel_on_signals();
    let mut client = Client::open(&home, cancel.clone())?;
    let result = match args.command.unwrap_or(PeersCommand::List) {
        PeersCommand::List => {
            // A guest may have accepted an open invite while we were offline:
            // take in its queued hello first (best effort, bounded).
            if !daemon_runs && !store::open_invite_relays(client.conn(), now_secs())?.is_empty() {
                if let Err(e) = client.sync(std::time::Duration::from_secs(5)).await {
                    tracing::debug!(error = %e, "peers: could not catch up with the relay");
                }
            }
            list(&client, printer)
        }
        PeersCommand::Remove { peer } => remove(&home, &mut client, &peer, printer).await,
        PeersCommand::Set { peer, expire } => set(&client, &peer, expire, printer),
        PeersCommand::Update { update } => peers::apply_relay_update(client.conn(), &update)
            .map_err(anyhow::Error::from)
            .map(|p| {
                printer.event(
                    "peer_updated",
                    json!({"pk": p.pk.to_b64u(), "label": p.label, "relay": p.relay_url}),
                    || Some(format!("{} is now reached at {}", p.display_name(), p.relay_url)),
                );
                ExitStatus::Success
            }),
        PeersCommand::Rename { peer, new_label } => {
            rename(&mut client, &peer, &new_label, printer).await
        }
        PeersCommand::Verify { peer, safety_number, undo } => {
            verify(&client, daemon.as_ref(), &peer, safety_number.as_deref(), !undo, printer).await
        }
    };
    // Acks of what we received go out before the socket closes.
    client.close_links().await;
    cancel.cancel();
    super::unless_signalled(result, &sig)
}

fn list(client: &Client, printer: Printer) -> anyhow::Result<ExitStatus> {
    let peers = PeerInfo::list(client.conn(), &client.identity().public())?;
    if peers.is_empty() {
        let home = super::home_flag(client.home());
        printer.human(&format!(
            "No peers yet. Create an invite (`agentroom{home} invite create`) or accept one (`agentroom{home} invite accept INVITE`)."
        ));
    }
    let now = now_secs();
    for p in peers {
        let value = serde_json::to_value(&p).expect("a peer serialises");
        printer.event("peer", value, || {
            let seen = p.last_seen.map_or_else(
                || "never".to_owned(),
                |t| format!("{} ago", super::invite::human_duration(now.saturating_sub(t))),
            );
            let expire = p.expire_secs.map_or_else(String::new, |d| {
                format!("  messages expire after {}", super::invite::human_duration(d))
            });
            let mark = if p.verified {
                "  (verified)".to_owned()
            } else {
                format!(
                    "  (not verified: compare it with the peer, then `agentroom peers verify {}`)",
                    shell_word(&p.display_name())
                )
            };
            Some(format!(
                "{:<12} {}  {}  {}  last seen {seen}{expire}\n             fingerprint   {}\n             safety number {}{mark}",
                p.label.as_deref().unwrap_or("-"),
                p.pk,
                p.role,
                p.relay,
                p.fingerprint,
                p.safety_number,
            ))
        });
    }
    Ok(ExitStatus::Success)
}

/// `s` as one shell word (quoted when it holds anything but safe characters).
fn shell_word(s: &str) -> String {
    if !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || "-_.@".contains(c)) {
        s.to_owned()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

/// `peers verify`: through the home's daemon when one runs (its events and
/// the web view see the mark at once), else directly on the store.
async fn verify(
    client: &Client,
    daemon: Option<&crate::daemon::DaemonClient>,
    query: &str,
    compared: Option<&str>,
    verified: bool,
    printer: Printer,
) -> anyhow::Result<ExitStatus> {
    let info = match daemon {
        Some(dc) => {
            let req = VerifyRequest {
                peer: query.to_owned(),
                safety_number: compared.map(str::to_owned),
                verified,
            };
            dc.peer_verify(&req).await?
        }
        None => {
            let me = client.identity().public();
            let row = peers::set_verified(client.conn(), &me, query, compared, verified)?;
            PeerInfo::list(client.conn(), &me)?
                .into_iter()
                .find(|p| p.pk == row.pk.to_b64u())
                .ok_or_else(|| crate::client::ClientError::UnknownPeer(query.to_owned()))?
        }
    };
    let value = serde_json::to_value(&info).expect("a peer serialises");
    printer.event("peer_verified", value, || {
        Some(if info.verified {
            format!(
                "{} is verified (safety number {}). The mark drops if either key changes.",
                info.display_name(),
                info.safety_number
            )
        } else {
            format!("{} is no longer marked verified.", info.display_name())
        })
    });
    Ok(ExitStatus::Success)
}

fn set(
    client: &Client,
    query: &str,
    expire: Expire,
    printer: Printer,
) -> anyhow::Result<ExitStatus> {
    let peer = peers::resolve(client.conn(), query)?;
    let expiry = match expire {
        Expire::Off => None,
        Expire::After(d) => Some(d),
    };
    if !history::set_expiry(client.conn(), &peer.pk, expiry)? {
        return Err(crate::client::ClientError::UnknownPeer(query.to_owned()).into());
    }
    let secs = history::expiry(client.conn(), &peer.pk)?.map(|d| d.as_secs());
    printer.event(
        "peer_updated",
        json!({"pk": peer.pk.to_b64u(), "label": peer.label, "expire_secs": secs}),
        || {
            Some(match secs {
                Some(s) => format!(
                    "Messages with {} now expire after {}.",
                    peer.display_name(),
                    super::invite::human_duration(s)
                ),
                None => format!("Messages with {} are kept.", peer.display_name()),
            })
        },
    );
    Ok(ExitStatus::Success)
}

async fn rename(
    client: &mut Client,
    query: &str,
    new_label: &str,
    printer: Printer,
) -> anyhow::Result<ExitStatus> {
    let new_label = new_label.trim();
    if new_label.is_empty() {
        return Err(super::exit::WithStatus {
            status: ExitStatus::Usage,
            error: anyhow::anyhow!("the new label is empty"),
        }
        .into());
    }
    let peer = peers::resolve_synced(client, query).await?;
    if peer.label.as_deref() != Some(new_label) && store::label_taken(client.conn(), new_label)? {
        return Err(crate::client::ClientError::LabelTaken(new_label.to_owned()).into());
    }
    store::set_peer_label(client.conn(), &peer.pk, new_label)?;
    printer.event(
        "peer_renamed",
        json!({"pk": peer.pk.to_b64u(), "old_label": peer.label, "label": new_label}),
        || Some(format!("Renamed {} to {new_label}.", peer.display_name())),
    );
    Ok(ExitStatus::Success)
}

/// Through the home's daemon when one runs (it holds the relay link), else
/// directly, holding the home's lock.
async fn remove(
    home: &crate::client::home::Home,
    client: &mut Client,
    query: &str,
    printer: Printer,
) -> anyhow::Result<ExitStatus> {
    let (pk, label, name, relay_told) = match super::daemon::one_shot(home).await? {
        super::daemon::Via::Daemon(dc) => {
            let p = dc.peer_remove(query).await?;
            let short = crate::crypto::IdentityPublicKey::from_b64u(&p.pk).map(|k| k.fmt_short());
            let name = p.label.clone().or(short.ok()).unwrap_or_else(|| p.fingerprint.clone());
            (p.pk, p.label, name, p.relay_confirmed)
        }
        super::daemon::Via::Direct(_lock) => {
            let (p, told) = peers::remove_and_unpair(client, query).await?;
            (p.pk.to_b64u(), p.label.clone(), p.display_name(), told)
        }
    };
    printer.event(
        "peer_removed",
        json!({"pk": pk, "label": label, "relay_confirmed": relay_told}),
        || Some(format!("Removed {name}.")),
    );
    Ok(ExitStatus::Success)
}
