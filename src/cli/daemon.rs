//! `agentroom daemon` (the one owner of a home, with its local API) and
//! `agentroom status`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::Args;
use serde_json::json;

use super::duration::parse_duration;
use super::{ExitStatus, Printer, home_of};
use crate::daemon::consumer::ServeOptions;
use crate::daemon::{Daemon, DaemonClient, DaemonOptions, HomeLock, consumer, paths};
use crate::handler::HandlerCommand;

// Options of `agentroom daemon`.
#[derive(Debug, Args)]
pub struct DaemonArgs {
    /// Also answer every message with this handler (as `serve --on-message`).
    #[arg(long, value_name = "CMD")]
    pub on_message: Option<String>,
    /// Handlers running at once (with --on-message).
    #[arg(long, value_name = "N", default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=64), requires = "on_message")]
    pub concurrency: u16,
    /// Kill the handler's whole process group after this long (with --on-message).
    #[arg(long, visible_alias = "handler-timeout", value_parser = parse_duration, default_value = "120s", value_name = "DURATION", requires = "on_message")]
    pub timeout: Duration,
    /// Let this variable of our environment through to the handler (repeatable;
    /// with --on-message). Handlers otherwise see only PATH, HOME, LANG, LC_*,
    /// TERM, TMPDIR, USER and AGENTROOM_*; HMAC_SECRET* and BORE_SECRET never.
    #[arg(long = "pass-env", value_name = "NAME", value_parser = super::serve::pass_env_name, requires = "on_message")]
    pub pass_env: Vec<String>,
    /// Delete history (and read messages) older than this, now and every second
    /// (e.g. 30d). Default: keep everything.
    #[arg(long, value_parser = parse_duration, value_name = "DURATION")]
    pub retain: Option<Duration>,
    /// Also serve the API on this loopback address (token in <home>/http-token).
    #[arg(long, value_name = "127.0.0.1:PORT")]
    pub http: Option<SocketAddr>,
    /// Run in the background; print its pid and socket once it answers.
    #[arg(long)]
    pub detach: bool,
}

/// Run the daemon in the foreground until SIGINT/SIGTERM (or detach it).
pub async fn run(
    home: Option<PathBuf>,
    args: DaemonArgs,
    printer: Printer,
) -> anyhow::Result<ExitStatus> {
    let home = home_of(home)?;
    if let Some(cmd) = &args.on_message {
        if cmd.trim().is_empty() {
            anyhow::bail!("--on-message needs a command");
        }
    }
    if args.detach {
        return detach(&home, printer).await;
    }
    let lock = HomeLock::try_acquire(&home)?;
    let (cancel, sig) = super::cancel_on_signals();
    let opts = DaemonOptions { http: args.http, retain: args.retain, server: None };
    let daemon = Daemon::start(&home, lock, &opts, cancel.clone()).await?;
    printer.event(
        "daemon",
        json!({
            "pid": std::process::id(),
            "socket": daemon.socket,
            "http": daemon.http.map(|a| a.to_string()),
            "home": home.dir(),
        }),
        || {
            Some(format!(
                "agentroom daemon (pid {}) on {}{}",
                std::process::id(),
                daemon.socket.display(),
                daemon.http.map(|a| format!(" and http://{a}")).unwrap_or_default()
            ))
        },
    );
    if let Some(command) = args.on_message {
        let mut handler = HandlerCommand::new(command, args.timeout);
        handler.pass_env = crate::handler::env::PassEnv::new(args.pass_env.clone())?;
        let opts = ServeOptions {
            handler,
            seed: None,
            max_turns: None,
            once: false,
            concurrency: usize::from(args.concurrency),
        };
        let dc = DaemonClient::connect(&home).await?.ok_or(crate::daemon::DaemonError::Stopped)?;
        let served = consumer::serve(dc, true, &home, &opts, &cancel, &mut |ev| {
            super::listen::print_event(printer, &ev);
        })
        .await;
        cancel.cancel();
        daemon.wait().await?;
        served?;
    } else {
        daemon.wait().await?;
    }
    Ok(super::exit_after(&sig))
}

