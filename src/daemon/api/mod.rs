//! The local API: HTTP/1.1 JSON (axum) on the home's Unix socket, and on
//! loopback TCP with `--http`. Every route is registered once in [`router`],
//! with its OpenAPI description next to the handler; adding an endpoint is one
//! `.routes(routes!(handler))` line.

use std::convert::Infallible;
use std::path::Path;
use std::time::Duration;

use axum::Json;
use axum::extract::{Path as UrlPath, Query, State};
use axum::http::StatusCode;
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures_util::Stream;
use tokio::sync::{broadcast, mpsc, oneshot};
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

mod invites;

use super::DaemonError;
use super::db::Db;
use super::engine::{Job, Replied, Shared};
use super::lease;
use super::types::*;
use crate::client::store::{self, Store};
use crate::client::{ClientError, now_ms, peers};
use crate::crypto::{IdentityPublicKey, fingerprint};

/// Longest `wait_ms`/`wait_reply_ms` one call may ask for.
const MAX_WAIT_MS: u64 = 300_000;
/// Default lease: long enough for a handler run, short enough that a consumer
/// that died gives its message back within a minute.
const DEFAULT_LEASE_MS: u64 = 60_000;
/// Lease bounds.
const LEASE_MS: std::ops::RangeInclusive<u64> = 1_000..=3_600_000;
/// How long `send` waits for the relay's `sent` when the call names no limit.
const DEFAULT_WAIT_SENT_MS: u64 = 30_000;
/// Re-read the inbox this often while a `next` waits (leases that expire).
const INBOX_POLL: Duration = Duration::from_millis(500);

/// What the daemon knows about itself.
#[derive(Debug, Clone)]
pub(crate) struct Info {
    pub(crate) home: String,
    pub(crate) socket: String,
    pub(crate) http: Option<String>,
    pub(crate) me: IdentityPublicKey,
}

/// Handler state.
#[derive(Debug, Clone)]
pub(crate) struct AppState {
    info: std::sync::Arc<Info>,
    db: Db,
    jobs: mpsc::Sender<Job>,
    shared: Shared,
    /// Fires when the daemon stops: event streams end, so shutdown never
    /// waits on a subscriber.
    stop: tokio_util::sync::CancellationToken,
}

impl AppState {
    pub(crate) fn new(
        info: Info,
        db: Db,
        jobs: mpsc::Sender<Job>,
        shared: Shared,
        stop: tokio_util::sync::CancellationToken,
    ) -> Self {
        Self { info: std::sync::Arc::new(info), db, jobs, shared, stop }
    }

    async fn job<T>(
        &self,
        job: impl FnOnce(oneshot::Sender<Result<T, ClientError>>) -> Job,
    ) -> Result<T, ApiError> {
        let (tx, rx) = oneshot::channel();
        self.jobs.send(job(tx)).await.map_err(|_| ApiError::stopped())?;
        Ok(rx.await.map_err(|_| ApiError::stopped())??)
    }

    async fn db<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Store) -> Result<T, ClientError> + Send + 'static,
    ) -> Result<T, ApiError> {
        Ok(self.db.call(f).await.map_err(|_| ApiError::stopped())??)
    }
}

/// A failure as the API reports it.
#[derive(Debug)]
pub(crate) struct ApiError {
    status: StatusCode,
    body: ErrorBody,
}

impl ApiError {
    fn new(status: StatusCode, class: ErrorClass, error: impl Into<String>) -> Self {
        Self { status, body: ErrorBody { error: error.into(), class } }
    }

    fn usage(error: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, ErrorClass::Usage, error)
    }

    fn stopped() -> Self {
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            ErrorClass::Failure,
            DaemonError::Stopped.to_string(),
        )
    }
}

