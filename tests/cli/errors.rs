//! One clear line and the documented exit code for each failure class.

use crate::common::{Agent, Relay};

#[test]
fn no_identity_unknown_peer_and_usage() {
    let tmp = tempfile::tempdir().unwrap();
    let a = Agent::new(tmp.path(), "a");
    let (code, stderr) = a.fails(&["whoami"]);
    assert_eq!(code, 1, "TypeScript: whoami without an identity exits 1: {stderr}");
    assert!(stderr.contains("setup` first"), "{stderr}");
    let (code, _) = a.fails(&["send", "bob", "hi"]);
    assert_eq!(code, 4);
    a.setup();
    let (code, stderr) = a.fails(&["send", "bobby", "hi"]);
    assert_eq!(code, 4);
    assert!(stderr.contains("unknown peer"), "{stderr}");
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
    let (code, stderr) = a.fails(&["listen"]);
    assert_eq!(code, 4, "nothing to listen to: {stderr}");
    // The hint repeats --home, so pasting it acts on this home.
    let hint = format!("agentroom --home '{}' invite create", a.home.display());
    assert!(stderr.contains(&hint), "{stderr}");
    let (code, stderr) = a.fails(&["serve", "--on-message", "cat"]);
    assert_eq!(code, 4, "{stderr}");
    assert!(stderr.contains(&hint), "{stderr}");
    assert_eq!(a.fails(&["send"]).0, 2);
    // Keys and ids may start with '-': never mistaken for a flag.
    let (code, stderr) = a.fails(&["send", "-Abc_not_a_flag", "-5 degrees"]);
    assert_eq!(code, 4, "{stderr}");
    assert_eq!(a.fails(&["serve"]).0, 2);
    assert_eq!(a.fails(&["serve", "--on-message", "cat", "--seed", "hi"]).0, 2);
    assert_eq!(a.fails(&["invite", "create", "--expires", "soon"]).0, 2);
    assert_eq!(a.fails(&["invite", "create"]).0, 2, "no relay configured");
    assert_eq!(a.fails(&["bogus"]).0, 2);
    let v = &a.json(&["version"])[0];
    assert_eq!(v["version"], env!("CARGO_PKG_VERSION"));
    // `init` is `setup`.
    assert_eq!(a.json(&["init", "--no-probe"])[0]["created"], false);
}

#[test]
fn unreachable_relay_is_a_network_error_with_no_partial_state() {
    let tmp = tempfile::tempdir().unwrap();
    let a = Agent::new(tmp.path(), "a");
    a.setup();
    // Bind then drop a port: nothing listens there.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let url = format!("ws://127.0.0.1:{port}/ws");
    let (code, stderr) = a.fails(&["invite", "create", "--relay", &url]);
    assert_eq!(code, 3, "{stderr}");
    assert!(stderr.contains("cannot reach relay"), "{stderr}");
    assert!(a.json(&["invite", "list"]).is_empty());

    // Accepting an invite whose relay is down stores nothing either.
    let relay_dir = tmp.path().join("relay");
    std::fs::create_dir_all(&relay_dir).unwrap();
    let mut relay = Relay::start(&relay_dir);
    let invite = a.invite(&relay.url, "b");
    relay.stop();
    let b = Agent::new(tmp.path(), "b");
    b.setup();
    let (code, stderr) = b.fails(&["invite", "accept", &invite]);
    assert_eq!(code, 3, "{stderr}");
    assert!(b.json(&["peers"]).is_empty());
}

#[test]
fn corrupt_state_files_fail_cleanly() {
    let tmp = tempfile::tempdir().unwrap();
    let relay = Relay::start(tmp.path());
    let a = Agent::new(tmp.path(), "a");
    a.setup();
    a.invite(&relay.url, "x");
    std::fs::write(a.home.join("state.db"), vec![0x5a; 16 * 1024]).unwrap();
    let _ = std::fs::remove_file(a.home.join("state.db-wal"));
    let _ = std::fs::remove_file(a.home.join("state.db-shm"));
    let (code, stderr) = a.fails(&["peers"]);
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains("corrupt"), "{stderr}");
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");

    let b = Agent::new(tmp.path(), "b");
    b.setup();
    std::fs::write(b.home.join("identity.json"), b"{\"version\":1,\"seed\":\"short\"}").unwrap();
    let (code, stderr) = b.fails(&["whoami"]);
    assert_eq!(code, 1);
    assert!(stderr.contains("corrupt"), "{stderr}");
    // setup does not overwrite a damaged identity.
    assert_eq!(b.fails(&["setup"]).0, 1);
}