/// Start `agentroom daemon` again without `--detach`, in its own session with
/// its output in `<home>/daemon.log`, and wait until its socket answers.
async fn detach(home: &crate::client::home::Home, printer: Printer) -> anyhow::Result<ExitStatus> {
    use std::os::unix::process::CommandExt;
    home.ensure()?;
    let exe = std::env::current_exe()?;
    let args: Vec<String> = std::env::args().skip(1).filter(|a| a != "--detach").collect();
    let log_path = home.dir().join("daemon.log");
    let log = std::fs::OpenOptions::new().create(true).append(true).open(&log_path)?;
    let mut cmd = std::process::Command::new(exe);
    cmd.args(&args)
        .arg("--home")
        .arg(home.dir())
        .stdin(std::process::Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log);
    // Its own process group: the terminal's Ctrl-C does not reach it.
    cmd.process_group(0);
    let mut child = cmd.spawn()?;
    let deadline = std::time::Instant::now() + crate::daemon::ATTACH_TIMEOUT;
    loop {
        if let Some(dc) = DaemonClient::connect(home).await? {
            let st = dc.status().await?;
            printer.event(
                "daemon",
                json!({"pid": st.pid, "socket": st.socket, "http": st.http, "log": log_path}),
                || Some(format!("agentroom daemon started (pid {}) on {}", st.pid, st.socket)),
            );
            return Ok(ExitStatus::Success);
        }
        if let Some(status) = child.try_wait()? {
            anyhow::bail!("the daemon exited ({status}); see {}", log_path.display());
        }
        if std::time::Instant::now() > deadline {
            anyhow::bail!("the daemon did not answer in time; see {}", log_path.display());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// `agentroom status`: the running daemon, or where it would listen.
pub async fn status(home: Option<PathBuf>, printer: Printer) -> anyhow::Result<ExitStatus> {
    let home = home_of(home)?;
    let socket = paths::socket_path(&home)?;
    let Some(dc) = DaemonClient::connect(&home).await? else {
        printer.event(
            "status",
            json!({"running": false, "socket": socket, "home": home.dir()}),
            || {
                Some(format!(
                    "no daemon running for {} (socket: {})",
                    home.dir().display(),
                    socket.display()
                ))
            },
        );
        return Ok(ExitStatus::Success);
    };
    let st = dc.status().await?;
    let value = serde_json::to_value(&st)?;
    let mut fields = json!({"running": true});
    if let (Some(f), Some(v)) = (fields.as_object_mut(), value.as_object()) {
        f.extend(v.clone());
    }
    printer.event("status", fields, || {
        let mut s = format!(
            "daemon pid {} ({})\n  socket:      {}\n  fingerprint: {}\n  inbox:       {} waiting, {} leased\n  outbox:      {} pending",
            st.pid, st.version, st.socket, st.fingerprint, st.inbox_waiting, st.inbox_leased, st.outbox_pending
        );
        if let Some(h) = &st.http {
            s.push_str(&format!("\n  http:        http://{h}"));
        }
        for r in &st.relays {
            s.push_str(&format!("\n  relay:       {} {}", r.url, if r.up { "up" } else { "down" }));
        }
        Some(s)
    });
    Ok(ExitStatus::Success)
}

/// How a one-shot command reaches the home.
#[derive(Debug)]
pub(crate) enum Via {
    /// Through the running daemon (no second relay connection).
    Daemon(DaemonClient),
    /// Directly, holding the home lock for the run (`None`: no home yet).
    Direct(Option<HomeLock>),
}

/// The daemon when one runs, else the home's lock for a direct run.
pub(crate) async fn one_shot(home: &crate::client::home::Home) -> anyhow::Result<Via> {
    if !home.identity_path().exists() {
        // Not set up: the direct path reports it (nothing to lock yet).
        return Ok(Via::Direct(None));
    }
    Ok(match crate::daemon::attach_or_own(home, crate::daemon::ATTACH_TIMEOUT).await? {
        crate::daemon::Attach::Daemon(dc) => Via::Daemon(dc),
        crate::daemon::Attach::Owner(lock) => Via::Direct(Some(lock)),
    })
}
