//! The TypeScript agentroom's spellings and meanings, row by row (README "Coming
//! from the TypeScript agentroom"), run through the real binary, and the handler's
//! scrubbed environment as a handler that prints `env` sees it.

use std::collections::BTreeMap;
use std::path::Path;

use crate::common::{Agent, Relay, echo_handler, pair, poll_until, script};

/// A handler that writes its whole environment to `out` and replies "ok".
fn env_dumper(dir: &Path, out: &Path) -> String {
    script(dir, "dump-env.sh", &format!("cat >/dev/null; env > {}; echo ok", out.display()))
}

/// `NAME=value` lines of an `env` dump.
fn read_env(path: &Path) -> BTreeMap<String, String> {
    poll_until("the handler's env dump", || {
        std::fs::read_to_string(path).is_ok_and(|s| s.contains("AGENTROOM_MSG_ID"))
    });
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
}

const SECRET: &str = "hmac-secret-0123456789-0123456789-0123456789";

#[test]
fn serve_handler_env_is_scrubbed_with_typescript_names_and_pass_env() {
    let tmp = tempfile::tempdir().unwrap();
    let relay = Relay::start(tmp.path());
    let (host, guest) = (Agent::new(tmp.path(), "host"), Agent::new(tmp.path(), "guest"));
    let (hpk, gpk) = pair(&relay, &host, &guest);
    let dump = tmp.path().join("env.txt");
    let handler = env_dumper(tmp.path(), &dump);
    let mut cmd = host.std_cmd();
    cmd.args(["--json", "serve", "--on-message", &handler, "--pass-env", "KEEP_ME"])
        .env("HMAC_SECRET", SECRET)
        .env("HMAC_SECRET_PREVIOUS", SECRET)
        .env("BORE_SECRET", "bore-secret-value")
        .env("OPENAI_API_KEY", "sk-not-passed")
        .env("KEEP_ME", "kept")
        .env("LC_TIME", "C");
    let mut serve = crate::common::Bg::spawn(cmd);
    serve.wait_event("serving");
    guest.json(&["send", "host", "dump your env"]);
    serve.wait_event("replied");
    let env = read_env(&dump);
    for gone in ["HMAC_SECRET", "HMAC_SECRET_PREVIOUS", "BORE_SECRET", "OPENAI_API_KEY"] {
        assert!(!env.contains_key(gone), "{gone} reached the handler: {env:?}");
    }
    let text = std::fs::read_to_string(&dump).unwrap();
    assert!(!text.contains(SECRET) && !text.contains("bore-secret-value"), "{text}");
    assert_eq!(env["KEEP_ME"], "kept");
    assert_eq!(env["LC_TIME"], "C");
    assert!(env.contains_key("PATH"));
    // TypeScript meanings: FROM is the sender's key, PK our own.
    assert_eq!(env["AGENTROOM_FROM"], gpk);
    assert_eq!(env["AGENTROOM_PK"], hpk);
    assert_eq!(env["AGENTROOM_PEER_PK"], gpk);
    assert_eq!(env["AGENTROOM_PEER_LABEL"], "guest");
    assert_eq!(env["AGENTROOM_SELF_PK"], hpk);
    assert!(env.contains_key("AGENTROOM_MSG_ID") && env.contains_key("AGENTROOM_FINGERPRINT"));
    assert_eq!(Path::new(&env["AGENTROOM_HOME"]), host.home.as_path());
}

#[test]
fn room_open_handler_never_sees_the_relay_or_bore_secret() {
    let tmp = tempfile::tempdir().unwrap();
    let (host, guest) = (Agent::new(tmp.path(), "host"), Agent::new(tmp.path(), "guest"));
    guest.setup();
    let dump = tmp.path().join("env.txt");
    let handler = env_dumper(tmp.path(), &dump);
    let mut cmd = host.std_cmd();
    cmd.args(["--json", "room", "open", "--tunnel", "none", "--on-message", &handler])
        .env("HMAC_SECRET", SECRET)
        .env("BORE_SECRET", "bore-secret-value");
    let mut room = crate::common::Bg::spawn(cmd);
    let ready = room.wait_event("room_ready");
    let invite = ready["invite"].as_str().unwrap();
    guest.json(&["invite", "accept", invite, "--label", "host"]);
    guest.json(&["send", "host", "hello"]);
    room.wait_event("replied");
    let text = std::fs::read_to_string(&dump).unwrap();
    assert!(!text.contains("HMAC_SECRET") && !text.contains(SECRET), "{text}");
    assert!(!text.contains("BORE_SECRET") && !text.contains("bore-secret-value"), "{text}");
}