#[test]
fn signals_stop_listen_and_serve_like_a_shell() {
    let tmp = tempfile::tempdir().unwrap();
    let relay = Relay::start(tmp.path());
    let (host, guest) = (Agent::new(tmp.path(), "host"), Agent::new(tmp.path(), "guest"));
    crate::common::pair(&relay, &host, &guest);
    let mut serve = host.spawn(&["serve", "--on-message", "cat"]);
    serve.wait_event("connected");
    let kill = |pid: u32, sig: &str| {
        std::process::Command::new("kill").args([sig, &pid.to_string()]).status().unwrap()
    };
    kill(serve.child.id(), "-TERM");
    assert_eq!(serve.wait_exit(), Some(143));
    let done = serve.seen.iter().find(|v| v["event"] == "done").unwrap();
    assert_eq!(done["reason"], "cancelled");

    let mut listen = guest.spawn(&["listen"]);
    listen.wait_event("connected");
    kill(listen.child.id(), "-INT");
    assert_eq!(listen.wait_exit(), Some(130));
}

#[test]
fn a_damaged_session_drops_its_messages_without_crashing() {
    let tmp = tempfile::tempdir().unwrap();
    let relay = Relay::start(tmp.path());
    let (host, guest) = (Agent::new(tmp.path(), "host"), Agent::new(tmp.path(), "guest"));
    crate::common::pair(&relay, &host, &guest);
    guest.json(&["send", "host", "one"]);
    assert!(host.json(&["listen", "--once"]).iter().any(|v| v["text"] == "one"));
    let db = rusqlite::Connection::open(host.home.join("state.db")).unwrap();
    db.execute("UPDATE peers SET session = x'00'", []).unwrap();
    drop(db);
    guest.json(&["send", "host", "two"]);
    let lines = host.json_any(&["listen", "--timeout", "2s"]);
    let dropped = lines.iter().find(|v| v["event"] == "dropped").expect("dropped event");
    assert!(dropped["reason"].as_str().unwrap().contains("corrupt"), "{dropped}");
    assert!(lines.iter().all(|v| v["event"] != "message"));
    host.json(&["peers", "remove", "guest"]);
}

#[test]
fn waiting_for_a_reply_that_never_comes_is_a_network_timeout() {
    let tmp = tempfile::tempdir().unwrap();
    let relay = Relay::start(tmp.path());
    let (host, guest) = (Agent::new(tmp.path(), "host"), Agent::new(tmp.path(), "guest"));
    crate::common::pair(&relay, &host, &guest);
    let out = guest
        .cmd()
        .args(["--json", "send", "host", "anyone?", "--wait-reply", "--timeout", "1s"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(3));
    assert!(String::from_utf8_lossy(&out.stderr).contains("timed out"));
    // The envelope id is printed before the wait fails, then the error object.
    let lines: Vec<serde_json::Value> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines[0]["event"], "sent");
    assert_eq!(lines[1]["event"], "error");
    assert_eq!(lines[1]["code"], 3);
    // The message itself went out: the host gets it.
    assert!(host.json(&["listen", "--once"]).iter().any(|v| v["text"] == "anyone?"));
}

/// The exact stderr of the common failures: one line, each cause said once.
#[test]
fn common_failures_print_each_cause_once() {
    let tmp = tempfile::tempdir().unwrap();
    let relay = Relay::start(tmp.path());
    let (a, b) = (Agent::new(tmp.path(), "a"), Agent::new(tmp.path(), "b"));
    let stderr_of = |agent: &Agent, args: &[&str]| agent.fails(args).1.trim().to_owned();
    let home = a.home.display().to_string();
    assert_eq!(
        stderr_of(&a, &["whoami"]),
        format!(
            "agentroom: error: no identity in {home}: run `agentroom --home '{home}' setup` first"
        )
    );
    a.setup();
    b.setup();
    assert_eq!(
        stderr_of(&a, &["invite", "accept", "ar1.garbage"]),
        "agentroom: error: invite refused: malformed invite"
    );
    let invite = b.invite(&relay.url, "a");
    let mut chars: Vec<char> = invite.chars().collect();
    let i = chars.len() / 2;
    chars[i] = if chars[i] == 'A' { 'B' } else { 'A' };
    let tampered: String = chars.into_iter().collect();
    let forged = stderr_of(&a, &["invite", "accept", &tampered]);
    assert!(
        forged == "agentroom: error: invite refused: invite signature does not verify"
            || forged == "agentroom: error: invite refused: malformed invite",
        "{forged}"
    );
    let dead = "ws://127.0.0.1:1/ws";
    assert_eq!(
        stderr_of(&a, &["invite", "create", "--relay", dead]),
        format!(
            "agentroom: error: cannot reach relay {dead}: IO error: Connection refused (os error 111)"
        )
    );
    let out = std::process::Command::new(crate::common::BIN)
        .args(["relay", "--port", &relay.port.to_string(), "--db"])
        .arg(tmp.path().join("second.db"))
        .env("LOG_LEVEL", "error")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        String::from_utf8_lossy(&out.stderr).trim(),
        format!(
            "agentroom: error: cannot listen on 127.0.0.1:{}: Address already in use (os error 98)",
            relay.port
        )
    );
}

