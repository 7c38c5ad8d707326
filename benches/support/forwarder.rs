//! The floor the relay is measured against (issue 17): a bare tokio-tungstenite
//! forwarder with no authentication, no parsing and no disk.
//!
//! A client connects to `/pair/<n>`; the second connection on the same path is
//! paired with the first, and every message one sends is written unchanged to the
//! other. Like the relay it runs on tokio's multi-threaded runtime, reads 8 KiB
//! per syscall and coalesces writes: it feeds every frame already read, then
//! flushes once.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{FutureExt, SinkExt, StreamExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::handshake::server::{Request, Response};
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;

type Ws = WebSocketStream<TcpStream>;

/// Frames written before one flush, as in the relay.
const WRITE_BATCH: usize = 64;

/// Serve until killed; prints `forwarder listening on ws://127.0.0.1:PORT/` first.
pub(crate) fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    rt.block_on(async {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        println!("forwarder listening on ws://{}/", listener.local_addr().unwrap());
        let waiting: Arc<Mutex<HashMap<String, Ws>>> = Arc::default();
        loop {
            let (tcp, _) = listener.accept().await.unwrap();
            tcp.set_nodelay(true).unwrap();
            tokio::spawn(accept(tcp, Arc::clone(&waiting)));
        }
    });
}

async fn accept(tcp: TcpStream, waiting: Arc<Mutex<HashMap<String, Ws>>>) {
    let mut path = String::new();
    let config = WebSocketConfig::default().read_buffer_size(8 * 1024);
    // The handshake callback's error type is tungstenite's, not ours to shrink.
    #[allow(clippy::result_large_err)]
    let callback = |req: &Request, resp: Response| {
        path = req.uri().path().to_owned();
        Ok(resp)
    };
    let Ok(ws) = tokio_tungstenite::accept_hdr_async_with_config(tcp, callback, Some(config)).await
    else {
        return;
    };
    let other = {
        let mut w = waiting.lock().unwrap();
        match w.remove(&path) {
            Some(other) => other,
            None => {
                w.insert(path, ws);
                return;
            }
        }
    };
    let (a_tx, a_rx) = ws.split();
    let (b_tx, b_rx) = other.split();
    tokio::spawn(pipe(a_rx, b_tx));
    tokio::spawn(pipe(b_rx, a_tx));
}

/// Copy messages from `rx` to `tx`: feed what is already read, flush once.
async fn pipe(mut rx: SplitStream<Ws>, mut tx: SplitSink<Ws, Message>) {
    while let Some(Ok(m)) = rx.next().await {
        if tx.feed(m).await.is_err() {
            return;
        }
        let mut fed = 1;
        while fed < WRITE_BATCH {
            match rx.next().now_or_never() {
                Some(Some(Ok(m))) => {
                    if tx.feed(m).await.is_err() {
                        return;
                    }
                    fed += 1;
                }
                Some(_) => return,
                None => break,
            }
        }
        if tx.flush().await.is_err() {
            return;
        }
    }
}