#[test]
fn pass_env_refuses_secrets_as_a_usage_error() {
    let tmp = tempfile::tempdir().unwrap();
    let a = Agent::new(tmp.path(), "a");
    for name in ["HMAC_SECRET", "HMAC_SECRET_PREVIOUS", "BORE_SECRET"] {
        let (code, stderr) = a.fails(&["serve", "--on-message", "cat", "--pass-env", name]);
        assert_eq!(code, 2, "{stderr}");
        assert!(stderr.contains("never given to a handler"), "{stderr}");
        let (code, _) = a.fails(&["room", "open", "--on-message", "cat", "--pass-env", name]);
        assert_eq!(code, 2);
    }
}

#[test]
fn echo_handler_still_answers() {
    // The bundled handler works in the scrubbed environment (PATH is kept).
    let tmp = tempfile::tempdir().unwrap();
    let relay = Relay::start(tmp.path());
    let (host, guest) = (Agent::new(tmp.path(), "host"), Agent::new(tmp.path(), "guest"));
    pair(&relay, &host, &guest);
    let mut serve = host.spawn(&["serve", "--on-message", &echo_handler(), "--once"]);
    serve.wait_event("serving");
    guest.json(&["send", "host", "ping"]);
    assert_eq!(serve.wait_event("replied")["text"], "echo: ping");
    let done = serve.wait_event("done");
    assert_eq!(done["reason"], "once");
    assert_eq!(done["replies"], 1);
    assert_eq!(serve.wait_exit(), Some(0));
}

/// The host created an invite on `old`; the relay then moved to a new port (same
/// database). Returns the new relay.
fn relay_moves(tmp: &Path, relay: &mut Relay) -> Relay {
    relay.stop();
    Relay::start(tmp)
}

#[test]
fn server_flag_on_accept_send_listen_and_serve() {
    let tmp = tempfile::tempdir().unwrap();
    let mut old = Relay::start(tmp.path());
    let (host, guest) = (Agent::new(tmp.path(), "host"), Agent::new(tmp.path(), "guest"));
    host.setup();
    guest.setup();
    let invite = host.invite(&old.url, "guest");
    let relay = relay_moves(tmp.path(), &mut old);
    assert_ne!(relay.url, old.url);
    // invite accept --server overrides the (now dead) relay inside the invite.
    let v =
        &guest.json(&["invite", "accept", &invite, "--label", "host", "--server", &relay.url])[0];
    assert_eq!(v["relay"], relay.url.as_str());
    // The host's peer still names the old URL: --server redirects it.
    guest.json(&["send", "host", "via the new port"]);
    let heard = host.json(&["listen", "--once", "--timeout", "30s", "--server", &relay.url]);
    assert!(heard.iter().any(|v| v["event"] == "message" && v["text"] == "via the new port"));
    let sent = &host.json(&["send", "guest", "back", "--server", &relay.url])[0];
    assert_eq!(sent["event"], "sent");
    let mut serve = host.spawn(&["serve", "--on-message", "cat", "--once", "--server", &relay.url]);
    serve.wait_event("serving");
    guest.json(&["send", "host", "served"]);
    assert_eq!(serve.wait_event("replied")["text"], "served");
    assert_eq!(serve.wait_exit(), Some(0));
    // Without --server the host cannot reach the old port.
    let (code, _) = host.fails(&["send", "guest", "lost"]);
    assert_eq!(code, 3);
}

