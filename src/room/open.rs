//! `room open`: identity, relay, tunnel, invite, state file and the handler loop,
//! supervised until cancelled.
//!
//! The sequence: refuse if a room already runs in this home; load or create the
//! identity; start the relay on loopback and the tunnel in front of it; probe
//! `/health` through the tunnel (a warning, not a failure: DNS for a fresh quick
//! tunnel can lag); create and publish the invite; write the state file; then run
//! `serve` (with `--on-message`) or simply hold the relay up for `agentroom listen`.
//!
//! A tunnel restart with a new URL: the state file is rewritten, every paired peer
//! gets a sealed `relay_moved` payload (PROTOCOL.md §4) queued in the outbox, and a
//! fresh invite replaces the old one if nobody accepted it yet. The serve loop is
//! restarted around that work (it owns the client exclusively); a handler that was
//! running is killed and its message, still unacked, runs again.
//!
//! Limits of `relay_moved`: the relay holds it for the guest, but a guest whose only
//! route was the dead quick-tunnel URL cannot log in to fetch it; it arrives only
//! where the guest still reaches the relay (connected through a route that survived,
//! a stable hostname, the LAN). Otherwise the new URL has to travel out of band:
//! the renewed invite, `room status`, the `tunnel_url_changed` event.
//!
//! Everything the user sees goes out as [`RoomEvent`]s on a channel; the CLI prints them.

use std::path::PathBuf;
use std::time::Duration;

use tokio::sync::mpsc::UnboundedSender;
use tokio_util::sync::CancellationToken;
use url::Url;

use super::invite;
use super::restart;
use super::stack::RoomStack;
use super::state::{self, RoomState, STATE_VERSION};
use super::{RoomError, control::now_unix};
use crate::client::events::Event;
use crate::client::home::Home;
use crate::client::payload::Payload;
use crate::client::relay_url::RelayUrl;
use crate::client::serve::{ServeOptions, serve};
use crate::client::{Client, ClientError, identity, store};
use crate::handler::HandlerCommand;
use crate::relay::RelayConfig;
use crate::tunnel::{TunnelOptions, TunnelState};

/// What `room open` should do.
#[derive(Debug)]
pub struct OpenOptions {
    /// The agent's home.
    pub home: Home,
    /// Relay settings (bind address and port; the database path is set to `<home>/relay.db`).
    pub relay: RelayConfig,
    /// Tunnel settings (the local port is filled in once the relay is bound).
    pub tunnel: TunnelOptions,
    /// `cloudflared`, `bore` or `none`, for the state file.
    pub tunnel_name: String,
    /// How long to wait for `/health` through the tunnel before warning.
    pub probe_timeout: Duration,
    /// Invite lifetime.
    pub invite_ttl: Duration,
    /// Local name for the guest.
    pub label: Option<String>,
    /// The handler; `None` keeps the room up for `agentroom listen`.
    pub handler: Option<HandlerCommand>,
    /// Stop after this many replies (turns).
    pub max_turns: Option<u64>,
    /// Stop after the first handled message.
    pub once: bool,
    /// The relay's database (`None`: `<home>/relay.db`).
    pub relay_db: Option<PathBuf>,
    /// `--seed TEXT --to PEER`: sent first by the handler loop (an already paired peer).
    pub seed: Option<(String, String)>,
    /// Handlers running at once.
    pub concurrency: usize,
    /// Where a detached room logs (recorded in the state file).
    pub log_file: Option<PathBuf>,
    /// `--public-url`: the relay URL guests dial when a TLS terminator or another
    /// proxy sits in front of the room's port (or of the tunnel's). It replaces the
    /// tunnel's or the direct URL in invites, relay updates and the state file; a
    /// tunnel still carries the traffic behind it.
    pub public_url: Option<RelayUrl>,
}

