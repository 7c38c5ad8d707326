//! Test fixtures: a relay process, agents (homes) and background commands whose
//! NDJSON stdout is read line by line. Waits are event-driven with generous
//! deadlines; nothing asserts on timing.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::Value;

pub(crate) const BIN: &str = env!("CARGO_BIN_EXE_agentroom");
/// Deadline for anything that should take well under a second.
pub(crate) const DEADLINE: Duration = Duration::from_secs(60);

/// A child process whose stdout lines arrive on a channel; killed on drop.
pub(crate) struct Bg {
    pub(crate) child: Child,
    lines: mpsc::Receiver<String>,
    pub(crate) seen: Vec<Value>,
}

impl Bg {
    pub(crate) fn spawn(mut cmd: Command) -> Self {
        let mut child = cmd.stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().expect("spawn");
        let stdout = child.stdout.take().unwrap();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let stderr = child.stderr.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                eprintln!("[child stderr] {line}");
            }
        });
        Self { child, lines, seen: Vec::new() }
    }

    /// Next stdout line as JSON, or None at the deadline / EOF.
    pub(crate) fn next_json(&mut self, deadline: Instant) -> Option<Value> {
        let left = deadline.saturating_duration_since(Instant::now());
        let line = self.lines.recv_timeout(left).ok()?;
        let v: Value = serde_json::from_str(&line).unwrap_or_else(|_| panic!("not JSON: {line}"));
        self.seen.push(v.clone());
        Some(v)
    }

    /// Wait for the first event matching `pred`; panics at the deadline.
    pub(crate) fn wait_for(&mut self, what: &str, mut pred: impl FnMut(&Value) -> bool) -> Value {
        let deadline = Instant::now() + DEADLINE;
        while let Some(v) = self.next_json(deadline) {
            if pred(&v) {
                return v;
            }
        }
        panic!("no {what} within {DEADLINE:?}; saw {:#?}", self.seen);
    }

    pub(crate) fn wait_event(&mut self, name: &str) -> Value {
        self.wait_for(name, |v| v["event"] == name)
    }

    /// Wait for exit; returns the code.
    pub(crate) fn wait_exit(&mut self) -> Option<i32> {
        let deadline = Instant::now() + DEADLINE;
        loop {
            if let Some(st) = self.child.try_wait().unwrap() {
                // Drain what is left.
                while let Ok(line) = self.lines.recv_timeout(Duration::from_millis(200)) {
                    if let Ok(v) = serde_json::from_str(&line) {
                        self.seen.push(v);
                    }
                }
                return st.code();
            }
            assert!(Instant::now() < deadline, "process did not exit");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub(crate) fn sigkill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Bg {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A relay process with its database in `dir`.
pub(crate) struct Relay {
    pub(crate) bg: Bg,
    pub(crate) url: String,
    pub(crate) port: u16,
    pub(crate) dir: PathBuf,
}

impl Relay {
    pub(crate) fn start(dir: &Path) -> Self {
        Self::start_on(dir, 0)
    }

    pub(crate) fn start_on(dir: &Path, port: u16) -> Self {
        let mut cmd = Command::new(BIN);
        cmd.args(["relay", "--json", "--port", &port.to_string(), "--db"])
            .arg(dir.join("relay.db"))
            .env("LOG_LEVEL", "warn")
            .env("RATE_LIMIT_DISABLED", "1")
            .env_remove("HMAC_SECRET");
        let mut bg = Bg::spawn(cmd);
        let v = bg.wait_event("listening");
        let url = v["url"].as_str().unwrap().to_owned();
        let port = u16::try_from(v["port"].as_u64().unwrap()).unwrap();
        Self { bg, url, port, dir: dir.to_path_buf() }
    }

    pub(crate) fn stop(&mut self) {
        self.bg.sigkill();
    }
}

/// One agent: a home directory.
pub(crate) struct Agent {
    pub(crate) home: PathBuf,
}

impl Agent {
    pub(crate) fn new(root: &Path, name: &str) -> Self {
        Self { home: root.join(name) }
    }

    pub(crate) fn cmd(&self) -> assert_cmd::Command {
        let mut c = assert_cmd::Command::new(BIN);
        c.arg("--home").arg(&self.home).env("LOG_LEVEL", "warn").timeout(DEADLINE);
        c
    }

    pub(crate) fn std_cmd(&self) -> Command {
        let mut c = Command::new(BIN);
        c.arg("--home").arg(&self.home).env("LOG_LEVEL", "warn").stdin(Stdio::null());
        c
    }

    /// Run and return stdout, asserting success.
    pub(crate) fn ok(&self, args: &[&str]) -> String {
        let out = self.cmd().args(args).output().unwrap();
        assert!(
            out.status.success(),
            "{args:?} failed ({:?}): {}",
            out.status.code(),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    /// Run with --json, return every line as JSON.
    pub(crate) fn json(&self, args: &[&str]) -> Vec<Value> {
        let mut all = vec!["--json"];
        all.extend_from_slice(args);
        self.ok(&all).lines().map(|l| serde_json::from_str(l).unwrap()).collect()
    }

    /// Run with --json whatever the exit status; every stdout line as JSON.
    pub(crate) fn json_any(&self, args: &[&str]) -> Vec<Value> {
        let out = self.cmd().arg("--json").args(args).output().unwrap();
        String::from_utf8(out.stdout)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    /// Run expecting failure; returns (exit code, stderr).
    pub(crate) fn fails(&self, args: &[&str]) -> (i32, String) {
        let out = self.cmd().args(args).output().unwrap();
        assert!(!out.status.success(), "{args:?} unexpectedly succeeded");
        (out.status.code().unwrap_or(-1), String::from_utf8_lossy(&out.stderr).into_owned())
    }

    pub(crate) fn setup(&self) -> String {
        let v = &self.json(&["setup"])[0];
        v["pk"].as_str().unwrap().to_owned()
    }

    pub(crate) fn spawn(&self, args: &[&str]) -> Bg {
        let mut c = self.std_cmd();
        c.arg("--json").args(args);
        Bg::spawn(c)
    }

    /// Create an invite on `relay` and return its string.
    pub(crate) fn invite(&self, relay: &str, label: &str) -> String {
        let v = &self.json(&["invite", "create", "--relay", relay, "--label", label])[0];
        v["invite"].as_str().unwrap().to_owned()
    }
}

/// Set up `host` and `guest` and pair them through `relay`. The host calls the
/// guest "guest", the guest calls the host "host". Returns (host pk, guest pk).
pub(crate) fn pair(relay: &Relay, host: &Agent, guest: &Agent) -> (String, String) {
    let hpk = host.setup();
    let gpk = guest.setup();
    let invite = host.invite(&relay.url, "guest");
    let v = &guest.json(&["invite", "accept", &invite, "--label", "host"])[0];
    assert_eq!(v["peer"], hpk.as_str());
    (hpk, gpk)
}

/// Write an executable shell script.
pub(crate) fn script(dir: &Path, name: &str, body: &str) -> String {
    use std::os::unix::fs::PermissionsExt;
    let path = dir.join(name);
    std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    path.display().to_string()
}

/// The repository's echo handler.
pub(crate) fn echo_handler() -> String {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/handlers/echo.sh").display().to_string()
}

/// Poll `cond` until true (a real process is doing the work).
pub(crate) fn poll_until(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + DEADLINE;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(25));
    }
}
