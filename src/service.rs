//! `agentroom service`: run a home's daemon at login, as a systemd user unit
//! (Linux) or a launchd agent (macOS). The unit runs `agentroom daemon --home
//! DIR` with this executable's absolute path; one unit per home, named after a
//! hash of the home's path so several homes can each have one.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use sha2::Digest;

/// Errors from installing or removing a service unit.
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    /// A path cannot be written into a unit (not UTF-8, or a control character).
    #[error("{0:?} cannot be used in a service unit (not UTF-8, or has a control character)")]
    BadPath(PathBuf),
    /// The home has no identity yet, so the daemon could not start.
    #[error("no identity in {0}: run `agentroom --home {0} setup` first")]
    NoIdentity(PathBuf),
    /// Neither `XDG_CONFIG_HOME` nor `HOME` is set.
    #[error("cannot find your home directory (HOME is not set)")]
    NoUserHome,
    /// Reading, writing or removing the unit failed.
    #[error("{path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// A `systemctl --user` step failed (its own message went to stderr).
    #[error("`systemctl --user {0}` failed")]
    Systemctl(&'static str),
}

/// The service manager.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Platform {
    /// systemd user units (Linux).
    Systemd,
    /// launchd agents (macOS).
    Launchd,
}

impl Platform {
    /// The one this system uses.
    pub fn native() -> Self {
        if cfg!(target_os = "macos") { Platform::Launchd } else { Platform::Systemd }
    }

    /// Lowercase name.
    pub fn name(self) -> &'static str {
        match self {
            Platform::Systemd => "systemd",
            Platform::Launchd => "launchd",
        }
    }
}

/// What a unit runs: this executable's daemon for one home.
#[derive(Debug, Clone)]
pub struct ServiceSpec {
    exe: String,
    home: String,
    platform: Platform,
}

impl ServiceSpec {
    /// A unit for `home` running `exe` (both made absolute).
    pub fn new(exe: &Path, home: &Path, platform: Platform) -> Result<Self, ServiceError> {
        Ok(Self { exe: unit_path_str(exe)?, home: unit_path_str(home)?, platform })
    }

    /// The home directory (absolute).
    pub fn home(&self) -> &Path {
        Path::new(&self.home)
    }

    /// `agentroom-<8 hex>`: the unit name, stable for one home path.
    pub fn name(&self) -> String {
        let digest = sha2::Sha256::digest(self.home.as_bytes());
        format!("agentroom-{}", hex::encode(&digest[..4]))
    }

    /// The launchd label (reverse DNS, like every launchd agent).
    pub fn label(&self) -> String {
        format!("io.github.agentroom.{}", self.name())
    }

    /// The manager.
    pub fn platform(&self) -> Platform {
        self.platform
    }

    /// Where the unit file goes: `$XDG_CONFIG_HOME/systemd/user/NAME.service`
    /// (default `~/.config`), or `~/Library/LaunchAgents/LABEL.plist`.
    pub fn unit_path(&self) -> Result<PathBuf, ServiceError> {
        let home = || std::env::var_os("HOME").filter(|h| !h.is_empty()).map(PathBuf::from);
        Ok(match self.platform {
            Platform::Systemd => std::env::var_os("XDG_CONFIG_HOME")
                .filter(|v| !v.is_empty())
                .map(PathBuf::from)
                .or_else(|| home().map(|h| h.join(".config")))
                .ok_or(ServiceError::NoUserHome)?
                .join("systemd/user")
                .join(format!("{}.service", self.name())),
            Platform::Launchd => home()
                .ok_or(ServiceError::NoUserHome)?
                .join("Library/LaunchAgents")
                .join(format!("{}.plist", self.label())),
        })
    }

    /// The unit file's text.
    pub fn render(&self) -> String {
        match self.platform {
            Platform::Systemd => self.systemd_unit(),
            Platform::Launchd => self.launchd_plist(),
        }
    }