/// Something the user should see.
#[derive(Debug, Clone)]
pub enum RoomEvent {
    /// No identity existed: one was created.
    IdentityCreated {
        /// Its fingerprint.
        fingerprint: String,
    },
    /// `/health` did not answer through the tunnel in time; the room goes on.
    ProbeFailed {
        /// Why.
        error: String,
    },
    /// Everything is up: hand the invite to the guest.
    Ready(Box<Ready>),
    /// The tunnel died; it restarts by itself.
    TunnelDown {
        /// Restarts so far.
        restarts: u32,
        /// Delay before the next attempt.
        retry_in: Duration,
    },
    /// The tunnel came back with a new URL.
    TunnelUrlChanged {
        /// New tunnel URL.
        public_url: String,
        /// New relay URL for guests.
        relay_url: String,
        /// Peers a `relay_moved` was queued for.
        peers_notified: usize,
    },
    /// A fresh invite for the new URL (the old one was never accepted).
    InviteRenewed {
        /// The invite.
        invite: String,
        /// Ready to paste.
        accept_command: String,
        /// Unix seconds.
        expires_at: u64,
    },
    /// The public relay URL changed since guests paired: they apply this signed
    /// update (`agentroom peers update '…'`, or the MCP tool `peers_update`).
    RelayUpdate {
        /// The relay URL guests should use now.
        relay_url: String,
        /// The `arru1.…` string.
        update: String,
        /// Ready to paste.
        apply_command: String,
    },
    /// Something the handler loop reported.
    Serve(Event),
}

/// The `room_ready` facts.
#[derive(Debug, Clone)]
pub struct Ready {
    /// The relay URL in the invite (`wss://…/ws`).
    pub relay_url: String,
    /// The tunnel's URL, if any.
    pub public_url: Option<String>,
    /// Loopback relay URL.
    pub local_url: String,
    /// LAN relay URL, when the relay listens on all interfaces.
    pub lan_url: Option<String>,
    /// The invite string.
    pub invite: String,
    /// Its id.
    pub invite_id: String,
    /// Unix seconds.
    pub expires_at: u64,
    /// `agentroom invite accept '…'`.
    pub accept_command: String,
    /// Whether a handler runs.
    pub handler: bool,
    /// The home, for the `listen` hint.
    pub home: PathBuf,
}

/// How the room ended (the CLI maps this and the signal to an exit code).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RoomEnd {
    /// Cancelled (signal or `room stop`).
    Cancelled,
    /// `--max-turns` messages handled.
    MaxTurns,
}

/// Run the room until `cancel` fires (or `--max-turns`). Cleans up on every path:
/// the tunnel's process group is stopped, the relay shut down, the state file removed.
pub async fn run(
    opts: OpenOptions,
    cancel: CancellationToken,
    events: UnboundedSender<RoomEvent>,
) -> Result<RoomEnd, RoomError> {
    let home = opts.home.clone();
    let mut relay = opts.relay.clone();
    // The room's own client, `room status` and a tunnel reach the relay on loopback.
    relay.tls_plain_loopback = true;
    super::stack::check_tls(&relay, &opts.tunnel.kind, opts.public_url.as_ref())?;
    if let Some(existing) = state::read(home.dir())? {
        if state::pid_alive(existing.pid) && existing.pid != std::process::id() {
            return Err(RoomError::AlreadyRunning { pid: existing.pid });
        }
    }
    home.ensure().map_err(ClientError::from)?;
    let (pair, created) = identity::load_or_create(&home).map_err(ClientError::from)?;
    if created {
        let fingerprint = crate::crypto::fingerprint(&pair.public());
        tracing::info!(%fingerprint, "created a new identity");
        let _ = events.send(RoomEvent::IdentityCreated { fingerprint });
    }
    drop(pair);
    relay.db_path = opts.relay_db.clone().unwrap_or_else(|| home.dir().join(super::RELAY_DB));
    let last_port = restart::last_port(&home)?;
    let stack = tokio::select! {
        s = restart::start_stack(relay, opts.tunnel.clone(), last_port) => s?,
        () = cancel.cancelled() => return Ok(RoomEnd::Cancelled),
    };
    let result = supervise(&opts, &stack, &cancel, &events).await;
    if matches!(result, Ok(RoomEnd::MaxTurns)) {
        drain(&stack, &cancel).await;
    }
    if let Err(e) = state::remove(home.dir()) {
        tracing::warn!(error = %e, "could not remove the room state file");
    }
    stack.shutdown().await;
    result
}

/// After `--max-turns` the last reply may still sit in the relay for a guest that
/// is not connected right now: keep the relay up until it is fetched, for at most
/// [`DRAIN_TIMEOUT`] (or until cancelled).
async fn drain(stack: &RoomStack, cancel: &CancellationToken) {
    let deadline = tokio::time::Instant::now() + DRAIN_TIMEOUT;
    while stack.pending() > 0 && tokio::time::Instant::now() < deadline {
        tokio::select! {
            () = tokio::time::sleep(Duration::from_millis(100)) => {}
            () = cancel.cancelled() => return,
        }
    }
    let left = stack.pending();
    if left > 0 {
        tracing::warn!(
            pending = left,
            "closing with envelopes still queued; they wait in relay.db"
        );
    }
}

