//! A relay-like local server (`/health` + a WebSocket echo on `/ws`) and helpers to
//! prove traffic crosses a tunnel.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use axum::Router;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::response::IntoResponse;
use axum::routing::get;
use futures_util::{SinkExt, StreamExt};
use tokio_util::task::AbortOnDropHandle;

/// A server on 127.0.0.1:0; stops when dropped.
pub(crate) struct LocalServer {
    pub(crate) addr: SocketAddr,
    _task: AbortOnDropHandle<()>,
}

pub(crate) async fn relay_like_server() -> LocalServer {
    async fn health() -> impl IntoResponse {
        axum::Json(serde_json::json!({"status": "ok"}))
    }
    async fn ws(upgrade: WebSocketUpgrade) -> impl IntoResponse {
        upgrade.on_upgrade(|mut socket: WebSocket| async move {
            while let Some(Ok(msg)) = socket.recv().await {
                if matches!(msg, Message::Text(_) | Message::Binary(_))
                    && socket.send(msg).await.is_err()
                {
                    break;
                }
            }
        })
    }
    let app = Router::new().route("/health", get(health)).route("/ws", get(ws));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let task = tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    LocalServer { addr, _task: AbortOnDropHandle::new(task) }
}

/// Sends a text frame to `<base>/ws` (http→ws) and expects it echoed back.
pub(crate) async fn ws_echo_through(base: &url::Url) {
    let mut ws_url = base.join("/ws").unwrap();
    ws_url.set_scheme(if base.scheme() == "https" { "wss" } else { "ws" }).unwrap();
    let (mut socket, _) = tokio_tungstenite::connect_async(ws_url.as_str()).await.unwrap();
    let text = "hello across the tunnel";
    socket.send(tokio_tungstenite::tungstenite::Message::text(text)).await.unwrap();
    let echoed = socket.next().await.unwrap().unwrap();
    assert_eq!(echoed.into_text().unwrap().as_str(), text);
    let _ = socket.close(None).await;
}

/// The stand-in cloudflared in the repository.
pub(crate) fn fake_cloudflared() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("cloudflared/fake-cloudflared")
}

/// A wrapper around the fake that fixes its mode and environment, records its PID
/// (= its process group: it execs) in `<dir>/pids`, and is what the supervisor runs.
pub(crate) fn fake_with_mode(dir: &Path, mode: &str, env: &[(&str, &Path)]) -> PathBuf {
    fake_with_modes(dir, mode, mode, env)
}

/// Like [`fake_with_mode`], but the first run uses `first` and later runs `then`.
pub(crate) fn fake_with_modes(
    dir: &Path,
    first: &str,
    then: &str,
    env: &[(&str, &Path)],
) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let pids = dir.join("pids");
    let mut script = format!(
        "#!/bin/sh\nif [ -s '{p}' ]; then FAKE_CLOUDFLARED_MODE={then}; else FAKE_CLOUDFLARED_MODE={first}; fi\n\
         export FAKE_CLOUDFLARED_MODE\necho $$ >> '{p}'\n",
        p = pids.display()
    );
    for (k, v) in env {
        script.push_str(&format!("export {k}='{}'\n", v.display()));
    }
    script.push_str(&format!("exec '{}' \"$@\"\n", fake_cloudflared().display()));
    let path = dir.join(format!("cloudflared-{first}-{then}"));
    std::fs::write(&path, script).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    path
}

/// Every PID the wrapper recorded.
pub(crate) fn recorded_pids(dir: &Path) -> Vec<i32> {
    std::fs::read_to_string(dir.join("pids"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.trim().parse().ok())
        .collect()
}