impl From<ClientError> for ApiError {
    fn from(e: ClientError) -> Self {
        use crate::client::ErrorClass as C;
        let (status, class) = match e.class() {
            C::Usage => (StatusCode::BAD_REQUEST, ErrorClass::Usage),
            C::Network => (StatusCode::BAD_GATEWAY, ErrorClass::Network),
            C::NoSession => (StatusCode::NOT_FOUND, ErrorClass::NoSession),
            C::Failure => match e {
                ClientError::Store(_) => (StatusCode::INTERNAL_SERVER_ERROR, ErrorClass::Failure),
                _ => (StatusCode::UNPROCESSABLE_ENTITY, ErrorClass::Failure),
            },
        };
        Self::new(status, class, e.to_string())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.status, Json(self.body)).into_response()
    }
}

type ApiResult<T> = Result<Json<T>, ApiError>;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "agentroom local API",
        description = "The per-home daemon's API: HTTP/1.1 JSON on the Unix socket `<home>/agentroom.sock` (the file system is the access control) and, with `agentroom daemon --http`, on loopback TCP with `Authorization: Bearer <home>/http-token`. Errors are `ErrorBody` with a 4xx/5xx status.",
        license(name = "MIT OR Apache-2.0")
    ),
    tags((name = "daemon", description = "The one owner of a home's relay links, inbox and outbox"),
        (name = "room", description = "What `room open` asks of the home's daemon"),
        (name = "ui", description = "The web view (`agentroom ui`): its page, login, pause switch and verified marks"))
)]
struct ApiDoc;

/// Every route, each with its OpenAPI description: one line per endpoint.
fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(status))
        .routes(routes!(list_peers))
        .routes(routes!(remove_peer))
        .routes(routes!(verify_peer))
        .routes(routes!(send))
        .routes(routes!(next_message))
        .routes(routes!(ack_message))
        .routes(routes!(handler_started))
        .routes(routes!(invites::list_invites, invites::create_invite))
        .routes(routes!(invites::accept_invite))
        .routes(routes!(invites::revoke_invite))
        .routes(routes!(events))
        .routes(routes!(history))
        .routes(routes!(invites::room_open))
        .routes(routes!(invites::room_moved))
}

/// The router, and the OpenAPI document generated from it (also served at
/// `GET /v1/openapi.json`).
pub(crate) fn router(state: AppState) -> (axum::Router, utoipa::openapi::OpenApi) {
    let (router, mut api) = routes().with_state(state).split_for_parts();
    api.merge(crate::ui::openapi());
    // Serialised once: the handler is cloned with the router's services, so
    // it holds shared bytes rather than the document's tree.
    let doc = bytes::Bytes::from(serde_json::to_vec(&api).expect("the document serialises"));
    let router = router.route(
        "/v1/openapi.json",
        axum::routing::get(move || {
            let doc = doc.clone();
            async move { ([(axum::http::header::CONTENT_TYPE, "application/json")], doc) }
        }),
    );
    (router, api)
}

/// The OpenAPI document (what `GET /v1/openapi.json` serves), without a daemon.
pub fn openapi_json() -> String {
    let mut doc = routes().into_openapi();
    doc.merge(crate::ui::openapi());
    let mut s = doc.to_pretty_json().expect("the document serialises");
    s.push('\n');
    s
}

/// Bind the Unix socket 0600 (any stale file from a killed daemon is ours to
/// remove: we hold the home lock).
pub(crate) fn bind_unix(path: &Path) -> Result<tokio::net::UnixListener, DaemonError> {
    use std::os::unix::fs::PermissionsExt;
    let io = |source| DaemonError::Io { path: path.to_path_buf(), source };
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(io(e)),
        _ => {}
    }
    // Bind under a tight umask-free dance: create, then chmod before anyone is
    // told the path (the home is 0700 anyway).
    let listener = tokio::net::UnixListener::bind(path).map_err(io)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).map_err(io)?;
    Ok(listener)
}

/// The daemon: pid, identity, links, queue counts.
#[utoipa::path(get, path = "/v1/status", tag = "daemon",
    responses((status = 200, body = StatusResponse), (status = 500, body = ErrorBody)))]
