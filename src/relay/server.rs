//! The axum server: one port for `/ws`, `/health` and `/metrics`, and graceful shutdown.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use axum::Router;
use axum::extract::{ConnectInfo, State, WebSocketUpgrade};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use super::conn::{self, Accepted};
use super::limits::client_ip;
use super::{Shared, now_secs};

/// Bytes the WebSocket layer reads per syscall. tungstenite zero-fills this much
/// of its input buffer before every read attempt, including the ones that find
/// nothing (each turn of a connection's loop polls the socket once more): at the
/// 128 KiB default that memset was 28% of the relay's CPU at 20k envelopes/s and
/// kept 128 KiB per connection resident. 8 KiB still takes ~20 envelopes per read;
/// larger frames are read in several chunks into a buffer reserved to their size.
const READ_BUFFER: usize = 8 * 1024;
/// Bytes buffered for one socket before a write waits for the peer to read
/// (tungstenite's default, stated so the cap below is derived from it).
const WRITE_BUFFER: usize = 128 * 1024;

pub(crate) fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/ws", get(ws_upgrade))
        .route("/health", get(health))
        .route("/metrics", get(metrics))
        .with_state(shared)
}

/// The authority the client dialled: `X-Forwarded-Host` behind a trusted proxy,
/// else `Host`. Lowercased; `None` if absent or not printable ASCII.
fn origin(headers: &HeaderMap, trust_proxy: bool) -> Option<String> {
    let forwarded = trust_proxy
        .then(|| headers.get("x-forwarded-host"))
        .flatten()
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(',').next())
        .map(str::trim);
    let host = forwarded.or_else(|| headers.get(header::HOST).and_then(|v| v.to_str().ok()))?;
    let host = host.trim();
    (!host.is_empty()).then(|| host.to_ascii_lowercase())
}

async fn ws_upgrade(
    State(shared): State<Arc<Shared>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    ws: WebSocketUpgrade,
) -> Response {
    let trust = shared.config.trust_proxy;
    let ip = client_ip(peer.ip(), &headers, trust);
    let slot = shared.limiter.acquire(ip);
    let acc = Accepted { origin: origin(&headers, trust), ip, slot };
    // Leave room above max_frame so an oversized frame gets a `too_large` answer;
    // beyond 4x the socket is closed by the WebSocket layer without buffering more.
    let cap = shared.config.max_frame.saturating_mul(4);
    let tracker = shared.tracker.clone();
    ws.max_message_size(cap)
        .max_frame_size(cap)
        .read_buffer_size(READ_BUFFER)
        .write_buffer_size(WRITE_BUFFER)
        // A hard cap on what one socket may buffer: writes block (under the write
        // timeout) past WRITE_BUFFER, so this is only reached by a bug.
        .max_write_buffer_size(WRITE_BUFFER.saturating_add(cap.saturating_mul(2)))
        .on_upgrade(move |socket| tracker.track_future(conn::run(socket, shared, acc)))
}

async fn health(State(shared): State<Arc<Shared>>) -> Response {
    let db_ok = shared.store.health().await.is_ok();
    let body = serde_json::json!({
        "status": if db_ok { "ok" } else { "degraded" },
        // The TypeScript relay's field, for monitors written against it.
        "ok": db_ok,
        "version": env!("CARGO_PKG_VERSION"),
        "uptime_secs": shared.started.elapsed().as_secs(),
        "db": if db_ok { "ok" } else { "error" },
        "store": if shared.store.is_shared() { "postgres" } else { "sqlite" },
        "node": shared.config.node_id,
        "connections": shared.metrics.connections.load(Ordering::Relaxed),
        "pending": shared.metrics.pending_total.load(Ordering::Relaxed),
        "server_time": now_secs(),
    });
    let status = if db_ok { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    (status, [(header::CONTENT_TYPE, "application/json")], body.to_string()).into_response()
}

async fn metrics(State(shared): State<Arc<Shared>>) -> Response {
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], shared.metrics.render())
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origin_prefers_forwarded_host_only_when_trusted() {
        let mut h = HeaderMap::new();
        h.insert(header::HOST, "127.0.0.1:8787".parse().unwrap());
        h.insert("x-forwarded-host", "Relay.Example.com".parse().unwrap());
        assert_eq!(origin(&h, false).as_deref(), Some("127.0.0.1:8787"));
        assert_eq!(origin(&h, true).as_deref(), Some("relay.example.com"));
        assert_eq!(origin(&HeaderMap::new(), false), None);
    }
}
