//! Every `agentroom …` command written in the skill (`skills/agentroom/SKILL.md`) and
//! the slash commands (`commands/*.md`) parses with the real clap definition, so an
//! agent following them never meets "unrecognized subcommand".
//!
//! Commands are taken from fenced code blocks and inline code spans: each place where
//! `agentroom` starts a command (line start, after `$(`, `|`, `&&`, `;`, `nohup`,
//! `exec`) up to the first shell operator or redirection.

use clap::Parser;

use super::{files_with_suffix, read_repo_file, repo_root};

/// Subcommands the docs may use (the CLI surface agreed for issue 7).
const KNOWN_COMMANDS: &[&str] = &[
    "setup", "whoami", "room", "invite", "peers", "send", "listen", "serve", "mcp", "relay",
    "version",
];

/// One command found in a document.
#[derive(Debug)]
struct CliLine {
    file: String,
    text: String,
    argv: Vec<String>,
}

/// Code fragments of a Markdown document: lines of fenced blocks and inline spans.
fn code_fragments(markdown: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut in_fence = false;
    for line in markdown.lines() {
        if line.trim_start().starts_with("```") {
            in_fence = !in_fence;
            continue;
        }
        if in_fence {
            out.push(line.trim().trim_start_matches("$ ").to_string());
            continue;
        }
        let mut parts = line.split('`');
        parts.next();
        // Odd-numbered pieces between backticks are inline code.
        while let Some(code) = parts.next() {
            out.push(code.to_string());
            parts.next();
        }
    }
    out
}

fn is_operator(token: &str) -> bool {
    matches!(token, "|" | "||" | "&&" | ";" | "&" | ")")
        || token.starts_with('>')
        || token.starts_with('<')
        || token.starts_with("2>")
        || token.starts_with("1>")
        || token.starts_with("&>")
}

/// The argv of the command starting at `rest` (which begins with `agentroom`).
fn command_argv(rest: &str) -> Option<Vec<String>> {
    // Surrounding syntax (`"$(agentroom whoami)"`) can leave quotes unbalanced: cut at
    // each `)` from the right until the text splits.
    let mut candidate = rest;
    let words = loop {
        match shell_words::split(candidate) {
            Ok(words) => break words,
            Err(_) => candidate = &candidate[..candidate.rfind(')')?],
        }
    };
    let mut argv = Vec::new();
    for word in words {
        if is_operator(&word) {
            break;
        }
        if let Some(stripped) = word.strip_suffix(')') {
            argv.push(stripped.to_string());
            break;
        }
        argv.push(word);
    }
    Some(argv)
}

/// Where `agentroom` starts a command in a fragment.
fn command_starts(fragment: &str) -> Vec<usize> {
    const BEFORE: &[&str] = &["$(", "| ", "&& ", "; ", "nohup ", "exec ", "`"];
    let mut out = Vec::new();
    for (i, _) in fragment.match_indices("agentroom ") {
        let head = &fragment[..i];
        let starts_command = head.trim().is_empty()
            || BEFORE.iter().any(|b| head.ends_with(b))
            // `NAME=value agentroom …`
            || head.split_whitespace().all(|w| w.contains('='));
        if starts_command {
            out.push(i);
        }
    }
    out
}

/// Every `agentroom` command in the skill and the slash commands.
fn documented_commands() -> Vec<CliLine> {
    let mut files = vec![repo_root().join("skills/agentroom/SKILL.md")];
    files.extend(files_with_suffix(&repo_root().join("commands"), ".md"));
    let mut out = Vec::new();
    for path in files {
        let rel = path.strip_prefix(repo_root()).expect("under the repo").display().to_string();
        let text = read_repo_file(&rel);
        for fragment in code_fragments(&text) {
            for start in command_starts(&fragment) {
                let rest = &fragment[start..];
                let argv = command_argv(rest)
                    .unwrap_or_else(|| panic!("{rel}: cannot shell-split `{rest}`"));
                out.push(CliLine { file: rel.clone(), text: rest.to_string(), argv });
            }
        }
    }
    out
}

/// The first word after the global options (`--home DIR` takes a value).
fn subcommand(argv: &[String]) -> &str {
    let mut words = argv.iter().skip(1);
    while let Some(word) = words.next() {
        match word.as_str() {
            "--home" => {
                words.next();
            }
            w if w.starts_with('-') => {}
            w => return w,
        }
    }
    ""
}

#[test]
fn docs_use_only_known_subcommands() {
    let lines = documented_commands();
    assert!(lines.len() >= 20, "expected the skill to show many commands, found {}", lines.len());
    let skill = "skills/agentroom/SKILL.md";
    assert!(
        lines.iter().filter(|l| l.file == skill).count() >= 15,
        "{skill} shows too few commands"
    );
    for path in files_with_suffix(&repo_root().join("commands"), ".md") {
        let rel = path.strip_prefix(repo_root()).expect("under the repo").display().to_string();
        assert!(lines.iter().any(|l| l.file == rel), "{rel} shows no agentroom command");
    }
    for line in &lines {
        let sub = subcommand(&line.argv);
        assert!(
            KNOWN_COMMANDS.contains(&sub),
            "{}: `{}` uses unknown subcommand {sub:?}",
            line.file,
            line.text
        );
    }
}

#[test]
fn every_documented_command_parses_with_the_real_cli() {
    let mut failures = Vec::new();
    for line in documented_commands() {
        if let Err(e) = agentroom::cli::Cli::try_parse_from(&line.argv) {
            use clap::error::ErrorKind;
            if !matches!(e.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion) {
                failures.push(format!("{}: `{}`\n    {}", line.file, line.text, e.kind()));
            }
        }
    }
    assert!(failures.is_empty(), "commands that do not parse:\n{}", failures.join("\n"));
}

#[test]
fn extraction_handles_shell_syntax() {
    let md = "Run `agentroom send \"$PEER\" 'hi there'` now.\n\
              ```sh\n\
              nohup agentroom listen --json >> \"$INBOX\" 2>&1 &\n\
              ME=\"$(agentroom whoami --json)\"\n\
              LOG_LEVEL=debug agentroom relay --port 8787 | tee log\n\
              # agentroom in a comment is not a command\n\
              ```\n";
    let mut got = Vec::new();
    for fragment in code_fragments(md) {
        for start in command_starts(&fragment) {
            got.push(command_argv(&fragment[start..]).expect("splits"));
        }
    }
    let want: Vec<Vec<&str>> = vec![
        vec!["agentroom", "send", "$PEER", "hi there"],
        vec!["agentroom", "listen", "--json"],
        vec!["agentroom", "whoami", "--json"],
        vec!["agentroom", "relay", "--port", "8787"],
    ];
    assert_eq!(got, want);
}
