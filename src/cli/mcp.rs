//! `agentroom mcp`: serve the MCP tools on stdio for a host agent.

use std::path::PathBuf;

use super::{ExitStatus, home_of};

/// Run the MCP server until the client closes stdin or a signal arrives.
/// stdout belongs to JSON-RPC: nothing else is printed there.
pub async fn run(home: Option<PathBuf>) -> anyhow::Result<ExitStatus> {
    let home = home_of(home)?;
    let (cancel, signal) = super::cancel_on_signals();
    crate::mcp::serve(home, cancel).await?;
    Ok(super::exit_after(&signal))
}
