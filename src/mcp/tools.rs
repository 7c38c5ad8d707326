//! The MCP tools. Every failure a caller can cause or fix (unknown peer, bad
//! invite, relay unreachable, an argument out of range or of the wrong type)
//! comes back as a tool result with `isError: true` and one clear sentence, so
//! the host agent reads it instead of its client showing an opaque protocol
//! error.

use std::time::Duration;

use rmcp::handler::server::router::tool::ToolRouter;
use rmcp::handler::server::tool::ToolCallContext;
use rmcp::handler::server::wrapper::Parameters;
use rmcp::model::{
    CallToolRequestParams, CallToolResponse, CallToolResult, ContentBlock, ErrorCode,
    Implementation, ProgressNotificationParam, ServerCapabilities, ServerConfig,
};
use rmcp::service::RequestContext;
use rmcp::{ErrorData, Json, RoleServer, ServerHandler, tool, tool_handler, tool_router};
use tokio::sync::oneshot;

use super::link::{Job, LinkHandle};
use super::schema::{
    AckArgs, AckResult, Identity, InboxCounts, InviteAcceptArgs, InviteAcceptResult,
    InviteCreateArgs, InviteCreateResult, Message, NextMessageArgs, NextMessageResult,
    OutboxCounts, PeerInfo, PeersResult, PeersUpdateArgs, PeersUpdateResult, RelayInfo, SendArgs,
    SendResult, StatusResult,
};
use super::{INSTRUCTIONS, limits};
use crate::client::home::Home;
use crate::client::relay_url::RelayUrl;
use crate::client::store::{self, Store};
use crate::client::{ClientError, now_ms, now_secs, peers};
use crate::crypto::{IdentityPublicKey, fingerprint};
use crate::daemon::db::Db;
use crate::daemon::lease;

/// A tool's failure: the sentence the agent reads.
type ToolResult<T> = Result<Json<T>, String>;

/// The server: shared by every concurrent tool call.
#[derive(Debug, Clone)]
pub(crate) struct AgentroomServer {
    home: Home,
    me: IdentityPublicKey,
    /// The database on its own thread: no lock on the runtime's workers, no
    /// SQLite wait blocking one.
    db: Db,
    link: LinkHandle,
    tool_router: ToolRouter<Self>,
}

#[tool_router]
impl AgentroomServer {
    pub(crate) fn new(home: Home, me: IdentityPublicKey, db: Db, link: LinkHandle) -> Self {
        Self { home, me, db, link, tool_router: Self::tool_router() }
    }

