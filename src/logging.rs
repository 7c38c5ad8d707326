//! The one log rule no `LOG_LEVEL` can lift: only agentroom's own code logs below
//! `info`. Our events never carry a token, key or plaintext (SECURITY.md); the
//! libraries under us do at `debug`/`trace`: tungstenite dumps every frame's
//! payload (`welcome` and `resume` carry session tokens), hyper and rustls dump
//! headers and records, rmcp dumps the JSON-RPC messages with message text.

use tracing_subscriber::filter::{LevelFilter, Targets};

/// The most verbose level any other crate's events reach, whatever the filter.
/// Their `info` and above are lifecycle events (a listener bound, a migration
/// applied), never payloads.
pub const DEPENDENCY_MAX_LEVEL: LevelFilter = LevelFilter::INFO;

/// A filter layer capping every target outside `agentroom` at
/// [`DEPENDENCY_MAX_LEVEL`]. Stack it on the subscriber after the `LOG_LEVEL` filter.
pub fn secret_safe_cap() -> Targets {
    Targets::new()
        .with_default(DEPENDENCY_MAX_LEVEL)
        .with_target(env!("CARGO_CRATE_NAME"), LevelFilter::TRACE)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tracing::Level;

    #[test]
    fn only_our_own_targets_pass_below_info() {
        let cap = secret_safe_cap();
        assert!(cap.would_enable("agentroom::relay::conn", &Level::TRACE));
        for lib in ["tungstenite::protocol", "tokio_tungstenite::compat", "hyper", "rmcp"] {
            assert!(!cap.would_enable(lib, &Level::DEBUG), "{lib}");
            assert!(cap.would_enable(lib, &Level::INFO), "{lib}");
        }
    }
}
