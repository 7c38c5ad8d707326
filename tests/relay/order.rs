//! Per-pair delivery order (PROTOCOL.md §3.4, issue 18) when the recipient's
//! connection is cut mid-stream, and when the relay is killed with SIGKILL.
//!
//! A sender streams envelopes with 50 in flight (a new `send` for each `sent`);
//! the recipient acks every `deliver` at once. At a random point the recipient's
//! TCP path is cut (a proxy between it and the relay drops both sockets), or the
//! relay process is killed and restarted on the same database. After dropping the
//! ids it already acked, the recipient must see every envelope exactly in the
//! order they were sent.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use agentroom::crypto::IdentityPublicKey;
use agentroom::protocol::{EnvelopeId, ServerFrame, decode_server_frame};
use futures_util::StreamExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::AbortHandle;
use tokio_tungstenite::tungstenite::Message;

use crate::client::*;
use crate::process::{RelayProc, spawn};

/// Envelopes per repetition and how many the sender keeps unanswered.
const PER_REP: usize = 100;
const IN_FLIGHT: usize = 50;
/// Repetitions per test; `scripts/soak-order.sh` raises it with `ORDER_REPS`.
fn reps() -> usize {
    std::env::var("ORDER_REPS").ok().and_then(|s| s.parse().ok()).unwrap_or(20)
}

/// A TCP proxy whose connections can all be cut at once (both sockets dropped,
/// whatever is in its buffers lost).
struct Proxy {
    addr: SocketAddr,
    conns: Arc<Mutex<Vec<AbortHandle>>>,
    accept: AbortHandle,
}

impl Proxy {
    async fn start(upstream: SocketAddr) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let conns: Arc<Mutex<Vec<AbortHandle>>> = Arc::default();
        let c = Arc::clone(&conns);
        let accept = tokio::spawn(async move {
            loop {
                let Ok((mut down, _)) = listener.accept().await else { return };
                let c2 = Arc::clone(&c);
                let h = tokio::spawn(async move {
                    let Ok(mut up) = TcpStream::connect(upstream).await else { return };
                    let _ = down.set_nodelay(true);
                    let _ = up.set_nodelay(true);
                    let _ = tokio::io::copy_bidirectional(&mut down, &mut up).await;
                });
                c2.lock().unwrap().push(h.abort_handle());
            }
        })
        .abort_handle();
        Proxy { addr, conns, accept }
    }

    fn cut(&self) {
        for h in self.conns.lock().unwrap().drain(..) {
            h.abort();
        }
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.cut();
        self.accept.abort();
    }
}

/// xorshift64*, seeded from the clock and printed, so a failure can be replayed
/// with `ORDER_SEED`.
struct Rng(u64);

impl Rng {
    fn new() -> Rng {
        let seed =
            std::env::var("ORDER_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or_else(|| {
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .unwrap()
                    .as_nanos() as u64
                    | 1
            });
        #[allow(clippy::print_stderr)] // the seed to replay a failure with
        {
            eprintln!("order test seed: ORDER_SEED={seed}");
        }
        Rng(seed)
    }

    fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        (self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 33) as usize % n
    }
}

/// What breaks the stream once.
enum Cut<'a> {
    /// Drop the recipient's TCP path (the sender stays connected).
    Proxy(&'a Proxy),
    /// SIGKILL the relay and start it again on the same database.
    Kill { relay: &'a mut RelayProc, db: &'a std::path::Path },
}

/// Everything one repetition needs to know about the stream.
struct Stream {
    ids: Vec<EnvelopeId>,
    next_send: usize,
    /// Sent and not yet answered with `sent`, by index.
    unanswered: Vec<usize>,
    /// Next index the recipient must see.
    expect: usize,
}

async fn fill_window(s: &mut Stream, sender: &mut Client, to: IdentityPublicKey) {
    while s.unanswered.len() < IN_FLIGHT && s.next_send < s.ids.len() {
        let id = s.ids[s.next_send];
        sender.send_env(id, to, &id.0).await;
        s.unanswered.push(s.next_send);
        s.next_send += 1;
    }
}

/// A frame from either side, or `None` if that side's socket ended.
async fn next_frame(c: &mut Client) -> Option<ServerFrame> {
    loop {
        let msg = tokio::time::timeout(WAIT, c.ws.next()).await.expect("stream stalled");
        match msg {
            Some(Ok(Message::Text(t))) => return Some(decode_server_frame(&t, 1 << 20).unwrap()),
            Some(Ok(Message::Close(_))) | None | Some(Err(_)) => return None,
            Some(Ok(_)) => {}
        }
    }
}

