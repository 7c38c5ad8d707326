//! Relay load benchmark (`harness = false`): run through `scripts/bench-relay.sh`.
//!
//! Starts the real `agentroom relay` binary (pinned to one core with `taskset` when
//! `RELAY_CPU` is set), logs in N pairs over loopback with real signatures, pairs
//! them through invites, and streams 200-byte envelopes:
//!
//! 1. closed loop: each sender keeps `BENCH_WINDOW` envelopes in flight (until its
//!    `sent`), for `BENCH_SECS`; prints delivered/s and latency percentiles;
//! 2. fixed rate: `BENCH_RATE` envelopes/s spread over the pairs (latency measured
//!    from the scheduled send time, so a stall is not hidden);
//! 3. offline: `BENCH_OFFLINE` envelopes queued for an offline recipient, then
//!    drained when it connects, while another pair exchanges at a fixed rate.
//!
//! Every mode checks that each recipient got every envelope exactly once, in order.
//! Relay CPU per message comes from `/proc/<pid>/stat`, peak RSS from `VmHWM`.
//!
//! PostgreSQL (`scripts/bench-scale.sh`): `BENCH_DB=postgres://…` runs the relay on
//! that database; `BENCH_NODES=2` starts a second node on it and puts every other
//! pair's host there (half the pairs cross nodes). The CPU figures then add both
//! nodes and the PostgreSQL server (`BENCH_PG_PID`: its postmaster and children).
//!
//! With `BENCH_COMPARE=1` (`scripts/bench-relay.sh --compare-forwarder`) it runs
//! `BENCH_ROUNDS` interleaved rounds of the relay (rate limits off) and of a bare
//! tokio-tungstenite forwarder (`support/forwarder.rs`: no auth, no parse, no
//! disk) under the same client and pinning, then the relay once more with its
//! shipped defaults, and prints medians and the relay/forwarder ratios of issue 17.

#![allow(clippy::unwrap_used, clippy::panic, clippy::print_stdout, clippy::print_stderr)]
#![allow(clippy::cast_possible_truncation, clippy::too_many_arguments)]

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use agentroom::crypto::{IdentityKeyPair, IdentityPublicKey};
use agentroom::protocol::frames::InviteIdClaim;
use agentroom::protocol::{
    ClientFrame, EnvelopeId, InviteHash, ServerFrame, decode_client_frame, decode_server_frame,
    encode_frame, login_signed_bytes,
};
use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{FutureExt, SinkExt, StreamExt};
use sha2::Digest;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;
type Tx = SplitSink<Ws, Message>;
type Rx = SplitStream<Ws>;

const BODY_LEN: usize = 200;

fn env_or<T: std::str::FromStr>(k: &str, d: T) -> T {
    std::env::var(k).ok().and_then(|v| v.parse().ok()).unwrap_or(d)
}

fn now_secs() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs()
}

/// What the load client talks to.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Target {
    /// `agentroom relay`; `shipped` keeps its default limits, else they are lifted.
    Relay { shipped: bool },
    /// The relay build at `BENCH_BEFORE_BIN` (limits lifted): a "before" column.
    Before,
    /// `support/forwarder.rs`: frames go to the paired connection unchanged.
    Forwarder,
}

/// The server under test, pinned to `RELAY_CPU` when set.
struct Server {
    child: Child,
    addr: SocketAddr,
    target: Target,
    _dir: Option<tempfile::TempDir>,
}

/// Set in the forwarder's environment: this executable then serves as the forwarder.
const FORWARDER_ROLE: &str = "RELAY_LOAD_FORWARDER";

