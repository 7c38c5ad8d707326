//! `agentroom history [PEER] [--since WHEN] [--limit N] [--json | --format md]`.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, ValueEnum};

use super::{ExitStatus, Printer, home_of};
use crate::client::history::{self, DeliveryState, Direction, HistoryEntry, HistoryFilter};
use crate::client::{Client, now_ms, peers};

// Options of `agentroom history`.
#[derive(Debug, Args)]
pub struct HistoryArgs {
    /// Only this peer: label, public key, or a unique prefix of the key or fingerprint.
    #[arg(allow_hyphen_values = true)]
    pub peer: Option<String>,
    /// Only messages since then: a duration back from now (`2h`, `7d`) or an
    /// RFC 3339 time (`2026-01-31T09:00:00Z`, `2026-01-31T10:00:00+01:00`).
    #[arg(long, value_parser = parse_since, value_name = "WHEN")]
    pub since: Option<Since>,
    /// At most this many messages (the latest ones).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    pub limit: Option<u32>,
    /// Human output: one line per message, or a Markdown transcript. `--json` prints NDJSON.
    #[arg(long, value_enum, default_value_t = Format::Text)]
    pub format: Format,
}

/// Human output formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// One line per message.
    Text,
    /// A Markdown transcript.
    Md,
}

/// A `--since` value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Since {
    /// This long before now.
    Ago(Duration),
    /// This instant (unix ms).
    At(u64),
}

impl Since {
    fn as_ms(self, now_ms: u64) -> u64 {
        match self {
            Since::Ago(d) => {
                now_ms.saturating_sub(u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
            }
            Since::At(ms) => ms,
        }
    }
}

/// Parse `--since`: a duration (see [`super::duration::parse_duration`]) or an RFC 3339 time.
pub fn parse_since(input: &str) -> Result<Since, String> {
    if let Ok(d) = super::duration::parse_duration(input) {
        return Ok(Since::Ago(d));
    }
    let t = chrono::DateTime::parse_from_rfc3339(input.trim()).map_err(|_| {
        format!(
            "invalid time {input:?}: use a duration back from now (2h, 7d) or an RFC 3339 time (2026-01-31T09:00:00Z)"
        )
    })?;
    let ms = u64::try_from(t.timestamp_millis())
        .map_err(|_| format!("invalid time {input:?}: before 1970"))?;
    Ok(Since::At(ms))
}

/// Run `history`.
pub fn run(
    home: Option<PathBuf>,
    args: HistoryArgs,
    printer: Printer,
) -> anyhow::Result<ExitStatus> {
    if printer.is_json() && args.format == Format::Md {
        anyhow::bail!("--json and --format md exclude each other");
    }
    let home = home_of(home)?;
    // Opening the client deletes expired messages first (disappearing messages).
    let client = Client::open(&home, tokio_util::sync::CancellationToken::new())?;
    let peer = match &args.peer {
        Some(q) => Some(peers::resolve(client.conn(), q)?),
        None => None,
    };
    let filter = HistoryFilter {
        peer: peer.as_ref().map(|p| p.pk),
        since: args.since.map(|s| s.as_ms(now_ms())),
        limit: args.limit,
    };
    let entries = history::history(client.conn(), &filter)?;
    if printer.is_json() {
        for e in &entries {
            printer.event("message", serde_json::to_value(e)?, || None);
        }
    } else if args.format == Format::Md {
        let title = peer.as_ref().map(crate::client::store::PeerRow::display_name);
        printer.human(markdown(title.as_deref(), &entries).trim_end());
    } else if entries.is_empty() {
        printer.human("No messages.");
    } else {
        for e in &entries {
            printer.human(&text_line(e));
        }
    }
    Ok(ExitStatus::Success)
}

/// The peer's label, else the first 8 characters of its key.
fn name(e: &HistoryEntry) -> String {
    e.label.clone().unwrap_or_else(|| e.peer.chars().take(8).collect())
}

/// `from → to`.
fn arrow(e: &HistoryEntry) -> String {
    match e.direction {
        Direction::In => format!("{} → you", name(e)),
        Direction::Out => format!("you → {}", name(e)),
    }
}

fn state_name(s: DeliveryState) -> &'static str {
    match s {
        DeliveryState::Queued => "queued",
        DeliveryState::Stored => "stored",
        DeliveryState::Delivered => "delivered",
        DeliveryState::Failed => "failed",
        DeliveryState::Received => "received",
    }
}