#[test]
fn setup_force_rotates_after_confirmation_and_says_what_is_lost() {
    let tmp = tempfile::tempdir().unwrap();
    let relay = Relay::start(tmp.path());
    let (host, guest) = (Agent::new(tmp.path(), "host"), Agent::new(tmp.path(), "guest"));
    let (hpk, _) = pair(&relay, &host, &guest);
    assert_eq!(host.json(&["peers"]).len(), 1, "the host took in the guest's hello");
    // stdin is not a terminal and no --yes: refused, nothing changed.
    let (code, stderr) = host.fails(&["setup", "--force"]);
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("--yes") && stderr.contains("1 peer(s)"), "{stderr}");
    assert_eq!(host.json(&["whoami"])[0]["pk"], hpk.as_str());
    assert_eq!(host.json(&["peers"]).len(), 1);
    let out = host.cmd().args(["--json", "setup", "--force", "--yes"]).output().unwrap();
    assert!(out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("Lost for good: 1 peer(s)"), "{stderr}");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["rotated"], true);
    assert_eq!(v["previous_pk"], hpk.as_str());
    assert_ne!(v["pk"], hpk.as_str());
    assert!(host.json(&["peers"]).is_empty(), "old sessions dropped");
    // A home without an identity: --force is just setup.
    let fresh = Agent::new(tmp.path(), "fresh");
    assert_eq!(fresh.json(&["setup", "--force"])[0]["created"], true);
}

#[test]
fn setup_cwd_writes_a_private_env_file_once() {
    use std::os::unix::fs::PermissionsExt;
    let tmp = tempfile::tempdir().unwrap();
    let a = Agent::new(tmp.path(), "a");
    let dir = tmp.path().join("relay-dir");
    let v = &a.json(&["setup", "--cwd", dir.to_str().unwrap()])[0];
    assert_eq!(v["env_file_written"], true);
    let env = dir.join(".env");
    let text = std::fs::read_to_string(&env).unwrap();
    let secret = text.strip_prefix("HMAC_SECRET=").unwrap().trim();
    assert_eq!(secret.len(), 64, "{text}");
    assert_eq!(std::fs::metadata(&env).unwrap().permissions().mode() & 0o777, 0o600);
    let v = &a.json(&["setup", "--cwd", dir.to_str().unwrap()])[0];
    assert_eq!(v["env_file_written"], false);
    assert_eq!(std::fs::read_to_string(&env).unwrap(), text, "an existing secret is kept");
    // The secret is never printed.
    assert!(!v.to_string().contains(secret));
}

#[test]
fn invite_accept_wait_reports_the_host_online() {
    let tmp = tempfile::tempdir().unwrap();
    let relay = Relay::start(tmp.path());
    let (host, guest) = (Agent::new(tmp.path(), "host"), Agent::new(tmp.path(), "guest"));
    host.setup();
    guest.setup();
    let invite = host.invite(&relay.url, "guest");
    let mut listen = host.spawn(&["listen"]);
    listen.wait_event("connected");
    let v = &guest.json(&["invite", "accept", &invite, "--wait", "20"])[0];
    assert_eq!(v["host_online"], true);
}

#[test]
fn listen_quiet_gives_sizes_not_texts() {
    let tmp = tempfile::tempdir().unwrap();
    let relay = Relay::start(tmp.path());
    let (host, guest) = (Agent::new(tmp.path(), "host"), Agent::new(tmp.path(), "guest"));
    pair(&relay, &host, &guest);
    guest.json(&["send", "host", "héllo"]);
    let lines = host.json(&["listen", "--once", "--quiet"]);
    let m = lines.iter().find(|v| v["event"] == "message").unwrap();
    assert_eq!(m["bytes"], 6, "UTF-8 bytes");
    assert!(m.get("text").is_none(), "{m}");
    assert!(m["from"].is_string());
}

#[test]
fn serve_invite_publishes_on_the_live_connection() {
    let tmp = tempfile::tempdir().unwrap();
    let relay = Relay::start(tmp.path());
    let (host, guest) = (Agent::new(tmp.path(), "host"), Agent::new(tmp.path(), "guest"));
    host.setup();
    guest.setup();
    let mut serve =
        host.spawn(&["serve", "--on-message", &echo_handler(), "--invite", "--server", &relay.url]);
    let inv = serve.wait_event("invite");
    let url = inv["url"].as_str().unwrap();
    serve.wait_event("serving");
    guest.json(&["invite", "accept", url, "--label", "host"]);
    let out = guest.json(&["send", "host", "hi", "--wait-reply", "--timeout", "60s"]);
    assert!(out.iter().any(|v| v["event"] == "message" && v["text"] == "echo: hi"), "{out:?}");
}

