//! A minimal MCP client: the real binary as a child, JSON-RPC lines on its
//! stdin/stdout, every stdout line kept so a test can check it is all JSON-RPC.

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::DEADLINE;

pub(crate) struct McpServer {
    child: Child,
    stdin: Option<ChildStdin>,
    lines: mpsc::Receiver<String>,
    seen: Vec<String>,
    next_id: u64,
}

impl McpServer {
    pub(crate) fn start(home: &Path) -> Self {
        let mut child = Command::new(env!("CARGO_BIN_EXE_agentroom"))
            .arg("mcp")
            .arg("--home")
            .arg(home)
            .env_remove("AGENTROOM_HOME")
            .env("LOG_LEVEL", "info")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
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
        let stdin = child.stdin.take();
        Self { child, stdin, lines, seen: Vec::new(), next_id: 1 }
    }

    fn write(&mut self, msg: &Value) {
        let stdin = self.stdin.as_mut().unwrap();
        writeln!(stdin, "{msg}").unwrap();
        stdin.flush().unwrap();
    }

    /// initialize + notifications/initialized; checks the instructions.
    pub(crate) fn handshake(&mut self) {
        let init = self.request(
            "initialize",
            json!({
                "protocolVersion": "2025-06-18",
                "capabilities": {},
                "clientInfo": {"name": "agentroom-tests", "version": "0"}
            }),
        );
        assert_eq!(init["serverInfo"]["name"], "agentroom");
        let instructions = init["instructions"].as_str().unwrap();
        assert!(instructions.contains("next_message"), "{instructions}");
        assert!(init["capabilities"]["tools"].is_object());
        self.write(&json!({"jsonrpc": "2.0", "method": "notifications/initialized"}));
    }

    /// One request; returns its `result` (panics on a JSON-RPC error).
    pub(crate) fn request(&mut self, method: &str, params: Value) -> Value {
        let id = self.next_id;
        self.next_id += 1;
        self.write(&json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params}));
        let end = Instant::now() + DEADLINE + Duration::from_secs(30);
        loop {
            let left = end.saturating_duration_since(Instant::now());
            let line = self
                .lines
                .recv_timeout(left)
                .unwrap_or_else(|e| panic!("no answer to {method} #{id}: {e}"));
            self.seen.push(line.clone());
            let v: Value = serde_json::from_str(&line).unwrap();
            if v["id"] == id {
                assert!(v.get("error").is_none(), "{method} failed: {v}");
                return v["result"].clone();
            }
        }
    }

    fn call(&mut self, tool: &str, args: Value) -> Value {
        self.request("tools/call", json!({"name": tool, "arguments": args}))
    }

    /// A successful tool call's structured result.
    pub(crate) fn tool_ok(&mut self, tool: &str, args: Value) -> Value {
        let r = self.call(tool, args.clone());
        assert_eq!(r["isError"], false, "{tool} {args}: {r}");
        // The text content carries the same JSON, for clients without structured output.
        let text: Value = serde_json::from_str(r["content"][0]["text"].as_str().unwrap()).unwrap();
        assert_eq!(text, r["structuredContent"]);
        r["structuredContent"].clone()
    }

    /// A failed tool call's message (`isError: true`, not a protocol error).
    pub(crate) fn tool_err(&mut self, tool: &str, args: Value) -> String {
        let r = self.call(tool, args.clone());
        assert_eq!(r["isError"], true, "{tool} {args} should fail: {r}");
        r["content"][0]["text"].as_str().unwrap().to_owned()
    }

    /// Call `tool` until `done` holds for its result.
    pub(crate) fn poll_tool(
        &mut self,
        tool: &str,
        args: Value,
        done: impl Fn(&Value) -> bool,
    ) -> Value {
        let end = Instant::now() + DEADLINE;
        loop {
            let r = self.tool_ok(tool, args.clone());
            if done(&r) {
                return r;
            }
            assert!(Instant::now() < end, "{tool} never reached the expected state: {r}");
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Every stdout line so far, parsed.
    pub(crate) fn seen(&self) -> Vec<Value> {
        self.seen.iter().map(|l| serde_json::from_str(l).unwrap()).collect()
    }

    /// Every line the server wrote to stdout so far is a JSON-RPC 2.0 message.
    pub(crate) fn assert_stdout_is_jsonrpc(&self) {
        assert!(!self.seen.is_empty());
        for line in &self.seen {
            let v: Value = serde_json::from_str(line)
                .unwrap_or_else(|e| panic!("stdout line is not JSON ({e}): {line}"));
            assert_eq!(v["jsonrpc"], "2.0", "{line}");
        }
    }

    /// Close stdin and wait for the exit code.
    pub(crate) fn close(mut self) -> Option<i32> {
        drop(self.stdin.take());
        self.wait()
    }

    /// Send SIGTERM (stdin stays open) and wait for the exit code.
    pub(crate) fn terminate(mut self) -> Option<i32> {
        let pid = nix::unistd::Pid::from_raw(i32::try_from(self.child.id()).unwrap());
        nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).unwrap();
        self.wait()
    }

    fn wait(&mut self) -> Option<i32> {
        let end = Instant::now() + DEADLINE;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status.code();
            }
            assert!(Instant::now() < end, "server did not exit");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for McpServer {
    fn drop(&mut self) {
        // SIGKILL: the crash the lease protects against.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
