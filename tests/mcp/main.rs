//! End to end: the real `agentroom mcp` binary driven over stdio with JSON-RPC
//! lines, a real relay on 127.0.0.1:0, and a second home as the peer, driven
//! through the real CLI.

// Helpers outside #[test] fns fail loudly too: this is test code.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod server;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use serde_json::{Value, json};
use server::McpServer;

/// Generous: every wait here is event-driven and returns as soon as it can.
const DEADLINE: Duration = Duration::from_secs(60);

/// A relay in its own runtime, alive as long as the value.
struct Relay {
    url: String,
    addr: std::net::SocketAddr,
    // Dropped before the runtime it runs on.
    handle: Option<agentroom::relay::RelayHandle>,
    runtime: tokio::runtime::Runtime,
    dir: tempfile::TempDir,
}

fn start_relay() -> Relay {
    let dir = tempfile::tempdir().unwrap();
    let runtime =
        tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
    let config = agentroom::relay::RelayConfig::new(
        "127.0.0.1:0".parse().unwrap(),
        dir.path().join("relay.db"),
    );
    let handle = runtime.block_on(agentroom::relay::start(config)).unwrap();
    let addr = handle.local_addr();
    Relay { url: format!("ws://{addr}/ws"), addr, handle: Some(handle), runtime, dir }
}

impl Relay {
    /// Shut down gracefully (clients see their sockets close).
    fn stop(&mut self) {
        if let Some(h) = self.handle.take() {
            self.runtime.block_on(h.shutdown());
        }
    }

    /// Start again on the same address with the same database.
    fn restart(&mut self) {
        let config =
            agentroom::relay::RelayConfig::new(self.addr, self.dir.path().join("relay.db"));
        self.handle = Some(self.runtime.block_on(agentroom::relay::start(config)).unwrap());
    }
}

/// Run the CLI against `home`; panics with its stderr on failure.
fn cli(home: &Path, args: &[&str]) -> Vec<Value> {
    let out = Command::new(env!("CARGO_BIN_EXE_agentroom"))
        .arg("--home")
        .arg(home)
        .arg("--json")
        .args(args)
        .env_remove("AGENTROOM_HOME")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "agentroom {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect()
}

fn event<'a>(lines: &'a [Value], name: &str) -> &'a Value {
    lines
        .iter()
        .find(|v| v["event"] == name)
        .unwrap_or_else(|| panic!("no {name} event in {lines:?}"))
}

/// A paired setup: an MCP server (home `m`) and a CLI peer (home `p`, label
/// "mcp" for the server; the server calls it "peer").
struct Pair {
    relay: Relay,
    m: tempfile::TempDir,
    p: tempfile::TempDir,
    server: McpServer,
}

fn pair() -> Pair {
    let relay = start_relay();
    let m = tempfile::tempdir().unwrap();
    let p = tempfile::tempdir().unwrap();
    cli(p.path(), &["setup"]);
    let mut server = McpServer::start(m.path());
    server.handshake();
    let created = server
        .tool_ok("invite_create", json!({"relay": relay.url, "label": "peer", "expires": "1h"}));
    let invite = created["invite"].as_str().unwrap().to_owned();
    assert!(invite.starts_with("ar1."), "{created}");
    assert_eq!(created["accept_command"], format!("agentroom invite accept '{invite}'"));
    let accepted = cli(p.path(), &["invite", "accept", &invite, "--label", "mcp"]);
    let safety = event(&accepted, "invite_accepted")["safety_number"].clone();
    // The server's background link sees the guest's hello and pairs.
    let peers = server.poll_tool("peers", json!({}), |r| r["peers"].as_array().unwrap().len() == 1);
    let peer = &peers["peers"][0];
    assert_eq!(peer["label"], "peer");
    assert_eq!(peer["role"], "guest");
    assert_eq!(peer["safety_number"], safety, "both sides compute the same safety number");
    // One shape for a peer everywhere: the MCP tool and `peers --json` agree.
    let listed = cli(m.path(), &["peers"]);
    let listed = event(&listed, "peer");
    for field in ["pk", "label", "fingerprint", "safety_number", "verified", "role", "relay"] {
        assert_eq!(peer[field], listed[field], "{field}");
    }
    assert!(peer.get("public_key").is_none(), "one name for a key: pk");
    assert_eq!(peer["verified"], false);
    // Marked verified through the daemon the MCP server runs for this home.
    let marked = cli(m.path(), &["peers", "verify", "peer", safety.as_str().unwrap()]);
    assert_eq!(event(&marked, "peer_verified")["verified"], true);
    let peers = server.tool_ok("peers", json!({}));
    assert_eq!(peers["peers"][0]["verified"], true, "{peers}");
    Pair { relay, m, p, server }
}