#[test]
fn max_turns_0_is_unlimited_and_handler_timeout_0_never_kills() {
    let tmp = tempfile::tempdir().unwrap();
    let relay = Relay::start(tmp.path());
    let (host, guest) = (Agent::new(tmp.path(), "host"), Agent::new(tmp.path(), "guest"));
    pair(&relay, &host, &guest);
    let slow = script(tmp.path(), "slow.sh", "t=$(cat); sleep 1; echo \"slow $t\"");
    let mut serve =
        host.spawn(&["serve", "--on-message", &slow, "--max-turns", "0", "--handler-timeout", "0"]);
    serve.wait_event("serving");
    for t in ["a", "b"] {
        guest.json(&["send", "host", t]);
        assert_eq!(serve.wait_event("replied")["text"], format!("slow {t}"));
    }
    assert!(serve.child.try_wait().unwrap().is_none(), "still serving after 2 turns");
}

#[test]
fn room_flags_once_db_hmac_seed_to_and_stop_port() {
    let tmp = tempfile::tempdir().unwrap();
    let relay = Relay::start(tmp.path());
    let (host, guest) = (Agent::new(tmp.path(), "host"), Agent::new(tmp.path(), "guest"));
    pair(&relay, &host, &guest);
    let db = tmp.path().join("elsewhere/room.db");
    std::fs::create_dir_all(db.parent().unwrap()).unwrap();
    let mut cmd = host.std_cmd();
    cmd.args(["--json", "room", "open", "--tunnel", "none", "--on-message", &echo_handler()])
        .args(["--once", "--db", db.to_str().unwrap(), "--hmac", SECRET])
        .args(["--seed", "opening line", "--to", "guest"]);
    let mut room = crate::common::Bg::spawn(cmd);
    let ready = room.wait_event("room_ready");
    assert!(db.exists(), "--db places the relay database");
    let seed = room.wait_for("the seed", |v| v["event"] == "replied" && v["seed"] == true);
    assert_eq!(seed["text"], "opening line");
    let port: u16 = ready["local_url"]
        .as_str()
        .unwrap()
        .rsplit(':')
        .next()
        .unwrap()
        .trim_end_matches("/ws")
        .parse()
        .unwrap();
    // room stop --port: another port is not this room.
    let other = (port % 60000 + 1).to_string();
    let v = &host.json(&["room", "stop", "--port", &other])[0];
    assert_eq!(v["outcome"], "not_running");
    // The guest's message is the one --once waits for.
    let heard = guest.json(&["listen", "--once", "--timeout", "30s"]);
    assert!(heard.iter().any(|v| v["text"] == "opening line"));
    guest.json(&["send", "host", "one"]);
    assert_eq!(room.wait_exit(), Some(0));
    assert!(room.seen.iter().any(|v| v["event"] == "replied" && v["text"] == "echo: one"));
    // room stop --all with nothing running.
    assert_eq!(host.json(&["room", "stop", "--all"])[0]["outcome"], "not_running");
}

#[test]
fn room_stop_port_stops_the_room_on_that_port() {
    let tmp = tempfile::tempdir().unwrap();
    let host = Agent::new(tmp.path(), "host");
    let mut room = host.spawn(&["room", "open", "--tunnel", "none"]);
    let ready = room.wait_event("room_ready");
    let port = ready["local_url"]
        .as_str()
        .unwrap()
        .trim_end_matches("/ws")
        .rsplit(':')
        .next()
        .unwrap()
        .to_owned();
    assert_eq!(host.json(&["room", "stop", "--port", &port])[0]["outcome"], "stopped");
    room.wait_exit();
}

