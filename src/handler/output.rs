//! Capturing a handler's stdout and stderr without trusting them: sizes are capped,
//! bytes need not be UTF-8, and the reader tasks can be abandoned at any moment
//! (a grandchild may hold a pipe open forever), so what was read so far lives in a
//! shared buffer rather than in the task's return value.

use std::sync::{Arc, Mutex};

use tokio::io::{AsyncRead, AsyncReadExt};

/// Bytes read per `read` call.
const CHUNK: usize = 8 * 1024;
/// Longest stderr line logged as one event; the rest of an overlong line is logged
/// in further pieces, so a newline-free flood cannot grow memory.
const MAX_LOG_LINE: usize = 4 * 1024;

/// What a capture has gathered so far. A std `Mutex` is right here: it is held only
/// for a memcpy, never across an `.await` (mini-redis `db.rs` reasoning).
#[derive(Debug, Default)]
struct Captured {
    bytes: Vec<u8>,
    /// Bytes seen beyond what we kept.
    dropped: u64,
}

/// Shared view of a capture in progress.
#[derive(Debug, Clone, Default)]
pub(crate) struct Capture {
    inner: Arc<Mutex<Captured>>,
}

impl Capture {
    /// Everything kept so far, decoded lossily, and how many bytes were dropped.
    pub(crate) fn snapshot(&self) -> (String, u64) {
        let guard = self.inner.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        (String::from_utf8_lossy(&guard.bytes).into_owned(), guard.dropped)
    }

    fn with<R>(&self, f: impl FnOnce(&mut Captured) -> R) -> R {
        let mut guard = self.inner.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        f(&mut guard)
    }
}

/// Reads `reader` to EOF, keeping the first `cap` bytes and discarding (but still
/// draining, so the writer never blocks on a full pipe) the rest.
pub(crate) async fn read_head<R: AsyncRead + Unpin>(mut reader: R, cap: usize, into: Capture) {
    let mut buf = vec![0u8; CHUNK];
    loop {
        match reader.read(&mut buf).await {
            Ok(0) => return,
            Ok(n) => into.with(|c| {
                let room = cap.saturating_sub(c.bytes.len());
                let keep = room.min(n);
                c.bytes.extend_from_slice(&buf[..keep]);
                c.dropped += (n - keep) as u64;
            }),
            Err(e) => {
                tracing::debug!(error = %e, "handler stdout read failed");
                return;
            }
        }
    }
}

/// Reads `reader` to EOF, logging each line at debug and keeping only the last
/// `tail` bytes (trimmed to a UTF-8 boundary when read).
pub(crate) async fn read_tail_logging<R: AsyncRead + Unpin>(
    mut reader: R,
    tail: usize,
    into: Capture,
) {
    let mut buf = vec![0u8; CHUNK];
    let mut line: Vec<u8> = Vec::new();
    loop {
        let n = match reader.read(&mut buf).await {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) => {
                tracing::debug!(error = %e, "handler stderr read failed");
                break;
            }
        };
        let chunk = &buf[..n];
        into.with(|c| {
            c.bytes.extend_from_slice(chunk);
            if c.bytes.len() > tail {
                let excess = c.bytes.len() - tail;
                c.bytes.drain(..excess);
                c.dropped += excess as u64;
            }
        });
        for &b in chunk {
            if b == b'\n' {
                log_line(&line);
                line.clear();
            } else {
                line.push(b);
                if line.len() >= MAX_LOG_LINE {
                    log_line(&line);
                    line.clear();
                }
            }
        }
    }
    if !line.is_empty() {
        log_line(&line);
    }
}

fn log_line(line: &[u8]) {
    let text = String::from_utf8_lossy(line);
    tracing::debug!(target: "agentroom::handler::stderr", line = %text.trim_end_matches('\r'));
}

/// The tail text: drops a leading partial UTF-8 sequence that the byte-cut left,
/// so the result is clean text rather than starting with U+FFFD.
pub(crate) fn tail_text(capture: &Capture) -> String {
    let bytes = capture.with(|c| c.bytes.clone());
    let start = bytes.iter().take(3).take_while(|&&b| (b & 0xC0) == 0x80).count();
    String::from_utf8_lossy(&bytes[start..]).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn head_keeps_cap_and_counts_the_rest() {
        let data = [b'x'; 100];
        let cap = Capture::default();
        read_head(&data[..], 10, cap.clone()).await;
        let (text, dropped) = cap.snapshot();
        assert_eq!(text, "x".repeat(10));
        assert_eq!(dropped, 90);
    }

    #[tokio::test]
    async fn tail_keeps_last_bytes_on_a_char_boundary() {
        // "é" is two bytes; a 5-byte tail of "aéééé" starts mid-character.
        let data = "aéééé".as_bytes().to_vec();
        let cap = Capture::default();
        read_tail_logging(&data[..], 5, cap.clone()).await;
        assert_eq!(tail_text(&cap), "éé");
    }

    #[tokio::test]
    async fn invalid_utf8_is_lossy_not_an_error() {
        let data = [0xff, b'o', b'k', 0xfe];
        let cap = Capture::default();
        read_head(&data[..], 1024, cap.clone()).await;
        assert_eq!(cap.snapshot().0, "\u{fffd}ok\u{fffd}");
    }
}
