//! `scripts/install.sh`: argument handling, and the download path against a local HTTP
//! server (the build itself is exercised by hand and by CI's own cargo build; running
//! cargo inside `cargo test` would fight for the lock).

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

/// `python3 -m http.server` on loopback serving `dir`; killed on drop.
struct LocalServer {
    child: std::process::Child,
    url: String,
}

impl LocalServer {
    fn serve(dir: &std::path::Path) -> Self {
        use std::io::BufRead;
        let mut child = Command::new("python3")
            .args(["-u", "-m", "http.server", "--bind", "127.0.0.1", "0"])
            .current_dir(dir)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("python3 -m http.server");
        // "Serving HTTP on 127.0.0.1 port 40123 (http://127.0.0.1:40123/) ..."
        let mut line = String::new();
        let stdout = child.stdout.take().expect("piped stdout");
        std::io::BufReader::new(stdout).read_line(&mut line).expect("http.server banner");
        let port = line
            .split(" port ")
            .nth(1)
            .and_then(|r| r.split(' ').next())
            .unwrap_or_else(|| panic!("no port in the http.server banner: {line:?}"));
        Self { child, url: format!("http://127.0.0.1:{port}") }
    }
}

impl Drop for LocalServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A release archive as the release workflow makes it: `agentroom` at the top,
/// here a script that prints `version_line`.
fn release_archive(dir: &std::path::Path, name: &str, version_line: &str) -> String {
    use sha2::Digest;
    let stage = dir.join("stage");
    std::fs::create_dir_all(&stage).expect("stage dir");
    let bin = stage.join("agentroom");
    std::fs::write(&bin, format!("#!/bin/sh\necho '{version_line}'\n")).expect("stand-in binary");
    std::fs::set_permissions(&bin, std::os::unix::fs::PermissionsExt::from_mode(0o755))
        .expect("chmod the stand-in");
    let archive = dir.join(name);
    let st = Command::new("tar")
        .arg("-czf")
        .arg(&archive)
        .arg("-C")
        .arg(&stage)
        .arg("agentroom")
        .status()
        .expect("run tar");
    assert!(st.success());
    hex::encode(sha2::Sha256::digest(std::fs::read(&archive).expect("read the archive")))
}

fn this_target() -> &'static str {
    match (std::env::consts::OS, std::env::consts::ARCH) {
        ("linux", "x86_64") => "x86_64-unknown-linux-gnu",
        ("linux", "aarch64") => "aarch64-unknown-linux-gnu",
        ("macos", "x86_64") => "x86_64-apple-darwin",
        ("macos", "aarch64") => "aarch64-apple-darwin",
        other => panic!("no release target for {other:?}"),
    }
}

/// install.sh with a PATH that has no cargo, so a fallback to building shows up as
/// "cargo not found" instead of a build.
fn install_sh_from(
    server: &str,
    table: &std::path::Path,
    prefix: &std::path::Path,
) -> std::process::Output {
    Command::new(repo_root().join("scripts/install.sh"))
        .arg("--prefix")
        .arg(prefix)
        .env("PATH", "/usr/local/bin:/usr/bin:/bin")
        .env("AGENTROOM_RELEASE_URL", server)
        .env("AGENTROOM_RELEASE_SHA256", table)
        .output()
        .expect("run install.sh")
}

#[test]
fn download_checks_the_sha256_table_and_refuses_a_tampered_archive() {
    let tmp = tempfile::tempdir().unwrap();
    let served = tmp.path().join("release");
    std::fs::create_dir_all(&served).unwrap();
    let asset = format!("agentroom-v{}-{}.tar.gz", env!("CARGO_PKG_VERSION"), this_target());
    let sha = release_archive(&served, &asset, "agentroom from the release");
    let table = tmp.path().join("release-sha256.txt");
    std::fs::write(&table, format!("# comment\n{sha}  {asset}\n")).unwrap();
    let server = LocalServer::serve(&served);

    // The listed archive: downloaded, checked, installed; no cargo needed.
    let good = tmp.path().join("good");
    let out = install_sh_from(&server.url, &table, &good);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let installed = Command::new(good.join("bin/agentroom")).output().unwrap();
    assert_eq!(String::from_utf8_lossy(&installed.stdout).trim(), "agentroom from the release");

    // The same name with other bytes: refused, nothing installed, no build attempted.
    release_archive(&served, &asset, "tampered");
    let bad = tmp.path().join("bad");
    let out = install_sh_from(&server.url, &table, &bad);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("refusing it (nothing installed)"), "{stderr}");
    assert!(!stderr.contains("building"), "{stderr}");
    assert!(!bad.join("bin/agentroom").exists());

    // Not in the table (not released): it builds instead, which needs cargo.
    std::fs::write(&table, "# nothing released\n").unwrap();
    let out = install_sh_from(&server.url, &table, &bad);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("building from source instead"), "{stderr}");
    assert!(stderr.contains("cargo not found"), "{stderr}");
    assert!(!bad.join("bin/agentroom").exists());
}
