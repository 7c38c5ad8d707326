//! A room process with its NDJSON events, a guest home, the fake cloudflared
//! wrapper, and /proc checks.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::Value;

/// Generous: a loaded machine (five engineers, two cores) can be slow to start things.
pub(crate) const DEADLINE: Duration = Duration::from_secs(60);

pub(crate) fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_agentroom")
}

/// `agentroom --home <home> <args>`, waited for.
pub(crate) fn run(home: &Path, args: &[&str]) -> std::process::Output {
    Command::new(bin()).arg("--home").arg(home).args(args).output().unwrap()
}

/// Like [`run`], and it must succeed; returns stdout.
pub(crate) fn run_ok(home: &Path, args: &[&str]) -> String {
    let out = run(home, args);
    assert!(
        out.status.success(),
        "agentroom {args:?} failed ({}):\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// A `room open` (or `relay`) process whose stdout is NDJSON.
pub(crate) struct RoomProc {
    pub(crate) child: Child,
    events: mpsc::Receiver<Value>,
    pub(crate) seen: Vec<Value>,
    stderr_path: PathBuf,
}

impl RoomProc {
    /// Start `agentroom --home <home> --json <args>` with extra environment.
    pub(crate) fn start(home: &Path, args: &[&str], env: &[(&str, &str)]) -> Self {
        std::fs::create_dir_all(home).unwrap();
        let stderr_path = home.with_extension("stderr");
        let stderr = std::fs::File::create(&stderr_path).unwrap();
        let mut cmd = Command::new(bin());
        cmd.arg("--home").arg(home).arg("--json").args(args);
        cmd.env_remove("CLOUDFLARED_BIN").env("LOG_LEVEL", "info");
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child =
            cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(stderr).spawn().unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, events) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                let v: Value = serde_json::from_str(&line)
                    .unwrap_or_else(|e| panic!("stdout line is not JSON ({e}): {line}"));
                if tx.send(v).is_err() {
                    break;
                }
            }
        });
        Self { child, events, seen: Vec::new(), stderr_path }
    }

    pub(crate) fn pid(&self) -> i32 {
        i32::try_from(self.child.id()).unwrap()
    }

    pub(crate) fn stderr(&self) -> String {
        std::fs::read_to_string(&self.stderr_path).unwrap_or_default()
    }

    /// The next event named `name` (earlier ones are kept in `seen`).
    pub(crate) fn wait_event(&mut self, name: &str) -> Value {
        let deadline = Instant::now() + DEADLINE;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.events.recv_timeout(left) {
                Ok(v) => {
                    self.seen.push(v.clone());
                    if v["event"] == name {
                        return v;
                    }
                }
                Err(_) => {
                    panic!("no {name:?} event; seen: {:#?}\nstderr:\n{}", self.seen, self.stderr())
                }
            }
        }
    }

    pub(crate) fn signal(&self, sig: nix::sys::signal::Signal) {
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(self.pid()), sig).unwrap();
    }

    /// Wait for the exit code (128+n for signal n).
    pub(crate) fn wait_exit(&mut self) -> i32 {
        use std::os::unix::process::ExitStatusExt;
        let deadline = Instant::now() + DEADLINE;
        loop {
            if let Some(st) = self.child.try_wait().unwrap() {
                return st.code().unwrap_or_else(|| 128 + st.signal().unwrap_or(0));
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                panic!("room did not exit; stderr:\n{}", self.stderr());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for RoomProc {
    fn drop(&mut self) {
        // A failed test must not leave a room (and its tunnel group) behind.
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// The room's `room.json`.
pub(crate) fn state(home: &Path) -> Option<Value> {
    std::fs::read(home.join("room.json")).ok().map(|b| serde_json::from_slice(&b).unwrap())
}

/// A guest home: identity, `invite accept`, then one message to the host.
pub(crate) fn guest_accepts(guest: &Path, invite: &str) -> Value {
    run_ok(guest, &["setup"]);
    let out = run_ok(guest, &["--json", "invite", "accept", invite]);
    serde_json::from_str(out.lines().last().unwrap()).unwrap()
}

/// Send `text` from the guest to `host_pk` and wait for the handler's reply.
pub(crate) fn guest_round_trip(guest: &Path, host_pk: &str, text: &str) -> String {
    run_ok(guest, &["send", host_pk, text]);
    next_message(guest)
}

/// The text of the next message `listen --once` prints in `home`.
pub(crate) fn next_message(home: &Path) -> String {
    let out = run_ok(home, &["--json", "listen", "--once", "--timeout", "60s"]);
    let received = out
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .find(|v| v["event"] == "message")
        .unwrap_or_else(|| panic!("no reply received: {out}"));
    received["text"].as_str().unwrap().to_owned()
}

/// The stand-in cloudflared in the repository.
pub(crate) fn fake_cloudflared() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("cloudflared/fake-cloudflared")
}

/// A wrapper around the fake: the first run uses mode `first`, later runs `then`;
/// each run appends its PID (= its process group: the wrapper execs, and the
/// supervisor starts it as a group leader) to `<dir>/pids`.
pub(crate) fn fake_with_modes(dir: &Path, first: &str, then: &str) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    std::fs::create_dir_all(dir).unwrap();
    let pids = dir.join("pids");
    let script = format!(
        "#!/bin/sh\nif [ -s '{p}' ]; then FAKE_CLOUDFLARED_MODE={then}; else FAKE_CLOUDFLARED_MODE={first}; fi\n\
         export FAKE_CLOUDFLARED_MODE\necho $$ >> '{p}'\nexec '{fake}' \"$@\"\n",
        p = pids.display(),
        fake = fake_cloudflared().display()
    );
    let path = dir.join(format!("cloudflared-{first}-{then}"));
    std::fs::write(&path, script).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    path
}

/// Every PID the wrapper recorded.
pub(crate) fn recorded_pids(dir: &Path) -> Vec<i32> {
    std::fs::read_to_string(dir.join("pids"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.trim().parse().ok())
        .collect()
}

/// Fields of /proc/<pid>/stat after the command name: state, ppid, pgrp, session...
fn stat_fields(pid: i32) -> Option<Vec<String>> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &stat[stat.rfind(')')? + 1..];
    Some(rest.split_whitespace().map(str::to_owned).collect())
}

/// The session id of a live process.
pub(crate) fn session_of(pid: i32) -> Option<i32> {
    stat_fields(pid)?.get(3)?.parse().ok()
}

/// Live (non-zombie) processes in process group `pgid`.
pub(crate) fn live_group_members(pgid: i32) -> Vec<i32> {
    let mut found = Vec::new();
    let Ok(entries) = std::fs::read_dir("/proc") else { return found };
    for entry in entries.flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) else {
            continue;
        };
        let Some(f) = stat_fields(pid) else { continue };
        if f.len() > 2 && f[0] != "Z" && f[2].parse::<i32>().ok() == Some(pgid) {
            found.push(pid);
        }
    }
    found
}

/// The handler guard a process started (`agentroom __handler-guard`, its child).
pub(crate) fn handler_guard_of(parent: i32) -> Option<i32> {
    let entries = std::fs::read_dir("/proc").ok()?;
    entries.flatten().find_map(|entry| {
        let pid = entry.file_name().to_str()?.parse::<i32>().ok()?;
        let f = stat_fields(pid)?;
        if f.get(1)?.parse::<i32>().ok()? != parent || f[0] == "Z" {
            return None;
        }
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
        String::from_utf8_lossy(&cmdline).contains("__handler-guard").then_some(pid)
    })
}

/// Whether `pid` is alive (not a zombie).
pub(crate) fn alive(pid: i32) -> bool {
    stat_fields(pid).is_some_and(|f| f.first().is_some_and(|s| s != "Z"))
}

/// Polls until every group in `pgids` is empty; returns the survivors otherwise.
pub(crate) fn wait_groups_gone(pgids: &[i32]) -> Vec<i32> {
    let deadline = Instant::now() + DEADLINE;
    loop {
        let left: Vec<i32> = pgids.iter().flat_map(|g| live_group_members(*g)).collect();
        if left.is_empty() || Instant::now() > deadline {
            return left;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Polls `f` until it returns `Some`, with the generous deadline.
pub(crate) fn eventually<T>(what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + DEADLINE;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The host's public key (what the guest sends to).
pub(crate) fn public_key(home: &Path) -> String {
    let out = run_ok(home, &["--json", "whoami"]);
    let v: Value = serde_json::from_str(out.lines().last().unwrap()).unwrap();
    v["pk"].as_str().unwrap().to_owned()
}

/// The echo handler shipped in scripts/.
pub(crate) fn echo_handler() -> String {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/handlers/echo.sh").display().to_string()
}
