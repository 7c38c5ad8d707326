//! `agentroom invite create|list|revoke|accept`.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Subcommand};
use serde_json::json;

use super::duration::parse_duration;
use super::{ExitStatus, Printer, home_of};
use crate::client::relay_url::RelayUrl;
use crate::client::{Client, ClientError, Incoming, invites, now_secs, store};

/// Invite subcommands.
#[derive(Debug, Subcommand)]
#[command(defer = true)]
pub enum InviteCommand {
    /// Create a single-use invite, publish it to the relay and print it.
    #[command(after_help = "Examples:
  agentroom invite create --relay wss://relay.example.com/ws
  agentroom invite create --label bob --expires 30m --json")]
    Create(CreateArgs),
    /// List invites you created.
    #[command(
        visible_alias = "ls",
        after_help = "Examples:
  agentroom invite list
  agentroom invite ls --json"
    )]
    List,
    /// Revoke an unused invite (by id or id prefix).
    #[command(after_help = "Examples:
  agentroom invite revoke 3ATSD2lv")]
    Revoke {
        /// Invite id (see `invite list`).
        #[arg(allow_hyphen_values = true)]
        id: String,
    },
    /// Accept an invite: pair with its host and say hello.
    #[command(after_help = "Examples:
  agentroom invite accept 'ar1.AT…' --label alice
  agentroom invite accept 'ar1.AT…' --server wss://new-address.example.com/ws --wait 10")]
    Accept(AcceptArgs),
}

/// Parse `--expires`: a duration of at least one second.
fn parse_ttl(input: &str) -> Result<Duration, String> {
    let d = parse_duration(input)?;
    if d.as_secs() == 0 {
        return Err(format!(
            "--expires {input:?} is under a second: an invite must live at least 1s (e.g. 30m, 24h)"
        ));
    }
    Ok(d)
}

// Options of `invite create`.
#[derive(Debug, Args)]
pub struct CreateArgs {
    /// Relay the guest will use (default: the one given to `setup --relay`).
    #[arg(long, visible_alias = "server", value_name = "URL")]
    pub relay: Option<String>,
    /// Lifetime, e.g. 30m, 24h, 7d (at least 1s).
    #[arg(long, value_parser = parse_ttl, default_value = "24h", value_name = "DURATION")]
    pub expires: Duration,
    /// Local name for whoever accepts.
    #[arg(long, value_name = "NAME")]
    pub label: Option<String>,
}

// Options of `invite accept`.
#[derive(Debug, Args)]
pub struct AcceptArgs {
    /// The invite string (`ar1.…`), or a link ending in `#ar1.…`.
    pub invite: String,
    /// Local name for the host.
    #[arg(long, value_name = "NAME")]
    pub label: Option<String>,
    /// Reach the invite's relay at this URL instead of the one inside the invite
    /// (the same relay by another route: a new tunnel address, a LAN address).
    #[arg(long, value_name = "URL")]
    pub server: Option<String>,
    /// Then wait up to this many seconds for the host to come online (the claim
    /// itself never needs the host: the relay holds it). Reported as `host_online`.
    #[arg(long, value_name = "SECONDS")]
    pub wait: Option<u64>,
}

/// Run an invite subcommand.
pub async fn run(
    home: Option<PathBuf>,
    cmd: InviteCommand,
    printer: Printer,
) -> anyhow::Result<ExitStatus> {
    let home = home_of(home)?;
    if let InviteCommand::Accept(a) = &cmd {
        if let Some(fp) = invites::identity_for_accept(&home, &a.invite)? {
            printer.event("identity_created", json!({"fingerprint": fp}), || {
                Some(format!("Created a new identity for this home (fingerprint {fp})."))
            });
        }
    }
    let _lock = match super::daemon::one_shot(&home).await? {
        super::daemon::Via::Daemon(dc) => return via_daemon(&home, &dc, cmd, printer).await,
        super::daemon::Via::Direct(lock) => lock,
    };
    let (cancel, sig) = super::cancel_on_signals();
    let mut client = Client::open(&home, cancel.clone())?;
    let result = match cmd {
        InviteCommand::Create(args) => create(&mut client, args, printer).await,
        InviteCommand::List => list(&client, printer),
        InviteCommand::Revoke { id } => revoke(&mut client, &id, printer).await,
        InviteCommand::Accept(args) => accept(&mut client, args, printer).await,
    };
    // Acks of what we received go out before the socket closes.
    client.close_links().await;
    cancel.cancel();
    super::unless_signalled(result, &sig)
}