impl Server {
    fn start(target: Target) -> Self {
        // BENCH_RELAY_BIN: another build of the relay (e.g. a saved "before" binary).
        let relay_bin = std::env::var_os("BENCH_RELAY_BIN")
            .map_or_else(|| env!("CARGO_BIN_EXE_agentroom").into(), std::path::PathBuf::from);
        let me = std::env::current_exe().unwrap();
        let before_bin = std::env::var_os("BENCH_BEFORE_BIN").map(std::path::PathBuf::from);
        let bin = match (target, &before_bin) {
            (Target::Relay { .. }, _) => relay_bin.as_path(),
            (Target::Before, Some(b)) => b.as_path(),
            (Target::Before, None) => panic!("Target::Before needs BENCH_BEFORE_BIN"),
            (Target::Forwarder, _) => me.as_path(),
        };
        let mut cmd = match std::env::var("RELAY_CPU") {
            Ok(cpu) if !cpu.is_empty() => {
                let mut c = Command::new("taskset");
                c.arg("-c").arg(&cpu).arg(bin);
                c
            }
            _ => Command::new(bin),
        };
        let mut dir = None;
        match target {
            Target::Relay { .. } | Target::Before => {
                let shipped = target == Target::Relay { shipped: true };
                let d = tempfile::tempdir().unwrap();
                cmd.args(["relay", "--port", "0", "--db"])
                    .arg(
                        std::env::var("BENCH_DB")
                            .unwrap_or_else(|_| d.path().join("relay.db").display().to_string()),
                    )
                    .env("HMAC_SECRET", "b".repeat(32))
                    .env("LOG_LEVEL", "warn");
                if !shipped {
                    cmd.env("RATE_LIMIT_DISABLED", "1")
                        .env("MAX_PENDING_MSGS", "1000000")
                        .env("MAX_CONNECTIONS_PER_IP", "100000")
                        .env("MAX_CONNECTIONS", "100000");
                }
                dir = Some(d);
            }
            Target::Forwarder => {
                cmd.env(FORWARDER_ROLE, "1");
            }
        }
        let mut child = cmd.stdout(Stdio::piped()).stderr(Stdio::inherit()).spawn().unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
        let port: u16 = line
            .split("ws://127.0.0.1:")
            .nth(1)
            .and_then(|s| s.split('/').next())
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("bad startup line {line:?}"));
        Server { child, addr: SocketAddr::from(([127, 0, 0, 1], port)), target, _dir: dir }
    }

    /// (user+system CPU seconds, peak RSS KiB) of the server process.
    fn usage(&self) -> (f64, u64) {
        proc_usage(&self.child.id().to_string())
    }

    /// Resident set now, KiB.
    fn rss(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or(0)
    }

    fn proto(&self) -> Proto {
        match self.target {
            Target::Relay { .. } | Target::Before => Proto::Relay,
            Target::Forwarder => Proto::Forwarder,
        }
    }
}

/// CPU seconds of the PostgreSQL server (`BENCH_PG_PID` and its children), else 0.
fn db_cpu() -> f64 {
    let Ok(master) = std::env::var("BENCH_PG_PID") else { return 0.0 };
    let mut total = 0.0;
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let pid = e.file_name().to_string_lossy().into_owned();
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else { continue };
        let Some((_, rest)) = stat.rsplit_once(')') else { continue };
        let ppid = rest.split_whitespace().nth(1).unwrap_or("");
        if pid == master || ppid == master {
            total += proc_usage(&pid).0;
        }
    }
    total
}

/// CPU seconds and peak RSS of what serves the load: the server, a second relay
/// node when there is one, plus the PostgreSQL server's CPU when it is one.
fn usage(a: &Server, b: Option<&Server>) -> (f64, u64) {
    let (c1, r1) = a.usage();
    let (c2, r2) = b.map_or((0.0, 0), Server::usage);
    (c1 + c2 + db_cpu(), r1.max(r2))
}

