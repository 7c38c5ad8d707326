//! The local web view (`agentroom ui`): a page served by the daemon on its
//! loopback HTTP listener, never by a relay.
//!
//! - The page (HTML, one JS module, CSS) is compiled into the binary
//!   ([`assets`]); it is public (it holds no data) and sent with a strict
//!   Content-Security-Policy.
//! - `agentroom ui` asks the daemon (over its Unix socket) for a one-time
//!   login code ([`auth`]); the page trades it at `POST /ui/login` for an
//!   HttpOnly, SameSite=Strict session cookie. From then on the page calls the
//!   daemon's API like any client; the daemon's HTTP guard accepts the cookie
//!   where it accepts the bearer token.
//! - One small addition to the API lives here: the handler pause switch
//!   (`/v1/handler`, `/v1/handler/pause`, `/v1/handler/resume`). The
//!   "verified" mark on a peer is the daemon's (`POST /v1/peers/verify`, the
//!   same as `agentroom peers verify`).

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use tokio::sync::{Notify, broadcast};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::daemon::types::{DaemonEvent, ErrorBody};

pub mod assets;
pub mod auth;

pub use auth::Sessions;

/// Errors of the web view's own endpoints.
#[derive(Debug, thiserror::Error)]
pub enum UiError {
    /// The login code is unknown, used or expired.
    #[error("this login code was already used or has expired: run `agentroom ui` again")]
    BadCode,
    /// A state-changing request lacked `X-Agentroom: 1` or came from another origin.
    #[error("cross-site request refused (needs X-Agentroom: 1 and a same-origin Origin header)")]
    CrossSite,
    /// The room's state file could not be read.
    #[error(transparent)]
    Room(#[from] crate::room::state::StateError),
}

impl IntoResponse for UiError {
    fn into_response(self) -> Response {
        let status = match self {
            UiError::BadCode => StatusCode::UNAUTHORIZED,
            UiError::CrossSite => StatusCode::FORBIDDEN,
            UiError::Room(_) => StatusCode::INTERNAL_SERVER_ERROR,
        };
        let class = match status {
            StatusCode::INTERNAL_SERVER_ERROR => crate::daemon::types::ErrorClass::Failure,
            _ => crate::daemon::types::ErrorClass::Usage,
        };
        let body = ErrorBody { error: self.to_string(), class };
        (status, Json(body)).into_response()
    }
}

/// The web view's state, shared by the daemon's Unix-socket and HTTP routers.
#[derive(Debug, Clone)]
pub struct Ui {
    sessions: Sessions,
    paused: Arc<AtomicBool>,
    arrived: Arc<Notify>,
    /// The daemon's event stream: the pause switch is announced on it.
    events: broadcast::Sender<DaemonEvent>,
    home: Arc<PathBuf>,
}

impl Ui {
    /// `paused` is the daemon's lease gate; `arrived` wakes waiting consumers
    /// when it opens again; `events` is the daemon's event stream (`paused`,
    /// `resumed`).
    pub fn new(
        home: &crate::client::home::Home,
        paused: Arc<AtomicBool>,
        arrived: Arc<Notify>,
        events: broadcast::Sender<DaemonEvent>,
    ) -> Self {
        Self {
            sessions: Sessions::default(),
            paused,
            arrived,
            events,
            home: Arc::new(home.dir().to_path_buf()),
        }
    }

    /// The sessions (the HTTP guard checks cookies against them).
    pub fn sessions(&self) -> &Sessions {
        &self.sessions
    }

    /// The page, its assets, the login and the web view's API routes.
    pub fn router(&self) -> axum::Router {
        let (router, _) = routes().split_for_parts();
        router.with_state(self.clone())
    }
}

/// Every route of the web view, each with its OpenAPI description.
fn routes() -> OpenApiRouter<Ui> {
    OpenApiRouter::new()
        .routes(routes!(assets::redirect_root))
        .routes(routes!(assets::redirect))
        .routes(routes!(assets::index))
        .routes(routes!(assets::script))
        .routes(routes!(assets::style))
        .routes(routes!(login))
        .routes(routes!(login_code))
        .routes(routes!(room_status))
        .routes(routes!(handler_state))
        .routes(routes!(pause))
        .routes(routes!(resume))
}

/// The web view's part of the daemon's OpenAPI document.
pub fn openapi() -> utoipa::openapi::OpenApi {
    routes().into_openapi()
}

/// `POST /ui/login` body.
#[derive(Debug, Deserialize, ToSchema)]
struct LoginRequest {
    /// The one-time code `agentroom ui` put in the page's address.
    code: String,
}

/// `POST /v1/ui/login-code` answer.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct LoginCode {
    /// Single use, valid for [`auth::CODE_TTL`].
    pub code: String,
}

