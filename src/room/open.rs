//! `room open`: identity, relay, tunnel, invite, state file and the handler loop,
//! supervised until cancelled.
//!
//! The sequence: refuse if a room already runs in this home; load or create the
//! identity; start the relay on loopback and the tunnel in front of it; probe
//! `/health` through the tunnel (a warning, not a failure: DNS for a fresh quick
//! tunnel can lag). Then the room uses the home's daemon like `serve` does: it
//! runs it in-process when none runs (and owns the home), or attaches to the
//! running one. Through the daemon it creates and publishes the invite, writes
//! the state file, then consumes messages through leases (with `--on-message`;
//! a `serve` in the same home shares the work, each message handled once) or
//! simply holds the daemon up for `agentroom listen`.
//!
//! A tunnel restart with a new URL: the state file is rewritten, every paired peer
//! gets a sealed `relay_moved` payload (PROTOCOL.md §4) queued in the outbox, and a
//! fresh invite replaces the old one if nobody accepted it yet; the daemon does
//! that work while the handler loop goes on.
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
use crate::client::relay_url::RelayUrl;
use crate::client::{ClientError, identity};
use crate::daemon::consumer::{self, ServeOptions};
use crate::daemon::types::{RoomMovedRequest, RoomOpenRequest};
use crate::daemon::{DaemonClient, DaemonError, DaemonOptions};
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
    // Subscribed before anything names the URL: a restart from here on is seen.
    let mut changes = stack.tunnel_changes();
    let public_url = changes.borrow_and_update().url().cloned();
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
    let public = match (&opts.public_url, &public_url) {
        (Some(given), _) => given.clone(),
        (None, Some(u)) => {
            RelayUrl::parse(&stack.tunnel_relay_url(u)).map_err(ClientError::from)?
        }
        (None, None) => RelayUrl::parse(&stack.public_relay_url()).map_err(ClientError::from)?,
    };
    let ctx = Ctx { opts, stack, events, local, cancel };
    let session = tokio::sync::Mutex::new(Session {
        public_url,
        public,
        changes,
        tunnel_gone: false,
        state: None,
        turns: 0,
    });
    // The home's daemon owns the relay links and the inbox: this room starts
    // it in-process when none runs, or uses the running one (a `serve` or
    // `daemon` of this home), and attaches again if that one stops.
    consumer::run_attached(&opts.home, &DaemonOptions::default(), cancel.clone(), |dc, owner| {
        attached(dc, owner, &ctx, &session)
    })
    .await?
}

/// What a room run keeps across attachments to the home's daemon.
struct Ctx<'a> {
    opts: &'a OpenOptions,
    stack: &'a RoomStack,
    events: &'a UnboundedSender<RoomEvent>,
    local: RelayUrl,
    cancel: &'a CancellationToken,
}

/// The room's state, carried from one attachment to the next.
struct Session {
    /// The tunnel's URL, if any.
    public_url: Option<Url>,
    /// The relay URL guests use.
    public: RelayUrl,
    changes: tokio::sync::watch::Receiver<TunnelState>,
    /// The tunnel supervisor is gone (no tunnel): nothing more will change.
    tunnel_gone: bool,
    /// Published once the daemon set the room up (its invite is in it).
    state: Option<(RoomState, String)>,
    /// Turns (replies, the seed) taken by earlier attachments.
    turns: u64,
}