/// (user+system CPU seconds, peak RSS KiB) of a process (`self` for this one).
fn proc_usage(pid: &str) -> (f64, u64) {
    {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
        let after_comm = stat.rsplit_once(')').unwrap().1;
        let f: Vec<&str> = after_comm.split_whitespace().collect();
        // Fields 14 and 15 (utime, stime) are at index 11 and 12 after the comm.
        let ticks: u64 = f[11].parse::<u64>().unwrap() + f[12].parse::<u64>().unwrap();
        let hz = 100.0; // USER_HZ on Linux
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
        let hwm = status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or(0);
        #[allow(clippy::cast_precision_loss)]
        (ticks as f64 / hz, hwm)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn recv(rx: &mut Rx) -> ServerFrame {
    loop {
        match rx.next().await {
            Some(Ok(Message::Text(t))) => return decode_server_frame(&t, 1 << 20).unwrap(),
            Some(Ok(_)) => {}
            other => panic!("connection lost: {other:?}"),
        }
    }
}

async fn send(tx: &mut Tx, f: &ClientFrame) {
    tx.send(Message::Text(encode_frame(f).into())).await.unwrap();
}

async fn login(addr: SocketAddr, kp: &IdentityKeyPair) -> (Tx, Rx) {
    let url = format!("ws://{addr}/ws");
    // Same read buffer as the relay: tungstenite zero-fills the whole read buffer
    // (128 KiB by default) before every read attempt, which would bill the load
    // generator for memsets rather than for the protocol.
    let config = WebSocketConfig::default().read_buffer_size(8 * 1024);
    let (ws, _) =
        tokio_tungstenite::connect_async_with_config(url, Some(config), true).await.unwrap();
    let (mut tx, mut rx) = ws.split();
    let challenge = match recv(&mut rx).await {
        ServerFrame::Challenge { challenge, .. } => challenge,
        f => panic!("expected a challenge, got {f:?}"),
    };
    let ts = now_secs();
    let origin = format!("127.0.0.1:{}", addr.port());
    let sig = kp.sign(&login_signed_bytes(&origin, &challenge, ts));
    let f = ClientFrame::Login { v: 1, identity: kp.public(), ts, signature: *sig.as_bytes() };
    send(&mut tx, &f).await;
    loop {
        match recv(&mut rx).await {
            ServerFrame::Welcome { .. } => return (tx, rx),
            ServerFrame::Presence { .. } => {}
            f => panic!("login: {f:?}"),
        }
    }
}

fn kp(n: u32) -> IdentityKeyPair {
    let mut seed = [7u8; 32];
    seed[..4].copy_from_slice(&n.to_be_bytes());
    IdentityKeyPair::from_seed(&seed).unwrap()
}

/// Pair `host` and `guest` through an invite; returns both connections.
async fn pair(addr: SocketAddr, host: &IdentityKeyPair, guest: &IdentityKeyPair) -> [(Tx, Rx); 2] {
    pair_at(addr, addr, host, guest).await
}

/// [`pair`] with the host on `host_at` and the guest on `guest_at`.
async fn pair_at(
    host_at: SocketAddr,
    guest_at: SocketAddr,
    host: &IdentityKeyPair,
    guest: &IdentityKeyPair,
) -> [(Tx, Rx); 2] {
    let (mut htx, mut hrx) = login(host_at, host).await;
    let (mut gtx, mut grx) = login(guest_at, guest).await;
    let invite: [u8; 16] = host.public().as_bytes()[..16].try_into().unwrap();
    let hash = InviteHash(sha2::Sha256::digest(invite).into());
    send(
        &mut htx,
        &ClientFrame::InvitePublish { rid: None, invite: hash, expires_at: now_secs() + 600 },
    )
    .await;
    while !matches!(recv(&mut hrx).await, ServerFrame::Ok { .. }) {}
    let id = EnvelopeId([0xee; 16]);
    let claim = Some(InviteIdClaim(invite));
    send(&mut gtx, &ClientFrame::Send { id, to: host.public(), body: vec![0], claim }).await;
    loop {
        if let ServerFrame::Deliver { id, from, .. } = recv(&mut hrx).await {
            send(&mut htx, &ClientFrame::Ack { id, from }).await;
            break;
        }
    }
    while !matches!(recv(&mut grx).await, ServerFrame::Sent { .. }) {}
    [(htx, hrx), (gtx, grx)]
}

fn body(seq: u64, t0: Instant, at: Instant) -> Vec<u8> {
    let mut b = vec![0x42u8; BODY_LEN];
    b[..8].copy_from_slice(&seq.to_be_bytes());
    b[8..16].copy_from_slice(&(at.duration_since(t0).as_nanos() as u64).to_be_bytes());
    b
}

/// Envelope ids must be unique per sender across runs (the relay suppresses repeats).
fn eid(sender: u64, seq: u64) -> EnvelopeId {
    let mut b = [0u8; 16];
    b[..8].copy_from_slice(&sender.to_be_bytes());
    b[8..].copy_from_slice(&seq.to_be_bytes());
    EnvelopeId(b)
}

/// Whose frames the load client reads.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Proto {
    /// The relay's: `deliver` and `sent`.
    Relay,
    /// The forwarder's: the peer's own `send` and `ack`, unchanged.
    Forwarder,
}

/// What a received frame means to the load client.
enum Event {
    /// The sender's envelope is safe (`sent`, or the peer's `ack` through the forwarder).
    Sent,
    /// An envelope for this client (`deliver`, or the peer's `send`).
    Deliver {
        id: EnvelopeId,
        from: IdentityPublicKey,
        body: Vec<u8>,
    },
    Other,
}

fn event(proto: Proto, text: &str) -> Event {
    match proto {
        Proto::Relay => match decode_server_frame(text, 1 << 20).unwrap() {
            ServerFrame::Sent { .. } => Event::Sent,
            ServerFrame::Deliver { id, from, body, .. } => Event::Deliver { id, from, body },
            ServerFrame::Error { code, message, .. } => panic!("got {code:?}: {message}"),
            _ => Event::Other,
        },
        Proto::Forwarder => match decode_client_frame(text, 1 << 20).unwrap() {
            ClientFrame::Ack { .. } => Event::Sent,
            // The ack names the sender as `from`; the forwarder only needs some key.
            ClientFrame::Send { id, to, body, .. } => Event::Deliver { id, from: to, body },
            _ => Event::Other,
        },
    }
}

/// How a sender paces itself.
#[derive(Clone, Copy)]
enum Pace {
    /// As fast as the window allows.
    Closed,
    /// One envelope every `interval`, window permitting.
    Every(Duration),
}

/// Send until `stop` (or `count` envelopes), keeping at most `window` without `sent`.
/// Returns envelopes sent.
async fn sender(
    proto: Proto,
    mut tx: Tx,
    mut rx: Rx,
    me: u64,
    to: IdentityPublicKey,
    window: usize,
    pace: Pace,
    count: Option<u64>,
    stop: Arc<AtomicBool>,
    t0: Instant,
) -> (u64, Tx, Rx) {
    let mut seq = 0u64;
    let mut inflight = 0usize;
    let mut next_at = Instant::now();
    let limit = count.unwrap_or(u64::MAX);
    loop {
        let done = stop.load(Ordering::Relaxed) || seq >= limit;
        if done && inflight == 0 {
            break;
        }
        // Send what the window and pace allow.
        let mut fed = 0;
        while !done && inflight < window && seq < limit && fed < 64 {
            let at = match pace {
                Pace::Closed => Instant::now(),
                Pace::Every(iv) => {
                    if Instant::now() < next_at {
                        break;
                    }
                    let at = next_at;
                    next_at += iv;
                    at
                }
            };
            let f =
                ClientFrame::Send { id: eid(me, seq), to, body: body(seq, t0, at), claim: None };
            tx.feed(Message::Text(encode_frame(&f).into())).await.unwrap();
            seq += 1;
            inflight += 1;
            fed += 1;
        }
        if fed > 0 {
            tx.flush().await.unwrap();
        }
        let wait = match pace {
            Pace::Every(_) if !done && inflight < window => {
                next_at.saturating_duration_since(Instant::now()).max(Duration::from_micros(50))
            }
            _ => Duration::from_millis(200),
        };
        match tokio::time::timeout(wait, rx.next()).await {
            Ok(Some(Ok(Message::Text(t)))) => {
                if let Event::Sent = event(proto, &t) {
                    inflight -= 1;
                }
            }
            Ok(Some(Ok(_))) | Err(_) => {}
            Ok(other) => panic!("sender connection lost: {other:?}"),
        }
    }
    (seq, tx, rx)
}

/// Receive `expected` envelopes from one sender (or until `stop` and idle), acking
/// each; checks order and returns latencies in µs.
async fn receiver(
    proto: Proto,
    mut tx: Tx,
    mut rx: Rx,
    stop: Arc<AtomicBool>,
    expected: Option<u64>,
    t0: Instant,
) -> (Vec<u32>, Instant, Tx, Rx) {
    let mut next = 0u64;
    let mut last = Instant::now();
    let mut lat = Vec::with_capacity(1 << 16);
    loop {
        if expected.is_some_and(|e| next >= e) {
            break;
        }
        let msg = match tokio::time::timeout(Duration::from_millis(500), rx.next()).await {
            Ok(m) => m,
            Err(_) if stop.load(Ordering::Relaxed) && expected.is_none() => break,
            Err(_) => continue,
        };
        let mut batch = vec![msg];
        while let Some(m) = rx.next().now_or_never() {
            batch.push(m);
            if batch.len() >= 64 {
                break;
            }
        }
        let mut acks = 0;
        for m in batch {
            let t = match m {
                Some(Ok(Message::Text(t))) => t,
                Some(Ok(_)) => continue,
                other => panic!("receiver connection lost: {other:?}"),
            };
            if let Event::Deliver { id, from, body } = event(proto, &t) {
                let seq = u64::from_be_bytes(body[..8].try_into().unwrap());
                assert_eq!(seq, next, "lost or reordered envelope");
                next += 1;
                let sent_ns = u64::from_be_bytes(body[8..16].try_into().unwrap());
                let now_ns = t0.elapsed().as_nanos() as u64;
                lat.push((now_ns.saturating_sub(sent_ns) / 1000) as u32);
                last = Instant::now();
                let ack = ClientFrame::Ack { id, from };
                tx.feed(Message::Text(encode_frame(&ack).into())).await.unwrap();
                acks += 1;
            }
        }
        if acks > 0 {
            tx.flush().await.unwrap();
        }
    }
    (lat, last, tx, rx)
}

/// Counters from the relay's /metrics: live-acked, stored, commits, and the relay's
/// own delivery-latency histogram (send accepted -> ack) at <=1 ms, <=5 ms, all.
async fn paths(addr: SocketAddr) -> [u64; 6] {
    let text = reqwest::get(format!("http://{addr}/metrics")).await.unwrap().text().await.unwrap();
    let get = |name: &str| -> u64 {
        text.lines()
            .find_map(|l| l.strip_prefix(&format!("agentroom_relay_{name} ")))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0)
    };
    [
        get("envelopes_delivered_live_total"),
        get("envelopes_stored_total"),
        get("store_commits_total"),
        get("delivery_latency_seconds_bucket{le=\"0.001\"}"),
        get("delivery_latency_seconds_bucket{le=\"0.005\"}"),
        get("delivery_latency_seconds_count"),
    ]
}