#[test]
fn relay_hmac_flag_warns_and_env_aliases_apply() {
    use std::io::{Read, Write};
    let tmp = tempfile::tempdir().unwrap();
    let mut cmd = std::process::Command::new(crate::common::BIN);
    cmd.args(["relay", "--json", "--port", "0", "--hmac", SECRET, "--db"])
        .arg(tmp.path().join("r.db"))
        .env("WS_MAX_PAYLOAD", "4096")
        .env_remove("MAX_FRAME_BYTES")
        .env("LOG_LEVEL", "warn");
    let mut child = cmd
        .stderr(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = std::io::BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    std::io::BufRead::read_line(&mut stdout, &mut line).unwrap();
    let v: serde_json::Value = serde_json::from_str(&line).unwrap();
    let port = u16::try_from(v["port"].as_u64().unwrap()).unwrap();
    // /health carries the TypeScript `ok: true` beside `status`.
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.write_all(b"GET /health HTTP/1.0\r\nHost: x\r\n\r\n").unwrap();
    let mut resp = String::new();
    s.read_to_string(&mut resp).unwrap();
    let body: serde_json::Value =
        serde_json::from_str(resp.split("\r\n\r\n").nth(1).unwrap()).unwrap();
    assert_eq!(body["ok"], true);
    assert_eq!(body["status"], "ok");
    let _ = child.kill();
    let _ = child.wait();
    let mut err = String::new();
    child.stderr.take().unwrap().read_to_string(&mut err).unwrap();
    assert!(err.contains("--hmac puts the secret on the command line"), "{err}");
    assert!(!err.contains(SECRET), "the secret itself is never printed");
    // Too short: refused before anything starts.
    let out = std::process::Command::new(crate::common::BIN)
        .args(["relay", "--port", "0", "--hmac", "short", "--db"])
        .arg(tmp.path().join("r2.db"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("at least 32 bytes"));
}

#[test]
fn room_status_not_running_exits_0() {
    let tmp = tempfile::tempdir().unwrap();
    let a = Agent::new(tmp.path(), "a");
    let out = a.cmd().args(["room", "status"]).output().unwrap();
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "not running");
}

#[test]
fn agentroom_cloudflared_names_the_binary() {
    let tmp = tempfile::tempdir().unwrap();
    let host = Agent::new(tmp.path(), "host");
    let fake = Path::new(env!("CARGO_MANIFEST_DIR")).join("cloudflared/fake-cloudflared");
    let mut cmd = host.std_cmd();
    cmd.args(["--json", "room", "open", "--no-download"])
        .env_remove("CLOUDFLARED_BIN")
        .env("AGENTROOM_CLOUDFLARED", &fake)
        .env("PATH", "/usr/bin:/bin");
    let mut room = crate::common::Bg::spawn(cmd);
    let ready = room.wait_event("room_ready");
    assert_eq!(ready["tunnel"], "cloudflared");
    assert!(ready["public_url"].is_string());
    // A graceful stop takes the tunnel down with the room.
    assert_eq!(host.json(&["room", "stop"])[0]["outcome"], "stopped");
    room.wait_exit();
}

#[test]
fn a_144_kib_message_round_trips_through_serve_and_more_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let relay = Relay::start(tmp.path());
    let (host, guest) = (Agent::new(tmp.path(), "host"), Agent::new(tmp.path(), "guest"));
    pair(&relay, &host, &guest);
    // 144 KiB of UTF-8 with multi-byte characters and characters JSON escapes.
    let unit = "héllo \"wörld\" ✓\t";
    let mut text = String::new();
    while text.len() + unit.len() <= 144 * 1024 {
        text.push_str(unit);
    }
    while text.len() < 144 * 1024 {
        text.push('x');
    }
    assert_eq!(text.len(), 144 * 1024);
    let mut serve = host.spawn(&["serve", "--on-message", "cat", "--once"]);
    serve.wait_event("serving");
    let out = guest
        .cmd()
        .args(["--json", "send", "host", "-", "--wait-reply", "--timeout", "60s"])
        .write_stdin(text.clone())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let reply = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .find(|v| v["event"] == "message")
        .expect("the reply");
    assert_eq!(reply["text"].as_str().unwrap(), text.trim(), "the handler's echo, whole");
    assert_eq!(serve.wait_exit(), Some(0));
    // One byte more: a clear refusal, nothing sent.
    let mut over = text.clone();
    over.push('x');
    let out = guest.cmd().args(["send", "host", "-"]).write_stdin(over).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        stderr.trim(),
        "agentroom: error: message too large: 147457 bytes (limit 147456)",
        "{stderr}"
    );
}
