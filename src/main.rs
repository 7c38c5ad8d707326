//! The `agentroom` binary: parse arguments, set up logging on stderr, run, exit.

use std::process::ExitCode;

fn main() -> ExitCode {
    agentroom::cli::main()
}
