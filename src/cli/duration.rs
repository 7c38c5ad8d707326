//! Durations on the command line: a bare number of seconds (as in the TypeScript
//! agentroom), or anything `humantime` reads: `90s`, `2m`, `5minutes`, `24h`,
//! `7d`, `2days`, `500ms`, `1h30m`, `1h 30m`. One kept parser, so every unit is
//! accepted in its short and long forms alike.

use std::time::Duration;

/// Parse a duration (clap `value_parser`).
pub fn parse_duration(input: &str) -> Result<Duration, String> {
    let s = input.trim();
    if let Ok(secs) = s.parse::<u64>() {
        return Ok(Duration::from_secs(secs));
    }
    humantime::parse_duration(s)
        .map_err(|_| format!("invalid duration {input:?}: use e.g. 90s, 5m, 5minutes, 24h, 2days"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_units_and_rejects_junk() {
        assert_eq!(parse_duration("90s").unwrap(), Duration::from_secs(90));
        assert_eq!(parse_duration("2m").unwrap(), Duration::from_secs(120));
        assert_eq!(parse_duration("24h").unwrap(), Duration::from_secs(86_400));
        assert_eq!(parse_duration("7d").unwrap(), Duration::from_secs(7 * 86_400));
        assert_eq!(parse_duration("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(parse_duration("1h30m").unwrap(), Duration::from_secs(5400));
        assert_eq!(parse_duration("45").unwrap(), Duration::from_secs(45));
        // Long forms of every unit, not only some.
        assert_eq!(parse_duration("5minutes").unwrap(), Duration::from_secs(300));
        assert_eq!(parse_duration("2days").unwrap(), Duration::from_secs(2 * 86_400));
        assert_eq!(parse_duration("3hours").unwrap(), Duration::from_secs(3 * 3600));
        for bad in ["", "h", "10x", "-5s", "s10"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }
}