#[test]
fn messages_are_leased_acked_once_and_offered_again_after_the_lease() {
    let Pair { relay, m, p, mut server } = pair();

    cli(p.path(), &["send", "mcp", "hello one"]);
    let first = server.tool_ok("next_message", json!({"timeout_secs": 60}))["message"].clone();
    assert_eq!(first["text"], "hello one");
    assert_eq!(first["delivery"], 1);
    assert_eq!(first["label"], "peer");
    assert!(first["sent_at"].as_u64().unwrap() > 0, "{first}");
    assert!(first["lease_until"].as_u64().unwrap() > first["sent_at"].as_u64().unwrap());
    let p_key = event(&cli(p.path(), &["whoami"]), "whoami")["pk"].clone();
    assert_eq!(first["from"], p_key);
    // Leased for the default 60 s: not offered to anyone else meanwhile.
    let none = server.tool_ok("next_message", json!({"timeout_secs": 0}));
    assert_eq!(none["message"], Value::Null);

    // A second message whose short lease runs out without an ack comes back.
    cli(p.path(), &["send", "mcp", "hello two"]);
    let two =
        server.tool_ok("next_message", json!({"timeout_secs": 60, "lease_secs": 1}))["message"]
            .clone();
    assert_eq!((two["text"].as_str(), two["delivery"].as_u64()), (Some("hello two"), Some(1)));
    let again = server.tool_ok("next_message", json!({"timeout_secs": 60}))["message"].clone();
    assert_eq!((again["text"].as_str(), again["delivery"].as_u64()), (Some("hello two"), Some(2)));
    assert_eq!(again["id"], two["id"]);
    assert_ne!(again["lease_id"], two["lease_id"]);

    // The stale lease cannot ack; the current ones can, once.
    let stale = server.tool_err("ack", json!({"lease_id": two["lease_id"]}));
    assert!(stale.contains("offered again"), "{stale}");
    assert_eq!(server.tool_ok("ack", json!({"lease_id": again["lease_id"]}))["status"], "acked");
    assert_eq!(server.tool_ok("ack", json!({"lease_id": first["lease_id"]}))["status"], "acked");
    assert_eq!(
        server.tool_ok("ack", json!({"lease_id": first["lease_id"]}))["status"],
        "already_acked"
    );
    // Acked messages are never returned again.
    assert_eq!(server.tool_ok("next_message", json!({"timeout_secs": 1}))["message"], Value::Null);
    let status = server.tool_ok("status", json!({}));
    assert_eq!(status["inbox"], json!({"waiting": 0, "leased": 0}));

    // A host or server crash between next_message and ack loses nothing: a new
    // server on the same home offers the message again once the lease ends.
    cli(p.path(), &["send", "mcp", "hello three"]);
    let three =
        server.tool_ok("next_message", json!({"timeout_secs": 60, "lease_secs": 1}))["message"]
            .clone();
    assert_eq!(three["text"], "hello three");
    server.assert_stdout_is_jsonrpc();
    drop(server);
    let mut server = McpServer::start(m.path());
    server.handshake();
    let back = server.tool_ok("next_message", json!({"timeout_secs": 60}))["message"].clone();
    assert_eq!((back["text"].as_str(), back["delivery"].as_u64()), (Some("hello three"), Some(2)));
    assert_eq!(server.tool_ok("ack", json!({"lease_id": back["lease_id"]}))["status"], "acked");

    // status: identity, the relay link, one peer.
    let status = server.poll_tool("status", json!({}), |s| {
        s["relays"]
            .as_array()
            .is_some_and(|r| r.iter().any(|l| l["url"] == relay.url && l["up"] == true))
    });
    assert_eq!(status["peers"].as_array().unwrap().len(), 1);
    let who = event(&cli(m.path(), &["whoami"]), "whoami").clone();
    assert_eq!(status["identity"]["pk"], who["pk"]);
    assert_eq!(status["room"]["running"], false);
    server.assert_stdout_is_jsonrpc();
}

