//! bore (<https://github.com/ekzhang/bore>): a plain TCP tunnel through a bore server,
//! run in-process with the `bore-cli` library rather than as a child process.
//!
//! The public URL is `http://<server>:<remote port>`; bore carries bytes, not HTTP,
//! so WebSocket upgrades cross it untouched (the relay and its E2E crypto do not
//! need TLS from the tunnel, though a `wss://` front is nicer: use cloudflared for
//! that). When the control connection drops, we reconnect with backoff and ask for
//! the same remote port first, so the URL usually survives a server restart.

use std::sync::Arc;
use std::time::Duration;

use bore_cli::client::Client;
use tokio::sync::watch;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use url::Url;

use super::{Backoff, TunnelError, TunnelState};

/// What a bore connection needs.
#[derive(Debug, Clone)]
pub(crate) struct Launch {
    pub(crate) server: String,
    pub(crate) secret: Option<Arc<str>>,
    pub(crate) local_port: u16,
    pub(crate) url_timeout: Duration,
}

/// Connects to the bore server, asking for `port` (0: any), within the URL timeout.
pub(crate) async fn connect(opts: &Launch, port: u16) -> Result<(Client, Url), TunnelError> {
    let connect =
        Client::new("127.0.0.1", opts.local_port, &opts.server, port, opts.secret.as_deref());
    let client = match tokio::time::timeout(opts.url_timeout, connect).await {
        Ok(Ok(client)) => client,
        Ok(Err(e)) => {
            return Err(TunnelError::Bore { server: opts.server.clone(), source: e.into() });
        }
        Err(_) => {
            return Err(TunnelError::BoreTimeout {
                server: opts.server.clone(),
                timeout: opts.url_timeout,
            });
        }
    };
    let url = public_url(&opts.server, client.remote_port())?;
    Ok((client, url))
}

/// `http://server:port`, IPv6 literals bracketed.
fn public_url(server: &str, port: u16) -> Result<Url, TunnelError> {
    let host = if server.contains(':') && !server.starts_with('[') {
        format!("[{server}]")
    } else {
        server.to_owned()
    };
    Url::parse(&format!("http://{host}:{port}/"))
        .map_err(|_| TunnelError::BadBoreServer(server.to_owned()))
}

/// Serves `client` until the connection drops, then reconnects with backoff, until
/// cancelled. Publishes every change on `state`.
pub(crate) async fn supervise(
    mut client: Client,
    opts: Launch,
    mut backoff: Backoff,
    state: watch::Sender<TunnelState>,
    cancel: CancellationToken,
) {
    let mut restarts: u32 = 0;
    loop {
        let port = client.remote_port();
        let up_since = Instant::now();
        tokio::select! {
            biased;
            () = cancel.cancelled() => {
                state.send_replace(TunnelState::Stopped);
                return;
            }
            result = client.listen() => match result {
                Ok(()) => tracing::warn!(server = %opts.server, "bore server closed the tunnel; reconnecting"),
                Err(e) => tracing::warn!(server = %opts.server, error = %e, "bore tunnel failed; reconnecting"),
            },
        }
        if up_since.elapsed() >= backoff.stable_after {
            backoff.reset();
        }
        client = loop {
            if !super::wait_before_restart(&mut backoff, &mut restarts, &state, &cancel).await {
                return;
            }
            // Same port first (same URL for the peer); any port if it was taken.
            let attempt = match connect(&opts, port).await {
                Ok(ok) => Ok(ok),
                Err(_) => connect(&opts, 0).await,
            };
            match attempt {
                Ok((c, url)) => {
                    tracing::info!(%url, restarts, "bore tunnel reconnected");
                    state.send_replace(TunnelState::Up { url, restarts });
                    break c;
                }
                Err(e) => tracing::warn!(error = %e, restarts, "bore reconnect failed"),
            }
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn public_urls() {
        assert_eq!(public_url("bore.pub", 4242).unwrap().as_str(), "http://bore.pub:4242/");
        assert_eq!(public_url("127.0.0.1", 80).unwrap().as_str(), "http://127.0.0.1/");
        assert_eq!(public_url("::1", 5000).unwrap().as_str(), "http://[::1]:5000/");
        assert!(public_url("bad host/x", 1).is_err());
    }
}
