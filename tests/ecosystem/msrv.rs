//! The stated minimum Rust version is true (issue 12 item 12): `rust-version` in
//! Cargo.toml is at least every locked dependency's own `rust-version`, README
//! states the same version, and every `cargo install` in the docs uses `--locked`.

use super::{files_with_suffix, read_repo_file, repo_root};

fn parse(v: &str) -> (u32, u32) {
    let mut it = v.split('.').map(|p| p.parse::<u32>().unwrap_or(0));
    (it.next().unwrap_or(0), it.next().unwrap_or(0))
}

/// `rust-version` of our own package.
fn ours() -> String {
    let toml = read_repo_file("Cargo.toml");
    let line = toml
        .lines()
        .find_map(|l| l.strip_prefix("rust-version = \""))
        .unwrap_or_else(|| panic!("Cargo.toml has no rust-version"));
    line.trim_end_matches('"').to_owned()
}

#[test]
fn rust_version_covers_every_locked_dependency() {
    let out = std::process::Command::new(env!("CARGO"))
        .args(["metadata", "--locked", "--format-version", "1"])
        .current_dir(repo_root())
        .output()
        .unwrap_or_else(|e| panic!("cargo metadata: {e}"));
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let meta: serde_json::Value =
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("cargo metadata: {e}"));
    let stated = ours();
    let needed = meta["packages"]
        .as_array()
        .unwrap_or_else(|| panic!("no packages"))
        .iter()
        .filter(|p| p["name"] != "agentroom")
        .filter_map(|p| Some((parse(p["rust_version"].as_str()?), p["name"].to_string())))
        .max()
        .unwrap_or_else(|| panic!("no dependency states a rust-version"));
    assert!(
        parse(&stated) >= needed.0,
        "Cargo.toml says rust-version {stated}, but {} needs {:?}",
        needed.1,
        needed.0
    );
}

#[test]
fn readme_states_it_and_installs_locked() {
    let stated = ours();
    let readme = read_repo_file("README.md");
    assert!(readme.contains(&format!("Rust {stated}+")), "README must say `Rust {stated}+`");
    let mut docs = vec![repo_root().join("README.md")];
    docs.extend(files_with_suffix(&repo_root().join("fuzz"), ".md"));
    for path in docs {
        let text = std::fs::read_to_string(&path).unwrap_or_default();
        for line in text.lines().filter(|l| l.contains("cargo install ")) {
            assert!(line.contains("--locked"), "{}: {line:?} lacks --locked", path.display());
        }
    }
}
