//! The page, compiled into the binary: no CDN, no build step. Every answer
//! carries a Content-Security-Policy that allows scripts, styles and fetches
//! from this origin only (no inline script, no `eval`), and no framing.

use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Redirect, Response};

const INDEX_HTML: &str = include_str!("assets/index.html");
const APP_JS: &str = include_str!("assets/app.js");
const STYLE_CSS: &str = include_str!("assets/style.css");

/// The policy: this origin only, nothing inline, never in a frame.
pub const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self'; \
     connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; \
     frame-ancestors 'none'";

fn asset(body: &'static str, content_type: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, HeaderValue::from_static(content_type)),
            (header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CSP)),
            (header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff")),
            (header::REFERRER_POLICY, HeaderValue::from_static("no-referrer")),
            (header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY")),
            (header::CACHE_CONTROL, HeaderValue::from_static("no-store")),
        ],
        body,
    )
        .into_response()
}

/// To the page.
#[utoipa::path(get, path = "/", tag = "ui",
    responses((status = 303, description = "To /ui/")))]
pub(super) async fn redirect_root() -> Redirect {
    Redirect::to("/ui/")
}

/// To the page.
#[utoipa::path(get, path = "/ui", tag = "ui",
    responses((status = 303, description = "To /ui/")))]
pub(super) async fn redirect() -> Redirect {
    Redirect::to("/ui/")
}

/// The web view (public: it holds no data; strict Content-Security-Policy).
#[utoipa::path(get, path = "/ui/", tag = "ui",
    responses((status = 200, description = "The page", content_type = "text/html")))]
pub(super) async fn index() -> Response {
    asset(INDEX_HTML, "text/html; charset=utf-8")
}

/// The page's script.
#[utoipa::path(get, path = "/ui/app.js", tag = "ui",
    responses((status = 200, description = "JavaScript module", content_type = "text/javascript")))]
pub(super) async fn script() -> Response {
    asset(APP_JS, "text/javascript; charset=utf-8")
}

/// The page's style sheet.
#[utoipa::path(get, path = "/ui/style.css", tag = "ui",
    responses((status = 200, description = "Style sheet", content_type = "text/css")))]
pub(super) async fn style() -> Response {
    asset(STYLE_CSS, "text/css; charset=utf-8")
}

/// Paths anyone on loopback may fetch without a session: the page itself
/// (it holds no data) and the login, which checks its code.
pub fn is_public(path: &str) -> bool {
    matches!(path, "/" | "/ui" | "/ui/" | "/ui/app.js" | "/ui/style.css" | "/ui/login")
}
