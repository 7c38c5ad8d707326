//! The one log rule no `LOG_LEVEL` can lift: only agentroom's own code logs below
//! `info`. Our events never carry a token, key or plaintext (SECURITY.md); the
//! libraries under us do at `debug`/`trace`: tungstenite dumps every frame's
//! payload (`welcome` and `resume` carry session tokens), hyper and rustls dump
//! headers and records, rmcp dumps the JSON-RPC messages with message text.

use tracing_subscriber::filter::{LevelFilter, Targets};

/// The most verbose level any other crate's events reach, whatever the filter.
/// Their `info` and above are lifecycle events (a listener bound, a migration
/// applied), never payloads. For crates that log through `log`, the records
/// below it are not even compiled (Cargo.toml: `log`'s `max_level_info`).
pub const DEPENDENCY_MAX_LEVEL: LevelFilter = LevelFilter::INFO;

/// A filter layer capping every target outside `agentroom` at
/// [`DEPENDENCY_MAX_LEVEL`]. Stack it on the subscriber after the `LOG_LEVEL` filter.
pub fn secret_safe_cap() -> Targets {
    Targets::new()
        .with_default(DEPENDENCY_MAX_LEVEL)
        .with_target(env!("CARGO_CRATE_NAME"), LevelFilter::TRACE)
}

/// The `log` crate's maximum level under a `LOG_LEVEL` filter reaching `filter_max`.
///
/// Only other crates log through `log` (agentroom uses `tracing`), and none of their
/// records passes [`DEPENDENCY_MAX_LEVEL`] or the filter. Left at TRACE (what
/// tracing's `LogTracer` sets), every `log::trace!` in a dependency still builds a
/// record and asks the subscriber, only to be dropped: tokio-tungstenite logs one on
/// every socket read, write and flush, about 4% of the relay's CPU under load
/// (issue 17, docs/performance.md).
pub fn log_crate_max_level(filter_max: Option<LevelFilter>) -> log::LevelFilter {
    let max = filter_max.map_or(DEPENDENCY_MAX_LEVEL, |f| f.min(DEPENDENCY_MAX_LEVEL));
    if max == LevelFilter::OFF {
        log::LevelFilter::Off
    } else if max == LevelFilter::ERROR {
        log::LevelFilter::Error
    } else if max == LevelFilter::WARN {
        log::LevelFilter::Warn
    } else if max == LevelFilter::INFO {
        log::LevelFilter::Info
    } else if max == LevelFilter::DEBUG {
        log::LevelFilter::Debug
    } else {
        log::LevelFilter::Trace
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tracing::Level;

    #[test]
    fn log_crate_stops_at_the_filter_or_the_dependency_cap() {
        use log::LevelFilter as L;
        assert_eq!(log_crate_max_level(Some(LevelFilter::WARN)), L::Warn);
        assert_eq!(log_crate_max_level(Some(LevelFilter::OFF)), L::Off);
        assert_eq!(log_crate_max_level(Some(LevelFilter::TRACE)), L::Info);
        assert_eq!(log_crate_max_level(None), L::Info);
    }

    /// What no filter lets through is not compiled in: the `log` crate's
    /// `max_level_info` feature drops dependencies' debug and trace records at
    /// build time (tungstenite's per-frame trace calls cost nothing, and a
    /// filter mistake cannot bring their payload dumps back).
    #[test]
    fn dependency_records_below_the_cap_are_compiled_out() {
        assert_eq!(log::STATIC_MAX_LEVEL, log::LevelFilter::Info);
        assert_eq!(log_crate_max_level(None), log::STATIC_MAX_LEVEL);
    }

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