/// Every subcommand's `--help` ends with examples, `completions` writes a script
/// for every shell, and `--json` failures are one `error` object on stdout.
#[test]
fn help_examples_completions_and_json_errors() {
    let tmp = tempfile::tempdir().unwrap();
    let a = Agent::new(tmp.path(), "a");
    let commands: &[&[&str]] = &[
        &["setup"],
        &["whoami"],
        &["invite"],
        &["invite", "create"],
        &["invite", "list"],
        &["invite", "revoke"],
        &["invite", "accept"],
        &["peers"],
        &["peers", "list"],
        &["peers", "rename"],
        &["peers", "verify"],
        &["peers", "remove"],
        &["send"],
        &["listen"],
        &["serve"],
        &["mcp"],
        &["relay"],
        &["room"],
        &["room", "open"],
        &["room", "status"],
        &["room", "stop"],
        &["host"],
        &["version"],
        &["completions"],
    ];
    for cmd in commands {
        let out = a.cmd().args(*cmd).arg("--help").output().unwrap();
        let help = String::from_utf8(out.stdout).unwrap();
        assert!(out.status.success(), "{cmd:?}");
        assert!(
            help.contains("Examples:\n  agentroom "),
            "{cmd:?} --help has no examples:\n{help}"
        );
    }
    for shell in ["bash", "zsh", "fish", "powershell"] {
        let out = a.cmd().args(["completions", shell]).output().unwrap();
        assert!(out.status.success(), "{shell}");
        let script = String::from_utf8(out.stdout).unwrap();
        assert!(script.contains("agentroom") && script.contains("invite"), "{shell}");
    }
    // `help peers <TAB>` completes: the `help` tree is copied after the
    // arguments (and with them `peers`' subcommands) are built.
    let out = a.cmd().args(["completions", "bash"]).output().unwrap();
    let script = String::from_utf8(out.stdout).unwrap();
    assert!(
        script.contains("agentroom__subcmd__help__subcmd__peers__subcmd__set"),
        "no `help peers set` in the bash script"
    );
    assert_eq!(a.fails(&["completions", "tcsh"]).0, 2);
    // -V only on the top level.
    assert!(a.cmd().arg("-V").output().unwrap().status.success());
    assert_eq!(a.fails(&["whoami", "-V"]).0, 2);
    // --json: the failure is also one NDJSON object on stdout, same exit code.
    let out = a.cmd().args(["--json", "whoami"]).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["event"], "error");
    assert_eq!(v["code"], 1);
    assert!(v["message"].as_str().unwrap().starts_with("no identity in "), "{v}");
    // A 3-character prefix is too short; a near label gets a suggestion.
    let relay = Relay::start(tmp.path());
    let b = Agent::new(tmp.path(), "b");
    crate::common::pair(&relay, &a, &b);
    let (code, stderr) = b.fails(&["send", "abc", "hi"]);
    assert_eq!(code, 4);
    assert!(stderr.contains("too short (4+"), "{stderr}");
    let (code, stderr) = b.fails(&["send", "hots", "hi"]);
    assert_eq!(code, 4);
    assert!(stderr.contains("did you mean \"host\""), "{stderr}");
    // peers rename, and the safety number on both sides.
    let renamed = &b.json(&["peers", "rename", "host", "alice"])[0];
    assert_eq!(renamed["label"], "alice");
    let mine = &b.json(&["peers"])[0];
    assert_eq!(mine["label"], "alice");
    let theirs = &a.json(&["peers"])[0];
    assert!(mine["safety_number"].is_string());
    assert_eq!(mine["safety_number"], theirs["safety_number"], "both sides see the same number");
    // The post-accept hint repeats --home.
    let c = Agent::new(tmp.path(), "c");
    c.setup();
    let inv = a.invite(&relay.url, "c");
    let text = c.ok(&["invite", "accept", &inv]);
    assert!(text.contains(&format!("agentroom --home '{}' send", c.home.display())), "{text}");
}

