//! The login phase of a connection: challenge, then `login` or `resume` within
//! the deadline (PROTOCOL.md §3.2), and the error/close frames every phase uses.

use std::sync::atomic::Ordering;

use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket};

use super::auth::{AuthError, verify_login};
use super::conn::timed_write;
use super::{Shared, now_secs};
use crate::crypto::{CryptoRng as _, IdentityPublicKey, SystemRng};
pub(super) use crate::protocol::CloseReason;
use crate::protocol::{
    ClientFrame, EnvelopeId, ErrorCode, PROTOCOL_LABEL, SUPPORTED_VERSIONS, ServerFrame,
    decode_client_frame, encode_frame,
};

pub(super) fn error_frame(
    code: ErrorCode,
    message: &str,
    id: Option<EnvelopeId>,
    rid: Option<String>,
) -> Utf8Bytes {
    encode_frame(&ServerFrame::Error { code, message: message.to_owned(), id, rid }).into()
}

pub(super) fn close_frame(why: CloseReason) -> Message {
    Message::Close(Some(CloseFrame { code: why.code(), reason: why.reason().into() }))
}

pub(super) struct LoggedIn {
    pub(super) identity: IdentityPublicKey,
    pub(super) token: String,
    pub(super) expires_at: u64,
}

async fn fatal(ws: &mut WebSocket, shared: &Shared, code: ErrorCode, msg: &str) {
    shared.metrics.count_error(code);
    let _ = timed_write(shared, ws.send(Message::Text(error_frame(code, msg, None, None)))).await;
    let _ = timed_write(shared, ws.send(close_frame(CloseReason::Fatal(code)))).await;
}

const LOGIN_RATE_MESSAGE: &str = "too many logins from this address; retry later";

/// Take one login attempt from `ip`'s budget; `true` when it is spent.
fn over_login_rate(shared: &Shared, ip: std::net::IpAddr) -> bool {
    let over = shared.logins.as_ref().is_some_and(|l| !l.allow(ip, std::time::Instant::now()));
    if over {
        tracing::info!(%ip, "login refused: rate limited");
    }
    over
}

/// Challenge, then wait for a valid `login` or `resume` within the login timeout.
pub(super) async fn login(
    ws: &mut WebSocket,
    shared: &Shared,
    origin: Option<&str>,
    ip: std::net::IpAddr,
) -> Option<LoggedIn> {
    let mut challenge = [0u8; 32];
    SystemRng.fill(&mut challenge);
    let hello = ServerFrame::Challenge {
        protocol: PROTOCOL_LABEL.to_owned(),
        versions: SUPPORTED_VERSIONS.to_vec(),
        challenge,
        max_frame: shared.config.max_frame,
    };
    timed_write(shared, ws.send(Message::Text(encode_frame(&hello).into()))).await.ok()?;
    let deadline = tokio::time::sleep(shared.config.login_timeout);
    tokio::pin!(deadline);
    loop {
        let msg = tokio::select! {
            biased;
            () = shared.shutdown.cancelled() => {
                fatal(ws, shared, ErrorCode::ShuttingDown, "relay shutting down").await;
                return None;
            }
            () = &mut deadline => {
                fatal(ws, shared, ErrorCode::LoginTimeout, "no login within the deadline").await;
                return None;
            }
            msg = ws.recv() => msg?.ok()?,
        };
        let text = match msg {
            Message::Text(t) => t,
            Message::Binary(_) => {
                shared.metrics.count_error(ErrorCode::BadFrame);
                let f = error_frame(
                    ErrorCode::BadFrame,
                    "binary frames are not part of the protocol",
                    None,
                    None,
                );
                timed_write(shared, ws.send(Message::Text(f))).await.ok()?;
                continue;
            }
            Message::Close(_) => return None,
            Message::Ping(_) | Message::Pong(_) => continue,
        };
        let frame = match decode_client_frame(&text, shared.config.max_frame) {
            Ok(f) => f,
            Err(e) => {
                shared.metrics.count_error(e.code());
                let f = error_frame(e.code(), &e.to_string(), None, None);
                timed_write(shared, ws.send(Message::Text(f))).await.ok()?;
                continue;
            }
        };
        // A signature check is the work worth limiting; a valid resume costs one HMAC
        // and is how every CLI command reconnects, so only logins and failed resumes
        // take from the address's budget.
        let is_login = matches!(frame, ClientFrame::Login { .. });
        if is_login && over_login_rate(shared, ip) {
            fatal(ws, shared, ErrorCode::RateLimited, LOGIN_RATE_MESSAGE).await;
            return None;
        }
        let now = now_secs();
        let result = match frame {
            ClientFrame::Login { v, identity, ts, signature } => {
                if !SUPPORTED_VERSIONS.contains(&v) {
                    fatal(ws, shared, ErrorCode::UnsupportedVersion, "no shared protocol version")
                        .await;
                    return None;
                }
                match origin {
                    None => Err(AuthError::NoOrigin),
                    Some(o) => verify_login(&identity, &signature, ts, o, &challenge, now),
                }
                .map(|()| {
                    shared.metrics.logins.fetch_add(1, Ordering::Relaxed);
                    let expires_at = now + shared.config.token_ttl.as_secs();
                    LoggedIn {
                        identity,
                        token: shared.keys.issue(&identity, expires_at),
                        expires_at,
                    }
                })
            }
            ClientFrame::Resume { v, token } => {
                if !SUPPORTED_VERSIONS.contains(&v) {
                    fatal(ws, shared, ErrorCode::UnsupportedVersion, "no shared protocol version")
                        .await;
                    return None;
                }
                shared.keys.verify(&token, now).map(|(identity, expires_at)| {
                    shared.metrics.resumes.fetch_add(1, Ordering::Relaxed);
                    LoggedIn { identity, token, expires_at }
                })
            }
            _ => {
                fatal(ws, shared, ErrorCode::AuthRequired, "log in first").await;
                return None;
            }
        };
        return match result {
            Ok(me) => Some(me),
            Err(_) if !is_login && over_login_rate(shared, ip) => {
                fatal(ws, shared, ErrorCode::RateLimited, LOGIN_RATE_MESSAGE).await;
                None
            }
            Err(e) => {
                tracing::info!(reason = %e, "login refused");
                let code = if e == AuthError::TokenExpired {
                    ErrorCode::TokenExpired
                } else {
                    ErrorCode::AuthFailed
                };
                fatal(ws, shared, code, &e.to_string()).await;
                None
            }
        };
    }
}
