//! `agentroom completions SHELL`: a completion script on stdout (clap_complete).

use clap::CommandFactory as _;

use super::{Cli, ExitStatus};

/// Write the completion script for `shell` to stdout.
pub fn run(shell: clap_complete::Shell) -> anyhow::Result<ExitStatus> {
    let mut out = std::io::stdout().lock();
    clap_complete::generate(shell, &mut Cli::command(), "agentroom", &mut out);
    std::io::Write::flush(&mut out)?;
    Ok(ExitStatus::Success)
}