/// One repetition: stream [`PER_REP`] envelopes and break things once, after the
/// recipient has seen `cut_at` of them. `acked` holds every id the recipient acked
/// so far, in any repetition (after a SIGKILL an acked envelope whose delete was
/// not committed yet comes again). Returns the (possibly new) clients.
async fn one_rep(
    rep: usize,
    cut_at: usize,
    mut cut: Cut<'_>,
    mut sender: Client,
    mut recip: Client,
    acked: &mut HashSet<EnvelopeId>,
) -> (Client, Client) {
    let to = recip.pk();
    let sender_id = identity(2);
    let recip_id = identity(1);
    let mut s = Stream {
        ids: (0..PER_REP).map(|i| eid((rep * 1000 + i) as u64)).collect(),
        next_send: 0,
        unanswered: Vec::new(),
        expect: 0,
    };
    let mut done_cut = false;
    fill_window(&mut s, &mut sender, to).await;
    while s.expect < PER_REP || !s.unanswered.is_empty() {
        if !done_cut && s.expect >= cut_at {
            done_cut = true;
            match &mut cut {
                Cut::Proxy(p) => {
                    p.cut();
                    // Reconnect at once: the relay may not have noticed yet.
                    recip = Client::login(p.addr, &recip_id).await.0;
                }
                Cut::Kill { relay, db } => {
                    nix::sys::signal::kill(
                        nix::unistd::Pid::from_raw(relay.child.id() as i32),
                        nix::sys::signal::Signal::SIGKILL,
                    )
                    .unwrap();
                    relay.child.wait().unwrap();
                    **relay = spawn(db, false);
                    recip = Client::login(relay.addr, &recip_id).await.0;
                    sender = Client::login(relay.addr, &sender_id).await.0;
                    // A sender resends, in order, everything it has no `sent` for.
                    s.unanswered.sort_unstable();
                    for &i in &s.unanswered {
                        sender.send_env(s.ids[i], to, &s.ids[i].0).await;
                    }
                }
            }
            continue;
        }
        tokio::select! {
            f = next_frame(&mut sender) => match f {
                Some(ServerFrame::Sent { id, .. }) => {
                    if let Some(pos) = s.unanswered.iter().position(|&i| s.ids[i] == id) {
                        s.unanswered.remove(pos);
                    }
                    fill_window(&mut s, &mut sender, to).await;
                }
                Some(ServerFrame::Presence { .. }) => {}
                Some(f) => panic!("rep {rep}: sender got {f:?}"),
                None => panic!("rep {rep}: sender's connection ended"),
            },
            f = next_frame(&mut recip) => match f {
                Some(ServerFrame::Deliver { id, from, .. }) => {
                    recip.send(&agentroom::protocol::ClientFrame::Ack { id, from }).await;
                    if !acked.insert(id) {
                        continue;
                    }
                    let want = s.ids.get(s.expect).copied();
                    assert_eq!(
                        Some(id),
                        want,
                        "rep {rep} (cut after {cut_at}): got envelope {:?} while expecting #{}",
                        s.ids.iter().position(|x| *x == id),
                        s.expect
                    );
                    s.expect += 1;
                }
                Some(ServerFrame::Presence { .. }) => {}
                Some(f) => panic!("rep {rep}: recipient got {f:?}"),
                None => panic!("rep {rep}: recipient's connection ended"),
            },
        }
    }
    (sender, recip)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn order_kept_when_the_recipients_connection_is_cut_mid_stream() {
    let dir = tempfile::tempdir().unwrap();
    let relay = relay(dir.path()).await;
    let (host, mut sender) = pair(relay.local_addr(), 1, 2).await;
    host.close().await;
    sender.barrier().await;
    let proxy = Proxy::start(relay.local_addr()).await;
    let (mut recip, _) = Client::login(proxy.addr, &identity(1)).await;
    let mut rng = Rng::new();
    let mut acked = HashSet::new();
    for rep in 0..reps() {
        let cut_at = 1 + rng.below(PER_REP - 1);
        let cut = Cut::Proxy(&proxy);
        (sender, recip) = one_rep(rep, cut_at, cut, sender, recip, &mut acked).await;
    }
    relay.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn order_kept_across_a_relay_sigkill_mid_stream() {
    let dir = tempfile::tempdir().unwrap();
    let db = db_of(dir.path());
    let mut relay = spawn(&db, false);
    let (recip, mut sender) = pair(relay.addr, 1, 2).await;
    sender.barrier().await;
    let (mut sender, mut recip) = (sender, recip);
    let mut rng = Rng::new();
    let mut acked = HashSet::new();
    for rep in 0..reps() {
        let cut_at = 1 + rng.below(PER_REP - 1);
        let cut = Cut::Kill { relay: &mut relay, db: &db };
        (sender, recip) = one_rep(rep, cut_at, cut, sender, recip, &mut acked).await;
    }
}
