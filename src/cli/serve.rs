//! `agentroom serve --on-message CMD`.

use std::path::PathBuf;
use std::time::Duration;

use clap::Args;
use serde_json::json;

use super::duration::parse_duration;
use super::{ExitStatus, Printer, home_of};
use crate::client::relay_url::RelayUrl;
use crate::daemon::DaemonOptions;
use crate::daemon::consumer::ServeOptions;
use crate::handler::HandlerCommand;
use crate::handler::env::PassEnv;

// Options of `agentroom serve`.
#[derive(Debug, Args)]
#[command(after_help = "Examples:
  agentroom serve --on-message ./scripts/handlers/echo.sh --json
  agentroom serve --on-message 'claude -p \"$(cat)\"' --seed 'hi!' --to alice --max-turns 4
  agentroom serve --on-message ./scripts/handlers/openai.sh --pass-env OPENAI_API_KEY")]
pub struct ServeArgs {
    /// Handler, run with `sh -c` per message: text on stdin, reply = trimmed stdout
    /// (exit 0, non-empty). Env: AGENTROOM_FROM (sender key), AGENTROOM_PK (our key),
    /// AGENTROOM_PEER_PK, AGENTROOM_PEER_LABEL, AGENTROOM_SELF_PK, AGENTROOM_MSG_ID.
    #[arg(long, value_name = "CMD")]
    pub on_message: String,
    #[command(flatten)]
    pub handler: HandlerArgs,
    /// Send this first (needs --to): opens a conversation between two bots. It is turn 1.
    #[arg(long, value_name = "TEXT", requires = "to", allow_hyphen_values = true)]
    pub seed: Option<String>,
    /// Peer for --seed.
    #[arg(long, value_name = "PEER", requires = "seed", allow_hyphen_values = true)]
    pub to: Option<String>,
    /// Stop after the first message is handled.
    #[arg(long)]
    pub once: bool,
    /// Relay to use (TypeScript spelling): every peer's relay is dialled here, and
    /// `--invite` publishes on it [default: the one given to `setup --relay`].
    #[arg(long, value_name = "URL")]
    pub server: Option<String>,
    /// Publish a single-use invite on the live connection first and print it
    /// (`invite` event with `url`).
    #[arg(long)]
    pub invite: bool,
    /// Delete history (and read messages) older than this, now and every second
    /// while running (e.g. 30d). Default: keep everything.
    #[arg(long, value_parser = parse_duration, value_name = "DURATION")]
    pub retain: Option<Duration>,
}

// Handler options shared by `serve` and `room open`.
#[derive(Debug, Args)]
pub struct HandlerArgs {
    /// Stop after this many turns (a turn is a message we send: each reply, and
    /// the seed); 0 = unlimited.
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub max_turns: u64,
    /// Handlers running at once (replies may then go out of order).
    #[arg(long, value_name = "N", default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=64))]
    pub concurrency: u16,
    /// Kill the handler's whole process group after this long; 0 = no timeout.
    #[arg(long, visible_alias = "handler-timeout", value_parser = parse_duration, default_value = "120s", value_name = "DURATION")]
    pub timeout: Duration,
    /// Let this variable of our environment through to the handler (repeatable).
    /// Handlers otherwise see only PATH, HOME, LANG, LC_*, TERM, TMPDIR, USER and
    /// AGENTROOM_*; HMAC_SECRET* and BORE_SECRET never.
    #[arg(long = "pass-env", value_name = "NAME", value_parser = pass_env_name)]
    pub pass_env: Vec<String>,
}

impl HandlerArgs {
    /// The handler for `command`, checking the `--pass-env` names.
    pub fn command(&self, command: String) -> anyhow::Result<HandlerCommand> {
        if command.trim().is_empty() {
            anyhow::bail!("--on-message needs a command");
        }
        let mut cmd = HandlerCommand::new(command, self.timeout);
        cmd.pass_env = PassEnv::new(self.pass_env.clone())?;
        Ok(cmd)
    }

    /// `--max-turns`, with 0 meaning no limit.
    pub fn max_turns(&self) -> Option<u64> {
        (self.max_turns > 0).then_some(self.max_turns)
    }
}

/// A `--pass-env` name, checked when parsing (a refused name is a usage error).
pub(crate) fn pass_env_name(name: &str) -> Result<String, String> {
    PassEnv::new(vec![name.to_owned()]).map_err(|e| e.to_string())?;
    Ok(name.to_owned())
}

/// Run `serve` until Ctrl-C, `--max-turns` or `--once`.
pub async fn run(
    home: Option<PathBuf>,
    args: ServeArgs,
    printer: Printer,
) -> anyhow::Result<ExitStatus> {
    let handler = args.handler.command(args.on_message)?;
    let home = home_of(home)?;
    let (cancel, sig) = super::cancel_on_signals();
    let server = args.server.as_deref().map(RelayUrl::parse).transpose()?;
    let daemon_opts =
        DaemonOptions { retain: args.retain, server: server.clone(), ..DaemonOptions::default() };
    let invite = args.invite.then(|| server.map(|s| s.to_string()));
    let opts = ServeOptions {
        handler,
        seed: args.seed.zip(args.to).map(|(text, to)| (to, text)),
        max_turns: args.handler.max_turns(),
        once: args.once,
        concurrency: usize::from(args.handler.concurrency),
    };
    // The home's daemon hands out each message once, so several `serve` (and
    // `listen`, `mcp`) share a home; the first one runs the daemon in-process.
    let c = cancel.clone();
    let h = home.clone();
    let result =
        crate::daemon::consumer::run_attached(&home, &daemon_opts, cancel.clone(), |dc, owner| {
            let (opts, c, h, invite) = (opts.clone(), c.clone(), h.clone(), invite.clone());
            async move {
                if let Some(relay) = invite {
                    publish_invite(&dc, relay, printer).await?;
                }
                crate::daemon::consumer::serve(dc, owner, &h, &opts, &c, &mut |ev| {
                    super::listen::print_event(printer, &ev);
                })
                .await
            }
        })
        .await;
    cancel.cancel();
    super::hint_no_peers(result, &home)?;
    Ok(super::exit_after(&sig))
}

/// `serve --invite`: publish a single-use invite through the home's daemon and
/// print it as the TypeScript agentroom does (`invite{url}`).
async fn publish_invite(
    dc: &crate::daemon::DaemonClient,
    relay: Option<String>,
    printer: Printer,
) -> Result<(), crate::daemon::DaemonError> {
    let req = crate::daemon::types::InviteCreateRequest { relay, ..Default::default() };
    let created = dc.invite_create(&req).await?;
    let accept = format!("agentroom invite accept '{}'", created.invite);
    printer.event(
        "invite",
        json!({
            "url": created.invite,
            "id": created.id,
            "relay": created.relay,
            "expires_at": created.expires_at,
            "accept_command": accept,
        }),
        || Some(format!("Give this to the other agent (single use):\n  {accept}")),
    );
    Ok(())
}
