//! `agentroom serve --on-message CMD`.

use std::path::PathBuf;
use std::time::Duration;

use clap::Args;

use super::duration::parse_duration;
use super::{ExitStatus, Printer, home_of};
use crate::client::Client;
use crate::client::serve::{ServeOptions, serve};
use crate::handler::HandlerCommand;

/// Options of `agentroom serve`.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Handler, run with `sh -c` per message: text on stdin, reply = trimmed stdout
    /// (exit 0, non-empty). Env: AGENTROOM_FROM, AGENTROOM_PK, AGENTROOM_MSG_ID.
    #[arg(long, value_name = "CMD")]
    pub on_message: String,
    /// Send this first (needs --to): opens a conversation between two bots.
    #[arg(long, value_name = "TEXT", requires = "to", allow_hyphen_values = true)]
    pub seed: Option<String>,
    /// Peer for --seed.
    #[arg(long, value_name = "PEER", requires = "seed", allow_hyphen_values = true)]
    pub to: Option<String>,
    /// Stop after handling this many messages.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    pub max_turns: Option<u64>,
    /// Handlers running at once (replies may then go out of order).
    #[arg(long, value_name = "N", default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=64))]
    pub concurrency: u16,
    /// Kill the handler's whole process group after this long.
    #[arg(long, visible_alias = "handler-timeout", value_parser = parse_duration, default_value = "120s", value_name = "DURATION")]
    pub timeout: Duration,
    /// Delete history (and read messages) older than this, now and every second
    /// while running (e.g. 30d). Default: keep everything.
    #[arg(long, value_parser = parse_duration, value_name = "DURATION")]
    pub retain: Option<Duration>,
}

/// Run `serve` until Ctrl-C or `--max-turns`.
pub async fn run(
    home: Option<PathBuf>,
    args: ServeArgs,
    printer: Printer,
) -> anyhow::Result<ExitStatus> {
    if args.on_message.trim().is_empty() {
        anyhow::bail!("--on-message needs a command");
    }
    let home = home_of(home)?;
    let (cancel, sig) = super::cancel_on_signals();
    let mut client = Client::open(&home, cancel.clone())?;
    client.set_retention(args.retain)?;
    let opts = ServeOptions {
        handler: HandlerCommand { command: args.on_message, timeout: args.timeout },
        seed: args.seed.zip(args.to).map(|(text, to)| (to, text)),
        max_turns: args.max_turns,
        concurrency: usize::from(args.concurrency),
    };
    let result =
        serve(&mut client, &opts, &mut |ev| super::listen::print_event(printer, &ev)).await;
    cancel.cancel();
    result?;
    Ok(super::exit_after(&sig))
}
