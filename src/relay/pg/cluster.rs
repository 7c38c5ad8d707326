//! What the nodes of a PostgreSQL cluster tell each other, over `LISTEN`/`NOTIFY`.
//!
//! Why `NOTIFY`: a notification is sent by the transaction that commits the row
//! (delivered only if and when it commits), reaches every listening node within a
//! round trip, and needs no table, no polling and no extra service. It is not
//! durable: a node that was not listening (starting, or reconnecting its listener)
//! missed some, so on every (re)connect it makes all its connected recipients read
//! their queues again. The queue in `envelopes` stays the truth; a notification is
//! only a hint to read it now.
//!
//! Notes (payload text, space-separated, the sender's node id first; a node skips
//! its own):
//! - `w <node> <ms> <recipient>`: rows for `recipient` were committed at `ms`;
//! - `l <node> <us> <identity>`: `identity` logged in at `us` (µs); a node whose
//!   connection for it logged in earlier closes it with `replaced` (4001);
//! - `u <node> <a> <b>`: `a` and `b` were unpaired.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use deadpool_postgres::Pool;
use futures_util::StreamExt as _;
use tokio::sync::mpsc;
use tokio_postgres::AsyncMessage;
use tokio_postgres_rustls::MakeRustlsConnect;

use super::{CHANNEL, PgStore, PgUrl};
use crate::crypto::IdentityPublicKey;
use crate::relay::Shared;
use crate::relay::hub::Ctrl;
use crate::relay::store::now_ms;

/// Wait before reconnecting a lost listener.
const RELISTEN_DELAY: Duration = Duration::from_millis(500);

/// One notification between nodes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Note {
    Wake { node: String, at_ms: u64, recipient: IdentityPublicKey },
    Login { node: String, at_us: u64, identity: IdentityPublicKey },
    Unpair { node: String, a: IdentityPublicKey, b: IdentityPublicKey },
}

impl Note {
    pub(crate) fn encode(&self) -> String {
        let h = |k: &IdentityPublicKey| hex::encode(k.as_bytes());
        match self {
            Self::Wake { node, at_ms, recipient } => format!("w {node} {at_ms} {}", h(recipient)),
            Self::Login { node, at_us, identity } => format!("l {node} {at_us} {}", h(identity)),
            Self::Unpair { node, a, b } => format!("u {node} {} {}", h(a), h(b)),
        }
    }

    /// `None` for anything malformed (another program on the channel, say).
    pub(crate) fn decode(s: &str) -> Option<Self> {
        let key = |s: &str| {
            let b = hex::decode(s).ok()?;
            IdentityPublicKey::from_bytes(&b).ok()
        };
        let mut it = s.split(' ');
        let (kind, node) = (it.next()?, it.next()?.to_owned());
        let (x, y) = (it.next()?, it.next()?);
        if it.next().is_some() {
            return None;
        }
        Some(match kind {
            "w" => Self::Wake { node, at_ms: x.parse().ok()?, recipient: key(y)? },
            "l" => Self::Login { node, at_us: x.parse().ok()?, identity: key(y)? },
            "u" => Self::Unpair { node, a: key(x)?, b: key(y)? },
            _ => return None,
        })
    }
}

/// This node's logged-in identities, as the other nodes need to hear of them.
pub(crate) struct Cluster {
    node: Arc<str>,
    pool: Pool,
    tls: MakeRustlsConnect,
    /// Identity → (connection id, login time in µs).
    local: Mutex<HashMap<IdentityPublicKey, (u64, u64)>>,
}

impl std::fmt::Debug for Cluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cluster").field("node", &self.node).finish_non_exhaustive()
    }
}

fn now_us() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

impl Cluster {
    pub(crate) fn new(store: &PgStore) -> Self {
        Self {
            node: Arc::clone(store.node()),
            pool: store.pool().clone(),
            tls: store.tls().clone(),
            local: Mutex::new(HashMap::new()),
        }
    }

    fn local(&self) -> std::sync::MutexGuard<'_, HashMap<IdentityPublicKey, (u64, u64)>> {
        self.local.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Connection `conn_id` logged in as `me` here: tell the other nodes, whose
    /// older connections for `me` close.
    pub(crate) async fn logged_in(&self, me: IdentityPublicKey, conn_id: u64) {
        let at_us = now_us();
        self.local().insert(me, (conn_id, at_us));
        let note = Note::Login { node: self.node.to_string(), at_us, identity: me }.encode();
        let r = async {
            let c = self.pool.get().await.map_err(super::PgError::from)?;
            c.execute("SELECT pg_notify($1, $2)", &[&CHANNEL, &note]).await?;
            Ok::<(), super::PgError>(())
        }
        .await;
        if let Err(e) = r {
            tracing::warn!(error = %e, "cannot announce a login to the other nodes");
        }
    }