#[allow(clippy::cast_precision_loss)]
async fn report_paths(addr: SocketAddr, before: [u64; 6]) -> [u64; 6] {
    let now = paths(addr).await;
    let d: Vec<u64> = now.iter().zip(before).map(|(a, b)| a - b).collect();
    println!(
        "  paths: {} acked live (no disk), {} committed to SQLite, {} commits; \
         relay-side send->ack within 1 ms {:.1}%, within 5 ms {:.1}%",
        d[0],
        d[1],
        d[2],
        100.0 * d[3] as f64 / d[5].max(1) as f64,
        100.0 * d[4] as f64 / d[5].max(1) as f64
    );
    now
}

fn pct(sorted: &[u32], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    #[allow(clippy::cast_precision_loss, clippy::cast_sign_loss)]
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    f64::from(sorted[i]) / 1000.0
}

/// Latency percentiles in ms: p50, p99, max.
#[derive(Clone, Copy, Default)]
struct Lat {
    p50: f64,
    p99: f64,
    max: f64,
}

fn report_latency(label: &str, mut lat: Vec<u32>) -> Lat {
    lat.sort_unstable();
    println!(
        "  {label}: n={} p50={:.3} ms p90={:.3} ms p99={:.3} ms max={:.3} ms",
        lat.len(),
        pct(&lat, 0.5),
        pct(&lat, 0.9),
        pct(&lat, 0.99),
        pct(&lat, 1.0)
    );
    Lat { p50: pct(&lat, 0.5), p99: pct(&lat, 0.99), max: pct(&lat, 1.0) }
}

