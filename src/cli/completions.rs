//! `agentroom completions SHELL`: a completion script on stdout (clap_complete).

use clap::CommandFactory as _;

use super::{Cli, ExitStatus};

/// Write the completion script for `shell` to stdout.
pub fn run(shell: clap_complete::Shell) -> anyhow::Result<ExitStatus> {
    let mut out = std::io::stdout().lock();
    clap_complete::generate(shell, &mut full_command(), "agentroom", &mut out);
    std::io::Write::flush(&mut out)?;
    Ok(ExitStatus::Success)
}

/// The whole command tree, with a complete `help` tree.
///
/// Commands build their arguments late (`#[command(defer = true)]`), and clap
/// copies the tree under `help` before it builds them: `help peers <TAB>`
/// would offer nothing, since `peers` gets its subcommands from its
/// arguments. So once everything is built, the copies under `help` are made
/// again, the way clap makes them.
fn full_command() -> clap::Command {
    let mut cmd = Cli::command();
    cmd.build();
    let help_bin = format!("{} help", cmd.get_bin_name().unwrap_or("agentroom"));
    let mut copies: Vec<clap::Command> = cmd
        .get_subcommands()
        .filter(|c| c.get_name() != "help")
        .map(|c| copy_for_help(c, &help_bin))
        .collect();
    // `help` is the last subcommand; in it, each copy takes its old one's place.
    cmd.mut_subcommand("help", |help| {
        help.mut_subcommands(|old| {
            match copies.iter().position(|c| c.get_name() == old.get_name()) {
                Some(i) => copies.swap_remove(i),
                None => old,
            }
        })
    })
}

/// What clap puts under `help` for a command: its name, about line and
/// subcommands, with no arguments and no `help` of their own. `parent_bin` is
/// the parent's command line (`agentroom help`): the tree is built already,
/// so the names clap gives while building are given here.
fn copy_for_help(cmd: &clap::Command, parent_bin: &str) -> clap::Command {
    let bin = format!("{parent_bin} {}", cmd.get_name());
    let mut copy = clap::Command::new(cmd.get_name().to_owned())
        .bin_name(bin.clone())
        .hide(cmd.is_hide_set())
        .disable_help_flag(true)
        .disable_version_flag(true)
        .disable_help_subcommand(true)
        .subcommands(
            cmd.get_subcommands()
                .filter(|c| c.get_name() != "help")
                .map(|c| copy_for_help(c, &bin)),
        );
    if let Some(about) = cmd.get_about() {
        copy = copy.about(about.clone());
    }
    copy
}
