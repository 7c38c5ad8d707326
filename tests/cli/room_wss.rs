//! `room open` over wss:// (issue 19): the room serving TLS itself
//! (`--tls-cert/--tls-key`), and `--public-url` for a TLS terminator (a real nginx)
//! in front of the bore tunnel's port; a restart keeps the guest's wss URL; bad
//! flags and files are refused before anything is created.

use std::path::Path;

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use serde_json::Value;

use crate::common::{Agent, Bg, echo_handler};
use crate::tls_fixtures::{Ca, Leaf, Nginx, free_port, wait_listening};

/// `room open --json <args>` for `host`, in the background.
fn room(host: &Agent, args: &[&str], env: &[(&str, &str)]) -> Bg {
    let mut c = host.std_cmd();
    c.args(["--json", "room", "open", "--on-message", &echo_handler()]).args(args);
    for (k, v) in env {
        c.env(k, v);
    }
    Bg::spawn(c)
}

fn tls_args(leaf: &Leaf) -> Vec<String> {
    let p = |p: &Path| p.display().to_string();
    vec!["--tls-cert".into(), p(&leaf.cert), "--tls-key".into(), p(&leaf.key)]
}

/// `agentroom --ca-file CA --json <args>` for `agent`; must succeed.
fn ok(agent: &Agent, ca: &Path, args: &[&str]) -> Vec<Value> {
    let out = agent.cmd().arg("--ca-file").arg(ca).arg("--json").args(args).output().unwrap();
    assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// The guest sends `text` to the room and gets the echo back.
fn round_trip(guest: &Agent, ca: &Path, text: &str) {
    ok(guest, ca, &["send", "host", text]);
    let lines = ok(guest, ca, &["listen", "--once", "--timeout", "60s"]);
    let got = lines.iter().find(|v| v["event"] == "message").expect("a reply");
    assert_eq!(got["text"], format!("echo: {text}"));
}

/// SIGTERM, the exit code, and every event the room printed.
fn stop(mut room: Bg) -> Vec<Value> {
    let pid = Pid::from_raw(i32::try_from(room.child.id()).unwrap());
    kill(pid, Signal::SIGTERM).unwrap();
    assert_eq!(room.wait_exit(), Some(143));
    std::mem::take(&mut room.seen)
}

#[test]
fn room_serving_tls_itself_pairs_over_wss_and_a_restart_keeps_the_url() {
    let tmp = tempfile::tempdir().unwrap();
    let pki = tmp.path().join("pki");
    let ca = Ca::new(&pki, "room");
    let leaf = ca.leaf(&pki, "room", &["localhost"], false);
    let (host, guest) = (Agent::new(tmp.path(), "host"), Agent::new(tmp.path(), "guest"));
    let tls = tls_args(&leaf);
    let mut args = vec!["--tunnel", "none"];
    args.extend(tls.iter().map(String::as_str));

    let mut open = room(&host, &args, &[]);
    let ready = open.wait_event("room_ready");
    let url = ready["relay_url"].as_str().unwrap().to_owned();
    let port = url.strip_prefix("wss://localhost:").and_then(|r| r.strip_suffix("/ws"));
    assert!(port.is_some_and(|p| p.parse::<u16>().is_ok()), "{ready}");
    // The room's own client stays on plain loopback, on the same port.
    assert_eq!(ready["local_url"], format!("ws://127.0.0.1:{}/ws", port.unwrap()));
    guest.setup();
    let invite = ready["invite"].as_str().unwrap();
    let accepted = &ok(&guest, &ca.pem, &["invite", "accept", invite, "--label", "host"])[0];
    assert_eq!(accepted["relay"], url.as_str());
    round_trip(&guest, &ca.pem, "over the room's own TLS");
    stop(open);

    // Same flags again: same port, same wss URL, the guest's pairing still works.
    let mut again = room(&host, &args, &[]);
    let ready = again.wait_event("room_ready");
    assert_eq!(ready["relay_url"], url.as_str(), "{ready}");
    round_trip(&guest, &ca.pem, "after the restart");
    let seen = stop(again);
    assert!(seen.iter().any(|v| v["event"] == "room_closed"), "{seen:#?}");
    assert!(!seen.iter().any(|v| v["event"] == "relay_update"), "URL unchanged: {seen:#?}");
}

/// bore's fixed control port, and the lock every test using it holds (see tests/room/bore.rs).
const BORE_CONTROL_PORT: u16 = 7835;
const BORE_LOCK: &str = "/tmp/agentroom-bore-7835.lock";
const BORE_SECRET: &str = "room-wss-bore-secret";

#[test]
fn room_behind_nginx_in_front_of_bore_invites_with_the_public_url() {
    let lock = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(BORE_LOCK)
        .unwrap();
    lock.lock().unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let mut server = bore_cli::server::Server::new(20000..=60000, Some(BORE_SECRET));
    server.set_bind_addr(std::net::Ipv4Addr::LOCALHOST.into());
    server.set_bind_tunnels(std::net::Ipv4Addr::LOCALHOST.into());
    let bore = rt.spawn(async move { server.listen().await.map_err(|e| e.to_string()) });
    wait_listening(BORE_CONTROL_PORT);

    let tmp = tempfile::tempdir().unwrap();
    let pki = tmp.path().join("pki");
    let ca = Ca::new(&pki, "terminator");
    let leaf = ca.leaf(&pki, "localhost", &["localhost"], false);
    let (host, guest) = (Agent::new(tmp.path(), "host"), Agent::new(tmp.path(), "guest"));
    // nginx's port is named before nginx runs: it forwards to bore's port, known
    // only once the room's tunnel is up.
    let front = free_port();
    let public = format!("wss://localhost:{front}/ws");
    let args = [
        "--tunnel",
        "bore",
        "--bore-server",
        "127.0.0.1",
        "--public-url",
        &public,
        "--probe-timeout",
        "10s",
    ];
    let mut open = room(&host, &args, &[("BORE_SECRET", BORE_SECRET)]);
    let ready = open.wait_event("room_ready");
    assert_eq!(ready["relay_url"], public.as_str(), "{ready}");
    let tunnel = url::Url::parse(ready["public_url"].as_str().unwrap()).unwrap();
    assert_eq!(tunnel.host_str(), Some("127.0.0.1"), "{ready}");
    let _nginx = Nginx::start_on(&tmp.path().join("nginx"), front, tunnel.port().unwrap(), &leaf);

    guest.setup();
    let invite = ready["invite"].as_str().unwrap();
    let accepted = &ok(&guest, &ca.pem, &["invite", "accept", invite, "--label", "host"])[0];
    assert_eq!(accepted["relay"], public.as_str());
    round_trip(&guest, &ca.pem, "through nginx and bore");
    let status = &ok(&host, &ca.pem, &["room", "status"])[0];
    assert_eq!(status["room"]["public_url"], public.as_str(), "{status}");
    assert_eq!(status["room"]["tunnel_url"], tunnel.as_str(), "where nginx forwards: {status}");
    stop(open);

    // The room's own TLS through bore: TLS passes the tunnel, the invite is wss://.
    let ip_leaf = ca.leaf(&pki, "bore-host", &["127.0.0.1"], false);
    let (host2, guest2) = (Agent::new(tmp.path(), "host2"), Agent::new(tmp.path(), "guest2"));
    let mut args = vec!["--tunnel", "bore", "--bore-server", "127.0.0.1"];
    let tls = tls_args(&ip_leaf);
    args.extend(tls.iter().map(String::as_str));
    let mut open = room(&host2, &args, &[("BORE_SECRET", BORE_SECRET)]);
    let ready = open.wait_event("room_ready");
    let url = ready["relay_url"].as_str().unwrap();
    let bore_port = url::Url::parse(ready["public_url"].as_str().unwrap()).unwrap().port();
    assert_eq!(url, format!("wss://127.0.0.1:{}/ws", bore_port.unwrap()), "{ready}");
    guest2.setup();
    let invite = ready["invite"].as_str().unwrap();
    ok(&guest2, &ca.pem, &["invite", "accept", invite, "--label", "host"]);
    round_trip(&guest2, &ca.pem, "TLS through bore");
    stop(open);
    bore.abort();
}

#[test]
fn room_behind_nginx_on_its_own_port_invites_with_the_public_url() {
    let tmp = tempfile::tempdir().unwrap();
    let pki = tmp.path().join("pki");
    let ca = Ca::new(&pki, "front");
    let leaf = ca.leaf(&pki, "localhost", &["localhost"], false);
    let (host, guest) = (Agent::new(tmp.path(), "host"), Agent::new(tmp.path(), "guest"));
    let front = free_port();
    let public = format!("wss://localhost:{front}");
    let mut open = room(&host, &["--tunnel", "none", "--public-url", &public], &[]);
    let ready = open.wait_event("room_ready");
    // An empty path means /ws, as for every relay URL.
    assert_eq!(ready["relay_url"], format!("{public}/ws"), "{ready}");
    let local = url::Url::parse(ready["local_url"].as_str().unwrap()).unwrap();
    let _nginx = Nginx::start_on(&tmp.path().join("nginx"), front, local.port().unwrap(), &leaf);
    guest.setup();
    let invite = ready["invite"].as_str().unwrap();
    let accepted = &ok(&guest, &ca.pem, &["invite", "accept", invite, "--label", "host"])[0];
    assert_eq!(accepted["relay"], format!("{public}/ws"));
    round_trip(&guest, &ca.pem, "through nginx");
    stop(open);
}

#[test]
fn bad_public_url_and_tls_files_are_refused_before_anything_is_created() {
    let tmp = tempfile::tempdir().unwrap();
    let pki = tmp.path().join("pki");
    let ca = Ca::new(&pki, "refusals");
    let (one, two) =
        (ca.leaf(&pki, "one", &["localhost"], false), ca.leaf(&pki, "two", &["localhost"], false));
    let ip_only = ca.leaf(&pki, "ip", &["10.9.9.9"], false);
    let host = Agent::new(tmp.path(), "host");
    let p = |p: &Path| p.display().to_string();
    let cases: Vec<(Vec<String>, &str)> = vec![
        (
            vec![
                "--tunnel".into(),
                "none".into(),
                "--public-url".into(),
                "ftp://relay.test/ws".into(),
            ],
            "unsupported relay URL scheme \"ftp\"",
        ),
        (
            vec!["--tunnel".into(), "none".into(), "--public-url".into(), "wss://".into()],
            "invalid relay URL",
        ),
        (
            vec![
                "--tunnel".into(),
                "none".into(),
                "--public-url".into(),
                "wss://a.test/ws?x=1".into(),
            ],
            "carries a user name, password or query",
        ),
        (
            vec![
                "--tunnel".into(),
                "none".into(),
                "--tls-cert".into(),
                p(&one.cert),
                "--tls-key".into(),
                p(&two.key),
            ],
            "does not fit the certificate",
        ),
        (
            vec![
                "--detach".into(),
                "--tunnel".into(),
                "none".into(),
                "--tls-cert".into(),
                p(&one.cert),
                "--tls-key".into(),
                p(&two.key),
            ],
            "does not fit the certificate",
        ),
        (
            vec!["--tls-cert".into(), p(&one.cert), "--tls-key".into(), p(&one.key)],
            "cannot be combined with --tunnel cloudflared",
        ),
        (
            vec![
                "--tunnel".into(),
                "none".into(),
                "--tls-cert".into(),
                p(&ip_only.cert),
                "--tls-key".into(),
                p(&ip_only.key),
            ],
            "the TLS certificate is not valid for 127.0.0.1, the host this room's invite would name; pass --public-url",
        ),
    ];
    for (args, want) in cases {
        let out = host.cmd().args(["room", "open"]).args(&args).output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains(want), "{args:?}: {stderr}");
        assert!(!host.home.exists(), "{args:?} created the home");
    }
}