/// One attachment: set the room up through the daemon (the first time), then
/// serve (or idle) until cancelled, `--max-turns`, or the daemon goes away;
/// tunnel moves are handed to the daemon meanwhile.
async fn attached(
    dc: DaemonClient,
    owner: bool,
    ctx: &Ctx<'_>,
    session: &tokio::sync::Mutex<Session>,
) -> Result<Result<RoomEnd, RoomError>, DaemonError> {
    let mut st = session.lock().await;
    if st.state.is_none() {
        match ready(&dc, ctx, &st).await {
            Ok(ready) => st.state = Some(ready),
            Err(e) => return split(e),
        }
    }
    let opts = ctx.opts;
    let serve_opts = opts.handler.as_ref().map(|h| ServeOptions {
        handler: h.clone(),
        // The seed is turn 1: once a turn is counted it was sent (no resend).
        seed: if st.turns == 0 { opts.seed.clone() } else { None },
        max_turns: opts.max_turns.map(|m| m.saturating_sub(st.turns)),
        once: opts.once,
        concurrency: opts.concurrency.max(1),
    });
    let turns = std::cell::Cell::new(0u64);
    let serving = async {
        match &serve_opts {
            Some(so) => {
                let mut emit = |ev: Event| {
                    // Turns count replies, as in the TypeScript agentroom.
                    if matches!(ev, Event::Replied { .. }) {
                        turns.set(turns.get() + 1);
                    }
                    if !matches!(ev, Event::Done { .. }) {
                        let _ = ctx.events.send(RoomEvent::Serve(ev));
                    }
                };
                let home = &opts.home;
                Some(consumer::serve(dc.clone(), owner, home, so, ctx.cancel, &mut emit).await)
            }
            None => std::future::pending().await,
        }
    };
    tokio::pin!(serving);
    let outcome = loop {
        let st = &mut *st;
        tokio::select! {
            r = &mut serving => {
                break match r {
                    Some(Ok(_)) if !ctx.cancel.is_cancelled() => Ok(Ok(RoomEnd::MaxTurns)),
                    Some(Ok(_)) | None => Ok(Ok(RoomEnd::Cancelled)),
                    Some(Err(e)) => Err(e),
                };
            }
            () = ctx.cancel.cancelled() => break Ok(Ok(RoomEnd::Cancelled)),
            changed = st.changes.changed(), if !st.tunnel_gone => {
                if changed.is_err() {
                    st.tunnel_gone = true;
                    continue;
                }
                let now = st.changes.borrow_and_update().clone();
                match now {
                    TunnelState::Up { url, .. } if Some(&url) != st.public_url.as_ref() => {
                        if let Err(e) = moved(&dc, ctx, st, url).await {
                            break split(e);
                        }
                    }
                    TunnelState::Up { url, restarts } => {
                        // bore asks for its old port first: same URL, nothing to tell.
                        tracing::info!(%url, restarts, "tunnel back at the same URL");
                    }
                    TunnelState::Down { restarts, retry_in } => {
                        tracing::info!(restarts, ?retry_in, "tunnel down; restarting");
                        let _ = ctx.events.send(RoomEvent::TunnelDown { restarts, retry_in });
                    }
                    TunnelState::Stopped => {}
                }
            }
        }
    };
    st.turns += turns.get();
    outcome
}

/// Have the daemon set the room up (its port and URLs recorded, guests of an
/// earlier room adopted, the invite published), write the state file and say
/// `Ready`. Returns the state and the invite's id.
async fn ready(
    dc: &DaemonClient,
    ctx: &Ctx<'_>,
    st: &Session,
) -> Result<(RoomState, String), RoomError> {
    let (opts, home, public) = (ctx.opts, &ctx.opts.home, &st.public);
    let req = RoomOpenRequest {
        port: ctx.stack.local_addr().port(),
        local: ctx.local.to_string(),
        public: public.to_string(),
        invite_ttl_secs: opts.invite_ttl.as_secs(),
        label: opts.label.clone(),
    };
    let opened = dc.room_open(&req).await?;
    let invite = opened.invite;
    let room_state = RoomState {
        version: STATE_VERSION,
        pid: std::process::id(),
        started_at: now_unix(),
        local_url: ctx.local.to_string(),
        health_url: ctx.stack.health_url(),
        public_url: public.to_string(),
        tunnel: opts.tunnel_name.clone(),
        log_file: opts.log_file.clone(),
        on_message: opts.handler.as_ref().map(|h| h.command.clone()),
        tunnel_pgid: ctx.stack.tunnel_pgid(),
        invite: Some(invite.invite.clone()),
        lan_url: ctx.stack.lan_url(),
        tunnel_url: opts.public_url.as_ref().and(st.public_url.as_ref()).map(Url::to_string),
        relay_update: opened.relay_update.clone(),
    };
    state::write(home.dir(), &room_state)?;
    let _ = ctx.events.send(RoomEvent::Ready(Box::new(Ready {
        relay_url: public.to_string(),
        public_url: st.public_url.as_ref().map(Url::to_string),
        local_url: ctx.local.to_string(),
        lan_url: ctx.stack.lan_url(),
        accept_command: invite::accept_command(&invite.invite),
        invite: invite.invite,
        invite_id: invite.id.clone(),
        expires_at: invite.expires_at,
        handler: opts.handler.is_some(),
        home: home.dir().to_path_buf(),
    })));
    tracing::info!(relay = %public, "room ready");
    if let Some(update) = opened.relay_update {
        tracing::info!(relay = %public, "the room's public URL changed; printed a relay update");
        send_relay_update(ctx.events, public, update);
    }
    Ok((room_state, invite.id))
}