#[test]
fn room_open_without_cloudflared_hints_at_other_tunnels() {
    let tmp = tempfile::tempdir().unwrap();
    let a = Agent::new(tmp.path(), "a");
    let out = a
        .cmd()
        .args(["room", "open", "--no-download"])
        .env_remove("CLOUDFLARED_BIN")
        .env_remove("AGENTROOM_CLOUDFLARED")
        .env("PATH", "/usr/bin:/bin")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "a missing binary is the user's to fix");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("--tunnel none") && stderr.contains("--tunnel bore"), "{stderr}");
    assert!(!stderr.contains("\"level\""), "no JSON log line beside the error: {stderr}");
    // With --json, the failure is also the one `error` object on stdout.
    let out = a
        .cmd()
        .args(["--json", "room", "open", "--no-download"])
        .env_remove("CLOUDFLARED_BIN")
        .env_remove("AGENTROOM_CLOUDFLARED")
        .env("PATH", "/usr/bin:/bin")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let last: serde_json::Value =
        serde_json::from_str(String::from_utf8(out.stdout).unwrap().lines().last().unwrap())
            .unwrap();
    assert_eq!((&last["event"], &last["code"]), (&"error".into(), &1.into()), "{last}");
    assert!(last["message"].as_str().unwrap().contains("cloudflared not found"), "{last}");
}