/// How long a room closing after `--max-turns` waits for queued envelopes to be fetched.
pub const DRAIN_TIMEOUT: Duration = Duration::from_secs(30);

/// Everything after the stack is up; the caller tears the stack down.
async fn supervise(
    opts: &OpenOptions,
    stack: &RoomStack,
    cancel: &CancellationToken,
    events: &UnboundedSender<RoomEvent>,
) -> Result<RoomEnd, RoomError> {
    let home = &opts.home;
    // Subscribed before anything names the URL: a restart from here on is seen.
    let mut changes = stack.tunnel_changes();
    let mut public_url = changes.borrow_and_update().url().cloned();
    if stack.has_tunnel() {
        tokio::select! {
            r = stack.probe(opts.probe_timeout) => if let Err(e) = r {
                // Reported as an event (and a note): info, so it is not printed twice.
                tracing::info!(error = %e, "relay not reachable through the tunnel yet");
                let _ = events.send(RoomEvent::ProbeFailed { error: e.to_string() });
            },
            () = cancel.cancelled() => return Ok(RoomEnd::Cancelled),
        }
    }
    let local = RelayUrl::parse(&stack.local_url()).map_err(ClientError::from)?;
    let mut public = match (&opts.public_url, &public_url) {
        (Some(given), _) => given.clone(),
        (None, Some(u)) => {
            RelayUrl::parse(&stack.tunnel_relay_url(u)).map_err(ClientError::from)?
        }
        (None, None) => RelayUrl::parse(&stack.public_relay_url()).map_err(ClientError::from)?,
    };

    let token = cancel.child_token();
    let mut client = Client::open(home, token.clone())?;
    let previous = restart::remember(&client, stack.local_addr().port(), &local, &public)?;
    restart::revoke_stale_invites(&client, &previous, &local, &public)?;
    adopt_earlier_guests(&mut client, &local, &public)?;
    let row = tokio::select! {
        r = crate::client::invites::create_via(&mut client, &public, &local, opts.invite_ttl, opts.label.clone()) => r?,
        () = cancel.cancelled() => return Ok(RoomEnd::Cancelled),
    };
    let mut invite_id = row.id.clone();
    let started_at = now_unix();
    let update = restart::relay_update(&client, previous.public.as_deref(), &public)?;
    let mut room_state = RoomState {
        version: STATE_VERSION,
        pid: std::process::id(),
        started_at,
        local_url: local.to_string(),
        health_url: stack.health_url(),
        public_url: public.to_string(),
        tunnel: opts.tunnel_name.clone(),
        log_file: opts.log_file.clone(),
        on_message: opts.handler.as_ref().map(|h| h.command.clone()),
        tunnel_pgid: stack.tunnel_pgid(),
        invite: Some(row.encoded.clone()),
        lan_url: stack.lan_url(),
        tunnel_url: opts.public_url.as_ref().and(public_url.as_ref()).map(Url::to_string),
        relay_update: update.clone(),
    };
    state::write(home.dir(), &room_state)?;
    let _ = events.send(RoomEvent::Ready(Box::new(Ready {
        relay_url: public.to_string(),
        public_url: public_url.as_ref().map(Url::to_string),
        local_url: local.to_string(),
        lan_url: stack.lan_url(),
        accept_command: invite::accept_command(&row.encoded),
        invite: row.encoded,
        invite_id: row.id,
        expires_at: row.expires_at,
        handler: opts.handler.is_some(),
        home: home.dir().to_path_buf(),
    })));
    tracing::info!(relay = %public, "room ready");
    if let Some(update) = update {
        tracing::info!(relay = %public, "the room's public URL changed; printed a relay update");
        send_relay_update(events, &public, update);
    }

    let mut handled = 0u64;
    // In the listen mode the room holds no relay link: the user's `agentroom
    // listen` logs in with this identity and would be kicked by ours.
    let mut client = if opts.handler.is_some() {
        Some(client)
    } else {
        token.cancel();
        drop(client);
        None
    };
    loop {
        let outcome = wait(
            opts,
            &mut client,
            public_url.as_ref(),
            &mut changes,
            cancel,
            events,
            &mut handled,
        )
        .await?;
        let new_url = match outcome {
            Wait::Cancelled => return Ok(RoomEnd::Cancelled),
            Wait::MaxTurns => return Ok(RoomEnd::MaxTurns),
            Wait::Moved(u) => u,
        };
        // The serve loop (if any) has stopped; its client is closed. Do the move
        // with a fresh client, then serve again.
        drop(client.take());
        let token = cancel.child_token();
        let mut mover = Client::open(home, token.clone())?;
        public_url = Some(new_url.clone());
        if opts.public_url.is_some() {
            // Guests dial --public-url, which did not move: nothing to announce,
            // but the proxy in front must now forward to the tunnel's new address.
            tracing::warn!(tunnel = %new_url, relay = %public, "the tunnel restarted at a new address: point the proxy behind --public-url at it");
            room_state.tunnel_pgid = stack.tunnel_pgid();
            room_state.tunnel_url = Some(new_url.to_string());
            state::write(home.dir(), &room_state)?;
            if opts.handler.is_some() {
                client = Some(mover);
            } else {
                token.cancel();
            }
            continue;
        }
        public = RelayUrl::parse(&stack.tunnel_relay_url(&new_url)).map_err(ClientError::from)?;
        let peers_notified = announce_move(&mut mover, &public)?;
        room_state.tunnel_pgid = stack.tunnel_pgid();
        tracing::info!(relay = %public, peers_notified, "tunnel restarted with a new public URL");
        let _ = events.send(RoomEvent::TunnelUrlChanged {
            public_url: new_url.to_string(),
            relay_url: public.to_string(),
            peers_notified,
        });
        let before = room_state.public_url.clone();
        if let Some(update) = restart::relay_update(&mover, Some(&before), &public)? {
            room_state.relay_update = Some(update.clone());
            send_relay_update(events, &public, update);
        }
        if invite::still_open(&mover, &invite_id)? {
            match renew_invite(&mut mover, &invite_id, &public, &local, opts).await {
                Ok(row) => {
                    invite_id = row.id.clone();
                    room_state.invite = Some(row.encoded.clone());
                    let _ = events.send(RoomEvent::InviteRenewed {
                        accept_command: invite::accept_command(&row.encoded),
                        invite: row.encoded,
                        expires_at: row.expires_at,
                    });
                }
                Err(e) => tracing::warn!(error = %e, "could not renew the invite"),
            }
        } else {
            room_state.invite = None;
        }
        room_state.public_url = public.to_string();
        state::write(home.dir(), &room_state)?;
        if opts.handler.is_some() {
            client = Some(mover);
        } else {
            // Queued `relay_moved` envelopes go out when `listen` next logs in
            // (it re-sends the outbox on every login).
            token.cancel();
        }
    }
}

