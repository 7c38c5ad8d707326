//! The load client's WebSocket (issue 17): RFC 6455 by hand over a plain
//! `TcpStream`, so that the client costs far less per message than the servers it
//! measures.
//!
//! With tokio-tungstenite, serde trees and a timer per receive, the client spent
//! about 7 µs of its own core per envelope and capped near 150k envelopes/s, below
//! the bare forwarder's floor. Here a connection is two buffers: every complete
//! frame already read is handled in one pass ([`RawWs::frames`]), every frame
//! written is appended to one buffer ([`Out::text`]) and sent with one `write`
//! ([`RawWs::flush`]). Nothing is allocated per message.
//!
//! Client frames must be masked (RFC 6455 §5.3); the masking key here is zero,
//! which the RFC allows (any 32-bit value) and which makes masking a no-op. A
//! benchmark on loopback has no proxy cache to protect, the reason the key should
//! be unpredictable. Server frames are never fragmented by either server under
//! test, so continuation frames are refused rather than reassembled.

use std::io;
use std::net::SocketAddr;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Opcodes (RFC 6455 §5.2).
const TEXT: u8 = 0x1;
const BINARY: u8 = 0x2;
const CLOSE: u8 = 0x8;
const PING: u8 = 0x9;
const PONG: u8 = 0xA;

/// Bytes asked of the kernel per read: large enough that a busy connection's
/// backlog comes in one call.
const READ_CHUNK: usize = 64 * 1024;

/// Frames to be written, appended in place.
pub(crate) struct Out {
    buf: Vec<u8>,
}

impl Out {
    /// Append one masked text frame whose payload `build` appends to the vector
    /// it gets (which must not touch what is already there).
    pub(crate) fn text(&mut self, build: impl FnOnce(&mut Vec<u8>)) {
        self.frame(TEXT, build);
    }

    fn frame(&mut self, opcode: u8, build: impl FnOnce(&mut Vec<u8>)) {
        // Room for the longest header (2 + 8 length + 4 mask), then the payload;
        // the payload is moved back once its length, hence the header's, is known.
        const MAX_HEADER: usize = 14;
        let at = self.buf.len();
        self.buf.resize(at + MAX_HEADER, 0);
        build(&mut self.buf);
        let len = self.buf.len() - at - MAX_HEADER;
        let mut head = [0u8; MAX_HEADER];
        head[0] = 0x80 | opcode;
        let n = if len < 126 {
            head[1] = 0x80 | len as u8;
            2
        } else if len <= usize::from(u16::MAX) {
            head[1] = 0x80 | 126;
            head[2..4].copy_from_slice(&(len as u16).to_be_bytes());
            4
        } else {
            head[1] = 0x80 | 127;
            head[2..10].copy_from_slice(&(len as u64).to_be_bytes());
            10
        };
        // The masking key (zero) follows the length.
        let header = n + 4;
        self.buf.copy_within(at + MAX_HEADER.., at + header);
        self.buf.truncate(at + header + len);
        self.buf[at..at + header].copy_from_slice(&head[..header]);
    }
}

/// One client connection.
pub(crate) struct RawWs {
    tcp: TcpStream,
    rbuf: Vec<u8>,
    /// Unparsed bytes are `rbuf[rpos..rend]`.
    rpos: usize,
    rend: usize,
    out: Out,
}

impl RawWs {
    /// Connect and upgrade (`GET path`).
    pub(crate) async fn connect(addr: SocketAddr, path: &str) -> RawWs {
        let tcp = TcpStream::connect(addr).await.unwrap();
        tcp.set_nodelay(true).unwrap();
        let mut ws = RawWs {
            tcp,
            rbuf: vec![0; 2 * READ_CHUNK],
            rpos: 0,
            rend: 0,
            out: Out { buf: Vec::with_capacity(READ_CHUNK) },
        };
        let req = format!(
            "GET {path} HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
        );
        ws.tcp.write_all(req.as_bytes()).await.unwrap();
        let end = loop {
            if let Some(i) = ws.rbuf[..ws.rend].windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
            assert!(ws.fill().await.unwrap() > 0, "connection closed during the upgrade");
        };
        let head = String::from_utf8_lossy(&ws.rbuf[..end]);
        assert!(head.starts_with("HTTP/1.1 101"), "upgrade refused: {head}");
        ws.rpos = end;
        ws
    }

    /// Where frames to be written go until [`RawWs::flush`].
    pub(crate) fn out(&mut self) -> &mut Out {
        &mut self.out
    }

    /// Write everything appended since the last flush.
    pub(crate) async fn flush(&mut self) -> io::Result<()> {
        if !self.out.buf.is_empty() {
            self.tcp.write_all(&self.out.buf).await?;
            self.out.buf.clear();
        }
        Ok(())
    }

