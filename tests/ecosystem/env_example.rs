//! `.env.example` lists every environment variable the code reads.
//!
//! The scan looks for the three ways `src/` names a variable: a string constant in
//! `src/env.rs` (`pub const X: &str = "NAME";`), a clap attribute `env = "NAME"`, and
//! a literal `var("NAME")` / `var_os("NAME")`. Variables the operating system owns
//! (`PATH`, `HOME`, ...) are not agentroom settings and are skipped.

use std::collections::BTreeSet;

use super::{files_with_suffix, read_repo_file, repo_root};

/// Set by the OS or the shell, never configured through `.env`.
const SYSTEM_VARS: &[&str] =
    &["PATH", "HOME", "USER", "LOGNAME", "SHELL", "TMPDIR", "TERM", "PWD", "XDG_CONFIG_HOME"];

fn is_env_name(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_uppercase())
        && chars.all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_')
}

/// Names in string literals that follow `marker` (e.g. `var("`), up to the closing quote.
fn literals_after<'a>(text: &'a str, marker: &str) -> Vec<&'a str> {
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(i) = rest.find(marker) {
        let after = &rest[i + marker.len()..];
        if let Some(end) = after.find('"') {
            let name = &after[..end];
            if is_env_name(name) {
                out.push(name);
            }
        }
        rest = after;
    }
    out
}

/// Plain identifiers passed as the argument after `marker` (e.g. `var(REGEN_ENV)`).
fn idents_after<'a>(text: &'a str, marker: &str) -> Vec<&'a str> {
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(i) = rest.find(marker) {
        let after = &rest[i + marker.len()..];
        let end = after.find(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).unwrap_or(0);
        if end > 0 && after[end..].starts_with(')') {
            out.push(&after[..end]);
        }
        rest = after;
    }
    out
}

/// Every variable name read by the Rust sources in `src/`.
fn names_read_by_src() -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for file in files_with_suffix(&repo_root().join("src"), ".rs") {
        let text = std::fs::read_to_string(&file).expect("source file is UTF-8");
        let is_env_rs = file.ends_with("src/env.rs");
        let mut found: Vec<&str> = Vec::new();
        for marker in ["var(\"", "var_os(\"", "env = \"", "env=\""] {
            found.extend(literals_after(&text, marker));
        }
        if is_env_rs {
            found.extend(literals_after(&text, ": &str = \""));
        }
        // `const REGEN_ENV: &str = "NAME"; … var(REGEN_ENV)` in the same file.
        for marker in ["var(", "var_os("] {
            for ident in idents_after(&text, marker) {
                found.extend(literals_after(&text, &format!("const {ident}: &str = \"")));
            }
        }
        names.extend(found.into_iter().filter(|n| !SYSTEM_VARS.contains(n)).map(String::from));
    }
    names
}

/// Names documented in `.env.example`, as `NAME=` or commented `# NAME=`.
fn names_in_env_example(text: &str) -> BTreeSet<String> {
    text.lines()
        .filter_map(|line| {
            let line = line.trim_start().trim_start_matches('#').trim_start();
            let (name, _) = line.split_once('=')?;
            is_env_name(name).then(|| name.to_string())
        })
        .collect()
}

#[test]
fn env_example_lists_every_variable_src_reads() {
    let read = names_read_by_src();
    // The scan must see the variables we know exist, or it is scanning nothing.
    for known in ["HMAC_SECRET", "PORT", "BIND", "LOG_LEVEL", "AGENTROOM_HOME"] {
        assert!(read.contains(known), "scan of src/ missed {known}: {read:?}");
    }
    let documented = names_in_env_example(&read_repo_file(".env.example"));
    let missing: Vec<_> = read.difference(&documented).collect();
    assert!(missing.is_empty(), ".env.example lacks variables that src/ reads: {missing:?}");
}

#[test]
fn every_env_example_entry_has_a_meaning_line_above_it() {
    let text = read_repo_file(".env.example");
    let lines: Vec<&str> = text.lines().collect();
    for (i, line) in lines.iter().enumerate() {
        let body = line.trim_start_matches('#').trim_start();
        let Some((name, _)) = body.split_once('=') else { continue };
        if !is_env_name(name) {
            continue;
        }
        let above = i.checked_sub(1).map(|j| lines[j]).unwrap_or("");
        let above_body = above.trim_start_matches('#').trim();
        // A meaning line, or the entry of a group that shares one (OPENAI_*).
        let above_is_comment = above.starts_with('#') && !above_body.is_empty();
        assert!(above_is_comment, "{name} in .env.example has no meaning line");
    }
}

#[test]
fn scanner_finds_each_form_and_skips_non_names() {
    let src =
        r#"std::env::var("ALPHA"); var_os("BETA"); #[arg(env = "GAMMA")] var("lower") var("PATH")"#;
    let mut got = Vec::new();
    for m in ["var(\"", "var_os(\"", "env = \""] {
        got.extend(literals_after(src, m));
    }
    got.sort_unstable();
    assert_eq!(got, ["ALPHA", "BETA", "GAMMA", "PATH"]);
    let consts = "const REGEN: &str = \"DELTA\"; std::env::var_os(REGEN); var(crate::env::X)";
    assert_eq!(idents_after(consts, "var_os("), ["REGEN"]);
    assert!(idents_after(consts, "var(").is_empty(), "paths are not plain identifiers");
    let doc = "# A meaning\n# ALPHA=1\nBETA=\n# not a var = x\n";
    let names: Vec<_> = names_in_env_example(doc).into_iter().collect();
    assert_eq!(names, ["ALPHA", "BETA"]);
}