/// Without `--relay`: the relay of the room running in this home (the invite names
/// its public URL, our records its loopback one, as `room open` does), else the one
/// given to `setup --relay`.
async fn create_on_default_relay(
    client: &mut Client,
    expires: Duration,
    label: Option<String>,
) -> anyhow::Result<store::InviteRow> {
    let home = client.home().dir().to_path_buf();
    if let Some(room) = crate::room::state::running(&home)? {
        let public = RelayUrl::parse(&room.public_url)?;
        let local = RelayUrl::parse(&room.local_url)?;
        return Ok(invites::create_via(client, &public, &local, expires, label).await?);
    }
    match client.home().load_config()?.relay_url {
        Some(r) => Ok(invites::create(client, &RelayUrl::parse(&r)?, expires, label).await?.row),
        None => Err(ClientError::NoRelay.into()),
    }
}

async fn create(
    client: &mut Client,
    args: CreateArgs,
    printer: Printer,
) -> anyhow::Result<ExitStatus> {
    let row = match args.relay {
        Some(r) => {
            invites::create(client, &RelayUrl::parse(&r)?, args.expires, args.label).await?.row
        }
        None => create_on_default_relay(client, args.expires, args.label).await?,
    };
    let accept_line = format!("agentroom invite accept '{}'", row.encoded);
    let home = super::home_flag(client.home());
    printer.event(
        "invite_created",
        json!({
            "id": row.id,
            "invite": row.encoded,
            "relay": row.relay_url,
            "expires_at": row.expires_at,
            "label": row.label,
            "accept_command": accept_line,
        }),
        || {
            Some(format!(
                "{}\n\nGive this to the other agent (single use, expires in {}):\n  {accept_line}\n\nThen run `agentroom{home} listen` or `agentroom{home} serve --on-message CMD` to hear from it.",
                row.encoded,
                human_duration(row.expires_at.saturating_sub(now_secs())),
            ))
        },
    );
    Ok(ExitStatus::Success)
}

fn list(client: &Client, printer: Printer) -> anyhow::Result<ExitStatus> {
    let rows = store::list_invites(client.conn())?;
    let now = now_secs();
    if rows.is_empty() {
        printer.human("No invites. Create one with `agentroom invite create`.");
    }
    for r in rows {
        let status = if r.status == store::InviteStatus::Open && r.expires_at <= now {
            "expired"
        } else {
            r.status.as_str()
        };
        printer.event(
            "invite",
            json!({
                "id": r.id,
                "status": status,
                "label": r.label,
                "relay": r.relay_url,
                "expires_at": r.expires_at,
                "created_at": r.created_at,
                "claimed_by": r.claimed_by,
            }),
            || {
                Some(format!(
                    "{}  {:<8} {:<12} {}  {}",
                    r.id,
                    status,
                    r.label.as_deref().unwrap_or("-"),
                    r.relay_url,
                    if status == "open" {
                        format!("expires in {}", human_duration(r.expires_at.saturating_sub(now)))
                    } else {
                        String::new()
                    }
                ))
            },
        );
    }
    Ok(ExitStatus::Success)
}

async fn revoke(client: &mut Client, id: &str, printer: Printer) -> anyhow::Result<ExitStatus> {
    let (row, confirmed) = invites::revoke(client, id).await?;
    printer.event("invite_revoked", json!({"id": row.id, "relay_confirmed": confirmed}), || {
        Some(if confirmed {
            format!("Revoked invite {}.", row.id)
        } else {
            format!(
                "Revoked invite {} locally (its key is deleted); the relay could not be told.",
                row.id
            )
        })
    });
    Ok(ExitStatus::Success)
}

async fn accept(
    client: &mut Client,
    args: AcceptArgs,
    printer: Printer,
) -> anyhow::Result<ExitStatus> {
    let server = args.server.as_deref().map(RelayUrl::parse).transpose()?;
    let a = invites::accept_via(client, &args.invite, args.label, server.as_ref()).await?;
    let host = a.peer.pk;
    let mut host_online = a.host_online;
    if let (Some(secs), false) = (args.wait, host_online) {
        let wait = Duration::from_secs(secs);
        host_online = client
            .wait_for(wait, "the host to come online", |_, inc| match inc {
                Incoming::Presence { peer, online: true } if *peer == host => Some(Ok(())),
                _ => None,
            })
            .await
            .is_ok();
    }
    let home_flag = super::home_flag(client.home());
    printer.event(
        "invite_accepted",
        json!({
            "peer": a.peer.pk.to_b64u(),
            "label": a.peer.label,
            "fingerprint": a.fingerprint,
            "safety_number": a.safety_number,
            "relay": a.peer.relay_url,
            "host_online": host_online,
        }),
        || {
            Some(format!(
                "Paired with {}\n  public key:    {}\n  fingerprint:   {}\n  safety number: {}\n  relay:         {}\nCompare the safety number with the host out of band. Send with `agentroom{home_flag} send {} \"hello\"`.",
                a.peer.display_name(),
                a.peer.pk.to_b64u(),
                a.fingerprint,
                a.safety_number,
                a.peer.relay_url,
                a.peer.label.clone().unwrap_or_else(|| a.peer.pk.to_b64u()),
            ))
        },
    );
    Ok(ExitStatus::Success)
}

