//! `scripts/install.sh` argument handling (the build itself is exercised by hand and
//! by CI's own cargo build; running cargo inside `cargo test` would fight for the lock).

use std::process::Command;

use super::repo_root;

fn install_sh(args: &[&str]) -> std::process::Output {
    Command::new(repo_root().join("scripts/install.sh"))
        .args(args)
        .output()
        .expect("run install.sh")
}

#[test]
fn help_explains_prefix_and_exits_zero() {
    let out = install_sh(&["--help"]);
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("--prefix") && text.contains("~/.local/bin"), "{text}");
}

#[test]
fn bad_arguments_are_usage_errors_that_build_nothing() {
    for args in [&["--bogus"][..], &["--prefix"][..]] {
        let out = install_sh(args);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        assert!(String::from_utf8_lossy(&out.stderr).starts_with("install.sh: "), "{args:?}");
        assert!(!String::from_utf8_lossy(&out.stderr).contains("building"), "{args:?}");
    }
}