/// The tunnel has a new URL: the daemon tells the guests (sealed
/// `relay_moved`), signs a relay update and renews an unaccepted invite; the
/// state file follows.
async fn moved(
    dc: &DaemonClient,
    ctx: &Ctx<'_>,
    st: &mut Session,
    new_url: Url,
) -> Result<(), RoomError> {
    let (room_state, invite_id) = st.state.as_mut().expect("a room moves only once it is ready");
    if ctx.opts.public_url.is_some() {
        // Guests dial --public-url, which did not move: nothing to announce,
        // but the proxy in front must now forward to the tunnel's new address.
        tracing::warn!(tunnel = %new_url, relay = %st.public, "the tunnel restarted at a new address: point the proxy behind --public-url at it");
        room_state.tunnel_pgid = ctx.stack.tunnel_pgid();
        room_state.tunnel_url = Some(new_url.to_string());
        state::write(ctx.opts.home.dir(), room_state)?;
        st.public_url = Some(new_url);
        return Ok(());
    }
    let public =
        RelayUrl::parse(&ctx.stack.tunnel_relay_url(&new_url)).map_err(ClientError::from)?;
    let req = RoomMovedRequest {
        local: ctx.local.to_string(),
        public: public.to_string(),
        previous: room_state.public_url.clone(),
        invite_id: invite_id.clone(),
        invite_ttl_secs: ctx.opts.invite_ttl.as_secs(),
        label: ctx.opts.label.clone(),
    };
    let out = dc.room_moved(&req).await?;
    room_state.tunnel_pgid = ctx.stack.tunnel_pgid();
    tracing::info!(relay = %public, peers_notified = out.peers_notified, "tunnel restarted with a new public URL");
    let _ = ctx.events.send(RoomEvent::TunnelUrlChanged {
        public_url: new_url.to_string(),
        relay_url: public.to_string(),
        peers_notified: usize::try_from(out.peers_notified).unwrap_or(usize::MAX),
    });
    if let Some(update) = out.relay_update {
        room_state.relay_update = Some(update.clone());
        send_relay_update(ctx.events, &public, update);
    }
    match out.invite {
        Some(row) => {
            *invite_id = row.id.clone();
            room_state.invite = Some(row.invite.clone());
            let _ = ctx.events.send(RoomEvent::InviteRenewed {
                accept_command: invite::accept_command(&row.invite),
                invite: row.invite,
                expires_at: row.expires_at,
            });
        }
        None if !out.invite_open => room_state.invite = None,
        None => {}
    }
    room_state.public_url = public.to_string();
    state::write(ctx.opts.home.dir(), room_state)?;
    st.public = public;
    st.public_url = Some(new_url);
    Ok(())
}

/// A room failure as one attachment's outcome: the daemon going away is the
/// outer error ([`consumer::run_attached`] attaches again), anything else ends
/// the room.
fn split(e: RoomError) -> Result<Result<RoomEnd, RoomError>, DaemonError> {
    match e {
        RoomError::Daemon(d) => Err(d),
        other => Ok(Err(other)),
    }
}

fn send_relay_update(events: &UnboundedSender<RoomEvent>, public: &RelayUrl, update: String) {
    let _ = events.send(RoomEvent::RelayUpdate {
        relay_url: public.to_string(),
        apply_command: restart::apply_command(&update),
        update,
    });
}
