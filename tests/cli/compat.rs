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
