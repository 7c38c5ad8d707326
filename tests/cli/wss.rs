//! wss:// end to end (issue 19): through nginx terminating TLS, and through the
//! relay's own `--tls-cert/--tls-key`; trust from `--ca-file` / `AGENTROOM_CA_FILE`;
//! the three common certificate refusals, each with its message and nothing stored.

use std::path::Path;

use serde_json::Value;

use crate::common::{Agent, Bg, echo_handler, poll_until};
use crate::tls_fixtures::{Ca, Nginx, tls_relay};

/// Run `agent` with `--ca-file ca` (when given) and `--json`; (success, stdout lines, stderr).
fn run(agent: &Agent, ca: Option<&Path>, args: &[&str]) -> (bool, Vec<Value>, String) {
    let mut c = agent.cmd();
    if let Some(ca) = ca {
        c.arg("--ca-file").arg(ca);
    }
    let out = c.arg("--json").args(args).output().unwrap();
    let lines = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    (out.status.success(), lines, String::from_utf8_lossy(&out.stderr).into_owned())
}

fn ok(agent: &Agent, ca: Option<&Path>, args: &[&str]) -> Vec<Value> {
    let (success, lines, stderr) = run(agent, ca, args);
    assert!(success, "{args:?} failed: {stderr}");
    lines
}

/// Pair `host` (trust from `--ca-file`) and `guest` (trust from `AGENTROOM_CA_FILE`)
/// through `url`, then one message each way.
fn pair_and_talk(url: &str, ca: &Path, host: &Agent, guest: &Agent) {
    host.setup();
    guest.setup();
    let v = &ok(host, Some(ca), &["invite", "create", "--relay", url, "--label", "guest"])[0];
    let invite = v["invite"].as_str().unwrap().to_owned();
    let out = guest
        .cmd()
        .env("AGENTROOM_CA_FILE", ca)
        .args(["--json", "invite", "accept", &invite, "--label", "host"])
        .output()
        .unwrap();
    assert!(out.status.success(), "accept: {}", String::from_utf8_lossy(&out.stderr));

    let sent = &ok(guest, Some(ca), &["send", "host", "hello over wss"])[0];
    let lines = ok(host, Some(ca), &["listen", "--once"]);
    let got = lines.iter().find(|v| v["event"] == "message").expect("received");
    assert_eq!(got["text"], "hello over wss");
    assert_eq!(got["id"], sent["id"]);
    ok(host, Some(ca), &["send", "guest", "and back"]);
    let lines = ok(guest, Some(ca), &["listen", "--once"]);
    let got = lines.iter().find(|v| v["event"] == "message").expect("received");
    assert_eq!(got["text"], "and back");
}

fn serve(agent: &Agent, ca: &Path) -> Bg {
    let mut c = agent.std_cmd();
    c.arg("--ca-file").arg(ca).args(["--json", "serve", "--on-message", &echo_handler()]);
    Bg::spawn(c)
}

#[test]
fn wss_through_nginx_pairs_talks_and_reconnects_after_the_proxy_restarts() {
    let tmp = tempfile::tempdir().unwrap();
    let ca = Ca::new(&tmp.path().join("pki"), "proxy");
    let leaf = ca.leaf(&tmp.path().join("pki"), "localhost", &["localhost"], false);
    let relay = crate::common::Relay::start(tmp.path());
    let mut proxy = Nginx::start(&tmp.path().join("nginx"), relay.port, &leaf);
    let url = format!("wss://localhost:{}/ws", proxy.port);
    let (host, guest) = (Agent::new(tmp.path(), "host"), Agent::new(tmp.path(), "guest"));
    pair_and_talk(&url, &ca.pem, &host, &guest);

    let mut serve = serve(&host, &ca.pem);
    serve.wait_event("connected");
    proxy.restart();
    serve.wait_event("disconnect");
    serve.wait_event("reconnect");
    ok(&guest, Some(&ca.pem), &["send", "host", "after the restart"]);
    let lines = ok(&guest, Some(&ca.pem), &["listen", "--once"]);
    let got = lines.iter().find(|v| v["event"] == "message").expect("received");
    assert_eq!(got["text"], "echo: after the restart");
}