    fn systemd_unit(&self) -> String {
        let args = [self.exe.as_str(), "daemon", "--home", self.home.as_str()];
        let exec: Vec<String> = args.iter().map(|a| systemd_quote(a)).collect();
        format!(
            "# Written by `agentroom service install`; remove with `agentroom service uninstall`.\n\
             [Unit]\n\
             Description=agentroom daemon for {desc}\n\
             Documentation=https://github.com/agentroom/agentroom\n\
             \n\
             [Service]\n\
             Type=simple\n\
             ExecStart={exec}\n\
             Restart=on-failure\n\
             RestartSec=5s\n\
             UMask=0077\n\
             NoNewPrivileges=yes\n\
             \n\
             [Install]\n\
             WantedBy=default.target\n",
            desc = self.home.replace('%', "%%"),
            exec = exec.join(" "),
        )
    }

    fn launchd_plist(&self) -> String {
        let args = [self.exe.as_str(), "daemon", "--home", self.home.as_str()];
        let args: String =
            args.iter().map(|a| format!("\t\t<string>{}</string>\n", xml_escape(a))).collect();
        let log = xml_escape(&Path::new(&self.home).join("daemon.log").display().to_string());
        format!(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n\
             <!DOCTYPE plist PUBLIC \"-//Apple//DTD PLIST 1.0//EN\" \"http://www.apple.com/DTDs/PropertyList-1.0.dtd\">\n\
             <plist version=\"1.0\">\n\
             <dict>\n\
             \t<key>Label</key>\n\
             \t<string>{label}</string>\n\
             \t<key>ProgramArguments</key>\n\
             \t<array>\n\
             {args}\
             \t</array>\n\
             \t<key>RunAtLoad</key>\n\
             \t<true/>\n\
             \t<key>KeepAlive</key>\n\
             \t<dict>\n\
             \t\t<key>SuccessfulExit</key>\n\
             \t\t<false/>\n\
             \t</dict>\n\
             \t<key>ProcessType</key>\n\
             \t<string>Background</string>\n\
             \t<key>Umask</key>\n\
             \t<integer>63</integer>\n\
             \t<key>StandardErrorPath</key>\n\
             \t<string>{log}</string>\n\
             </dict>\n\
             </plist>\n",
            label = xml_escape(&self.label()),
        )
    }
}

/// An absolute, UTF-8 path without control characters.
fn unit_path_str(p: &Path) -> Result<String, ServiceError> {
    let bad = || ServiceError::BadPath(p.to_path_buf());
    let abs = std::path::absolute(p).map_err(|_| bad())?;
    let s = abs.to_str().ok_or_else(bad)?;
    if s.chars().any(char::is_control) {
        return Err(bad());
    }
    Ok(s.to_owned())
}

/// One `ExecStart=` word: double-quoted, with `\` and `"` escaped, and `%`
/// (specifiers) and `$` (variable expansion) doubled, per systemd.service(5).
fn systemd_quote(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '%' => out.push_str("%%"),
            '$' => out.push_str("$$"),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn xml_escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

/// What `install` did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Installed {
    /// Written and started by the service manager.
    Started,
    /// Written; the user must run these commands to start it.
    RunThese(Vec<String>),
}

/// Write the unit (replacing an older one for this home) and start it when the
/// service manager can be reached.
pub fn install(spec: &ServiceSpec) -> Result<(PathBuf, Installed), ServiceError> {
    let identity = spec.home().join("identity.json");
    if !identity.exists() {
        return Err(ServiceError::NoIdentity(spec.home().to_path_buf()));
    }
    let path = spec.unit_path()?;
    let io = |source| ServiceError::Io { path: path.clone(), source };
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(io)?;
    }
    // Not secret (paths only), but written atomically so a manager never reads half a unit.
    crate::fsutil::write_private_atomic(&path, spec.render().as_bytes()).map_err(io)?;
    let name = spec.name();
    let outcome = match spec.platform() {
        Platform::Systemd if systemctl_usable() => {
            systemctl(&["daemon-reload"], "daemon-reload")?;
            systemctl(&["enable", "--now", &name], "enable --now")?;
            Installed::Started
        }
        Platform::Systemd => Installed::RunThese(vec![
            "systemctl --user daemon-reload".into(),
            format!("systemctl --user enable --now {name}"),
        ]),
        Platform::Launchd => Installed::RunThese(vec![format!(
            "launchctl bootstrap gui/$(id -u) {}",
            shell_quote(&path.display().to_string())
        )]),
    };
    Ok((path, outcome))
}

