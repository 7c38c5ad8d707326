//! `agentroom serve --on-message CMD`.

use std::path::PathBuf;
use std::time::Duration;

use clap::Args;

use super::duration::parse_duration;
use super::{ExitStatus, Printer, home_of};
use crate::client::serve::ServeOptions;
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
    let opts = ServeOptions {
        handler: HandlerCommand { command: args.on_message, timeout: args.timeout },
        seed: args.seed.zip(args.to).map(|(text, to)| (to, text)),
        max_turns: args.max_turns,
        concurrency: usize::from(args.concurrency),
    };
    // The home's daemon hands out each message once, so several `serve` (and
    // `listen`, `mcp`) share a home; the first one runs the daemon in-process.
    let c = cancel.clone();
    let h = home.clone();
    let result = crate::daemon::consumer::run_attached(&home, cancel.clone(), |dc, owner| {
        let (opts, c, h) = (opts.clone(), c.clone(), h.clone());
        async move {
            crate::daemon::consumer::serve(dc, owner, &h, &opts, &c, &mut |ev| {
                super::listen::print_event(printer, &ev);
            })
            .await
        }
    })
    .await;
    cancel.cancel();
    result?;
    Ok(super::exit_after(&sig))
}