    /// Connection `conn_id` of `me` ended.
    pub(crate) fn logged_out(&self, me: &IdentityPublicKey, conn_id: u64) {
        let mut g = self.local();
        if g.get(me).is_some_and(|(c, _)| *c == conn_id) {
            g.remove(me);
        }
    }

    fn handle(&self, shared: &Shared, note: Note) {
        match note {
            Note::Wake { node, at_ms, recipient } if *node != *self.node => {
                if let Some(c) = shared.hub.ctrl_of(&recipient) {
                    c.send(Ctrl::StoreHasData);
                    let m = &shared.metrics;
                    m.cross_node_wakeups.fetch_add(1, Ordering::Relaxed);
                    let lag = now_ms().saturating_sub(at_ms);
                    m.wakeup_latency.observe(Duration::from_millis(lag));
                }
            }
            Note::Login { node, at_us, identity } if *node != *self.node => {
                let mut g = self.local();
                // Later login wins; equal times are broken by node id, the same way
                // on both nodes, so exactly one of two simultaneous logins stays.
                let older = g
                    .get(&identity)
                    .is_some_and(|&(_, mine)| (mine, &*self.node) < (at_us, node.as_str()));
                if older {
                    g.remove(&identity);
                    drop(g);
                    if let Some(c) = shared.hub.ctrl_of(&identity) {
                        c.send(Ctrl::Replaced);
                        shared.metrics.cluster_replaced.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
            Note::Unpair { node, a, b } if *node != *self.node => shared.hub.remove_pair(&a, &b),
            _ => {}
        }
    }

    /// Every local recipient reads its queue again (notifications may have been missed).
    fn wake_all(&self, shared: &Shared) {
        let ids: Vec<IdentityPublicKey> = self.local().keys().copied().collect();
        for id in ids {
            if let Some(c) = shared.hub.ctrl_of(&id) {
                c.send(Ctrl::StoreHasData);
            }
        }
    }
}

/// Listen for the other nodes until shutdown, reconnecting when the connection drops.
pub(crate) async fn listen(shared: Arc<Shared>, cluster: Arc<Cluster>, url: PgUrl) {
    let Ok(cfg) = url.config() else {
        return;
    };
    loop {
        tokio::select! {
            () = shared.shutdown.cancelled() => return,
            r = listen_once(&shared, &cluster, &cfg) => {
                if let Err(e) = r {
                    tracing::warn!(error = %e, "PostgreSQL listener lost; reconnecting");
                }
            }
        }
        tokio::select! {
            () = shared.shutdown.cancelled() => return,
            () = tokio::time::sleep(RELISTEN_DELAY) => {}
        }
    }
}

async fn listen_once(
    shared: &Shared,
    cluster: &Cluster,
    cfg: &tokio_postgres::Config,
) -> Result<(), tokio_postgres::Error> {
    let (client, mut connection) = cfg.connect(cluster.tls.clone()).await?;
    let (tx, mut rx) = mpsc::unbounded_channel();
    // The connection only makes progress while polled: this task drives it and
    // forwards its notifications.
    let driver = tokio::spawn(async move {
        let mut messages = futures_util::stream::poll_fn(move |cx| connection.poll_message(cx));
        while let Some(m) = messages.next().await {
            match m {
                Ok(AsyncMessage::Notification(n)) => {
                    if tx.send(n).is_err() {
                        return Ok(());
                    }
                }
                Ok(_) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    });
    client.batch_execute(&format!("LISTEN {CHANNEL}")).await?;
    cluster.wake_all(shared);
    while let Some(n) = rx.recv().await {
        match Note::decode(n.payload()) {
            Some(note) => cluster.handle(shared, note),
            None => tracing::debug!("ignoring a malformed notification"),
        }
    }
    drop(client);
    driver.await.unwrap_or(Ok(()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notes_round_trip_and_junk_is_none() {
        crate::crypto::init().expect("sodium");
        let k = IdentityPublicKey::from_bytes(&[7; 32]).expect("key");
        let j = IdentityPublicKey::from_bytes(&[9; 32]).expect("key");
        for n in [
            Note::Wake { node: "a".into(), at_ms: 5, recipient: k },
            Note::Login { node: "b-1".into(), at_us: 6, identity: j },
            Note::Unpair { node: "c".into(), a: k, b: j },
        ] {
            assert_eq!(Note::decode(&n.encode()), Some(n));
        }
        for junk in ["", "w", "w a 1", "x a 1 00", "w a x 0707", "w a 1 07 extra"] {
            assert_eq!(Note::decode(junk), None, "{junk:?}");
        }
    }
}