/// Stop and remove the unit. Returns the path and whether a unit was there,
/// plus commands the user still has to run.
pub fn uninstall(spec: &ServiceSpec) -> Result<(PathBuf, bool, Vec<String>), ServiceError> {
    let path = spec.unit_path()?;
    let name = spec.name();
    let mut todo = Vec::new();
    let usable = spec.platform() == Platform::Systemd && systemctl_usable();
    if usable {
        // Not loaded (never enabled) is fine: the file still goes.
        let _ = run_systemctl(&["disable", "--now", &name]);
    }
    let existed = match std::fs::remove_file(&path) {
        Ok(()) => true,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => false,
        Err(source) => return Err(ServiceError::Io { path, source }),
    };
    match spec.platform() {
        Platform::Systemd if usable => systemctl(&["daemon-reload"], "daemon-reload")?,
        Platform::Systemd if existed => {
            todo.push(format!("systemctl --user disable --now {name}"));
            todo.push("systemctl --user daemon-reload".into());
        }
        Platform::Launchd if existed => {
            todo.push(format!("launchctl bootout gui/$(id -u)/{}", spec.label()));
        }
        _ => {}
    }
    Ok((path, existed, todo))
}

/// Whether the unit file exists, whether it is the one `install` would write
/// now (false after the executable moved), and what systemd says of it (`None`
/// when systemd cannot be asked).
pub fn status(spec: &ServiceSpec) -> Result<(PathBuf, bool, bool, Option<String>), ServiceError> {
    let path = spec.unit_path()?;
    let current = match std::fs::read_to_string(&path) {
        Ok(text) => Some(text == spec.render()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(source) => return Err(ServiceError::Io { path, source }),
    };
    let active = (spec.platform() == Platform::Systemd && systemctl_usable())
        .then(|| {
            let out = Command::new("systemctl")
                .args(["--user", "is-active", &spec.name()])
                .stdin(Stdio::null())
                .stderr(Stdio::null())
                .output()
                .ok()?;
            Some(String::from_utf8_lossy(&out.stdout).trim().to_owned())
        })
        .flatten();
    Ok((path, current.is_some(), current.unwrap_or(false), active))
}

/// Whether a systemd user manager answers (not in containers, CI or SSH
/// sessions without lingering).
fn systemctl_usable() -> bool {
    run_systemctl(&["show-environment"]).is_ok_and(|ok| ok)
}

fn run_systemctl(args: &[&str]) -> std::io::Result<bool> {
    Command::new("systemctl")
        .arg("--user")
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map(|s| s.success())
}

fn systemctl(args: &[&str], what: &'static str) -> Result<(), ServiceError> {
    // Its own error message goes to our stderr.
    let ok = Command::new("systemctl")
        .arg("--user")
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if ok { Ok(()) } else { Err(ServiceError::Systemctl(what)) }
}

/// Single-quote for a shell command shown to the user.
fn shell_quote(s: &str) -> String {
    if s.chars().all(|c| c.is_ascii_alphanumeric() || "/._-+:@".contains(c)) {
        s.to_owned()
    } else {
        format!("'{}'", s.replace('\'', "'\\''"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exec_start_quotes_specifiers_variables_and_quotes() {
        assert_eq!(systemd_quote(r#"/a b/100%$HOME"x\"#), r#""/a b/100%%$$HOME\"x\\""#);
        assert_eq!(xml_escape("a<&>\"b"), "a&lt;&amp;&gt;&quot;b");
        assert_eq!(shell_quote("/a/b.plist"), "/a/b.plist");
        assert_eq!(shell_quote("/it's here"), r"'/it'\''s here'");
    }

    #[test]
    fn name_is_stable_per_home_and_paths_must_be_clean() {
        let a =
            ServiceSpec::new(Path::new("/bin/x"), Path::new("/h/a"), Platform::Systemd).unwrap();
        let b =
            ServiceSpec::new(Path::new("/bin/y"), Path::new("/h/a"), Platform::Launchd).unwrap();
        let c =
            ServiceSpec::new(Path::new("/bin/x"), Path::new("/h/c"), Platform::Systemd).unwrap();
        assert_eq!(a.name(), b.name());
        assert_ne!(a.name(), c.name());
        assert_eq!(a.name().len(), "agentroom-".len() + 8);
        let bad = ServiceSpec::new(Path::new("/bin/x"), Path::new("/h/a\nb"), Platform::Systemd);
        assert!(matches!(bad, Err(ServiceError::BadPath(_))));
    }
}