/// `2026-01-31 09:00:00 UTC`.
fn utc(ms: u64) -> String {
    i64::try_from(ms)
        .ok()
        .and_then(chrono::DateTime::from_timestamp_millis)
        .map_or_else(|| ms.to_string(), |t| t.format("%Y-%m-%d %H:%M:%S UTC").to_string())
}

fn text_line(e: &HistoryEntry) -> String {
    let state = match e.direction {
        Direction::Out => format!(" [{}]", state_name(e.state)),
        Direction::In => String::new(),
    };
    format!("{}  {}{state}: {}", utc(e.at), arrow(e), e.text)
}

/// A Markdown transcript: a heading, then one block per message with who, when,
/// state and the text quoted (so its own Markdown cannot break the layout).
fn markdown(peer: Option<&str>, entries: &[HistoryEntry]) -> String {
    let mut out = match peer {
        Some(p) => format!("# Conversation with {p}\n\n"),
        None => String::from("# agentroom history\n\n"),
    };
    if entries.is_empty() {
        out.push_str("_No messages._\n");
    }
    for e in entries {
        let mut meta = vec![utc(e.at)];
        if e.direction == Direction::Out {
            meta.push(state_name(e.state).to_owned());
        }
        if let Some(r) = &e.reply_to {
            meta.push(format!("reply to `{}`", r.chars().take(8).collect::<String>()));
        }
        out.push_str(&format!("**{}** · {}\n\n", arrow(e), meta.join(" · ")));
        for line in e.text.lines() {
            out.push_str(if line.is_empty() { ">" } else { "> " });
            out.push_str(line);
            out.push('\n');
        }
        if e.text.is_empty() {
            out.push_str(">\n");
        }
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(direction: Direction, text: &str) -> HistoryEntry {
        HistoryEntry {
            seq: 1,
            peer: "ABCDEFGHIJK".into(),
            label: None,
            direction,
            id: "id".into(),
            reply_to: Some("0123456789".into()),
            text: text.into(),
            at: 1_769_850_000_000,
            sent_at: None,
            state: DeliveryState::Stored,
        }
    }

    #[test]
    fn since_takes_durations_and_rfc3339() {
        assert_eq!(parse_since("2h").unwrap(), Since::Ago(Duration::from_secs(7200)));
        assert_eq!(parse_since("2026-01-31T09:00:00Z").unwrap(), Since::At(1_769_850_000_000));
        assert_eq!(
            parse_since("2026-01-31T10:00:00.5+01:00").unwrap(),
            Since::At(1_769_850_000_500)
        );
        for bad in ["yesterday", "2026-01-31", "1969-12-31T00:00:00Z", ""] {
            assert!(parse_since(bad).is_err(), "{bad}");
        }
        assert_eq!(Since::Ago(Duration::from_secs(1)).as_ms(5_000), 4_000);
    }

    #[test]
    fn markdown_quotes_every_line() {
        let md = markdown(Some("bob"), &[entry(Direction::Out, "# not a heading\n\nbye")]);
        assert_eq!(
            md,
            "# Conversation with bob\n\n\
             **you → ABCDEFGH** · 2026-01-31 09:00:00 UTC · stored · reply to `01234567`\n\n\
             > # not a heading\n>\n> bye\n\n"
        );
        assert_eq!(markdown(None, &[]), "# agentroom history\n\n_No messages._\n");
    }
}