    async fn with_db<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Store) -> Result<T, ClientError> + Send + 'static,
    ) -> Result<T, String> {
        match self.db.call(f).await {
            Ok(r) => r.map_err(|e| crate::client::error_text(&e)),
            Err(e) => Err(e.to_string()),
        }
    }

    async fn run_job<T>(
        &self,
        job: impl FnOnce(oneshot::Sender<Result<T, crate::daemon::DaemonError>>) -> Job,
    ) -> Result<T, String> {
        let (tx, rx) = oneshot::channel();
        if !self.link.submit(job(tx)).await {
            return Err("the server is shutting down".into());
        }
        match rx.await {
            Ok(r) => r.map_err(|e| crate::client::error_text(&e)),
            Err(_) => Err("the server is shutting down".into()),
        }
    }

    /// Wait up to `timeout` for a message (from `from` if given; with
    /// `reply_to`, only the reply to that envelope of ours) and lease it.
    async fn wait_and_lease(
        &self,
        from: Option<IdentityPublicKey>,
        reply_to: Option<crate::protocol::EnvelopeId>,
        timeout: Duration,
        lease: Duration,
        ctx: &RequestContext<RoleServer>,
    ) -> Result<Option<Message>, String> {
        let cancelled = &ctx.ct;
        let start = tokio::time::Instant::now();
        let deadline = start + timeout;
        let lease_ms = u64::try_from(lease.as_millis()).unwrap_or(u64::MAX);
        // Hosts that sent a progress token may time a quiet call out; a
        // heartbeat tells them the wait is alive.
        let progress = ctx.meta.get_progress_token();
        let mut heartbeat =
            tokio::time::interval_at(start + limits::PROGRESS_EVERY, limits::PROGRESS_EVERY);
        loop {
            // Register for the wake-up before looking, so a message stored
            // between the look and the wait is not missed.
            let arrived = self.link.arrived.notified();
            tokio::pin!(arrived);
            arrived.as_mut().enable();
            // A caller that gave up (notifications/cancelled) must not be
            // handed a lease it will never see.
            if cancelled.is_cancelled() {
                return Ok(None);
            }
            let leased = self
                .with_db(move |db| {
                    Ok(match &reply_to {
                        Some(id) => lease::lease_reply(db, id, now_ms(), lease_ms)?,
                        None => lease::lease_next(db, from.as_ref(), now_ms(), lease_ms, &[])?,
                    })
                })
                .await?;
            if let Some(m) = leased {
                let pk = m.peer;
                let peer = self.with_db(move |db| Ok(store::get_peer(db.conn(), &pk)?)).await?;
                tracing::info!(from = %m.peer.fmt_short(), seq = m.seq, delivery = m.delivery, "message leased");
                return Ok(Some(Message::new(&m, peer.as_ref())));
            }
            if tokio::time::Instant::now() >= deadline {
                return Ok(None);
            }
            // The poll catches rows stored by other processes of this home and
            // leases that expire while we wait.
            tokio::select! {
                () = &mut arrived => {}
                () = tokio::time::sleep(limits::INBOX_POLL) => {}
                () = tokio::time::sleep_until(deadline) => {}
                () = cancelled.cancelled() => {}
                _ = heartbeat.tick(), if progress.is_some() => {
                    if let Some(token) = progress.clone() {
                        let waited = start.elapsed().as_secs_f64();
                        let note = ProgressNotificationParam::new(token, waited)
                            .with_total(timeout.as_secs_f64())
                            .with_message("waiting for a message");
                        let _ = ctx.peer.notify_progress(note).await;
                    }
                }
            }
        }
    }

    async fn peer_list(&self) -> Result<Vec<PeerInfo>, String> {
        let me = self.me;
        self.with_db(move |db| Ok(PeerInfo::list(db.conn(), &me)?)).await
    }

    /// Send a text message to a paired peer. Returns once the relay holds it
    /// ("delivered": the peer is online and has it; "stored": queued at the
    /// relay until the peer connects), or "queued" when the relay is
    /// unreachable (it goes out when the link is back; do not resend). With wait_reply_secs, also waits that
    /// long for the peer's next message and returns it leased: ack it like a
    /// next_message result.
    #[tool(name = "send")]
    async fn send(
        &self,
        ctx: RequestContext<RoleServer>,
        Parameters(args): Parameters<SendArgs>,
    ) -> ToolResult<SendResult> {
        let wait =
            limits::secs_arg("wait_reply_secs", args.wait_reply_secs, 0, limits::MAX_WAIT_SECS)?;
        let text = args.text.trim_end_matches(['\n', '\r']).to_owned();
        if text.trim().is_empty() {
            return Err("refusing to send an empty message".into());
        }
        let q = args.peer.clone();
        let peer = self.with_db(move |db| peers::resolve(db.conn(), &q)).await?;
        let query = peer.pk.to_b64u();
        let relay = peer.relay_url.clone();
        // The daemon keeps the reply away from other consumers of this home
        // (a `serve`) while we wait for it.
        let hold_reply = wait.filter(|w| !w.is_zero());
        let out =
            self.run_job(|done| Job::Send { peer: query, relay, text, hold_reply, done }).await?;
        let reply = match wait {
            Some(w) if !w.is_zero() => {
                // Only the answer to this message: never an older unread one.
                let id = crate::protocol::EnvelopeId::from_b64u(&out.id)
                    .ok_or_else(|| "the daemon returned a malformed envelope id".to_owned())?;
                self.wait_and_lease(Some(peer.pk), Some(id), w, limits::DEFAULT_LEASE, &ctx).await?
            }
            _ => None,
        };
        Ok(Json(SendResult {
            id: out.id,
            to: out.to,
            status: match out.status {
                crate::daemon::types::SendStatus::Delivered => "delivered",
                crate::daemon::types::SendStatus::Stored => "stored",
                crate::daemon::types::SendStatus::Queued => "queued",
            }
            .to_owned(),
            reply,
        }))
    }

    /// Wait up to timeout_secs (default 30, max 300) for the next incoming
    /// message and lease it to you. Returns {"message": null} on timeout: just
    /// call next_message again. Handle the message, then call ack with its
    /// lease_id; without an ack it is offered again after the lease
    /// (lease_secs, default 60), so a crash never loses one.
    #[tool(name = "next_message")]
    async fn next_message(
        &self,
        ctx: RequestContext<RoleServer>,
        Parameters(args): Parameters<NextMessageArgs>,
    ) -> ToolResult<NextMessageResult> {
        let timeout =
            limits::secs_arg("timeout_secs", args.timeout_secs, 0, limits::MAX_WAIT_SECS)?
                .unwrap_or(limits::DEFAULT_WAIT);
        let lease = limits::secs_arg("lease_secs", args.lease_secs, 1, limits::MAX_LEASE_SECS)?
            .unwrap_or(limits::DEFAULT_LEASE);
        let from = match args.from.as_deref() {
            Some(q) => {
                let q = q.to_owned();
                Some(self.with_db(move |db| peers::resolve(db.conn(), &q)).await?.pk)
            }
            None => None,
        };
        let message = self.wait_and_lease(from, None, timeout, lease, &ctx).await?;
        let (remaining, _) = self.with_db(|db| Ok(lease::counts(db.conn(), now_ms())?)).await?;
        Ok(Json(NextMessageResult { message, remaining }))
    }

    /// Confirm you handled a message from next_message (or a send reply): it is
    /// marked consumed and never offered again. Acking twice is harmless.
    #[tool(name = "ack")]
    async fn ack(&self, Parameters(args): Parameters<AckArgs>) -> ToolResult<AckResult> {
        let lease_id = args.lease_id.trim().to_owned();
        let outcome = self.with_db(move |db| Ok(lease::ack(db.conn(), &lease_id)?)).await?;
        match outcome {
            lease::AckOutcome::Acked => Ok(Json(AckResult { status: "acked".into() })),
            lease::AckOutcome::AlreadyAcked => {
                Ok(Json(AckResult { status: "already_acked".into() }))
            }
            lease::AckOutcome::Unknown => Err(format!(
                "no message holds lease {:?}: the lease expired and the message was offered again \
                 (ack the newer lease_id), or the id is wrong",
                args.lease_id
            )),
        }
    }

    /// List paired peers: key (pk), label, fingerprint, safety number (compare it
    /// with the peer out of band), verified (the user marked it compared, with
    /// `agentroom peers verify`), relay, unread count.
    #[tool(name = "peers")]
    async fn peers(&self) -> ToolResult<PeersResult> {
        Ok(Json(PeersResult { peers: self.peer_list().await? }))
    }

    /// Create a single-use invite and publish it to the relay. Give the invite
    /// (or accept_command) to the other agent over a channel you trust; keep
    /// calling next_message to hear from it once it accepts.
    #[tool(name = "invite_create")]
    async fn invite_create(
        &self,
        Parameters(args): Parameters<InviteCreateArgs>,
    ) -> ToolResult<InviteCreateResult> {
        let ttl = match args.expires.as_deref() {
            Some(s) => crate::cli::duration::parse_duration(s)?,
            None => limits::DEFAULT_INVITE_TTL,
        };
        if ttl.is_zero() {
            return Err("expires must be longer than 0s".into());
        }
        let relay = self.default_relay(args.relay.as_deref())?;
        let label = args.label.filter(|l| !l.trim().is_empty());
        let req = crate::daemon::types::InviteCreateRequest {
            relay: Some(relay.to_string()),
            ttl_secs: Some(ttl.as_secs().max(1)),
            label,
            via: None,
        };
        let row = self.run_job(|done| Job::InviteCreate { req, done }).await?;
        Ok(Json(InviteCreateResult {
            accept_command: format!("agentroom invite accept '{}'", row.invite),
            id: row.id,
            invite: row.invite,
            relay: row.relay,
            expires_at: row.expires_at,
            label: row.label,
        }))
    }

    /// Accept an invite (`ar1.…`) from another agent: pair with it and say
    /// hello. Compare the returned safety number with the host out of band.
    #[tool(name = "invite_accept")]
    async fn invite_accept(
        &self,
        Parameters(args): Parameters<InviteAcceptArgs>,
    ) -> ToolResult<InviteAcceptResult> {
        let invite = args.invite.trim().to_owned();
        let label = args.label.filter(|l| !l.trim().is_empty());
        let req = crate::daemon::types::InviteAcceptRequest { invite, label };
        let a = self.run_job(|done| Job::InviteAccept { req, done }).await?;
        Ok(Json(InviteAcceptResult {
            peer: a.peer,
            label: a.label,
            fingerprint: a.fingerprint,
            safety_number: a.safety_number,
            relay: a.relay,
        }))
    }

    /// Apply a relay update (`arru1.…`) a host printed when its room came back at
    /// a new URL: checked against the host's signature, refused if forged or
    /// older than the last one applied. Then send and next_message use the new relay.
    #[tool(name = "peers_update")]
    async fn peers_update(
        &self,
        Parameters(args): Parameters<PeersUpdateArgs>,
    ) -> ToolResult<PeersUpdateResult> {
        let update = args.update.clone();
        let p = self.with_db(move |db| peers::apply_relay_update(db.conn(), &update)).await?;
        Ok(Json(PeersUpdateResult { peer: p.pk.to_b64u(), label: p.label, relay: p.relay_url }))
    }

    /// This agent's identity and fingerprint, relay links (up or down), peers,
    /// inbox and outbox counts, and the room running in this home, if any.
    #[tool(name = "status")]
    async fn status(&self) -> ToolResult<StatusResult> {
        let peers = self.peer_list().await?;
        let (waiting, leased, pending, invites_open) = self
            .with_db(|db| {
                let (w, l) = lease::counts(db.conn(), now_ms())?;
                let p = store::outbox_pending_count(db.conn())?;
                let now = now_secs();
                let open = store::list_invites(db.conn())?
                    .iter()
                    .filter(|i| i.status == store::InviteStatus::Open && i.expires_at > now)
                    .count();
                Ok((w, l, p, u64::try_from(open).unwrap_or(u64::MAX)))
            })
            .await?;
        let relays = self
            .link
            .relays()
            .into_iter()
            .map(|(url, l)| RelayInfo {
                url,
                up: l.up,
                last_error: l.last_error,
                pending_at_login: l.pending_at_login,
            })
            .collect();
        let room = match crate::room::control::status(self.home.dir()).await {
            Ok(s) => serde_json::to_value(s).expect("room status is strings and integers"),
            Err(e) => serde_json::json!({"error": crate::client::error_text(&e)}),
        };
        Ok(Json(StatusResult {
            identity: Identity { pk: self.me.to_b64u(), fingerprint: fingerprint(&self.me) },
            home: self.home.dir().display().to_string(),
            relays,
            peers,
            inbox: InboxCounts { waiting, leased },
            outbox: OutboxCounts { pending },
            invites_open,
            room,
        }))
    }

    /// The relay for a new invite: the argument, else `setup --relay`, else the
    /// public URL of the room running in this home.
    fn default_relay(&self, arg: Option<&str>) -> Result<RelayUrl, String> {
        let pick = match arg.map(str::trim).filter(|s| !s.is_empty()) {
            Some(r) => r.to_owned(),
            None => {
                let config = self.home.load_config().map_err(|e| crate::client::error_text(&e))?;
                let room = crate::room::state::read(self.home.dir()).ok().flatten();
                match (config.relay_url, room) {
                    (Some(r), _) => r,
                    (None, Some(room)) => room.public_url,
                    (None, None) => {
                        return Err(
                            "no relay: pass relay (a ws://, wss://, http:// or https:// URL), \
                                    run `agentroom setup --relay URL` once, or start a room"
                                .into(),
                        );
                    }
                }
            }
        };
        RelayUrl::parse(&pick).map_err(|e| e.to_string())
    }
}

#[tool_handler]
impl ServerHandler for AgentroomServer {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(ServerCapabilities::builder().enable_tools().build())
            .with_server_info(
                Implementation::new("agentroom", env!("CARGO_PKG_VERSION"))
                    .with_title("agentroom: end-to-end encrypted line to another agent"),
            )
            .with_instructions(INSTRUCTIONS)
    }

    /// Route the call; arguments that do not match the tool's schema become a
    /// tool error the agent can read and fix, not a JSON-RPC error.
    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, ErrorData> {
        let name = request.name.clone();
        let tcc = ToolCallContext::new(self, request, context);
        match self.tool_router.call(tcc).await {
            Err(e) if e.code == ErrorCode::INVALID_PARAMS => {
                tracing::info!(tool = %name, "tool call with bad arguments");
                Ok(CallToolResult::error(vec![ContentBlock::text(format!(
                    "bad arguments for {name}: {}",
                    e.message
                ))])
                .into())
            }
            other => other,
        }
    }
}
