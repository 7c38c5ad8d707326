//! `agentroom ui`: open the local web view of this home's daemon.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;

use anyhow::Context;
use clap::Args;
use serde_json::json;

use super::{ExitStatus, Printer, home_of};
use crate::daemon::DaemonClient;
use crate::ui::LoginCode;

// Options of `agentroom ui`.
#[derive(Debug, Args)]
pub struct UiArgs {
    /// Loopback port for the daemon's HTTP listener when this command starts
    /// the daemon (default: a free port). A running daemon keeps its own.
    #[arg(long, value_name = "PORT")]
    pub port: Option<u16>,
    /// Print the URL but do not open a browser.
    #[arg(long)]
    pub no_open: bool,
    /// Print only the URL (for scripts); implies --no-open.
    #[arg(long)]
    pub print_url: bool,
}

/// Make sure the daemon serves HTTP, mint a one-time login code, print (and
/// open) the URL carrying it.
pub async fn run(
    home: Option<PathBuf>,
    args: UiArgs,
    printer: Printer,
) -> anyhow::Result<ExitStatus> {
    let home = home_of(home)?;
    if !home.identity_path().exists() {
        let missing = crate::client::identity::IdentityError::Missing(home.dir().to_path_buf());
        return Err(crate::client::ClientError::from(missing).into());
    }
    let dc = match DaemonClient::connect(&home).await? {
        Some(dc) => dc,
        None => start_daemon(&home, args.port).await?,
    };
    let status = dc.status().await?;
    let http = status
        .http
        .as_deref()
        .and_then(|h| h.parse::<SocketAddr>().ok())
        .filter(|a| a.port() != 0)
        .with_context(|| {
            format!(
                "the daemon of {} (pid {}) serves no loopback HTTP: stop it and run `agentroom ui` again (it starts the daemon with --http), or start it with `agentroom daemon --http 127.0.0.1:PORT`",
                home.dir().display(),
                status.pid
            )
        })?;
    if let Some(p) = args.port.filter(|p| *p != http.port()) {
        printer.note(&format!("the running daemon serves HTTP on port {}, not {p}", http.port()));
    }
    let code: LoginCode = dc.post("/v1/ui/login-code", &json!({})).await?;
    // The code rides in the fragment: browsers never send it to a server.
    let url = format!("http://{http}/ui/#code={}", code.code);
    if args.print_url {
        printer.event("ui", json!({ "url": url }), || Some(url.clone()));
        return Ok(ExitStatus::Success);
    }
    printer.event("ui", json!({ "url": url }), || {
        Some(format!("agentroom web view (the link works once, for 2 minutes):\n  {url}"))
    });
    if !args.no_open {
        if let Err(e) = open_browser(&url) {
            printer.note(&format!("could not open a browser ({e}): open the link yourself"));
        }
    }
    Ok(ExitStatus::Success)
}

/// `agentroom daemon --http 127.0.0.1:PORT --detach` for this home.
async fn start_daemon(
    home: &crate::client::home::Home,
    port: Option<u16>,
) -> anyhow::Result<DaemonClient> {
    let port = match port {
        Some(p) => p,
        // Ask the kernel for a free port; the daemon binds it a moment later.
        None => std::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?.local_addr()?.port(),
    };
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let exe = std::env::current_exe()?;
    let out = tokio::process::Command::new(exe)
        .arg("--home")
        .arg(home.dir())
        .args(["daemon", "--detach", "--http", &addr.to_string()])
        .stdin(std::process::Stdio::null())
        .output()
        .await?;
    if !out.status.success() {
        // Its stderr is one `agentroom: error: …` line already: pass it on as is.
        let err = String::from_utf8_lossy(&out.stderr);
        let why = err.trim().trim_start_matches("agentroom: error: ");
        anyhow::bail!("could not start the daemon: {why}");
    }
    DaemonClient::connect(home).await?.context("the daemon started but does not answer")
}

/// The system's opener (`xdg-open`, or `open` on macOS), not waited for.
fn open_browser(url: &str) -> std::io::Result<()> {
    let opener = if cfg!(target_os = "macos") { "open" } else { "xdg-open" };
    let mut child = std::process::Command::new(opener)
        .arg(url)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()?;
    // Reap it in the background so it leaves no zombie.
    std::thread::spawn(move || child.wait());
    Ok(())
}
