//! The Claude Code plugin's MCP server command (`.claude-plugin/plugin.json`): it
//! runs `agentroom mcp` from PATH when there is one and `npx -y agentroom@<version>
//! mcp` otherwise; the plugin's paths use the exact `${CLAUDE_PLUGIN_ROOT}` form, and
//! every package names Cargo.toml's version.

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, Stdio};

use serde_json::{Value, json};

use super::{files_with_suffix, read_repo_file, repo_root};

fn json_file(rel: &str) -> Value {
    serde_json::from_str(&read_repo_file(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

/// The plugin's MCP server command line, as Claude Code runs it.
fn plugin_mcp_command(path: &Path, home: &Path) -> Command {
    let server = &json_file(".claude-plugin/plugin.json")["mcpServers"]["agentroom"];
    let mut cmd = Command::new(server["command"].as_str().expect("command"));
    for arg in server["args"].as_array().expect("args") {
        cmd.arg(arg.as_str().expect("string arg"));
    }
    cmd.env("PATH", path).env("AGENTROOM_HOME", home);
    cmd
}

#[test]
fn plugin_mcp_server_runs_the_agentroom_on_path() {
    let tmp = tempfile::tempdir().unwrap();
    let bin = tmp.path().join("bin");
    std::fs::create_dir(&bin).unwrap();
    std::os::unix::fs::symlink(env!("CARGO_BIN_EXE_agentroom"), bin.join("agentroom")).unwrap();
    let path = std::env::join_paths([bin.as_path(), Path::new("/usr/bin"), Path::new("/bin")]);
    let mut child = plugin_mcp_command(Path::new(&path.unwrap()), &tmp.path().join("home"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let init = json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
        "protocolVersion": "2025-06-18", "capabilities": {},
        "clientInfo": {"name": "plugin-test", "version": "1"}}});
    let list = json!({"jsonrpc": "2.0", "id": 2, "method": "tools/list"});
    let initialized = json!({"jsonrpc": "2.0", "method": "notifications/initialized"});
    // Sends `before` (notifications) and `req`, returns the answer to `req`.
    let mut answer = |before: &[&Value], req: &Value| -> Value {
        for note in before {
            writeln!(stdin, "{note}").unwrap();
        }
        writeln!(stdin, "{req}").unwrap();
        loop {
            let mut line = String::new();
            assert!(stdout.read_line(&mut line).unwrap() > 0, "server closed stdout");
            let msg: Value = serde_json::from_str(&line).unwrap();
            if msg["id"] == req["id"] {
                return msg;
            }
        }
    };
    let init = answer(&[], &init);
    assert!(init["result"]["serverInfo"].is_object(), "{init}");
    let tools = answer(&[&initialized], &list);
    let names: Vec<&str> = tools["result"]["tools"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|t| t["name"].as_str())
        .collect();
    assert!(names.contains(&"send") && names.contains(&"next_message"), "{tools}");
    drop(stdin);
    assert!(child.wait().unwrap().success());
}

#[test]
fn plugin_mcp_server_falls_back_to_npx_at_this_version() {
    let tmp = tempfile::tempdir().unwrap();
    let bin = tmp.path().join("bin");
    std::fs::create_dir(&bin).unwrap();
    // A stand-in npx that records its arguments (no agentroom on this PATH).
    let record = tmp.path().join("npx-args");
    let npx = bin.join("npx");
    std::fs::write(&npx, format!("#!/bin/sh\necho \"$*\" > '{}'\n", record.display())).unwrap();
    std::fs::set_permissions(&npx, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let path = std::env::join_paths([bin.as_path(), Path::new("/usr/bin"), Path::new("/bin")]);
    let out = plugin_mcp_command(Path::new(&path.unwrap()), &tmp.path().join("home"))
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let args = std::fs::read_to_string(&record).unwrap();
    assert_eq!(args.trim(), format!("-y agentroom@{} mcp", env!("CARGO_PKG_VERSION")));
}

#[test]
fn plugin_paths_use_the_exact_plugin_root_form() {
    // Claude Code substitutes `${CLAUDE_PLUGIN_ROOT}` only; `${CLAUDE_PLUGIN_ROOT:-.}`
    // reaches the shell unexpanded-by-Claude and means "." outside a checkout.
    let mut files = files_with_suffix(&repo_root().join("skills"), ".md");
    files.extend(files_with_suffix(&repo_root().join("commands"), ".md"));
    files.push(repo_root().join(".claude-plugin/plugin.json"));
    for file in files {
        let text = std::fs::read_to_string(&file).unwrap();
        assert!(
            !text.contains("${CLAUDE_PLUGIN_ROOT:"),
            "{} uses a ${{CLAUDE_PLUGIN_ROOT:…}} form",
            file.display()
        );
    }
}

#[test]
fn every_package_names_the_cargo_version() {
    let version = env!("CARGO_PKG_VERSION");
    assert_eq!(json_file(".claude-plugin/plugin.json")["version"], version);
    let market = json_file(".claude-plugin/marketplace.json");
    assert_eq!(market["metadata"]["version"], version);
    assert_eq!(market["plugins"][0]["version"], version);
    let npm = json_file("npm/agentroom/package.json");
    assert_eq!(npm["version"], version);
    for (name, want) in npm["optionalDependencies"].as_object().unwrap() {
        assert_eq!(want, version, "{name}");
    }
    // The wheel takes it from Cargo.toml itself.
    assert!(read_repo_file("pyproject.toml").contains("dynamic = [\"version\"]"));
}