fn send_relay_update(events: &UnboundedSender<RoomEvent>, public: &RelayUrl, update: String) {
    let _ = events.send(RoomEvent::RelayUpdate {
        relay_url: public.to_string(),
        apply_command: restart::apply_command(&update),
        update,
    });
}

enum Wait {
    Cancelled,
    MaxTurns,
    Moved(Url),
}

/// Serve (or idle) until cancelled, `--max-turns`, or the tunnel has a new URL.
async fn wait(
    opts: &OpenOptions,
    client: &mut Option<Client>,
    current: Option<&Url>,
    changes: &mut tokio::sync::watch::Receiver<TunnelState>,
    cancel: &CancellationToken,
    events: &UnboundedSender<RoomEvent>,
    handled: &mut u64,
) -> Result<Wait, RoomError> {
    let serve_opts = opts.handler.as_ref().map(|h| ServeOptions {
        handler: h.clone(),
        // The seed is turn 1: once a turn is counted it was sent (no resend after a move).
        seed: if *handled == 0 { opts.seed.clone() } else { None },
        max_turns: opts.max_turns.map(|m| m.saturating_sub(*handled)),
        once: opts.once,
        concurrency: opts.concurrency.max(1),
    });
    let turns = std::cell::Cell::new(0u64);
    let serving = async {
        match (client.as_mut(), &serve_opts) {
            (Some(c), Some(so)) => {
                let r = serve(c, so, &mut |ev| {
                    // Turns count replies, as in the TypeScript agentroom.
                    if matches!(ev, Event::Replied { .. }) {
                        turns.set(turns.get() + 1);
                    }
                    if !matches!(ev, Event::Done { .. }) {
                        let _ = events.send(RoomEvent::Serve(ev));
                    }
                })
                .await;
                Some(r)
            }
            _ => std::future::pending().await,
        }
    };
    tokio::pin!(serving);
    let mut tunnel_gone = false;
    let outcome = loop {
        tokio::select! {
            r = &mut serving => {
                break match r {
                    Some(Ok(_)) if !cancel.is_cancelled() => Ok(Wait::MaxTurns),
                    Some(Ok(_)) | None => Ok(Wait::Cancelled),
                    Some(Err(e)) => Err(RoomError::Client(e)),
                };
            }
            () = cancel.cancelled() => break Ok(Wait::Cancelled),
            changed = changes.changed(), if !tunnel_gone => {
                if changed.is_err() {
                    // The supervisor is gone (no tunnel): nothing more will change.
                    tunnel_gone = true;
                    continue;
                }
                let now = changes.borrow_and_update().clone();
                match now {
                    TunnelState::Up { url, .. } if Some(&url) != current => {
                        break Ok(Wait::Moved(url));
                    }
                    TunnelState::Up { url, restarts } => {
                        // bore asks for its old port first: same URL, nothing to tell.
                        tracing::info!(%url, restarts, "tunnel back at the same URL");
                    }
                    TunnelState::Down { restarts, retry_in } => {
                        tracing::info!(restarts, ?retry_in, "tunnel down; restarting");
                        let _ = events.send(RoomEvent::TunnelDown { restarts, retry_in });
                    }
                    TunnelState::Stopped => {}
                }
            }
        }
    };
    *handled += turns.get();
    outcome
}