/// Invite commands through the home's daemon: same output, its relay link.
async fn via_daemon(
    home: &crate::client::home::Home,
    dc: &crate::daemon::DaemonClient,
    cmd: InviteCommand,
    printer: Printer,
) -> anyhow::Result<ExitStatus> {
    use crate::daemon::types::{InviteAcceptRequest, InviteCreateRequest};
    match cmd {
        InviteCommand::Create(args) => {
            // No --relay: the room running in this home, as without a daemon.
            let room = match &args.relay {
                None => crate::room::state::running(home.dir())?,
                Some(_) => None,
            };
            let (relay, via) = match room {
                Some(room) => (Some(room.public_url), Some(room.local_url)),
                None => (args.relay, None),
            };
            let req = InviteCreateRequest {
                relay,
                ttl_secs: Some(args.expires.as_secs().max(1)),
                label: args.label,
                via,
            };
            let row = dc.invite_create(&req).await?;
            let accept_line = format!("agentroom invite accept '{}'", row.invite);
            printer.event(
                "invite_created",
                json!({
                    "id": row.id,
                    "invite": row.invite,
                    "relay": row.relay,
                    "expires_at": row.expires_at,
                    "label": row.label,
                    "accept_command": accept_line,
                }),
                || {
                    Some(format!(
                        "{}\n\nGive this to the other agent (single use, expires in {}):\n  {accept_line}\n\nThe daemon of this home will hear from it.",
                        row.invite,
                        human_duration(row.expires_at.saturating_sub(now_secs())),
                    ))
                },
            );
        }
        InviteCommand::List => {
            let rows = dc.invites().await?.invites;
            if rows.is_empty() {
                printer.human("No invites. Create one with `agentroom invite create`.");
            }
            let now = now_secs();
            for r in rows {
                printer.event(
                    "invite",
                    json!({
                        "id": r.id,
                        "status": r.status,
                        "label": r.label,
                        "relay": r.relay,
                        "expires_at": r.expires_at,
                        "created_at": r.created_at,
                        "claimed_by": r.claimed_by,
                    }),
                    || {
                        Some(format!(
                            "{}  {:<8} {:<12} {}  {}",
                            r.id,
                            r.status,
                            r.label.as_deref().unwrap_or("-"),
                            r.relay,
                            if r.status == "open" {
                                format!(
                                    "expires in {}",
                                    human_duration(r.expires_at.saturating_sub(now))
                                )
                            } else {
                                String::new()
                            }
                        ))
                    },
                );
            }
        }
        InviteCommand::Revoke { id } => {
            let r = dc.invite_revoke(&id).await?;
            printer.event(
                "invite_revoked",
                json!({"id": r.id, "relay_confirmed": r.relay_confirmed}),
                || Some(format!("Revoked invite {}.", r.id)),
            );
        }
        InviteCommand::Accept(args) => {
            let req = InviteAcceptRequest { invite: args.invite, label: args.label };
            let a = dc.invite_accept(&req).await?;
            printer.event(
                "invite_accepted",
                json!({
                    "peer": a.peer,
                    "label": a.label,
                    "fingerprint": a.fingerprint,
                    "safety_number": a.safety_number,
                    "relay": a.relay,
                }),
                || {
                    Some(format!(
                        "Paired with {}\n  public key:    {}\n  fingerprint:   {}\n  safety number: {}\n  relay:         {}",
                        a.label.clone().unwrap_or_else(|| a.peer.clone()),
                        a.peer,
                        a.fingerprint,
                        a.safety_number,
                        a.relay,
                    ))
                },
            );
        }
    }
    Ok(ExitStatus::Success)
}

/// `3h 12m`-style rendering of a span in seconds.
pub(crate) fn human_duration(secs: u64) -> String {
    match secs {
        s if s >= 86_400 => format!("{}d {}h", s / 86_400, (s % 86_400) / 3600),
        s if s >= 3600 => format!("{}h {}m", s / 3600, (s % 3600) / 60),
        s if s >= 60 => format!("{}m", s / 60),
        s => format!("{s}s"),
    }
}