/// `GET /v1/handler` answer.
#[derive(Debug, Serialize, ToSchema)]
struct HandlerState {
    /// True while no message is leased to any consumer.
    paused: bool,
}

/// Trade the one-time login code for an HttpOnly, SameSite=Strict session
/// cookie (needs `X-Agentroom: 1` and a same-origin `Origin`).
#[utoipa::path(post, path = "/ui/login", tag = "ui", request_body = LoginRequest,
    responses((status = 204, description = "Session cookie set"),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
async fn login(
    State(ui): State<Ui>,
    headers: HeaderMap,
    Json(req): Json<LoginRequest>,
) -> Result<Response, UiError> {
    if !auth::same_origin_write(&headers) {
        return Err(UiError::CrossSite);
    }
    let session = ui.sessions.redeem(&req.code).ok_or(UiError::BadCode)?;
    let host = headers.get(header::HOST).and_then(|h| h.to_str().ok()).unwrap_or("");
    let cookie = auth::set_cookie(host, &session);
    Ok((StatusCode::NO_CONTENT, [(header::SET_COOKIE, cookie)]).into_response())
}

/// A one-time login code for the page (what `agentroom ui` asks for; on the
/// Unix socket or with the bearer token).
#[utoipa::path(post, path = "/v1/ui/login-code", tag = "ui",
    responses((status = 200, body = LoginCode)))]
async fn login_code(State(ui): State<Ui>) -> Json<LoginCode> {
    Json(LoginCode { code: ui.sessions.mint_code().as_str().to_owned() })
}

/// `GET /v1/ui/room` answer: what the page shows of an open room (never its
/// invite or handler command).
#[derive(Debug, Serialize, ToSchema)]
struct RoomView {
    /// Whether a room is open in this home.
    running: bool,
    /// Its public relay URL.
    relay: Option<String>,
    /// `cloudflared`, `bore` or `none`.
    tunnel: Option<String>,
    /// Seconds since it opened.
    uptime_secs: Option<u64>,
    /// Envelopes its relay holds for offline peers.
    relay_pending: Option<u64>,
}

/// The room open in this home, if any (never its invite or handler command).
#[utoipa::path(get, path = "/v1/ui/room", tag = "ui",
    responses((status = 200, body = RoomView), (status = 500, body = ErrorBody)))]
async fn room_status(State(ui): State<Ui>) -> Result<Json<RoomView>, UiError> {
    let st = crate::room::control::status(&ui.home).await?;
    let room = st.room.as_ref();
    Ok(Json(RoomView {
        running: st.running,
        relay: room.map(|r| r.public_url.clone()),
        tunnel: room.map(|r| r.tunnel.clone()),
        uptime_secs: st.uptime_secs,
        relay_pending: st.relay_pending,
    }))
}

/// Whether the handler is paused.
#[utoipa::path(get, path = "/v1/handler", tag = "ui",
    responses((status = 200, body = HandlerState)))]
async fn handler_state(State(ui): State<Ui>) -> Json<HandlerState> {
    Json(HandlerState { paused: ui.paused.load(Ordering::SeqCst) })
}

/// Pause: no message is leased to any consumer until resumed. A change is
/// announced as the `paused` event.
#[utoipa::path(post, path = "/v1/handler/pause", tag = "ui",
    responses((status = 200, body = HandlerState)))]
async fn pause(State(ui): State<Ui>) -> Json<HandlerState> {
    if !ui.paused.swap(true, Ordering::SeqCst) {
        tracing::info!("handler paused: no message is leased until resumed");
        let _ = ui.events.send(DaemonEvent::Paused);
    }
    Json(HandlerState { paused: true })
}

/// Resume leasing. A change is announced as the `resumed` event.
#[utoipa::path(post, path = "/v1/handler/resume", tag = "ui",
    responses((status = 200, body = HandlerState)))]
async fn resume(State(ui): State<Ui>) -> Json<HandlerState> {
    if ui.paused.swap(false, Ordering::SeqCst) {
        // Waiting `next` calls re-look at once instead of at their next poll.
        ui.arrived.notify_waiters();
        tracing::info!("handler resumed");
        let _ = ui.events.send(DaemonEvent::Resumed);
    }
    Json(HandlerState { paused: false })
}
