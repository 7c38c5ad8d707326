//! `agentroom daemon --http 127.0.0.1:PORT`: the same API on loopback TCP, for
//! clients that cannot open a Unix socket. Loopback is reachable by every local
//! user and by web pages in the user's browser, so every request must carry
//! `Authorization: Bearer <token>` (the token is `<home>/http-token`, 0600,
//! created on first use) and a `Host` header naming a loopback host (a page on
//! another site that rebinds its DNS name to 127.0.0.1 still sends its own
//! name). No CORS headers are ever sent, so a browser will not let a page on
//! another origin read an answer.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;

use axum::extract::{Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use subtle::ConstantTimeEq;
use tokio_util::sync::CancellationToken;
use zeroize::Zeroizing;

use super::types::{ErrorBody, ErrorClass};
use super::{DaemonError, paths};
use crate::client::home::Home;

/// Host names a loopback request may carry.
const LOOPBACK_HOSTS: &[&str] = &["127.0.0.1", "localhost", "[::1]"];

/// The serving future of the TCP listener.
pub(crate) type Serving = Pin<Box<dyn Future<Output = std::io::Result<()>> + Send>>;

/// The bearer token of `home`, created (32 random bytes, hex, 0600) if missing.
pub fn load_or_create_token(home: &Home) -> Result<Zeroizing<String>, DaemonError> {
    let path = home.dir().join(paths::TOKEN_FILE);
    let io = |source| DaemonError::Io { path: path.clone(), source };
    match std::fs::read_to_string(&path) {
        Ok(t) if t.trim().len() >= 32 => return Ok(Zeroizing::new(t.trim().to_owned())),
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(io(e)),
    }
    let mut bytes = Zeroizing::new([0u8; 32]);
    crate::crypto::CryptoRng::fill(&mut crate::crypto::SystemRng, bytes.as_mut());
    let token = Zeroizing::new(hex::encode(bytes.as_ref()));
    crate::fsutil::write_private_atomic(&path, format!("{}\n", token.as_str()).as_bytes())
        .map_err(io)?;
    Ok(token)
}

/// Bind `addr` (loopback only) and serve `router` behind the token and Host checks.
pub(crate) async fn bind(
    home: &Home,
    addr: SocketAddr,
    router: axum::Router,
    sessions: crate::ui::Sessions,
    cancel: CancellationToken,
) -> Result<(SocketAddr, Serving), DaemonError> {
    if !addr.ip().is_loopback() {
        return Err(DaemonError::NotLoopback(addr));
    }
    let token = std::sync::Arc::new(load_or_create_token(home)?);
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|source| DaemonError::Bind { addr, source })?;
    let local = listener.local_addr().map_err(|source| DaemonError::Bind { addr, source })?;
    let app = router.layer(axum::middleware::from_fn_with_state((token, sessions), guard));
    let fut = axum::serve(listener, app).with_graceful_shutdown(cancel.cancelled_owned());
    Ok((local, Box::pin(async move { fut.await })))
}

/// Host first; then the web view's public page and login pass; every other
/// request needs the bearer token or (from the web view) a session cookie,
/// and a cookie's state-changing request also `X-Agentroom: 1` and its own
/// `Origin` (see [`crate::ui::auth`]).
async fn guard(
    State((token, sessions)): State<(std::sync::Arc<Zeroizing<String>>, crate::ui::Sessions)>,
    req: Request,
    next: Next,
) -> Response {
    let host = req.headers().get(header::HOST).and_then(|h| h.to_str().ok()).unwrap_or("");
    if !is_loopback_host(host) {
        return refuse(StatusCode::FORBIDDEN, "Host must name a loopback address");
    }
    if crate::ui::assets::is_public(req.uri().path()) {
        return next.run(req).await;
    }
    if sessions.cookie_ok(req.headers()) {
        if crate::ui::auth::is_write(req.method())
            && !crate::ui::auth::same_origin_write(req.headers())
        {
            return refuse(StatusCode::FORBIDDEN, "cross-site request refused");
        }
        return next.run(req).await;
    }
    let given = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|h| h.to_str().ok())
        .and_then(|h| h.strip_prefix("Bearer "))
        .unwrap_or("");
    if !bool::from(given.as_bytes().ct_eq(token.as_bytes())) {
        return refuse(StatusCode::UNAUTHORIZED, "missing or wrong bearer token");
    }
    next.run(req).await
}

fn refuse(status: StatusCode, why: &str) -> Response {
    let body = ErrorBody { error: why.to_owned(), class: ErrorClass::Usage };
    (status, axum::Json(body)).into_response()
}

/// `127.0.0.1`, `localhost`, `[::1]`, each with an optional port.
fn is_loopback_host(host: &str) -> bool {
    let name = match host.rsplit_once(':') {
        Some((n, port)) if !n.is_empty() && port.bytes().all(|b| b.is_ascii_digit()) => n,
        _ => host,
    };
    LOOPBACK_HOSTS.iter().any(|h| name.eq_ignore_ascii_case(h))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_loopback_host_names_pass() {
        for ok in ["127.0.0.1", "127.0.0.1:8080", "localhost:1", "LOCALHOST", "[::1]:9"] {
            assert!(is_loopback_host(ok), "{ok}");
        }
        for bad in ["", "evil.example", "evil.example:80", "127.0.0.1.evil", "[::1]x", "::1"] {
            assert!(!is_loopback_host(bad), "{bad}");
        }
    }
}