#[test]
fn relay_serving_tls_itself_pairs_talks_and_reloads_its_certificate_on_sighup() {
    let tmp = tempfile::tempdir().unwrap();
    let pki = tmp.path().join("pki");
    let (ca1, ca2) = (Ca::new(&pki, "one"), Ca::new(&pki, "two"));
    let leaf = ca1.leaf(&pki, "served", &["localhost"], false);
    let relay = tls_relay(&tmp.path().join("relay"), &leaf);
    assert!(relay.url.starts_with("wss://"), "{}", relay.url);
    let url = format!("wss://localhost:{}/ws", relay.port);
    let (host, guest) = (Agent::new(tmp.path(), "host"), Agent::new(tmp.path(), "guest"));
    pair_and_talk(&url, &ca1.pem, &host, &guest);

    // New files from another CA, then SIGHUP: new handshakes get the new certificate.
    let next = ca2.leaf(&pki, "next", &["localhost"], false);
    std::fs::rename(&next.cert, &leaf.cert).unwrap();
    std::fs::rename(&next.key, &leaf.key).unwrap();
    let pid = nix::unistd::Pid::from_raw(i32::try_from(relay.bg.child.id()).unwrap());
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGHUP).unwrap();
    poll_until("the relay to serve the reloaded certificate", || {
        run(&host, Some(&ca2.pem), &["invite", "create", "--relay", &url]).0
    });
    let (success, _, stderr) = run(&host, Some(&ca1.pem), &["invite", "create", "--relay", &url]);
    assert!(!success && stderr.contains("not signed by a trusted authority"), "{stderr}");
}

#[test]
fn untrusted_wrong_host_and_expired_certificates_are_refused_clearly_and_store_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let pki = tmp.path().join("pki");
    let ca = Ca::new(&pki, "relay");
    let good = tls_relay(&tmp.path().join("good"), &ca.leaf(&pki, "good", &["localhost"], false));
    let expired =
        tls_relay(&tmp.path().join("expired"), &ca.leaf(&pki, "old", &["localhost"], true));
    let (host, guest) = (Agent::new(tmp.path(), "host"), Agent::new(tmp.path(), "guest"));
    host.setup();
    guest.setup();
    let good_url = format!("wss://localhost:{}/ws", good.port);
    let cases = [
        (
            None,
            good_url.clone(),
            "not signed by a trusted authority; for a private or self-signed relay, pass its CA (or its own certificate) with --ca-file FILE",
        ),
        (
            Some(ca.pem.as_path()),
            format!("wss://127.0.0.1:{}/ws", good.port),
            "TLS certificate is not valid for 127.0.0.1",
        ),
        (
            Some(ca.pem.as_path()),
            format!("wss://localhost:{}/ws", expired.port),
            "TLS certificate has expired",
        ),
    ];
    for (trust, url, want) in cases {
        let mut cmd = host.cmd();
        if let Some(ca) = trust {
            cmd.arg("--ca-file").arg(ca);
        }
        let out = cmd.args(["invite", "create", "--relay", &url]).output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(3), "{url}: {stderr}");
        assert!(stderr.contains(want), "{url}: {stderr}");
        assert!(!stderr.contains("retry"), "a certificate refusal is final: {stderr}");
    }
    assert!(ok(&host, None, &["invite", "list"]).is_empty(), "a refused invite was stored");

    // wss:// to a relay that speaks plain WebSocket.
    std::fs::create_dir_all(tmp.path().join("plain")).unwrap();
    let plain = crate::common::Relay::start(&tmp.path().join("plain"));
    let url = format!("wss://localhost:{}/ws", plain.port);
    let (success, _, stderr) = run(&host, None, &["invite", "create", "--relay", &url]);
    assert!(!success && stderr.contains("did not answer with TLS"), "{stderr}");

    // A guest that does not trust the relay's CA: the accept fails and pairs nothing.
    let v = &ok(&host, Some(&ca.pem), &["invite", "create", "--relay", &good_url])[0];
    let invite = v["invite"].as_str().unwrap().to_owned();
    let (success, _, stderr) = run(&guest, None, &["invite", "accept", &invite]);
    assert!(!success && stderr.contains("--ca-file"), "{stderr}");
    assert!(ok(&guest, None, &["peers"]).is_empty(), "a refused accept stored a peer");

    // A CA file that holds no certificate is bad input: refused before any dial.
    let bogus = tmp.path().join("bogus.pem");
    std::fs::write(&bogus, "hello\n").unwrap();
    let (success, _, stderr) = run(&guest, Some(&bogus), &["invite", "accept", &invite]);
    assert!(!success && stderr.contains("no PEM certificate"), "{stderr}");
    assert!(ok(&guest, None, &["peers"]).is_empty());
}

