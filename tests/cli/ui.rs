//! `agentroom ui`: the daemon it starts, the one-time login code, the session
//! cookie and the checks on browser requests, and the handler pause gate.
//! (The page itself is tested in a real Chromium by `scripts/check-ui.sh`.)

use std::io::{Read, Write};
use std::net::TcpStream;

use serde_json::Value;

use crate::common::*;

/// Stops the detached daemon `ui` started, even when the test fails.
struct DaemonGuard(u32);

impl Drop for DaemonGuard {
    fn drop(&mut self) {
        let _ = std::process::Command::new("kill").arg(self.0.to_string()).status();
    }
}

/// One HTTP/1.1 request on a fresh connection: (status, head, body).
fn req(
    addr: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<&str>,
) -> (u16, String, String) {
    let mut s = TcpStream::connect(addr).unwrap();
    let mut head = format!("{method} {path} HTTP/1.1\r\nConnection: close\r\n");
    if !headers.iter().any(|(k, _)| k.eq_ignore_ascii_case("host")) {
        head.push_str(&format!("Host: {addr}\r\n"));
    }
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    let body = body.unwrap_or("");
    if method != "GET" {
        head.push_str(&format!(
            "Content-Type: application/json\r\nContent-Length: {}\r\n",
            body.len()
        ));
    }
    head.push_str("\r\n");
    head.push_str(body);
    s.write_all(head.as_bytes()).unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    let (h, b) = out.split_once("\r\n\r\n").unwrap();
    let status = h.split(' ').nth(1).unwrap().parse().unwrap();
    (status, h.to_owned(), b.to_owned())
}

fn json_of(body: &str) -> Value {
    // Small answers come in one chunk or unchunked; strip chunk framing if any.
    let start = body.find('{').unwrap();
    let end = body.rfind('}').unwrap();
    serde_json::from_str(&body[start..=end]).unwrap()
}

#[test]
fn ui_starts_the_daemon_and_its_login_code_works_once() {
    let tmp = tempfile::tempdir().unwrap();
    let relay = Relay::start(tmp.path());
    let (host, guest) = (Agent::new(tmp.path(), "host"), Agent::new(tmp.path(), "guest"));
    pair(&relay, &host, &guest);

    // No daemon runs: `ui` starts one in the background with loopback HTTP.
    let url = host.ok(&["ui", "--print-url"]).trim().to_owned();
    let status = &host.json(&["status"])[0];
    assert_eq!(status["running"], true);
    let _daemon = DaemonGuard(u32::try_from(status["pid"].as_u64().unwrap()).unwrap());
    let rest = url.strip_prefix("http://").unwrap();
    let (addr, code) = rest.split_once("/ui/#code=").unwrap();
    assert_eq!(status["http"], addr);
    assert!(addr.starts_with("127.0.0.1:"), "{addr}");
    let origin = format!("http://{addr}");
    let login = format!("{{\"code\":\"{code}\"}}");

    // The page is public and locked down; the API is not.
    let (st, head, _) = req(addr, "GET", "/ui/", &[], None);
    assert_eq!(st, 200);
    assert!(
        head.to_ascii_lowercase().contains("content-security-policy: default-src 'self'"),
        "{head}"
    );
    assert_eq!(req(addr, "GET", "/v1/status", &[], None).0, 401);
    assert_eq!(req(addr, "GET", "/ui/", &[("Host", "evil.example")], None).0, 403);

    // The code needs the custom header and this origin, then works once.
    let cross = [("X-Agentroom", "1"), ("Origin", "http://evil.example")];
    assert_eq!(req(addr, "POST", "/ui/login", &cross, Some(&login)).0, 403);
    let same = [("X-Agentroom", "1"), ("Origin", origin.as_str())];
    let (st, head, _) = req(addr, "POST", "/ui/login", &same, Some(&login));
    assert_eq!(st, 204, "{head}");
    let cookie_line = head
        .lines()
        .find(|l| l.to_ascii_lowercase().starts_with("set-cookie:"))
        .expect("a session cookie");
    assert!(
        cookie_line.contains("HttpOnly") && cookie_line.contains("SameSite=Strict"),
        "{cookie_line}"
    );
    assert_eq!(req(addr, "POST", "/ui/login", &same, Some(&login)).0, 401, "second use");
    let cookie =
        cookie_line.split_once(':').unwrap().1.trim().split(';').next().unwrap().to_owned();

    // With the cookie: reads pass; writes need the header and this origin.
    assert_eq!(req(addr, "GET", "/v1/status", &[("Cookie", &cookie)], None).0, 200);
    let (st, _, body) = req(addr, "GET", "/v1/ui/room", &[("Cookie", &cookie)], None);
    assert_eq!((st, json_of(&body)["running"].clone()), (200, Value::Bool(false)));
    let evil_host = [("Cookie", cookie.as_str()), ("Host", "evil.example")];
    assert_eq!(req(addr, "GET", "/v1/status", &evil_host, None).0, 403);
    let no_marker = [("Cookie", cookie.as_str()), ("Origin", origin.as_str())];
    assert_eq!(req(addr, "POST", "/v1/handler/pause", &no_marker, Some("{}")).0, 403);
    let foreign =
        [("Cookie", cookie.as_str()), ("X-Agentroom", "1"), ("Origin", "http://evil.example")];
    assert_eq!(req(addr, "POST", "/v1/handler/pause", &foreign, Some("{}")).0, 403);
    let good = [("Cookie", cookie.as_str()), ("X-Agentroom", "1"), ("Origin", origin.as_str())];
    let (st, _, body) = req(addr, "POST", "/v1/handler/pause", &good, Some("{}"));
    assert_eq!(st, 200);
    assert_eq!(json_of(&body)["paused"], true);

    // Paused: a stored message is leased to nobody; resumed: it is.
    guest.ok(&["send", "host", "wait for me"]);
    poll_until("the message is stored", || {
        host.json(&["status"])[0]["inbox_waiting"].as_u64().unwrap_or(0) >= 1
    });
    let next = r#"{"wait_ms":0}"#;
    let (st, _, body) = req(addr, "POST", "/v1/messages/next", &good, Some(next));
    assert_eq!(st, 200);
    assert!(json_of(&body)["message"].is_null(), "leased while paused: {body}");
    assert_eq!(req(addr, "POST", "/v1/handler/resume", &good, Some("{}")).0, 200);
    let (_, _, body) = req(addr, "POST", "/v1/messages/next", &good, Some(next));
    assert_eq!(json_of(&body)["message"]["text"], "wait for me");
}

#[test]
fn ui_without_an_identity_says_so_and_starts_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let agent = Agent::new(tmp.path(), "nobody");
    let (code, stderr) = agent.fails(&["ui", "--no-open"]);
    assert_eq!(code, 4, "{stderr}");
    // The hint repeats the home it was given, so pasting it acts on the same one.
    assert_eq!(stderr.matches("setup` first").count(), 1, "{stderr}");
    assert!(stderr.contains("run `agentroom --home '"), "{stderr}");
    assert_eq!(agent.json(&["status"])[0]["running"], false);
}