/// Run `pairs` senders for `secs` with `pace`; returns (delivered, elapsed, latencies).
async fn run_pairs(
    proto: Proto,
    conns: Vec<[(Tx, Rx); 2]>,
    ids: &[(IdentityPublicKey, u32)],
    run: u64,
    secs: f64,
    window: usize,
    pace: Pace,
) -> (u64, Duration, Vec<u32>, Vec<[(Tx, Rx); 2]>) {
    let stop = Arc::new(AtomicBool::new(false));
    let t0 = Instant::now();
    let mut tasks = Vec::new();
    for ([(htx, hrx), (gtx, grx)], (host_pk, guest_n)) in conns.into_iter().zip(ids) {
        let s = tokio::spawn(sender(
            proto,
            gtx,
            grx,
            (run << 32) | u64::from(*guest_n),
            *host_pk,
            window,
            pace,
            None,
            stop.clone(),
            t0,
        ));
        let r = tokio::spawn(receiver(proto, htx, hrx, stop.clone(), None, t0));
        tasks.push((s, r));
    }
    tokio::time::sleep(Duration::from_secs_f64(secs)).await;
    stop.store(true, Ordering::Relaxed);
    let mut sent = 0;
    let mut delivered = 0u64;
    let mut lat = Vec::new();
    let mut back = Vec::new();
    let mut end = t0;
    for (s, r) in tasks {
        let (n, gtx, grx) = s.await.unwrap();
        let (l, last, htx, hrx) = r.await.unwrap();
        end = end.max(last);
        assert_eq!(l.len() as u64, n, "a sender's envelopes were not all delivered");
        sent += n;
        delivered += l.len() as u64;
        lat.extend(l);
        back.push([(htx, hrx), (gtx, grx)]);
    }
    assert_eq!(sent, delivered);
    (delivered, end - t0, lat, back)
}

/// Two connections to the forwarder that it pairs with each other.
async fn forwarder_pair(addr: SocketAddr, n: u32) -> [(Tx, Rx); 2] {
    let url = format!("ws://{addr}/pair/{n}");
    let config = WebSocketConfig::default().read_buffer_size(8 * 1024);
    let mut out = Vec::new();
    for _ in 0..2 {
        let (ws, _) =
            tokio_tungstenite::connect_async_with_config(&url, Some(config), true).await.unwrap();
        out.push(ws.split());
    }
    let g = out.pop().unwrap();
    [out.pop().unwrap(), g]
}

/// The knobs of one run.
#[derive(Clone, Copy)]
struct Knobs {
    pairs: u32,
    secs: f64,
    window: usize,
    rate: f64,
    offline: u64,
    /// Run the closed-loop mode (not with shipped limits: they would refuse it).
    closed: bool,
}

