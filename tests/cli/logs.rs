//! No log level shows a session token, a key or a message: a whole exchange with
//! the relay and both homes at `LOG_LEVEL=trace`, then every stderr is searched.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};

use crate::common::{Agent, BIN};

/// Every resume token a home keeps in its state database.
fn tokens(home: &Path) -> Vec<String> {
    let db = rusqlite::Connection::open(home.join("state.db")).unwrap();
    let mut st = db.prepare("SELECT token FROM relay_tokens").unwrap();
    st.query_map([], |r| r.get(0)).unwrap().map(Result::unwrap).collect()
}

/// The identity seed (the private key) of a home.
fn seed(home: &Path) -> String {
    let id: serde_json::Value =
        serde_json::from_slice(&std::fs::read(home.join("identity.json")).unwrap()).unwrap();
    id["seed"].as_str().unwrap().to_owned()
}

/// Run a client command at trace level; returns (stdout, stderr).
fn traced(agent: &Agent, args: &[&str]) -> (String, String) {
    let out = agent.cmd().env("LOG_LEVEL", "trace").arg("--json").args(args).output().unwrap();
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    );
    assert!(out.status.success(), "{args:?}: {stderr}");
    (stdout, stderr)
}

#[test]
fn trace_logs_carry_no_token_key_or_text() {
    let tmp = tempfile::tempdir().unwrap();
    let relay_log = tmp.path().join("relay.err");
    let mut relay = Command::new(BIN)
        .args(["--json", "relay", "--port", "0", "--db"])
        .arg(tmp.path().join("relay.db"))
        .env("LOG_LEVEL", "trace")
        .env("RATE_LIMIT_DISABLED", "1")
        .env_remove("HMAC_SECRET")
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(&relay_log).unwrap())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(relay.stdout.take().unwrap()).read_line(&mut line).unwrap();
    let listening: serde_json::Value = serde_json::from_str(&line).unwrap();
    let url = listening["url"].as_str().unwrap().to_owned();

    let (host, guest) = (Agent::new(tmp.path(), "host"), Agent::new(tmp.path(), "guest"));
    let mut client_logs = String::new();
    let mut run = |agent: &Agent, args: &[&str]| {
        let (out, err) = traced(agent, args);
        client_logs.push_str(&err);
        out
    };
    run(&host, &["setup"]);
    run(&guest, &["setup"]);
    let inv: serde_json::Value = serde_json::from_str(&run(
        &host,
        &["invite", "create", "--relay", &url, "--label", "guest"],
    ))
    .unwrap();
    let invite = inv["invite"].as_str().unwrap().to_owned();
    run(&guest, &["invite", "accept", &invite, "--label", "host"]);
    run(&guest, &["send", "host", "plaintext-from-guest-7f3a"]);
    assert!(run(&host, &["listen", "--once"]).contains("plaintext-from-guest-7f3a"));
    run(&host, &["send", "guest", "plaintext-from-host-91c2"]);
    assert!(run(&guest, &["listen", "--once"]).contains("plaintext-from-host-91c2"));
    let _ = relay.kill();
    let _ = relay.wait();
    let relay_logs = std::fs::read_to_string(&relay_log).unwrap();

    // Trace was really on: the relay logged its own debug events.
    assert!(relay_logs.contains("\"level\":\"DEBUG\""), "{relay_logs}");
    let mut secrets = vec![
        "plaintext-from-guest-7f3a".to_owned(),
        "plaintext-from-host-91c2".to_owned(),
        invite,
        seed(&host.home),
        seed(&guest.home),
    ];
    for t in tokens(&host.home).into_iter().chain(tokens(&guest.home)) {
        // The MAC alone is what makes a token valid.
        secrets.push(t.rsplit('.').next().unwrap().to_owned());
        secrets.push(t);
    }
    assert!(secrets.len() >= 9, "both homes keep a token: {secrets:?}");
    for (name, logs) in [("relay", &relay_logs), ("clients", &client_logs)] {
        let hits: Vec<_> = secrets.iter().filter(|s| logs.contains(s.as_str())).collect();
        assert!(hits.is_empty(), "{name} logs at trace contain {hits:?}");
    }
}