async fn status(State(s): State<AppState>) -> ApiResult<StatusResponse> {
    let (waiting, leased, pending) = s
        .db(|db| {
            let (w, l) = lease::counts(db.conn(), now_ms())?;
            Ok((w, l, store::outbox_pending_count(db.conn())?))
        })
        .await?;
    let relays = s.shared.links.lock().map(|l| l.values().cloned().collect()).unwrap_or_default();
    Ok(Json(StatusResponse {
        pid: std::process::id(),
        version: env!("CARGO_PKG_VERSION").into(),
        home: s.info.home.clone(),
        socket: s.info.socket.clone(),
        http: s.info.http.clone(),
        pk: s.info.me.to_b64u(),
        fingerprint: fingerprint(&s.info.me),
        relays,
        inbox_waiting: waiting,
        inbox_leased: leased,
        outbox_pending: pending,
    }))
}

/// Paired peers, with safety numbers and unread counts.
#[utoipa::path(get, path = "/v1/peers", tag = "daemon",
    responses((status = 200, body = PeersResponse), (status = 500, body = ErrorBody)))]
async fn list_peers(State(s): State<AppState>) -> ApiResult<PeersResponse> {
    let me = s.info.me;
    let peers = s.db(move |db| Ok(PeerInfo::list(db.conn(), &me)?)).await?;
    Ok(Json(PeersResponse { peers }))
}

/// Mark a peer verified after comparing the safety number out of band (or take
/// the mark away). The mark drops by itself when either side's key changes.
#[utoipa::path(post, path = "/v1/peers/verify", tag = "daemon", request_body = VerifyRequest,
    responses((status = 200, body = PeerInfo), (status = 404, body = ErrorBody),
        (status = 422, body = ErrorBody)))]
async fn verify_peer(
    State(s): State<AppState>,
    Json(req): Json<VerifyRequest>,
) -> ApiResult<PeerInfo> {
    let me = s.info.me;
    let info = s
        .db(move |db| {
            let conn = db.conn();
            let row = peers::set_verified(
                conn,
                &me,
                &req.peer,
                req.safety_number.as_deref(),
                req.verified,
            )?;
            let unread =
                store::inbox_new(conn, Some(&row.pk))?.iter().filter(|m| m.kind == "text").count();
            let expire = store::peer_expiry(conn, &row.pk)?;
            Ok(PeerInfo::new(&me, &row, u64::try_from(unread).unwrap_or(u64::MAX), expire))
        })
        .await?;
    Ok(Json(info))
}

/// Forget a peer (label, key, or a unique prefix) and ask its relay to drop
/// the pairing and anything queued for it (best effort: `relay_confirmed`).
#[utoipa::path(delete, path = "/v1/peers/{peer}", tag = "daemon",
    params(("peer" = String, Path, description = "Label, key, or a unique prefix of the key")),
    responses((status = 200, body = PeerRemoved), (status = 404, body = ErrorBody)))]
async fn remove_peer(
    State(s): State<AppState>,
    UrlPath(peer): UrlPath<String>,
) -> ApiResult<PeerRemoved> {
    let (row, relay_confirmed) = s.job(|done| Job::PeerRemove { peer, done }).await?;
    Ok(Json(PeerRemoved {
        pk: row.pk.to_b64u(),
        label: row.label,
        fingerprint: fingerprint(&row.pk),
        relay_confirmed,
    }))
}

/// Send a message. Returns when the relay holds it (`delivered`/`stored`), or
/// `queued` after `wait_sent_ms`; with `wait_reply_ms`, also waits for the
/// reply to this very message (its `reply_to` names our id) and returns it
/// consumed.
#[utoipa::path(post, path = "/v1/send", tag = "daemon", request_body = SendRequest,
    responses((status = 200, body = SendResponse), (status = 400, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)))]