/// bore's fixed control port, and the lock every test using it holds (see tests/room/bore.rs).
const BORE_CONTROL_PORT: u16 = 7835;
const BORE_LOCK: &str = "/tmp/agentroom-bore-7835.lock";

#[test]
fn relay_serving_tls_through_a_bore_tunnel_announces_wss_and_pairs() {
    let lock = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(BORE_LOCK)
        .unwrap();
    lock.lock().unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let mut server = bore_cli::server::Server::new(20000..=60000, Some("wss-bore-secret"));
    server.set_bind_addr(std::net::Ipv4Addr::LOCALHOST.into());
    server.set_bind_tunnels(std::net::Ipv4Addr::LOCALHOST.into());
    let bore = rt.spawn(async move { server.listen().await.map_err(|e| e.to_string()) });
    crate::tls_fixtures::wait_listening(BORE_CONTROL_PORT);

    let tmp = tempfile::tempdir().unwrap();
    let pki = tmp.path().join("pki");
    let ca = Ca::new(&pki, "bore");
    // bore announces its own host: the certificate names it.
    let leaf = ca.leaf(&pki, "relay", &["127.0.0.1"], false);
    let mut cmd = std::process::Command::new(crate::common::BIN);
    cmd.arg("--ca-file")
        .arg(&ca.pem)
        .args(["relay", "--json", "--port", "0", "--tunnel", "bore", "--bore-server", "127.0.0.1"])
        .arg("--db")
        .arg(tmp.path().join("relay.db"))
        .arg("--tls-cert")
        .arg(&leaf.cert)
        .arg("--tls-key")
        .arg(&leaf.key)
        .env("AGENTROOM_HOME", tmp.path().join("relay-home"))
        .env("BORE_SECRET", "wss-bore-secret")
        .env("LOG_LEVEL", "warn")
        .env_remove("HMAC_SECRET");
    let mut relay = Bg::spawn(cmd);
    let ready = relay.wait_event("tunnel_ready");
    let url = ready["relay"].as_str().unwrap().to_owned();
    assert!(url.starts_with("wss://127.0.0.1:"), "{ready}");
    let (host, guest) = (Agent::new(tmp.path(), "host"), Agent::new(tmp.path(), "guest"));
    pair_and_talk(&url, &ca.pem, &host, &guest);
    drop(relay);
    bore.abort();
}

#[test]
fn relay_tls_with_a_cloudflared_tunnel_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let pki = tmp.path().join("pki");
    let leaf = Ca::new(&pki, "cf").leaf(&pki, "relay", &["localhost"], false);
    let out = assert_cmd::Command::new(crate::common::BIN)
        .args(["relay", "--port", "0", "--tunnel", "cloudflared", "--db"])
        .arg(tmp.path().join("relay.db"))
        .arg("--tls-cert")
        .arg(&leaf.cert)
        .arg("--tls-key")
        .arg(&leaf.key)
        .timeout(crate::common::DEADLINE)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("cannot be combined with --tunnel cloudflared"), "{stderr}");
    assert!(!tmp.path().join("relay.db").exists(), "refused before opening anything");
}