#[test]
fn send_reaches_the_peer_and_wait_reply_returns_a_leased_reply() {
    let Pair { relay: _relay, m: _m, p, mut server } = pair();

    let sent = server.tool_ok("send", json!({"peer": "peer", "text": "from the mcp server"}));
    assert!(["delivered", "stored"].contains(&sent["status"].as_str().unwrap()), "{sent}");
    let heard = cli(p.path(), &["listen", "--once", "--timeout", "60s"]);
    let received = event(&heard, "message");
    assert_eq!(received["text"], "from the mcp server");
    assert_eq!(received["id"], sent["id"]);

    // wait_reply returns the reply to *this* message, leased: never an older
    // unread message of the same peer (that one stays for next_message).
    cli(p.path(), &["send", "mcp", "older, unread"]);
    let mut serve = Command::new(env!("CARGO_BIN_EXE_agentroom"))
        .arg("--home")
        .arg(p.path())
        .args(["serve", "--on-message", "sed s/^/re:/"])
        .env_remove("AGENTROOM_HOME")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let out =
        server.tool_ok("send", json!({"peer": "peer", "text": "question", "wait_reply_secs": 60}));
    let _ = serve.kill();
    let _ = serve.wait();
    let reply = &out["reply"];
    assert_eq!(reply["text"], "re:question", "{out}");
    assert_eq!(server.tool_ok("ack", json!({"lease_id": reply["lease_id"]}))["status"], "acked");
    let older = server.tool_ok("next_message", json!({"timeout_secs": 60}))["message"].clone();
    assert_eq!(older["text"], "older, unread");
    server.assert_stdout_is_jsonrpc();
}

#[test]
fn bad_arguments_are_tool_errors_and_the_server_keeps_serving() {
    let m = tempfile::tempdir().unwrap();
    let mut server = McpServer::start(m.path());
    server.handshake();
    let tools = server.request("tools/list", json!({}));
    let mut names: Vec<&str> =
        tools["tools"].as_array().unwrap().iter().map(|t| t["name"].as_str().unwrap()).collect();
    names.sort_unstable();
    assert_eq!(
        names,
        [
            "ack",
            "invite_accept",
            "invite_create",
            "next_message",
            "peers",
            "peers_update",
            "send",
            "status"
        ]
    );

    let cases = [
        ("next_message", json!({"timeout_secs": 301}), "between 0 and 300"),
        ("next_message", json!({"timeout_secs": "soon"}), "invalid type"),
        ("next_message", json!({"lease_secs": 0}), "lease_secs"),
        ("next_message", json!({"from": "nobody"}), "unknown peer"),
        ("next_message", json!({"surprise": 1}), "unknown field"),
        ("ack", json!({}), "lease_id"),
        ("ack", json!({"lease_id": "1.deadbeef"}), "no message holds lease"),
        ("send", json!({"peer": "nobody", "text": "hi"}), "unknown peer"),
        ("send", json!({"peer": "nobody", "text": "  "}), "empty message"),
        (
            "send",
            json!({"peer": "nobody", "text": "x", "wait_reply_secs": 9999}),
            "wait_reply_secs",
        ),
        ("invite_accept", json!({"invite": "garbage"}), "invite"),
        ("peers_update", json!({"update": "arru1.AAAA"}), "relay update refused"),
        ("invite_create", json!({"expires": "forever"}), "invalid duration"),
        ("invite_create", json!({}), "no relay"),
        ("invite_create", json!({"relay": "ftp://x"}), "relay"),
    ];
    for (tool, args, needle) in cases {
        let msg = server.tool_err(tool, args.clone());
        assert!(msg.contains(needle), "{tool} {args}: {msg:?} lacks {needle:?}");
    }
    // Still alive and well after all of that.
    let status = server.tool_ok("status", json!({}));
    assert!(status["identity"]["fingerprint"].as_str().unwrap().len() >= 16);
    assert_eq!(status["peers"], json!([]));
    server.assert_stdout_is_jsonrpc();
    let code = server.close();
    assert_eq!(code, Some(0), "closing stdin ends the server cleanly");

    let mut server = McpServer::start(m.path());
    server.handshake();
    assert_eq!(server.terminate(), Some(128 + 15), "SIGTERM ends it with 128+15");
}

