//! Private files whatever the umask: the relay's database, its -wal/-shm and HMAC
//! key file are 0600 and the directory it creates 0700; the same for a home's state.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;

use crate::common::{BIN, Bg, poll_until};

fn mode(p: &Path) -> u32 {
    std::fs::metadata(p).unwrap_or_else(|e| panic!("{p:?}: {e}")).permissions().mode() & 0o777
}

/// `sh -c 'umask 000; exec agentroom ARGS'`.
fn under_umask_000(args: &[&str]) -> Command {
    let mut c = Command::new("sh");
    c.arg("-c").arg("umask 000; exec \"$0\" \"$@\"").arg(BIN).args(args);
    c.env("LOG_LEVEL", "warn").env("RATE_LIMIT_DISABLED", "1").env_remove("HMAC_SECRET");
    c
}

#[test]
fn relay_and_home_files_are_private_under_umask_000() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("new/relay");
    let db = dir.join("relay.db");
    let mut relay = Bg::spawn(under_umask_000(&[
        "--json",
        "relay",
        "--port",
        "0",
        "--db",
        db.to_str().unwrap(),
    ]));
    let url = relay.wait_event("listening")["url"].as_str().unwrap().to_owned();
    assert_eq!(mode(&tmp.path().join("new")), 0o700);
    assert_eq!(mode(&dir), 0o700);
    assert_eq!(mode(&db), 0o600);
    assert_eq!(mode(&dir.join("relay.db.hmac")), 0o600);
    assert_eq!(mode(&dir.join("relay.db-wal")), 0o600);
    let others: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| mode(p) != 0o600)
        .collect();
    assert!(others.is_empty(), "files not 0600: {others:?}");

    // A home set up, with an open invite, listening (state.db open: -wal and -shm).
    let home = tmp.path().join("home");
    let h = home.to_str().unwrap();
    for args in [&["setup"][..], &["invite", "create", "--relay", &url]] {
        let out = under_umask_000(&[&["--home", h, "--json"][..], args].concat()).output().unwrap();
        assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
    }
    let mut listen = Bg::spawn(under_umask_000(&["--home", h, "--json", "listen"]));
    listen.wait_event("connected");
    poll_until("state.db-wal", || home.join("state.db-wal").exists());
    assert_eq!(mode(&home), 0o700);
    for f in std::fs::read_dir(&home).unwrap().map(|e| e.unwrap().path()) {
        assert_eq!(mode(&f), 0o600, "{f:?}");
    }
    drop(relay);
}
