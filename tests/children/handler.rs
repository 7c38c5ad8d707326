//! `agentroom::handler::run` against real `sh` scripts.

use std::time::Duration;

use agentroom::handler::{self, HandlerCommand, HandlerOutcome, HandlerRequest, MAX_STDOUT_BYTES};

use crate::procfs::{read_pid_file, wait_group_gone};

fn cmd(command: &str) -> HandlerCommand {
    HandlerCommand::new(command, Duration::from_secs(30))
}

fn req(text: &str) -> HandlerRequest {
    HandlerRequest { text: text.to_owned(), env: vec![] }
}

#[tokio::test]
async fn stdout_becomes_the_trimmed_reply() {
    let out = handler::run(&cmd("tr a-z A-Z; echo"), req("hello there")).await.unwrap();
    assert_eq!(out, HandlerOutcome::Reply("HELLO THERE".into()));
}

#[tokio::test]
async fn exit_1_is_failed_with_stderr_tail() {
    let out = handler::run(&cmd("echo working; echo 'boom: bad input' >&2; exit 1"), req("x"))
        .await
        .unwrap();
    match out {
        HandlerOutcome::Failed { exit_code, signal, stderr_tail } => {
            assert_eq!(exit_code, Some(1));
            assert_eq!(signal, None);
            assert!(stderr_tail.contains("boom: bad input"), "{stderr_tail:?}");
        }
        other => panic!("expected Failed, got {other:?}"),
    }
}

#[tokio::test]
async fn killed_by_signal_reports_the_signal() {
    let out = handler::run(&cmd("kill -KILL $$"), req("x")).await.unwrap();
    assert_eq!(
        out,
        HandlerOutcome::Failed { exit_code: None, signal: Some(9), stderr_tail: String::new() }
    );
}

#[tokio::test]
async fn empty_or_blank_stdout_is_no_reply() {
    for script in ["cat >/dev/null", "printf '  \\n\\t\\n'", "true"] {
        let out = handler::run(&cmd(script), req("ignored")).await.unwrap();
        assert_eq!(out, HandlerOutcome::NoReply, "{script}");
    }
}

#[tokio::test]
async fn env_vars_reach_the_handler() {
    let request = HandlerRequest {
        text: "hi".into(),
        env: vec![
            ("AGENTROOM_FROM".into(), "bob".into()),
            ("AGENTROOM_PK".into(), "pk-b64u".into()),
            ("AGENTROOM_MSG_ID".into(), "msg-42".into()),
        ],
    };
    let out = handler::run(
        &cmd(r#"printf '%s|%s|%s' "$AGENTROOM_FROM" "$AGENTROOM_PK" "$AGENTROOM_MSG_ID""#),
        request,
    )
    .await
    .unwrap();
    assert_eq!(out, HandlerOutcome::Reply("bob|pk-b64u|msg-42".into()));
}

#[tokio::test]
async fn large_stdin_arrives_whole() {
    let text = "abcdefgh".repeat(512 * 1024); // 4 MiB, far over a pipe buffer
    let out = handler::run(&cmd("wc -c | tr -d ' '"), req(&text)).await.unwrap();
    assert_eq!(out, HandlerOutcome::Reply(text.len().to_string()));
}

#[tokio::test]
async fn stdin_not_read_neither_deadlocks_nor_fails() {
    let text = "z".repeat(4 * 1024 * 1024);
    let out = handler::run(&cmd("echo ignored-your-input"), req(&text)).await.unwrap();
    assert_eq!(out, HandlerOutcome::Reply("ignored-your-input".into()));
}

#[tokio::test]
async fn invalid_utf8_output_is_decoded_lossily() {
    let out = handler::run(&cmd(r"printf '\377ok\376'; printf '\377err' >&2; exit 3"), req(""))
        .await
        .unwrap();
    match out {
        HandlerOutcome::Failed { exit_code: Some(3), stderr_tail, .. } => {
            assert_eq!(stderr_tail, "\u{fffd}err")
        }
        other => panic!("unexpected {other:?}"),
    }
    let out = handler::run(&cmd(r"printf '\377ok'"), req("")).await.unwrap();
    assert_eq!(out, HandlerOutcome::Reply("\u{fffd}ok".into()));
}

#[tokio::test]
async fn stdout_is_capped() {
    let out = handler::run(&cmd("head -c 3000000 /dev/zero | tr '\\0' a"), req("")).await.unwrap();
    match out {
        HandlerOutcome::Reply(text) => assert_eq!(text.len(), MAX_STDOUT_BYTES),
        other => panic!("unexpected {other:?}"),
    }
}

#[tokio::test]
async fn stderr_tail_is_bounded_and_keeps_the_end() {
    let out = handler::run(
        &cmd("i=0; while [ $i -lt 2000 ]; do echo \"line $i\" >&2; i=$((i+1)); done; exit 2"),
        req(""),
    )
    .await
    .unwrap();
    match out {
        HandlerOutcome::Failed { exit_code: Some(2), stderr_tail, .. } => {
            assert!(stderr_tail.len() <= handler::STDERR_TAIL_BYTES);
            assert!(stderr_tail.ends_with("line 1999\n"), "{stderr_tail:?}");
            assert!(!stderr_tail.contains("line 0\n"));
        }
        other => panic!("unexpected {other:?}"),
    }
}

#[tokio::test]
async fn timeout_kills_the_group() {
    let dir = tempfile::tempdir().unwrap();
    let pid_file = dir.path().join("pgid");
    let script = format!("echo $$ > '{}'; echo started >&2; sleep 600", pid_file.display());
    // Generous: the script must get to `sleep` before the timeout, even on a loaded box.
    let command = HandlerCommand::new(script, Duration::from_secs(3));
    let out = handler::run(&command, req("")).await.unwrap();
    assert_eq!(out, HandlerOutcome::TimedOut { stderr_tail: "started\n".into() });
    let pgid = read_pid_file(&pid_file).await;
    assert_eq!(wait_group_gone(pgid).await, Vec::<i32>::new());
}

/// A grandchild that ignores SIGTERM and holds stdout open: the timeout must still
/// return, and SIGKILL must take the grandchild too.
#[tokio::test]
async fn timeout_kills_a_grandchild_that_ignores_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let pid_file = dir.path().join("pgid");
    let script = format!(
        "echo $$ > '{}'; (trap '' TERM; sleep 600; echo never) & trap '' TERM; sleep 600",
        pid_file.display()
    );
    let command = HandlerCommand::new(script, Duration::from_secs(3));
    let out = handler::run(&command, req("")).await.unwrap();
    assert!(matches!(out, HandlerOutcome::TimedOut { .. }), "{out:?}");
    let pgid = read_pid_file(&pid_file).await;
    assert_eq!(wait_group_gone(pgid).await, Vec::<i32>::new());
}