/// What one run measured (NaN where a mode did not run).
#[derive(Clone, Copy)]
struct Figures {
    closed_rate: f64,
    closed_cpu_us: f64,
    closed: Lat,
    fixed_cpu_us: f64,
    fixed: Lat,
    offline_in: f64,
    offline_out: f64,
    offline_live_p99: f64,
    idle_rss_mib: f64,
    peak_rss_mib: f64,
}

impl Default for Figures {
    fn default() -> Self {
        let nan = Lat { p50: f64::NAN, p99: f64::NAN, max: f64::NAN };
        Figures {
            closed_rate: f64::NAN,
            closed_cpu_us: f64::NAN,
            closed: nan,
            fixed_cpu_us: f64::NAN,
            fixed: nan,
            offline_in: f64::NAN,
            offline_out: f64::NAN,
            offline_live_p99: f64::NAN,
            idle_rss_mib: f64::NAN,
            peak_rss_mib: f64::NAN,
        }
    }
}

#[allow(clippy::cast_precision_loss)]
fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

/// One run against a fresh server: closed loop, fixed rate, and (relay only) offline.
#[allow(clippy::cast_precision_loss)]
async fn run(target: Target, k: Knobs) -> Figures {
    let server = Server::start(target);
    let addr = server.addr;
    let proto = server.proto();
    let server2 =
        (proto == Proto::Relay && env_or("BENCH_NODES", 1u32) >= 2).then(|| Server::start(target));
    if server2.is_some() {
        println!("two nodes: every other pair's host on node 2 (half the pairs cross nodes)");
    }
    if proto == Proto::Relay && std::env::var("BENCH_PG_PID").is_ok() {
        println!("CPU per envelope below: relay node(s) + the PostgreSQL server");
    }
    let mut fig = Figures { idle_rss_mib: mib(server.rss()), ..Figures::default() };
    let name = match target {
        Target::Relay { shipped: false } => "relay (rate limits off)",
        Target::Relay { shipped: true } => "relay (shipped defaults)",
        Target::Before => "relay BEFORE (BENCH_BEFORE_BIN, rate limits off)",
        Target::Forwarder => "bare forwarder",
    };
    println!(
        "relay_load {name}: pairs={} secs={} window={} rate={}/s offline={} body={BODY_LEN}B relay_cpu={}",
        k.pairs,
        k.secs,
        k.window,
        k.rate,
        k.offline,
        std::env::var("RELAY_CPU").unwrap_or_else(|_| "unpinned".into())
    );

    let mut conns = Vec::new();
    let mut ids = Vec::new();
    for p in 0..k.pairs {
        let (h, g) = (kp(2 * p), kp(2 * p + 1));
        conns.push(match proto {
            Proto::Relay => {
                let host_at = server2.as_ref().filter(|_| p % 2 == 1).map_or(addr, |r| r.addr);
                pair_at(host_at, addr, &h, &g).await
            }
            Proto::Forwarder => forwarder_pair(addr, p).await,
        });
        ids.push((h.public(), 2 * p + 1));
    }
    let is_relay = proto == Proto::Relay;
    let mut p = if is_relay { paths(addr).await } else { [0; 6] };

    // 1. Closed loop.
    if k.closed {
        let (cpu0, _) = usage(&server, server2.as_ref());
        let (me0, _) = proc_usage("self");
        let (n, el, lat, back) =
            run_pairs(proto, conns, &ids, 1, k.secs, k.window, Pace::Closed).await;
        conns = back;
        let (cpu1, rss) = usage(&server, server2.as_ref());
        fig.closed_rate = n as f64 / el.as_secs_f64();
        fig.closed_cpu_us = (cpu1 - cpu0) * 1e6 / n as f64;
        println!(
            "closed loop: {n} delivered in {:.2}s = {:.0} envelopes/s; server CPU {:.2} µs/envelope; peak RSS {:.1} MiB",
            el.as_secs_f64(),
            fig.closed_rate,
            fig.closed_cpu_us,
            mib(rss)
        );
        fig.closed = report_latency("latency send->deliver", lat);
        let (me1, _) = proc_usage("self");
        println!("  load generator CPU {:.2} µs/envelope", (me1 - me0) * 1e6 / n as f64);
        if is_relay {
            p = report_paths(addr, p).await;
        }
    }

    // 2. Fixed rate.
    let per_pair = Duration::from_secs_f64(f64::from(k.pairs) / k.rate);
    let (cpu0, _) = usage(&server, server2.as_ref());
    let (n, el, lat, _conns) =
        run_pairs(proto, conns, &ids, 2, k.secs, 4096, Pace::Every(per_pair)).await;
    let (cpu1, rss) = usage(&server, server2.as_ref());
    fig.fixed_cpu_us = (cpu1 - cpu0) * 1e6 / n as f64;
    println!(
        "fixed rate {}/s: {n} delivered in {:.2}s = {:.0} envelopes/s; server CPU {:.2} µs/envelope; peak RSS {:.1} MiB",
        k.rate,
        el.as_secs_f64(),
        n as f64 / el.as_secs_f64(),
        fig.fixed_cpu_us,
        mib(rss)
    );
    fig.fixed = report_latency("latency from scheduled send", lat);
    fig.peak_rss_mib = mib(rss);
    if !is_relay || k.offline == 0 {
        return fig;
    }
    let p = report_paths(addr, p).await;

    // 3. Offline recipient + a live pair at a fixed rate alongside.
    let (oh, og) = (kp(1_000_000), kp(1_000_001));
    let [(ohtx, ohrx), (ogtx, ogrx)] = pair(addr, &oh, &og).await;
    let _ = ohtx.reunite(ohrx).unwrap().close(None).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let (lh, lg) = (kp(1_000_002), kp(1_000_003));
    let [(lhtx, lhrx), (lgtx, lgrx)] = pair(addr, &lh, &lg).await;
    let stop = Arc::new(AtomicBool::new(false));
    let t0 = Instant::now();
    let live_s = tokio::spawn(sender(
        proto,
        lgtx,
        lgrx,
        1_000_003,
        lh.public(),
        4096,
        Pace::Every(Duration::from_millis(1)),
        None,
        stop.clone(),
        t0,
    ));
    let live_r = tokio::spawn(receiver(proto, lhtx, lhrx, stop.clone(), None, t0));
    let (cpu0, _) = usage(&server, server2.as_ref());
    let t_in = Instant::now();
    let (queued, _, _) = sender(
        proto,
        ogtx,
        ogrx,
        1_000_001,
        oh.public(),
        256,
        Pace::Closed,
        Some(k.offline),
        Arc::new(AtomicBool::new(false)),
        t0,
    )
    .await;
    let in_el = t_in.elapsed();
    let t_out = Instant::now();
    let (otx, orx) = login(addr, &oh).await;
    let (olat, last, _, _) =
        receiver(proto, otx, orx, Arc::new(AtomicBool::new(false)), Some(queued), t0).await;
    let out_el = last - t_out;
    stop.store(true, Ordering::Relaxed);
    let (ln, _, _) = live_s.await.unwrap();
    let (llat, _, _, _) = live_r.await.unwrap();
    assert_eq!(olat.len() as u64, queued);
    assert_eq!(llat.len() as u64, ln);
    let (cpu1, rss) = usage(&server, server2.as_ref());
    fig.offline_in = queued as f64 / in_el.as_secs_f64();
    fig.offline_out = queued as f64 / out_el.as_secs_f64();
    println!(
        "offline: {queued} queued in {:.2}s = {:.0}/s in; drained in {:.2}s = {:.0}/s out; relay CPU {:.2} µs/envelope; relay peak RSS {:.1} MiB",
        in_el.as_secs_f64(),
        fig.offline_in,
        out_el.as_secs_f64(),
        fig.offline_out,
        (cpu1 - cpu0) * 1e6 / (queued + ln) as f64,
        mib(rss)
    );
    fig.offline_live_p99 = report_latency("other pair (1000/s) during queue+drain", llat).p99;
    fig.peak_rss_mib = mib(rss);
    report_paths(addr, p).await;
    fig
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

fn median(mut v: Vec<f64>) -> f64 {
    v.retain(|x| !x.is_nan());
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// The summary of issue 17: medians over the rounds and relay/forwarder ratios.
fn summary(
    relay: &[Figures],
    fwd: &[Figures],
    before: &[Figures],
    shipped: &Figures,
    k: Knobs,
    shipped_k: Knobs,
) {
    let m = |v: &[Figures], f: fn(&Figures) -> f64| median(v.iter().map(f).collect());
    let row = |label: &str, f: fn(&Figures) -> f64, unit: &str| {
        let (r, w) = (m(relay, f), m(fwd, f));
        let all: Vec<String> = relay.iter().map(|x| format!("{:.2}", f(x))).collect();
        let b = if before.is_empty() {
            String::new()
        } else {
            let b = m(before, f);
            format!(" | before {b:.2} ({:.2}x)", b / w)
        };
        println!(
            "  {label:<34} {r:>10.2} {w:>10.2} {:>7.2}x  {unit} (relay runs: {}){b}",
            r / w,
            all.join(", ")
        );
    };
    println!();
    println!(
        "== relay vs bare forwarder: median of {} interleaved rounds, {} pairs, {BODY_LEN}-byte bodies, relay rate limits OFF ==",
        relay.len(),
        k.pairs
    );
    println!("  {:<34} {:>10} {:>10} {:>8}", "", "relay", "forwarder", "ratio");
    row(&format!("closed loop (window {}) msgs/s", k.window), |f| f.closed_rate, "");
    row("server CPU per message at saturation", |f| f.closed_cpu_us, "µs");
    row("closed loop p99", |f| f.closed.p99, "ms");
    row(&format!("open loop {}/s p50", k.rate), |f| f.fixed.p50, "ms");
    row(&format!("open loop {}/s p99", k.rate), |f| f.fixed.p99, "ms");
    row(&format!("open loop {}/s max", k.rate), |f| f.fixed.max, "ms");
    row("server CPU per message at that rate", |f| f.fixed_cpu_us, "µs");
    row("idle RSS", |f| f.idle_rss_mib, "MiB");
    row("peak RSS", |f| f.peak_rss_mib, "MiB");
    println!(
        "  offline (window 256, {} envelopes): queued {:.0}/s, drained {:.0}/s, live pair p99 {:.3} ms (runs: {})",
        k.offline,
        m(relay, |f| f.offline_in),
        m(relay, |f| f.offline_out),
        m(relay, |f| f.offline_live_p99),
        relay
            .iter()
            .map(|f| format!("{:.0}/{:.0}/{:.3}", f.offline_in, f.offline_out, f.offline_live_p99))
            .collect::<Vec<_>>()
            .join(", ")
    );
    if !before.is_empty() {
        println!(
            "  offline BEFORE: queued {:.0}/s, drained {:.0}/s, live pair p99 {:.3} ms",
            m(before, |f| f.offline_in),
            m(before, |f| f.offline_out),
            m(before, |f| f.offline_live_p99),
        );
    }
    println!(
        "== relay with its SHIPPED defaults (rate limit 200 frames/s per connection, 64 connections per address): {} pairs at {}/s ==",
        shipped_k.pairs, shipped_k.rate
    );
    println!(
        "  open loop p50 {:.3} ms, p99 {:.3} ms, max {:.3} ms; server CPU {:.2} µs/message (no closed loop: the limits refuse it by design)",
        shipped.fixed.p50, shipped.fixed.p99, shipped.fixed.max, shipped.fixed_cpu_us
    );
}

async fn bench() {
    agentroom::crypto::init().unwrap();
    let compare = std::env::var("BENCH_COMPARE").is_ok_and(|v| v == "1");
    let k = Knobs {
        pairs: env_or("BENCH_PAIRS", 50),
        secs: env_or("BENCH_SECS", 5.0),
        window: env_or("BENCH_WINDOW", 32),
        rate: env_or("BENCH_RATE", 20_000.0),
        offline: env_or("BENCH_OFFLINE", 20_000),
        closed: true,
    };
    if !compare {
        run(Target::Relay { shipped: false }, k).await;
        println!("all modes: nothing lost, nothing reordered");
        return;
    }
    let rounds: usize = env_or("BENCH_ROUNDS", 3);
    let load_before = loadavg();
    let with_before = std::env::var_os("BENCH_BEFORE_BIN").is_some();
    let (mut relay, mut fwd, mut before) = (Vec::new(), Vec::new(), Vec::new());
    for round in 1..=rounds {
        println!("\n--- round {round}/{rounds} (load average {}) ---", loadavg());
        relay.push(run(Target::Relay { shipped: false }, k).await);
        fwd.push(run(Target::Forwarder, k).await);
        if with_before {
            before.push(run(Target::Before, k).await);
        }
    }
    // Shipped limits: 64 connections and 64 logins per address, 200 frames/s per
    // connection (a sender's sends, a receiver's acks): 16 pairs at 150/s each.
    let shipped_k = Knobs { pairs: 16, rate: 2_400.0, offline: 0, closed: false, ..k };
    println!("\n--- shipped defaults (load average {}) ---", loadavg());
    let shipped = run(Target::Relay { shipped: true }, shipped_k).await;
    summary(&relay, &fwd, &before, &shipped, k, shipped_k);
    println!("  load average before {load_before}, after {}", loadavg());
    println!("all modes: nothing lost, nothing reordered");
}

#[path = "support/forwarder.rs"]
mod forwarder;

fn main() {
    if std::env::var_os(FORWARDER_ROLE).is_some() {
        forwarder::main();
        return;
    }
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    rt.block_on(bench());
}