#[test]
fn a_slow_tunnel_shows_progress_on_a_terminal() {
    use std::io::{BufRead, BufReader};
    if std::process::Command::new("script").arg("--version").output().is_err() {
        eprintln!("skipped: no `script` to give the room a terminal");
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let home = tmp.path().join("h");
    let fake =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("cloudflared/fake-cloudflared");
    // `script` runs the room on a pseudo-terminal and copies what it writes to our pipe.
    let line = format!(
        "{} --home '{}' room open --cloudflared-bin '{}' --tunnel-timeout 120s",
        crate::common::BIN,
        home.display(),
        fake.display()
    );
    let mut child = std::process::Command::new("script")
        .args(["-qefc", &line, "/dev/null"])
        .env("FAKE_CLOUDFLARED_MODE", "no-url")
        .env("LOG_LEVEL", "warn")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let out = BufReader::new(child.stdout.take().unwrap());
    let mut seen = Vec::new();
    for l in out.lines() {
        let Ok(l) = l else { break };
        let done = l.contains("waiting for the cloudflared tunnel's public URL");
        seen.push(l);
        if done {
            break;
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    let _ = std::process::Command::new(crate::common::BIN)
        .arg("--home")
        .arg(&home)
        .args(["room", "stop"])
        .output();
    assert!(seen.iter().any(|l| l.contains("public URL (")), "{seen:?}");
}

/// clap's own parse errors (unknown flag, missing argument, unknown command)
/// also give one `error` object on stdout when `--json` is anywhere in argv,
/// with exit code 2; without `--json`, or after `--`, stdout stays empty.
#[test]
fn parse_errors_are_json_objects_with_json_anywhere() {
    let tmp = tempfile::tempdir().unwrap();
    let a = Agent::new(tmp.path(), "a");
    let cases: [(&[&str], &str, &str); 4] = [
        (&["--json", "whoami", "--bogus"], "--bogus", "unknown_argument"),
        (&["send", "--json"], "required", "missing_required_argument"),
        (&["peers", "verify", "--json"], "required", "missing_required_argument"),
        (&["bogus", "--json"], "bogus", "invalid_subcommand"),
    ];
    for (args, needle, kind) in cases {
        let out = a.cmd().args(args).output().unwrap();
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let stdout = String::from_utf8(out.stdout).unwrap();
        let lines: Vec<&str> = stdout.lines().collect();
        assert_eq!(lines.len(), 1, "{args:?}: {stdout}");
        let v: serde_json::Value = serde_json::from_str(lines[0]).unwrap();
        assert_eq!(v["event"], "error", "{v}");
        assert_eq!(v["code"], 2, "{v}");
        assert_eq!(v["kind"], kind, "{v}");
        let message = v["message"].as_str().unwrap();
        assert!(message.contains(needle), "{args:?}: {message}");
        assert!(!message.contains('\n') && !message.starts_with("error:"), "{message}");
        // clap's text still goes to stderr.
        assert!(String::from_utf8_lossy(&out.stderr).contains("Usage:"), "{args:?}");
    }
    let out = a.cmd().args(["whoami", "--bogus"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(out.stdout.is_empty(), "no --json: nothing on stdout");
    let out = a.cmd().args(["send", "--", "--json"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2), "a missing text after --");
    assert!(out.stdout.is_empty(), "--json after -- is an operand, not the flag");
    let out = a.cmd().args(["--json", "--help"]).output().unwrap();
    assert_eq!(out.status.code(), Some(0));
    assert!(!String::from_utf8_lossy(&out.stdout).contains("\"event\""), "help is no error");
}

/// A paired home with no daemon running: `listen` starts one in-process and
/// must never say "no peers" because the new daemon had not opened its relay
/// link yet (it did about one start in three on a loaded machine). Each run
/// times out instead (exit 3), which needs the peer to be seen.
#[test]
fn listen_in_a_paired_home_never_reports_no_peers() {
    let tmp = tempfile::tempdir().unwrap();
    let relay = Relay::start(tmp.path());
    let (host, guest) = (Agent::new(tmp.path(), "host"), Agent::new(tmp.path(), "guest"));
    crate::common::pair(&relay, &host, &guest);
    for _ in 0..8 {
        let out = guest.cmd().args(["listen", "--timeout", "1s"]).output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!stderr.contains("no peers"), "{stderr}");
        assert_eq!(out.status.code(), Some(3), "{stderr}");
    }
}

/// The hints of `peers` (no peers yet) and `invite create` repeat `--home`, so
/// pasting them acts on the same home; `--expires 0` is a usage error that says
/// what to give instead (it used to read "invite refused: invite expired").
#[test]
fn peers_and_invite_hints_repeat_home_and_expires_zero_is_usage() {
    let tmp = tempfile::tempdir().unwrap();
    let relay = Relay::start(tmp.path());
    let a = Agent::new(tmp.path(), "a");
    a.setup();
    let home = format!("--home '{}'", a.home.display());
    let text = a.ok(&["peers"]);
    assert!(text.contains(&format!("agentroom {home} invite create")), "{text}");
    let (code, stderr) = a.fails(&["invite", "create", "--relay", &relay.url, "--expires", "0"]);
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("at least 1s"), "{stderr}");
    assert!(a.json(&["invite", "list"]).is_empty(), "nothing was created");
    let text = a.ok(&["invite", "create", "--relay", &relay.url]);
    assert!(text.contains(&format!("agentroom {home} listen")), "{text}");
}

/// The first line of each command's `-h` is the line its parent's `-h`
/// lists it with. Arguments are built only for the command that runs,
/// and a doc comment on an argument struct would then replace that line.
#[test]
fn every_help_starts_with_the_line_its_parent_lists() {
    let tmp = tempfile::tempdir().unwrap();
    let a = Agent::new(tmp.path(), "a");
    let help = |path: &[String]| {
        // `-h`: the short about (`--help` may show a longer text).
        let out = a.cmd().args(path).arg("-h").output().unwrap();
        assert!(out.status.success(), "{path:?} -h");
        String::from_utf8(out.stdout).unwrap()
    };
    let mut checked = 0;
    let mut parents: Vec<Vec<String>> = vec![vec![]];
    while let Some(parent) = parents.pop() {
        let text = help(&parent);
        let Some((_, list)) = text.split_once("Commands:\n") else { continue };
        for line in list.lines().take_while(|l| l.starts_with("  ")) {
            let (name, about) = line.trim().split_once(' ').expect("a command line has an about");
            if name == "help" {
                continue;
            }
            let about = about.trim();
            let about = about.split(" [alias").next().unwrap();
            let mut path = parent.clone();
            path.push(name.to_owned());
            let first = help(&path).lines().next().unwrap_or_default().to_owned();
            assert_eq!(first, about, "{path:?} -h starts with another line than its parent lists");
            checked += 1;
            parents.push(path);
        }
    }
    assert!(checked >= 30, "only {checked} commands were found in the help");
}
