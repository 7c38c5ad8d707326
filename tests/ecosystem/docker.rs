//! The container health checks (Dockerfile `HEALTHCHECK`, compose `healthcheck`) run
//! with bash against a real TCP server: healthy on 200, unhealthy on 503 or no server.
//! No Docker engine is needed; the same bash line is what the engine would run.

use std::io::{Read, Write};
use std::net::TcpListener;
use std::process::Command;
use std::thread;

use super::read_repo_file;

/// The bash script of the Dockerfile's `HEALTHCHECK CMD ["bash", "-c", SCRIPT]`.
fn dockerfile_check_script() -> String {
    let text = read_repo_file("Dockerfile");
    let start = text.find("HEALTHCHECK").expect("Dockerfile has a HEALTHCHECK");
    let json_start = start + text[start..].find("CMD [").expect("exec-form CMD") + 4;
    let json_end = json_start + text[json_start..].find("]\n").expect("end of CMD") + 1;
    let argv: Vec<String> =
        serde_json::from_str(&text[json_start..json_end]).expect("CMD is a JSON array");
    assert_eq!(argv[..2], ["bash", "-c"]);
    argv[2].clone()
}

/// The bash script of compose.yaml's relay healthcheck (a folded `>-` scalar).
fn compose_check_script() -> String {
    let text = read_repo_file("compose.yaml");
    let start = text.find("- >-\n").expect("healthcheck script as a folded scalar") + 5;
    let lines: Vec<&str> =
        text[start..].lines().take_while(|l| l.starts_with("          ")).map(str::trim).collect();
    lines.join(" ")
}

/// Serves one HTTP response with `status`, then closes. Returns the port.
fn one_response_server(status: &'static str) -> (u16, thread::JoinHandle<String>) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let handle = thread::spawn(move || {
        let (mut stream, _) = listener.accept().expect("accept");
        // Read the whole request head (bash may write it in pieces): closing with
        // unread bytes would reset the connection before the client reads.
        let mut buf = Vec::new();
        let mut chunk = [0u8; 256];
        while !buf.ends_with(b"\r\n\r\n") {
            let n = stream.read(&mut chunk).expect("read request");
            if n == 0 {
                break;
            }
            buf.extend_from_slice(&chunk[..n]);
        }
        let body = r#"{"status":"ok"}"#;
        let _ = write!(stream, "HTTP/1.1 {status}\r\nContent-Length: {}\r\n\r\n{body}", body.len());
        String::from_utf8_lossy(&buf).into_owned()
    });
    (port, handle)
}

fn run_check(script: &str, port: u16) -> bool {
    Command::new("bash")
        .arg("-c")
        .arg(script)
        .env("PORT", port.to_string())
        .status()
        .expect("run bash")
        .success()
}

#[test]
fn dockerfile_healthcheck_passes_on_200_and_fails_otherwise() {
    let script = dockerfile_check_script();
    let (port, server) = one_response_server("200 OK");
    assert!(run_check(&script, port), "200 must be healthy");
    assert!(server.join().expect("server").starts_with("GET /health HTTP/1.0\r\n"));

    let (port, server) = one_response_server("503 Service Unavailable");
    assert!(!run_check(&script, port), "503 must be unhealthy");
    server.join().expect("server");

    let closed = TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("a").port();
    assert!(!run_check(&script, closed), "no listener must be unhealthy");
}

#[test]
fn compose_healthcheck_matches_the_dockerfile_one() {
    let script = compose_check_script();
    assert!(script.contains("/dev/tcp/127.0.0.1/8787"), "{script}");
    let (port, server) = one_response_server("200 OK");
    assert!(run_check(&script.replace("/8787", &format!("/{port}")), port), "{script}");
    server.join().expect("server");
    let (port, server) = one_response_server("503 Service Unavailable");
    assert!(!run_check(&script.replace("/8787", &format!("/{port}")), port));
    server.join().expect("server");
}