#[test]
fn invite_accept_pairs_with_a_cli_host_both_ways() {
    let relay = start_relay();
    let m = tempfile::tempdir().unwrap();
    let p = tempfile::tempdir().unwrap();
    cli(p.path(), &["setup"]);
    let created = cli(p.path(), &["invite", "create", "--relay", &relay.url, "--label", "mcp"]);
    let invite = event(&created, "invite_created")["invite"].as_str().unwrap().to_owned();
    let host = event(&cli(p.path(), &["whoami"]), "whoami").clone();

    let mut server = McpServer::start(m.path());
    server.handshake();
    let accepted = server.tool_ok("invite_accept", json!({"invite": invite, "label": "host"}));
    assert_eq!(accepted["peer"], host["pk"]);
    assert_eq!(accepted["fingerprint"], host["fingerprint"]);
    let again = server.tool_err("invite_accept", json!({"invite": invite}));
    assert!(again.contains("already paired"), "{again}");

    // The host learns of us from the hello when it next connects.
    let sent = server.tool_ok("send", json!({"peer": "host", "text": "hi host"}));
    let heard = cli(p.path(), &["listen", "--once", "--timeout", "60s"]);
    assert_eq!(event(&heard, "message")["text"], "hi host");
    assert_eq!(event(&heard, "message")["id"], sent["id"]);

    cli(p.path(), &["send", "mcp", "hi guest"]);
    cli(p.path(), &["send", "mcp", "and again"]);
    let next = server.poll_tool("status", json!({}), |s| s["inbox"]["waiting"] == 2);
    assert_eq!(next["peers"][0]["unread"], 2);
    let r = server.tool_ok("next_message", json!({"timeout_secs": 60, "from": "host"}));
    let msg = &r["message"];
    assert_eq!(msg["text"], "hi guest");
    assert_eq!(msg["label"], "host");
    assert_eq!(r["remaining"], 1);
    server.assert_stdout_is_jsonrpc();
}

#[test]
fn the_link_comes_back_after_the_relay_restarts_and_queued_sends_go_out() {
    let Pair { mut relay, m: _m, p, mut server } = pair();
    let url = relay.url.clone();
    let link_up = |up: bool| {
        let url = url.clone();
        move |s: &Value| {
            s["relays"]
                .as_array()
                .is_some_and(|r| r.iter().any(|l| l["url"] == url && l["up"] == up))
        }
    };
    server.poll_tool("status", json!({}), link_up(true));
    relay.stop();
    let down = server.poll_tool("status", json!({}), link_up(false));
    let link = down["relays"].as_array().unwrap().iter().find(|l| l["url"] == relay.url).unwrap();
    assert!(link["last_error"].is_string(), "{down}");
    // Sent while the relay is away: queued (not an error the agent would retry).
    let queued = server.tool_ok("send", json!({"peer": "peer", "text": "while you were away"}));
    assert_eq!(queued["status"], "queued", "{queued}");
    assert_eq!(server.tool_ok("status", json!({}))["outbox"]["pending"], 1);

    relay.restart();
    server.poll_tool("status", json!({}), link_up(true));
    let heard = cli(p.path(), &["listen", "--once", "--timeout", "60s"]);
    assert_eq!(event(&heard, "message")["text"], "while you were away");
    assert_eq!(event(&heard, "message")["id"], queued["id"]);
    cli(p.path(), &["send", "mcp", "after the restart"]);
    let msg = server.tool_ok("next_message", json!({"timeout_secs": 60}))["message"].clone();
    assert_eq!(msg["text"], "after the restart");
    server.assert_stdout_is_jsonrpc();
}

#[test]
fn a_long_wait_sends_progress_to_a_host_that_asked_for_it() {
    let m = tempfile::tempdir().unwrap();
    let mut server = McpServer::start(m.path());
    server.handshake();
    // The heartbeat comes every 10 s; the wait is longer than that.
    let r = server.request(
        "tools/call",
        json!({
            "name": "next_message",
            "arguments": {"timeout_secs": 15},
            "_meta": {"progressToken": "wait-1"}
        }),
    );
    assert_eq!(r["structuredContent"]["message"], Value::Null);
    let progress: Vec<Value> =
        server.seen().into_iter().filter(|v| v["method"] == "notifications/progress").collect();
    assert!(!progress.is_empty(), "no progress notification");
    assert_eq!(progress[0]["params"]["progressToken"], "wait-1");
    assert_eq!(progress[0]["params"]["total"], 15.0);
    server.assert_stdout_is_jsonrpc();
}