/// Queue a sealed `relay_moved` for every peer paired through this room's relay.
/// They sit in the outbox until a client of this home is logged in (the room's
/// serve loop, or `listen`), which sends them.
fn announce_move(client: &mut Client, public: &RelayUrl) -> Result<usize, ClientError> {
    let local_peers = store::list_peers(client.conn())?;
    let mut n = 0;
    for peer in local_peers {
        if peer.role != store::PeerRole::Guest {
            continue;
        }
        let payload = Payload::RelayMoved { relay: public.to_string() };
        client.queue(&peer, &payload, None)?;
        tracing::info!(peer = %peer.pk.fmt_short(), "queued relay_moved");
        n += 1;
    }
    Ok(n)
}

/// Guests paired by an earlier room in this home point at that room's loopback
/// URL, a port nobody listens on any more: the serve loop would give up on it and
/// stop. The relay database is the same file, so point them at this room's relay
/// and queue a `relay_moved` with the new public URL for them.
fn adopt_earlier_guests(
    client: &mut Client,
    local: &RelayUrl,
    public: &RelayUrl,
) -> Result<usize, ClientError> {
    let mut n = 0;
    for peer in store::list_peers(client.conn())? {
        if peer.role != store::PeerRole::Guest
            || peer.relay_url == local.as_str()
            || !is_loopback_url(&peer.relay_url)
        {
            continue;
        }
        store::set_peer_relay(client.conn(), &peer.pk, local.as_str())?;
        let moved = store::PeerRow { relay_url: local.to_string(), ..peer };
        client.queue(&moved, &Payload::RelayMoved { relay: public.to_string() }, None)?;
        tracing::info!(peer = %moved.pk.fmt_short(), "guest of an earlier room moved to this relay");
        n += 1;
    }
    Ok(n)
}

/// Whether a relay URL names this machine (127.0.0.0/8, ::1, localhost).
fn is_loopback_url(url: &str) -> bool {
    match Url::parse(url).ok().and_then(|u| u.host().map(|h| h.to_owned())) {
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        None => false,
    }
}

/// Revoke the unaccepted invite and publish a fresh one for the new URL.
async fn renew_invite(
    client: &mut Client,
    old: &str,
    public: &RelayUrl,
    local: &RelayUrl,
    opts: &OpenOptions,
) -> Result<store::InviteRow, ClientError> {
    if let Err(e) = crate::client::invites::revoke(client, old).await {
        tracing::warn!(error = %e, "could not revoke the old invite");
    }
    crate::client::invites::create_via(client, public, local, opts.invite_ttl, opts.label.clone())
        .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_urls() {
        assert!(is_loopback_url("ws://127.0.0.1:4000/ws"));
        assert!(is_loopback_url("ws://127.1.2.3:4000/ws"));
        assert!(is_loopback_url("ws://[::1]:4000/ws"));
        assert!(is_loopback_url("ws://LOCALHOST:4000/ws"));
        assert!(!is_loopback_url("wss://x.trycloudflare.com/ws"));
        assert!(!is_loopback_url("ws://192.168.1.4:8787/ws"));
        assert!(!is_loopback_url("not a url"));
    }
}
