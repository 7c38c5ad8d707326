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
//! - Two small additions to the API live here: the handler pause switch
//!   (`/v1/handler`, `/v1/handler/pause`, `/v1/handler/resume`) and the
//!   "verified" marks the user sets on peers (`/v1/ui/verified`, kept in
//!   `<home>/ui-verified.json`).

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::{Deserialize, Serialize};
use tokio::sync::Notify;

pub mod assets;
pub mod auth;

pub use auth::Sessions;

/// The file (in the home) holding the peers the user marked verified.
pub const VERIFIED_FILE: &str = "ui-verified.json";

/// Errors of the web view's own endpoints.
#[derive(Debug, thiserror::Error)]
pub enum UiError {
    /// The login code is unknown, used or expired.
    #[error("this login code was already used or has expired: run `agentroom ui` again")]
    BadCode,
    /// A state-changing request lacked `X-Agentroom: 1` or came from another origin.
    #[error("cross-site request refused (needs X-Agentroom: 1 and a same-origin Origin header)")]
    CrossSite,
    /// The verified-peers file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
    /// The room's state file could not be read.
    #[error(transparent)]
    Room(#[from] crate::room::state::StateError),
    /// The verified-peers file is not valid JSON.
    #[error("{path} is not a valid verified-peers file: {source}")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// Cause.
        #[source]
        source: serde_json::Error,
    },
}

impl IntoResponse for UiError {
    fn into_response(self) -> Response {
        let status = match self {
            UiError::BadCode => StatusCode::UNAUTHORIZED,
            UiError::CrossSite => StatusCode::FORBIDDEN,
            UiError::Io { .. } | UiError::Corrupt { .. } | UiError::Room(_) => {
                StatusCode::INTERNAL_SERVER_ERROR
            }
        };
        let class = match status {
            StatusCode::INTERNAL_SERVER_ERROR => crate::daemon::types::ErrorClass::Failure,
            _ => crate::daemon::types::ErrorClass::Usage,
        };
        let body = crate::daemon::types::ErrorBody { error: self.to_string(), class };
        (status, Json(body)).into_response()
    }
}

/// The web view's state, shared by the daemon's Unix-socket and HTTP routers.
#[derive(Debug, Clone)]
pub struct Ui {
    sessions: Sessions,
    paused: Arc<AtomicBool>,
    arrived: Arc<Notify>,
    verified_path: Arc<PathBuf>,
    home: Arc<PathBuf>,
    /// Serialises read-modify-write of the verified file.
    verified_lock: Arc<Mutex<()>>,
}

impl Ui {
    /// `paused` is the daemon's lease gate; `arrived` wakes waiting consumers
    /// when it opens again.
    pub fn new(
        home: &crate::client::home::Home,
        paused: Arc<AtomicBool>,
        arrived: Arc<Notify>,
    ) -> Self {
        Self {
            sessions: Sessions::default(),
            paused,
            arrived,
            verified_path: Arc::new(home.dir().join(VERIFIED_FILE)),
            home: Arc::new(home.dir().to_path_buf()),
            verified_lock: Arc::new(Mutex::new(())),
        }
    }

    /// The sessions (the HTTP guard checks cookies against them).
    pub fn sessions(&self) -> &Sessions {
        &self.sessions
    }

    /// The page, its assets, the login and the web view's API routes.
    pub fn router(&self) -> axum::Router {
        axum::Router::new()
            .route("/", get(assets::redirect))
            .route("/ui", get(assets::redirect))
            .route("/ui/", get(assets::index))
            .route("/ui/app.js", get(assets::script))
            .route("/ui/style.css", get(assets::style))
            .route("/ui/login", post(login))
            .route("/v1/ui/login-code", post(login_code))
            .route("/v1/ui/verified", get(verified_list).post(verified_set))
            .route("/v1/ui/room", get(room_status))
            .route("/v1/handler", get(handler_state))
            .route("/v1/handler/pause", post(pause))
            .route("/v1/handler/resume", post(resume))
            .with_state(self.clone())
    }

    fn read_verified(&self) -> Result<BTreeSet<String>, UiError> {
        let path = self.verified_path.as_ref();
        match std::fs::read(path) {
            Ok(bytes) => serde_json::from_slice::<VerifiedFile>(&bytes)
                .map(|f| f.verified)
                .map_err(|source| UiError::Corrupt { path: path.clone(), source }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(BTreeSet::new()),
            Err(source) => Err(UiError::Io { path: path.clone(), source }),
        }
    }
}

/// `<home>/ui-verified.json`.
#[derive(Debug, Default, Serialize, Deserialize)]
struct VerifiedFile {
    /// Public keys (b64u) the user compared safety numbers with.
    verified: BTreeSet<String>,
}

/// `POST /ui/login` body.
#[derive(Debug, Deserialize)]
struct LoginRequest {
    code: String,
}

/// `POST /v1/ui/login-code` answer.
#[derive(Debug, Serialize, Deserialize)]
pub struct LoginCode {
    /// Single use, valid for [`auth::CODE_TTL`].
    pub code: String,
}

/// `POST /v1/ui/verified` body.
#[derive(Debug, Deserialize)]
struct VerifiedRequest {
    peer: String,
    verified: bool,
}

/// `GET /v1/handler` answer.
#[derive(Debug, Serialize)]
struct HandlerState {
    paused: bool,
}

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

async fn login_code(State(ui): State<Ui>) -> Json<LoginCode> {
    Json(LoginCode { code: ui.sessions.mint_code().as_str().to_owned() })
}

async fn verified_list(State(ui): State<Ui>) -> Result<Json<VerifiedFile>, UiError> {
    Ok(Json(VerifiedFile { verified: ui.read_verified()? }))
}

async fn verified_set(
    State(ui): State<Ui>,
    Json(req): Json<VerifiedRequest>,
) -> Result<Json<VerifiedFile>, UiError> {
    let _guard = ui.verified_lock.lock().expect("no thread panics holding the verified lock");
    let mut set = ui.read_verified()?;
    if req.verified {
        set.insert(req.peer);
    } else {
        set.remove(&req.peer);
    }
    let file = VerifiedFile { verified: set };
    let bytes = serde_json::to_vec_pretty(&file).expect("a set of strings serialises");
    let path = ui.verified_path.as_ref();
    crate::fsutil::write_private_atomic(path, &bytes)
        .map_err(|source| UiError::Io { path: path.clone(), source })?;
    Ok(Json(file))
}

/// `GET /v1/ui/room` answer: what the page shows of an open room (never its
/// invite or handler command).
#[derive(Debug, Serialize)]
struct RoomView {
    running: bool,
    relay: Option<String>,
    tunnel: Option<String>,
    uptime_secs: Option<u64>,
    relay_pending: Option<u64>,
}

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

async fn handler_state(State(ui): State<Ui>) -> Json<HandlerState> {
    Json(HandlerState { paused: ui.paused.load(Ordering::SeqCst) })
}

async fn pause(State(ui): State<Ui>) -> Json<HandlerState> {
    ui.paused.store(true, Ordering::SeqCst);
    tracing::info!("handler paused: no message is leased until resumed");
    Json(HandlerState { paused: true })
}

async fn resume(State(ui): State<Ui>) -> Json<HandlerState> {
    ui.paused.store(false, Ordering::SeqCst);
    // Waiting `next` calls re-look at once instead of at their next poll.
    ui.arrived.notify_waiters();
    tracing::info!("handler resumed");
    Json(HandlerState { paused: false })
}