/// The leader answers and exits, but leaves a SIGTERM-proof grandchild holding
/// stdout: we still return the reply promptly (bounded drain) and nothing survives.
#[tokio::test]
async fn reply_returned_though_a_grandchild_holds_stdout() {
    let dir = tempfile::tempdir().unwrap();
    let pid_file = dir.path().join("pgid");
    let script =
        format!("echo $$ > '{}'; (trap '' TERM; sleep 600) & echo answer", pid_file.display());
    let out = handler::run(&cmd(&script), req("")).await.unwrap();
    assert_eq!(out, HandlerOutcome::Reply("answer".into()));
    let pgid = read_pid_file(&pid_file).await;
    assert_eq!(wait_group_gone(pgid).await, Vec::<i32>::new());
}

/// Dropping the `run` future (the caller gave up) kills the group.
#[tokio::test]
async fn cancelled_run_kills_the_group() {
    let dir = tempfile::tempdir().unwrap();
    let pid_file = dir.path().join("pgid");
    let script = format!("echo $$ > '{}'; sleep 600 & sleep 600", pid_file.display());
    let command = HandlerCommand::new(script, Duration::from_secs(600));
    // Boxed, so that `drop` really drops the future (a `pin!`ned one lives on).
    let mut run = Box::pin(handler::run(&command, req("")));
    let pgid = tokio::select! {
        _ = &mut run => panic!("handler should still be running"),
        pgid = read_pid_file(&pid_file) => pgid,
    };
    drop(run);
    assert_eq!(wait_group_gone(pgid).await, Vec::<i32>::new());
}

/// A plain `prog args` line runs without `sh`: the group's leader is the
/// program itself (through `sh` it would be the shell, which forks `cat`).
#[tokio::test]
async fn plain_command_runs_without_a_shell() {
    for (command, leader) in [("cat", "cat"), ("cat; :", "sh")] {
        let mut comm = None;
        let out = handler::run_reporting_group(&cmd(command), req("same reply"), |g| {
            // Blocked on stdin: the writer starts after this callback.
            comm = std::fs::read_to_string(format!("/proc/{}/comm", g.pgid)).ok();
        })
        .await
        .unwrap();
        assert_eq!(out, HandlerOutcome::Reply("same reply".into()), "{command}");
        assert_eq!(comm.as_deref().map(str::trim), Some(leader), "{command}");
    }
}

/// What stops a direct start leaves the outcome to `sh`, as before: a missing
/// program is the shell's `not found` and 127, a script without `#!` runs.
#[tokio::test]
async fn direct_start_failures_keep_the_shells_outcome() {
    let out = handler::run(&cmd("agentroom-no-such-program-here --flag"), req("x")).await.unwrap();
    match out {
        HandlerOutcome::Failed { exit_code, stderr_tail, .. } => {
            assert_eq!(exit_code, Some(127));
            assert!(stderr_tail.contains("not found"), "{stderr_tail:?}");
        }
        other => panic!("expected Failed, got {other:?}"),
    }
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("no-shebang");
    std::fs::write(&script, "read line; echo \"script got $line\"\n").unwrap();
    std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let command = script.to_str().unwrap();
    let out = handler::run(&cmd(command), req("hello\n")).await.unwrap();
    assert_eq!(out, HandlerOutcome::Reply("script got hello".into()));
}

/// Figures, not assertions:
/// `cargo test --test children -- --ignored --nocapture handler_latency`
#[tokio::test]
#[ignore = "prints figures; run by hand"]
#[allow(clippy::print_stderr)]
async fn handler_latency() {
    let runs = 200;
    let text = "x".repeat(1024);
    // `cat` starts directly; `exec cat` goes through `sh`, which then becomes cat.
    for command in ["cat", "exec cat"] {
        let mut times = Vec::with_capacity(runs);
        for _ in 0..runs {
            let start = std::time::Instant::now();
            let out = handler::run(&cmd(command), req(&text)).await.unwrap();
            times.push(start.elapsed());
            assert_eq!(out, HandlerOutcome::Reply(text.clone()));
        }
        times.sort();
        let mean = times.iter().sum::<Duration>() / u32::try_from(runs).unwrap();
        eprintln!(
            "handler `{command}`, 1 KiB in/out, {runs} runs: mean {mean:?}, p50 {:?}, p99 {:?}, max {:?}",
            times[runs / 2],
            times[runs * 99 / 100],
            times[runs - 1]
        );
    }
}