    /// Read once (waiting for data); `Ok(0)` at end of stream.
    pub(crate) async fn fill(&mut self) -> io::Result<usize> {
        if self.rpos == self.rend {
            (self.rpos, self.rend) = (0, 0);
        } else if self.rbuf.len() - self.rend < READ_CHUNK {
            self.rbuf.copy_within(self.rpos..self.rend, 0);
            (self.rpos, self.rend) = (0, self.rend - self.rpos);
        }
        if self.rbuf.len() - self.rend < READ_CHUNK {
            self.rbuf.resize(self.rend + READ_CHUNK, 0);
        }
        let n = self.tcp.read(&mut self.rbuf[self.rend..]).await?;
        self.rend += n;
        Ok(n)
    }

    /// The next complete frame already read: its opcode and where its payload is
    /// in `rbuf` (consumed); `None` when no whole frame is buffered.
    fn next_frame(&mut self) -> Option<(u8, std::ops::Range<usize>)> {
        let b = &self.rbuf[self.rpos..self.rend];
        if b.len() < 2 {
            return None;
        }
        let opcode = b[0] & 0x0F;
        assert!(b[0] & 0x80 != 0 && opcode != 0, "fragmented server frame");
        assert!(b[1] & 0x80 == 0, "masked server frame");
        let (len, head) = match b[1] & 0x7F {
            126 if b.len() >= 4 => (usize::from(u16::from_be_bytes([b[2], b[3]])), 4),
            127 if b.len() >= 10 => (u64::from_be_bytes(b[2..10].try_into().unwrap()) as usize, 10),
            126 | 127 => return None,
            n => (usize::from(n), 2),
        };
        if b.len() < head + len {
            return None;
        }
        let start = self.rpos + head;
        self.rpos = start + len;
        Some((opcode, start..start + len))
    }

    /// Hand every complete text frame already read to `f` (with the output buffer,
    /// for answers); pings are answered. Returns false once the server closed.
    pub(crate) fn frames(&mut self, mut f: impl FnMut(&[u8], &mut Out)) -> bool {
        while let Some((opcode, r)) = self.next_frame() {
            let payload = &self.rbuf[r];
            match opcode {
                TEXT | BINARY => f(payload, &mut self.out),
                PING => self.out.frame(PONG, |v| v.extend_from_slice(payload)),
                CLOSE => return false,
                _ => {}
            }
        }
        true
    }

    /// The next text frame, waiting for it (setup only: allocates).
    pub(crate) async fn recv_text(&mut self) -> String {
        loop {
            while let Some((opcode, r)) = self.next_frame() {
                match opcode {
                    TEXT => return String::from_utf8(self.rbuf[r].to_vec()).unwrap(),
                    PING => {
                        let payload = &self.rbuf[r];
                        self.out.frame(PONG, |v| v.extend_from_slice(payload));
                    }
                    CLOSE => panic!("connection closed"),
                    _ => {}
                }
            }
            self.flush().await.unwrap();
            assert!(self.fill().await.unwrap() > 0, "connection lost");
        }
    }

    /// Send one text frame now (setup only).
    pub(crate) async fn send_text(&mut self, text: &str) {
        self.out.text(|v| v.extend_from_slice(text.as_bytes()));
        self.flush().await.unwrap();
    }
}

/// Call `f(key, value)` for each member of a flat JSON object whose values are
/// strings without escapes, numbers, booleans or null (what the servers write for
/// the frames the load client reads); string values come without their quotes.
/// Returns false on anything else. One pass, no allocation.
pub(crate) fn members<'a>(text: &'a [u8], mut f: impl FnMut(&'a [u8], &'a [u8])) -> bool {
    let mut i = 0;
    let ws = |i: &mut usize| {
        while *i < text.len() && text[*i].is_ascii_whitespace() {
            *i += 1;
        }
    };
    // A string at `i` (on its opening quote): its contents, `i` past the closing quote.
    let string = |i: &mut usize| -> Option<&'a [u8]> {
        if text.get(*i) != Some(&b'"') {
            return None;
        }
        let start = *i + 1;
        let len = text[start..].iter().position(|&c| c == b'"' || c == b'\\')?;
        if text[start + len] == b'\\' {
            return None;
        }
        *i = start + len + 1;
        Some(&text[start..start + len])
    };
    ws(&mut i);
    if text.get(i) != Some(&b'{') {
        return false;
    }
    i += 1;
    loop {
        ws(&mut i);
        if text.get(i) == Some(&b'}') {
            return true;
        }
        let Some(key) = string(&mut i) else { return false };
        ws(&mut i);
        if text.get(i) != Some(&b':') {
            return false;
        }
        i += 1;
        ws(&mut i);
        let value = if text.get(i) == Some(&b'"') {
            let Some(v) = string(&mut i) else { return false };
            v
        } else {
            let start = i;
            while i < text.len() && !matches!(text[i], b',' | b'}') {
                if matches!(text[i], b'{' | b'[' | b'"') {
                    return false;
                }
                i += 1;
            }
            text[start..i].trim_ascii_end()
        };
        f(key, value);
        ws(&mut i);
        match text.get(i) {
            Some(b',') => i += 1,
            Some(b'}') => return true,
            _ => return false,
        }
    }
}