async fn send(State(s): State<AppState>, Json(req): Json<SendRequest>) -> ApiResult<SendResponse> {
    if req.text.trim().is_empty() {
        return Err(ApiError::usage("refusing to send an empty message"));
    }
    let wait_reply = req.wait_reply_ms.map(|ms| Duration::from_millis(ms.min(MAX_WAIT_MS)));
    let wait_sent =
        Duration::from_millis(req.wait_sent_ms.unwrap_or(DEFAULT_WAIT_SENT_MS).min(MAX_WAIT_MS));
    // Subscribe before the message can go out, so its `sent` cannot be missed.
    let mut events = s.shared.events.subscribe();
    let (peer, text, want) = (req.peer, req.text, wait_reply.is_some());
    let hold_reply = req.hold_reply_ms.map(|ms| Duration::from_millis(ms.min(MAX_WAIT_MS)));
    let queued = s.job(|done| Job::Send { peer, text, wait_reply: want, hold_reply, done }).await?;
    let id = queued.id;
    let status = wait_sent_status(&s, &mut events, &id, wait_sent).await?;
    let (mut reply, mut reply_error) = (None, None);
    if let (Some(limit), Some(rx)) = (wait_reply, queued.reply) {
        match tokio::time::timeout(limit, rx).await {
            Ok(Ok(m)) => reply = Some(m),
            Ok(Err(_)) => reply_error = Some(DaemonError::Stopped.to_string()),
            Err(_) => {
                reply_error = Some(ClientError::Timeout(limit, "a reply").to_string());
            }
        }
    }
    Ok(Json(SendResponse {
        id: id.to_b64u(),
        to: queued.peer.pk.to_b64u(),
        status,
        reply,
        reply_error,
    }))
}

/// Wait for the relay's verdict on `id`: events first, the outbox as the
/// authority (a `sent` handled inside another call's wait is not re-broadcast).
async fn wait_sent_status(
    s: &AppState,
    events: &mut broadcast::Receiver<DaemonEvent>,
    id: &crate::protocol::EnvelopeId,
    limit: Duration,
) -> Result<SendStatus, ApiError> {
    let deadline = tokio::time::Instant::now() + limit;
    let want = id.to_b64u();
    loop {
        let ev = tokio::select! {
            ev = events.recv() => ev,
            () = tokio::time::sleep(INBOX_POLL) => Err(broadcast::error::RecvError::Lagged(0)),
            () = tokio::time::sleep_until(deadline) => return Ok(SendStatus::Queued),
        };
        match ev {
            Ok(DaemonEvent::Sent { id, status }) if id == want => return Ok(status),
            Ok(DaemonEvent::SendFailed { id, code, message }) if id == want => {
                return Err(ApiError::new(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    ErrorClass::Failure,
                    format!("relay refused the message: {code} ({message})"),
                ));
            }
            Ok(_) => {}
            Err(broadcast::error::RecvError::Closed) => return Err(ApiError::stopped()),
            Err(broadcast::error::RecvError::Lagged(_)) => {
                let id = *id;
                let row = s.db(move |db| Ok(store::outbox_status(db.conn(), &id)?)).await?;
                if let Some((st, _)) = row {
                    if st == "sent" {
                        return Ok(SendStatus::Stored);
                    }
                }
            }
        }
    }
}

/// Lease the next unconsumed message (waiting up to `wait_ms`). Ack it with
/// `/v1/messages/ack`; without an ack it is offered again after the lease.
#[utoipa::path(post, path = "/v1/messages/next", tag = "daemon", request_body = NextRequest,
    responses((status = 200, body = NextResponse), (status = 400, body = ErrorBody)))]
