//! A tunnel child's stdout/stderr, line by line: each line is logged at debug and
//! offered to the supervisor (which looks for the URL), never buffered without bound.

use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::sync::mpsc;

/// Longest line kept whole; longer ones are split (cloudflared's lines are < 1 KiB).
const MAX_LINE: usize = 4 * 1024;
/// Lines waiting for the supervisor. Once the URL is known it stops listening and
/// later lines are only logged: a full queue drops lines instead of blocking the
/// child on a full pipe.
pub(crate) const LINE_QUEUE: usize = 256;

/// Reads `reader` to EOF; logs every line (tagged with `stream`) and `try_send`s it.
pub(crate) async fn forward_lines<R: AsyncRead + Unpin>(
    mut reader: R,
    stream: &'static str,
    tx: mpsc::Sender<String>,
) {
    let mut buf = vec![0u8; 8 * 1024];
    let mut line: Vec<u8> = Vec::new();
    let emit = |line: &[u8]| {
        let text = String::from_utf8_lossy(line).trim_end_matches('\r').to_owned();
        tracing::debug!(target: "agentroom::tunnel::child", stream, line = %text);
        let _ = tx.try_send(text);
    };
    loop {
        let n = match reader.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        for &b in &buf[..n] {
            if b == b'\n' {
                emit(&line);
                line.clear();
            } else {
                line.push(b);
                if line.len() >= MAX_LINE {
                    emit(&line);
                    line.clear();
                }
            }
        }
    }
    if !line.is_empty() {
        emit(&line);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn splits_lines_and_survives_bad_bytes() {
        let (tx, mut rx) = mpsc::channel(LINE_QUEUE);
        let data: &[u8] = b"one\r\ntwo \xff\nlast";
        forward_lines(data, "stderr", tx).await;
        let mut got = Vec::new();
        while let Some(l) = rx.recv().await {
            got.push(l);
        }
        assert_eq!(got, ["one", "two \u{fffd}", "last"]);
    }
}
