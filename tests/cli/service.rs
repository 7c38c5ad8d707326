//! `agentroom service`: the systemd unit verifies with `systemd-analyze`, the
//! launchd plist parses with the keys launchd needs, and install/status/
//! uninstall write and remove the unit where systemd looks for it.

use std::path::Path;
use std::process::Command;

use crate::common::{Agent, BIN};

/// An agent whose service commands see only `root` as the user's home and no
/// user manager (so a test can never enable a unit on the machine running it).
fn isolated(agent: &Agent, root: &Path) -> assert_cmd::Command {
    let runtime = root.join("runtime");
    std::fs::create_dir_all(&runtime).unwrap();
    std::fs::set_permissions(&runtime, std::os::unix::fs::PermissionsExt::from_mode(0o700))
        .unwrap();
    let mut c = agent.cmd();
    c.env("HOME", root)
        .env("XDG_CONFIG_HOME", root.join("config"))
        .env("XDG_RUNTIME_DIR", &runtime)
        .env_remove("DBUS_SESSION_BUS_ADDRESS");
    c
}

fn json_of(out: &std::process::Output) -> serde_json::Value {
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn systemd_unit_verifies_with_systemd_analyze() {
    let tmp = tempfile::tempdir().unwrap();
    // A home path with a space and a systemd specifier, which must be escaped.
    let agent = Agent::new(tmp.path(), "my home 100%");
    let out = agent.cmd().args(["service", "install", "--print", "--platform", "systemd"]).output();
    let out = out.unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let unit = String::from_utf8(out.stdout).unwrap();
    let exe = std::fs::canonicalize(BIN).unwrap();
    assert!(
        unit.contains(&format!(
            "ExecStart=\"{}\" \"daemon\" \"--home\" \"{}\"",
            exe.display(),
            agent.home.display().to_string().replace('%', "%%")
        )),
        "{unit}"
    );
    let path = tmp.path().join("agentroom-test.service");
    std::fs::write(&path, &unit).unwrap();
    let runtime = tmp.path().join("runtime");
    std::fs::create_dir(&runtime).unwrap();
    std::fs::set_permissions(&runtime, std::os::unix::fs::PermissionsExt::from_mode(0o700))
        .unwrap();
    let verify = Command::new("systemd-analyze")
        .args(["--user", "verify"])
        .arg(&path)
        .env("XDG_RUNTIME_DIR", &runtime)
        .output()
        .unwrap_or_else(|e| {
            panic!("systemd-analyze is needed for this test (Debian: apt-get install systemd): {e}")
        });
    let stderr = String::from_utf8_lossy(&verify.stderr);
    // It reports unit problems on stderr and may still exit 0.
    assert!(verify.status.success() && stderr.trim().is_empty(), "systemd-analyze: {stderr}");
}

#[test]
fn launchd_plist_has_the_keys_launchd_needs() {
    let tmp = tempfile::tempdir().unwrap();
    let agent = Agent::new(tmp.path(), "a&b <home>");
    let out = agent.cmd().args(["service", "install", "--print", "--platform", "launchd"]).output();
    let out = out.unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    if let Ok(plutil) = which("plutil") {
        let path = tmp.path().join("agent.plist");
        std::fs::write(&path, &out.stdout).unwrap();
        let st = Command::new(plutil).arg("-lint").arg(&path).status().unwrap();
        assert!(st.success(), "plutil -lint failed");
    }
    let v: plist::Value = plist::from_bytes(&out.stdout).expect("a valid XML plist");
    let d = v.as_dictionary().expect("a dict");
    let label = d.get("Label").and_then(plist::Value::as_string).unwrap();
    assert!(label.starts_with("io.github.agentroom.agentroom-"), "{label}");
    let args: Vec<&str> = d
        .get("ProgramArguments")
        .and_then(plist::Value::as_array)
        .unwrap()
        .iter()
        .map(|a| a.as_string().unwrap())
        .collect();
    let exe = std::fs::canonicalize(BIN).unwrap();
    let home = agent.home.display().to_string();
    assert_eq!(args, [exe.to_str().unwrap(), "daemon", "--home", home.as_str()]);
    assert_eq!(d.get("RunAtLoad").and_then(plist::Value::as_boolean), Some(true));
    let keep = d.get("KeepAlive").and_then(plist::Value::as_dictionary).unwrap();
    assert_eq!(keep.get("SuccessfulExit").and_then(plist::Value::as_boolean), Some(false));
}

#[test]
fn install_status_uninstall_without_a_user_manager() {
    let tmp = tempfile::tempdir().unwrap();
    let agent = Agent::new(tmp.path(), "home");
    let (code, err) = {
        let out = isolated(&agent, tmp.path()).args(["service", "install"]).output().unwrap();
        (out.status.code(), String::from_utf8_lossy(&out.stderr).into_owned())
    };
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("no identity in") && err.contains("setup` first"), "{err}");
    agent.setup();

    let out = isolated(&agent, tmp.path())
        .args(["--json", "service", "install", "--platform", "systemd"])
        .output()
        .unwrap();
    let v = json_of(&out);
    let name = v["name"].as_str().unwrap().to_owned();
    let path = tmp.path().join("config/systemd/user").join(format!("{name}.service"));
    assert_eq!(v["path"], path.display().to_string());
    assert_eq!(v["started"], false, "no user manager here: {v}");
    assert_eq!(v["run"][1], format!("systemctl --user enable --now {name}"));
    let unit = std::fs::read_to_string(&path).unwrap();
    assert!(unit.contains("ExecStart=") && unit.contains("\"daemon\""), "{unit}");

    let v = json_of(
        &isolated(&agent, tmp.path()).args(["--json", "service", "status"]).output().unwrap(),
    );
    assert_eq!(
        (&v["installed"], &v["current"], &v["active"]),
        (&true.into(), &true.into(), &serde_json::Value::Null)
    );

    let v = json_of(
        &isolated(&agent, tmp.path()).args(["--json", "service", "uninstall"]).output().unwrap(),
    );
    assert_eq!(v["existed"], true);
    assert!(!path.exists());
    let v = json_of(
        &isolated(&agent, tmp.path()).args(["--json", "service", "status"]).output().unwrap(),
    );
    assert_eq!(v["installed"], false);
}

fn which(cmd: &str) -> Result<std::path::PathBuf, ()> {
    std::env::var_os("PATH")
        .into_iter()
        .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .map(|d| d.join(cmd))
        .find(|p| p.is_file())
        .ok_or(())
}