async fn next_message(
    State(s): State<AppState>,
    Json(req): Json<NextRequest>,
) -> ApiResult<NextResponse> {
    let wait = Duration::from_millis(req.wait_ms.unwrap_or(0).min(MAX_WAIT_MS));
    let lease_ms = req.lease_ms.unwrap_or(DEFAULT_LEASE_MS);
    if !LEASE_MS.contains(&lease_ms) {
        return Err(ApiError::usage(format!(
            "lease_ms must be between {} and {}, got {lease_ms}",
            LEASE_MS.start(),
            LEASE_MS.end()
        )));
    }
    let from = match req.from {
        Some(q) => Some(s.db(move |db| Ok(peers::resolve(db.conn(), &q)?.pk)).await?),
        None => None,
    };
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        // Register for the wake-up before looking, so a message stored between
        // the look and the wait is not missed.
        let arrived = s.shared.arrived.clone();
        let notified = arrived.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        let awaited = s.shared.awaited_ids();
        // Paused (the web view's switch): messages wait, leased to nobody.
        let paused = s.shared.paused.load(std::sync::atomic::Ordering::SeqCst);
        let leased = s
            .db(move |db| {
                if paused {
                    return Ok(None);
                }
                let m = lease::lease_next(db, from.as_ref(), now_ms(), lease_ms, &awaited)?;
                let Some(m) = m else { return Ok(None) };
                // A consumer that held it died with its handler running: end
                // what is left of that group before anyone runs it again.
                if let Some((pgid, start)) = store::inbox_take_handler(db.conn(), m.seq)? {
                    crate::process::end_orphaned_group(pgid, start);
                }
                let peer = store::get_peer(db.conn(), &m.peer)?;
                let remaining = lease::counts(db.conn(), now_ms())?.0;
                Ok(Some((ApiMessage::from_lease(&m, peer.as_ref()), remaining)))
            })
            .await?;
        if let Some((message, remaining)) = leased {
            return Ok(Json(NextResponse { message: Some(message), remaining }));
        }
        if tokio::time::Instant::now() >= deadline {
            let remaining = s.db(|db| Ok(lease::counts(db.conn(), now_ms())?.0)).await?;
            return Ok(Json(NextResponse { message: None, remaining }));
        }
        tokio::select! {
            () = &mut notified => {}
            () = tokio::time::sleep(INBOX_POLL) => {}
            () = tokio::time::sleep_until(deadline) => {}
        }
    }
}

/// Consume a leased message, optionally with a reply sealed in the same
/// transaction (a message is answered at most once).
#[utoipa::path(post, path = "/v1/messages/ack", tag = "daemon", request_body = AckRequest,
    responses((status = 200, body = AckResponse), (status = 404, body = ErrorBody)))]
async fn ack_message(
    State(s): State<AppState>,
    Json(req): Json<AckRequest>,
) -> ApiResult<AckResponse> {
    let lease_id = req.lease_id.trim().to_owned();
    let id = lease_id.clone();
    let (reply, handler) = (req.reply, req.handler);
    let out = s.job(|done| Job::Ack { lease_id: id, reply, handler, done }).await?;
    match out {
        Replied::Acked(reply_id) => Ok(Json(AckResponse {
            status: AckStatus::Acked,
            reply_id: reply_id.map(|r| r.to_b64u()),
        })),
        Replied::AlreadyAcked => {
            Ok(Json(AckResponse { status: AckStatus::AlreadyAcked, reply_id: None }))
        }
        Replied::Unknown => Err(ApiError::new(
            StatusCode::NOT_FOUND,
            ErrorClass::Failure,
            format!(
                "no message holds lease {lease_id:?}: the lease expired and the message was offered again, or the id is wrong"
            ),
        )),
    }
}

/// Record the process group of the handler working on a leased message (see
/// `HandlerStartedRequest`).
#[utoipa::path(post, path = "/v1/messages/started", tag = "daemon",
    request_body = HandlerStartedRequest, responses((status = 200, body = HandlerStarted)))]
async fn handler_started(
    State(s): State<AppState>,
    Json(req): Json<HandlerStartedRequest>,
) -> ApiResult<HandlerStarted> {
    let lease_id = req.lease_id.trim().to_owned();
    let recorded = s
        .db(move |db| {
            let Some((seq, ..)) = lease::leased_row(db.conn(), &lease_id)? else {
                return Ok(false);
            };
            store::inbox_set_handler(db.conn(), seq, req.pgid, req.leader_start)?;
            Ok(true)
        })
        .await?;
    Ok(Json(HandlerStarted { recorded }))
}

