//! The bundled handler scripts, run as agentroom runs them: text on stdin, reply on
//! stdout. The OpenAI-compatible one talks to a real HTTP server on 127.0.0.1:0.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::process::{Command, Output, Stdio};
use std::thread;

use super::repo_root;

/// Runs a handler with `stdin`, extra `env`, and `PATH` replaced when given.
fn run_handler(script: &str, stdin: &str, env: &[(&str, &str)], path: Option<&str>) -> Output {
    let mut cmd = Command::new(repo_root().join("scripts/handlers").join(script));
    cmd.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped());
    cmd.env_remove("OPENAI_API_KEY").env_remove("OPENAI_BASE_URL").env_remove("CLAUDE_BIN");
    // The test servers are on loopback: never route them through a proxy.
    for var in ["http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"]
    {
        cmd.env_remove(var);
    }
    cmd.env("NO_PROXY", "127.0.0.1,localhost").env("no_proxy", "127.0.0.1,localhost");
    for (k, v) in env {
        cmd.env(k, v);
    }
    if let Some(path) = path {
        cmd.env("PATH", path);
    }
    let mut child = cmd.spawn().expect("spawn handler");
    // A handler may exit without reading stdin (e.g. claude missing): a broken pipe
    // here is its choice, not a test failure.
    let _ = child.stdin.take().expect("stdin").write_all(stdin.as_bytes());
    child.wait_with_output().expect("handler output")
}

#[test]
fn echo_handler_prefixes_the_message() {
    let out = run_handler("echo.sh", "hello there\n", &[], None);
    assert!(out.status.success());
    assert_eq!(String::from_utf8_lossy(&out.stdout), "echo: hello there\n");
}

#[test]
fn claude_handler_fails_clearly_without_claude() {
    let empty = tempfile::tempdir().expect("tempdir");
    let path = format!("{}:/usr/bin:/bin", empty.path().display());
    let out = run_handler("claude.sh", "hi", &[("CLAUDE_BIN", "no-such-claude-bin")], Some(&path));
    assert_eq!(out.status.code(), Some(127));
    assert!(out.stdout.is_empty(), "no reply may be printed");
    assert!(String::from_utf8_lossy(&out.stderr).contains("not found on PATH"));
}

#[test]
fn claude_handler_passes_the_message_on_stdin_with_no_tools() {
    // A stand-in `claude` that records its argv and stdin (the real one needs a login).
    let dir = tempfile::tempdir().expect("tempdir");
    let fake = dir.path().join("claude");
    std::fs::write(
        &fake,
        "#!/bin/sh\nprintf 'argc=%s\\n' \"$#\"\nfor a in \"$@\"; do printf 'arg=[%s]\\n' \"$a\"; done\n\
         printf 'stdin=[%s]\\n' \"$(cat)\"\n",
    )
    .expect("write fake claude");
    std::fs::set_permissions(&fake, std::os::unix::fs::PermissionsExt::from_mode(0o755))
        .expect("chmod");
    let path = format!("{}:/usr/bin:/bin", dir.path().display());
    let out = run_handler(
        "claude.sh",
        "what is 2+2? $(rm -rf ~)",
        &[("AGENTROOM_PEER_LABEL", "bob")],
        Some(&path),
    );
    assert!(out.status.success(), "stderr: {}", String::from_utf8_lossy(&out.stderr));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("arg=[-p]"), "{stdout}");
    assert!(stdout.contains("arg=[--tools]\narg=[]"), "tools must default to none: {stdout}");
    assert!(stdout.contains("The sender is: bob"), "{stdout}");
    // The message travels on stdin, verbatim and unexpanded, never as an argument.
    assert!(stdout.contains("stdin=[what is 2+2? $(rm -rf ~)]"), "{stdout}");
    assert!(!stdout.contains("arg=[what is"), "{stdout}");
}

#[test]
fn claude_handler_prints_nothing_for_a_blank_message() {
    let out = run_handler("claude.sh", "  \n", &[("CLAUDE_BIN", "true")], None);
    assert!(out.status.success());
    assert!(out.stdout.is_empty());
}

/// One-request HTTP server: answers `status` and `body`, returns the request seen.
fn serve_once(status: &'static str, body: &'static str) -> (String, thread::JoinHandle<String>) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    let handle = thread::spawn(move || {
        let (stream, _) = listener.accept().expect("accept");
        let mut reader = BufReader::new(stream);
        let mut head = String::new();
        let mut content_length = 0usize;
        loop {
            let mut line = String::new();
            reader.read_line(&mut line).expect("read header");
            if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                content_length = v.trim().parse().expect("length");
            }
            head.push_str(&line);
            if line == "\r\n" || line.is_empty() {
                break;
            }
        }
        let mut body_in = vec![0; content_length];
        reader.read_exact(&mut body_in).expect("read body");
        let response = format!(
            "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\
             Connection: close\r\n\r\n{body}",
            body.len()
        );
        reader.get_mut().write_all(response.as_bytes()).expect("write response");
        head + &String::from_utf8_lossy(&body_in)
    });
    (url, handle)
}

#[test]
fn openai_handler_posts_a_chat_completion_and_prints_the_reply() {
    let (url, server) =
        serve_once("200 OK", r#"{"choices":[{"message":{"role":"assistant","content":" 4 "}}]}"#);
    let base = format!("{url}/v1/");
    let env = [
        ("OPENAI_BASE_URL", base.as_str()),
        ("OPENAI_API_KEY", "sk-test-123"),
        ("OPENAI_MODEL", "tiny-model"),
    ];
    let out = run_handler("openai.sh", "what is \"2+2\"?", &env, None);
    let request = server.join().expect("server");
    assert!(out.status.success(), "stderr: {}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "4\n");
    assert!(request.starts_with("POST /v1/chat/completions "), "{request}");
    assert!(request.contains("Authorization: Bearer sk-test-123\r\n"), "{request}");
    let json = &request[request.find("\r\n\r\n").expect("body") + 4..];
    let doc: serde_json::Value = serde_json::from_str(json).expect("JSON body");
    assert_eq!(doc["model"], "tiny-model");
    assert_eq!(doc["messages"][1]["role"], "user");
    assert_eq!(doc["messages"][1]["content"], "what is \"2+2\"?");
}

#[test]
fn openai_handler_reports_api_errors_without_the_key() {
    let (url, server) = serve_once("401 Unauthorized", r#"{"error":{"message":"bad key"}}"#);
    let env = [("OPENAI_BASE_URL", url.as_str()), ("OPENAI_API_KEY", "sk-secret-456")];
    let out = run_handler("openai.sh", "hi", &env, None);
    server.join().expect("server");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(out.stdout.is_empty(), "no reply on failure");
    assert!(stderr.contains("HTTP 401") && stderr.contains("bad key"), "{stderr}");
    assert!(!stderr.contains("sk-secret-456"), "the key leaked: {stderr}");
}