#[test]
fn mcp_serve_and_an_observer_share_one_home() {
    let Pair { relay: _relay, m, p, mut server } = pair();
    let runs = m.path().join("..").join(format!("runs-{}", std::process::id()));
    let runs = runs.to_string_lossy().into_owned();
    let bg = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_agentroom"))
            .arg("--home")
            .arg(m.path())
            .arg("--json")
            .args(args)
            .env_remove("AGENTROOM_HOME")
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap()
    };
    // serve answers nothing, only notes what it handled.
    let handler = format!("cat >> {runs}; echo >> {runs}");
    let serve = bg(&["serve", "--on-message", &handler]);
    let mut follow = bg(&["listen", "--follow"]);
    let (tx, observed) = std::sync::mpsc::channel::<Value>();
    let out = follow.stdout.take().unwrap();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(out).lines().map_while(Result::ok) {
            if let Ok(v) = serde_json::from_str::<Value>(&line) {
                let _ = tx.send(v);
            }
        }
    });
    // Wait until the observer is attached (it reports the relay link).
    let deadline = std::time::Instant::now() + DEADLINE;
    loop {
        let v = observed.recv_timeout(deadline - std::time::Instant::now()).unwrap();
        if v["event"] == "connected" {
            break;
        }
    }
    let texts: Vec<String> = (0..10).map(|i| format!("m{i}")).collect();
    for t in &texts {
        cli(p.path(), &["send", "mcp", t]);
    }
    let mut by_mcp = Vec::new();
    let handled_by_serve = || -> Vec<String> {
        std::fs::read_to_string(&runs)
            .unwrap_or_default()
            .lines()
            .filter(|l| !l.is_empty())
            .map(str::to_owned)
            .collect()
    };
    while by_mcp.len() + handled_by_serve().len() < texts.len() {
        assert!(
            std::time::Instant::now() < deadline,
            "mcp {by_mcp:?}, serve {:?}",
            handled_by_serve()
        );
        let m = server.tool_ok("next_message", json!({"timeout_secs": 1}))["message"].clone();
        if m.is_null() {
            continue;
        }
        by_mcp.push(m["text"].as_str().unwrap().to_owned());
        assert_eq!(server.tool_ok("ack", json!({"lease_id": m["lease_id"]}))["status"], "acked");
    }
    let mut all = by_mcp.clone();
    all.extend(handled_by_serve());
    all.sort();
    let mut want = texts.clone();
    want.sort();
    assert_eq!(all, want, "every message to exactly one consumer (mcp {by_mcp:?})");
    let mut seen = Vec::new();
    while seen.len() < texts.len() {
        let v = observed.recv_timeout(deadline - std::time::Instant::now()).unwrap();
        if v["event"] == "message" {
            seen.push(v["text"].as_str().unwrap().to_owned());
        }
    }
    assert_eq!(seen, texts, "the observer sees every message, in order");
    for mut c in [serve, follow] {
        let _ = c.kill();
        let _ = c.wait();
    }
    server.assert_stdout_is_jsonrpc();
}

/// `send` with `wait_reply_secs` registers its wait with the home's daemon: a
/// `serve` in the same home (which leases every message it can) never takes the
/// reply the MCP tool is waiting for.
#[test]
fn wait_reply_keeps_the_reply_from_a_serve_in_the_same_home() {
    let Pair { relay: _relay, m, p, mut server } = pair();
    let spawn = |home: &Path, handler: &str| {
        Command::new(env!("CARGO_BIN_EXE_agentroom"))
            .arg("--home")
            .arg(home)
            .args(["--json", "serve", "--on-message", handler])
            .env_remove("AGENTROOM_HOME")
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap()
    };
    let wait_serving = |child: &mut std::process::Child| {
        use std::io::BufRead;
        let out = std::io::BufReader::new(child.stdout.take().unwrap());
        for line in out.lines().map_while(Result::ok) {
            if serde_json::from_str::<Value>(&line).is_ok_and(|v| v["event"] == "serving") {
                return;
            }
        }
        panic!("serve ended before serving");
    };
    // The peer answers everything.
    let mut answering = spawn(p.path(), "sed s/^/re:/");
    wait_serving(&mut answering);
    // A serve in the MCP server's home: it would handle any message it can lease.
    let runs = m.path().join("..").join(format!("taken-{}", std::process::id()));
    let handler = format!("cat >> '{}'; echo >> '{}'", runs.display(), runs.display());
    let mut local = spawn(m.path(), &handler);
    wait_serving(&mut local);
    for i in 0..20 {
        let q = format!("question {i}");
        let out = server.tool_ok("send", json!({"peer": "peer", "text": q, "wait_reply_secs": 60}));
        assert_eq!(out["reply"]["text"], format!("re:{q}"), "{out}");
        let acked = server.tool_ok("ack", json!({"lease_id": out["reply"]["lease_id"]}));
        assert_eq!(acked["status"], "acked");
    }
    let taken = std::fs::read_to_string(&runs).unwrap_or_default();
    assert!(taken.trim().is_empty(), "the local serve took a reply: {taken:?}");
    for mut c in [answering, local] {
        let _ = c.kill();
        let _ = c.wait();
    }
    let _ = std::fs::remove_file(&runs);
    server.assert_stdout_is_jsonrpc();
}