/// `GET /v1/history` filters.
#[derive(Debug, Default, serde::Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
struct HistoryQuery {
    /// Only this peer: label, key, or a unique prefix of the key or fingerprint.
    #[serde(default)]
    peer: Option<String>,
    /// Only messages at or after this time (unix ms).
    #[serde(default)]
    since: Option<u64>,
    /// Only the latest N.
    #[serde(default)]
    limit: Option<u32>,
}

/// The conversation in both directions, oldest first (as `agentroom history`).
#[utoipa::path(get, path = "/v1/history", tag = "daemon", params(HistoryQuery),
    responses((status = 200, body = Vec<crate::client::history::HistoryEntry>),
              (status = 404, body = ErrorBody)))]
async fn history(
    State(s): State<AppState>,
    Query(q): Query<HistoryQuery>,
) -> ApiResult<Vec<crate::client::history::HistoryEntry>> {
    let entries = s
        .db(move |db| {
            let peer = match &q.peer {
                Some(p) => Some(peers::resolve(db.conn(), p)?.pk),
                None => None,
            };
            let filter =
                crate::client::history::HistoryFilter { peer, since: q.since, limit: q.limit };
            Ok(crate::client::history::history(db.conn(), &filter)?)
        })
        .await?;
    Ok(Json(entries))
}

/// `GET /v1/events` options.
#[derive(Debug, Default, serde::Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
struct EventsQuery {
    /// First replay the events since the daemon started (at most 256): for the
    /// consumer that started the daemon and subscribes a moment later.
    #[serde(default)]
    replay: bool,
}

/// Server-Sent Events: every `DaemonEvent`, to every subscriber. Observing
/// never consumes a message.
#[utoipa::path(get, path = "/v1/events", tag = "daemon", params(EventsQuery),
    responses((status = 200, description = "text/event-stream of DaemonEvent", content_type = "text/event-stream", body = DaemonEvent)))]
async fn events(
    State(s): State<AppState>,
    Query(q): Query<EventsQuery>,
) -> Sse<impl Stream<Item = Result<SseEvent, Infallible>>> {
    let (early, rx) = s.shared.subscribe(q.replay);
    let live = futures_util::stream::unfold(rx, |mut rx| async move {
        let ev = match rx.recv().await {
            Ok(ev) => ev,
            Err(broadcast::error::RecvError::Lagged(n)) => DaemonEvent::Lagged { missed: n },
            Err(broadcast::error::RecvError::Closed) => return None,
        };
        Some((ev, rx))
    });
    let stream = futures_util::StreamExt::map(
        futures_util::StreamExt::chain(futures_util::stream::iter(early), live),
        |ev| {
            Ok(SseEvent::default()
                .event(ev.name())
                .json_data(&ev)
                .unwrap_or_else(|_| SseEvent::default().comment("unserialisable event")))
        },
    );
    let stream = futures_util::StreamExt::take_until(stream, s.stop.clone().cancelled_owned());
    Sse::new(stream).keep_alive(KeepAlive::default())
}

#[cfg(test)]
mod tests {
    /// The checked-in document is what the handlers generate. To update it:
    /// `AGENTROOM_BLESS=1 cargo test --lib openapi`.
    #[test]
    fn openapi_document_matches_the_checked_in_file() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/protocol/openapi.json");
        let now = super::openapi_json();
        if std::env::var_os(crate::env::AGENTROOM_BLESS).is_some() {
            std::fs::write(path, &now).unwrap();
        }
        let file = std::fs::read_to_string(path).unwrap_or_default();
        assert!(
            file == now,
            "protocol/openapi.json is stale: run AGENTROOM_BLESS=1 cargo test --lib openapi"
        );
        let v: serde_json::Value = serde_json::from_str(&now).unwrap();
        assert_eq!(v["openapi"], "3.1.0");
    }
}
