//! `agentroom relay`: the standalone relay.

use clap::Args;

use super::ExitStatus;

/// Options of `agentroom relay`.
#[derive(Debug, Args)]
pub struct RelayArgs {
    /// Port for HTTP and WebSocket.
    #[arg(long, env = crate::env::PORT, default_value_t = crate::defaults::RELAY_PORT)]
    pub port: u16,
    /// Address to bind.
    #[arg(long, env = crate::env::BIND, default_value = crate::defaults::RELAY_BIND)]
    pub bind: String,
}

/// Run the relay until SIGINT/SIGTERM.
#[allow(clippy::unused_async)]
pub async fn run(_args: RelayArgs) -> anyhow::Result<ExitStatus> {
    anyhow::bail!("the relay is not built yet")
}
