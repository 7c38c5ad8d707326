//! The relay's hot path: `send` and `ack` decoded straight from the text, and
//! `deliver` and `sent` written without serde (issue 17).
//!
//! [`decode_client_frame`] goes through serde's internally tagged enum support,
//! which first copies the whole object into an intermediate tree (an allocation per
//! key and value), then builds the variant from it; the relay then re-encoded the
//! body it had just decoded to write the `deliver` frame. Here the two frames that
//! make up nearly all traffic are read into one flat struct of borrowed strings,
//! and `deliver` is assembled around the sender's own base64 (canonical: the
//! decoder refuses trailing bits, so equal bodies have equal text).
//!
//! Anything the flat struct does not take as is (escapes, a field of the wrong
//! type, a duplicate key, any other frame type) is handed to
//! [`decode_client_frame`], so the accepted frames, the results and the errors are
//! exactly those of the general decoder; a test holds the two to that.

use serde::Deserialize;

use super::b64;
use super::frames::{
    ClientFrame, DeliveryStatus, EnvelopeId, FrameError, InviteIdClaim, decode_client_frame,
};
use crate::crypto::IdentityPublicKey;

/// A client frame as the relay needs it.
#[derive(Debug, PartialEq, Eq)]
pub enum Inbound<'a> {
    /// `send`, with the body both decoded and in its wire form.
    Send {
        /// Envelope id.
        id: EnvelopeId,
        /// Recipient.
        to: IdentityPublicKey,
        /// Sealed bytes.
        body: Vec<u8>,
        /// The body's unpadded base64url, as received (canonical).
        body_b64: &'a str,
        /// Invite claim on first contact.
        claim: Option<InviteIdClaim>,
    },
    /// Any other frame, decoded by [`decode_client_frame`].
    Other(ClientFrame),
}

/// Every field of `send` and `ack`, borrowed from the text. Unknown fields are
/// refused here (the frame then takes the general path): serde skips an ignored
/// field's string without checking its escapes, so a lone surrogate in a field
/// neither decoder knows would pass here and fail there (found by the fuzz loop).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Flat<'a> {
    #[serde(rename = "type")]
    kind: &'a str,
    #[serde(default)]
    id: Option<&'a str>,
    #[serde(default)]
    to: Option<&'a str>,
    #[serde(default)]
    from: Option<&'a str>,
    #[serde(default)]
    body: Option<&'a str>,
    #[serde(default)]
    claim: Option<&'a str>,
}

/// Decode a client frame (size checked first), taking the flat path for `send` and
/// `ack`. Same frames, results and errors as [`decode_client_frame`].
pub fn decode_inbound(text: &str, max: usize) -> Result<Inbound<'_>, FrameError> {
    if text.len() > max {
        return Err(FrameError::TooLarge { len: text.len(), max });
    }
    if let Some(f) = exact(text).or_else(|| flat(text)) {
        return Ok(f);
    }
    decode_client_frame(text, max).map(Inbound::Other)
}

/// `send` without a claim and `ack` exactly as [`crate::protocol::encode_frame`]
/// writes them (what this crate's clients send), read by position: serde's
/// tokenizer was about a tenth of the relay's CPU at saturation (issue 17). Ids,
/// keys and the body go through the same decoders as in [`flat`], and a quote or
/// backslash inside any of them fails its base64, so any other spelling (spaces,
/// another key order, an escape, an extra field) goes on to [`flat`] unchanged.
fn exact(text: &str) -> Option<Inbound<'_>> {
    /// Unpadded base64url of an id (16 bytes) and of a key (32 bytes).
    const ID: usize = b64_len(16);
    const KEY: usize = b64_len(32);
    if let Some(rest) = text.strip_prefix(r#"{"type":"send","id":""#) {
        let (id, rest) = rest.split_at_checked(ID)?;
        let (to, rest) = rest.strip_prefix(r#"","to":""#)?.split_at_checked(KEY)?;
        let body_b64 = rest.strip_prefix(r#"","body":""#)?.strip_suffix(r#""}"#)?;
        return Some(Inbound::Send {
            id: EnvelopeId::from_b64u(id)?,
            to: key(to)?,
            body: b64::decode(body_b64)?,
            body_b64,
            claim: None,
        });
    }
    let rest = text.strip_prefix(r#"{"type":"ack","id":""#)?;
    let (id, rest) = rest.split_at_checked(ID)?;
    let (from, rest) = rest.strip_prefix(r#"","from":""#)?.split_at_checked(KEY)?;
    if rest != r#""}"# {
        return None;
    }
    Some(Inbound::Other(ClientFrame::Ack { id: EnvelopeId::from_b64u(id)?, from: key(from)? }))
}

fn flat(text: &str) -> Option<Inbound<'_>> {
    let f: Flat<'_> = serde_json::from_str(text).ok()?;
    match f.kind {
        "send" => {
            let body_b64 = f.body?;
            Some(Inbound::Send {
                id: EnvelopeId::from_b64u(f.id?)?,
                to: key(f.to?)?,
                body: b64::decode(body_b64)?,
                body_b64,
                claim: match f.claim {
                    Some(c) => Some(InviteIdClaim::from_b64u(c)?),
                    None => None,
                },
            })
        }
        "ack" => Some(Inbound::Other(ClientFrame::Ack {
            id: EnvelopeId::from_b64u(f.id?)?,
            from: key(f.from?)?,
        })),
        _ => None,
    }
}

/// An identity key as [`IdentityPublicKey::from_b64u`] reads it, decoded on the stack.
fn key(s: &str) -> Option<IdentityPublicKey> {
    IdentityPublicKey::from_bytes(&b64::decode_array::<32>(s)?).ok()
}

/// Unpadded base64url length of `n` bytes.
const fn b64_len(n: usize) -> usize {
    (n * 4).div_ceil(3)
}

/// Decimal digits of `n`.
fn digits(n: u64) -> usize {
    n.checked_ilog10().map_or(1, |d| d as usize + 1)
}

/// The `deliver` frame for a body already in base64url: byte for byte what
/// `encode_frame(&ServerFrame::Deliver { .. })` writes. Sized exactly, so the
/// frame becomes a `Bytes` without another allocation.
pub fn deliver_text(id: &EnvelopeId, from: &IdentityPublicKey, body_b64: &str, ts: u64) -> String {
    const PARTS: [&str; 5] =
        [r#"{"type":"deliver","id":""#, r#"","from":""#, r#"","body":""#, r#"","ts":"#, "}"];
    let len = PARTS.iter().map(|p| p.len()).sum::<usize>()
        + b64_len(16)
        + b64_len(32)
        + body_b64.len()
        + digits(ts);
    let mut s = String::with_capacity(len);
    s.push_str(PARTS[0]);
    b64::encode_into(&id.0, &mut s);
    s.push_str(PARTS[1]);
    b64::encode_into(from.as_bytes(), &mut s);
    s.push_str(PARTS[2]);
    s.push_str(body_b64);
    s.push_str(PARTS[3]);
    push_u64(&mut s, ts);
    s.push_str(PARTS[4]);
    debug_assert_eq!(s.len(), len);
    s
}

/// The `sent` frame: byte for byte what `encode_frame(&ServerFrame::Sent { .. })`
/// writes, sized exactly.
pub fn sent_text(id: &EnvelopeId, status: DeliveryStatus) -> String {
    let status = match status {
        DeliveryStatus::Delivered => r#"","status":"delivered"}"#,
        DeliveryStatus::Stored => r#"","status":"stored"}"#,
    };
    let head = r#"{"type":"sent","id":""#;
    let mut s = String::with_capacity(head.len() + b64_len(16) + status.len());
    s.push_str(head);
    b64::encode_into(&id.0, &mut s);
    s.push_str(status);
    s
}

/// Append `n` in decimal without a temporary string.
fn push_u64(s: &mut String, n: u64) {
    let mut buf = [0u8; 20];
    let mut i = buf.len();
    let mut n = n;
    loop {
        i -= 1;
        buf[i] = b'0' + u8::try_from(n % 10).expect("a decimal digit fits a byte");
        n /= 10;
        if n == 0 {
            break;
        }
    }
    s.push_str(std::str::from_utf8(&buf[i..]).expect("ASCII digits"));
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::{ServerFrame, encode_frame};
    use proptest::prelude::*;

    fn pk(n: u8) -> IdentityPublicKey {
        IdentityPublicKey::from_bytes(&[n; 32]).unwrap()
    }

    /// What the general decoder makes of `text`.
    fn general(text: &str, max: usize) -> Result<ClientFrame, String> {
        decode_client_frame(text, max).map_err(|e| format!("{:?} {e}", e.code()))
    }

    /// The fast path's answer as a [`ClientFrame`]; a flat `send` must carry its
    /// body's canonical base64url.
    fn fast(text: &str, max: usize) -> Result<ClientFrame, String> {
        match decode_inbound(text, max) {
            Ok(Inbound::Send { id, to, body, body_b64, claim }) => {
                assert_eq!(body_b64, b64::encode(&body));
                Ok(ClientFrame::Send { id, to, body, claim })
            }
            Ok(Inbound::Other(f)) => Ok(f),
            Err(e) => Err(format!("{:?} {e}", e.code())),
        }
    }

    #[test]
    fn send_and_ack_take_the_flat_path() {
        let send = encode_frame(&ClientFrame::Send {
            id: EnvelopeId([1; 16]),
            to: pk(2),
            body: vec![7; 200],
            claim: Some(InviteIdClaim([3; 16])),
        });
        assert!(flat(&send).is_some());
        assert_eq!(fast(&send, 1 << 16), general(&send, 1 << 16));
        let ack = encode_frame(&ClientFrame::Ack { id: EnvelopeId([1; 16]), from: pk(2) });
        assert!(flat(&ack).is_some());
        assert!(exact(&ack).is_some(), "the crate's own ack is read by position");
        let plain = encode_frame(&ClientFrame::Send {
            id: EnvelopeId([1; 16]),
            to: pk(2),
            body: vec![7; 200],
            claim: None,
        });
        assert!(exact(&plain).is_some(), "the crate's own send is read by position");
        assert_eq!(fast(&plain, 1 << 16), general(&plain, 1 << 16));
        // Another key order or a space: the flat path, same result.
        let spaced = plain.replacen(',', ", ", 1);
        assert!(exact(&spaced).is_none());
        assert_eq!(fast(&spaced, 1 << 16), general(&spaced, 1 << 16));
        assert!(exact(&send).is_none(), "a claim takes the flat path");
        assert_eq!(fast(&ack, 1 << 16), general(&ack, 1 << 16));
        // An escaped string is not borrowed: the general decoder takes it, same result.
        let escaped = send.replace(r#""type":"send""#, r#""type":"s\u0065nd""#);
        assert!(flat(&escaped).is_none());
        assert_eq!(fast(&escaped, 1 << 16), general(&escaped, 1 << 16));
        // A field neither decoder knows, holding a lone surrogate: serde skips an
        // ignored string unchecked, so the flat path must not take it (fuzz find).
        let odd = send.replacen('{', r#"{"x":"\ud800D","#, 1);
        assert!(flat(&odd).is_none());
        assert!(general(&odd, 1 << 16).is_err());
        assert_eq!(fast(&odd, 1 << 16), general(&odd, 1 << 16));
        // An unknown field with a plain value is still accepted, by the general path.
        let extra = send.replacen('{', r#"{"x":1,"#, 1);
        assert_eq!(fast(&extra, 1 << 16), general(&extra, 1 << 16));
        assert!(general(&extra, 1 << 16).is_ok());
    }

    #[test]
    fn deliver_and_sent_match_serde_byte_for_byte() {
        for (body, ts) in [
            (vec![], 0),
            (vec![0xff], 9),
            (vec![1, 2], 10),
            (vec![9; 200], 1_700_000_000_123),
            (vec![3; 7], u64::MAX),
        ] {
            let (id, from) = (EnvelopeId([5; 16]), pk(6));
            let want = encode_frame(&ServerFrame::Deliver { id, from, body: body.clone(), ts });
            let got = deliver_text(&id, &from, &b64::encode(&body), ts);
            assert_eq!(got, want);
            assert_eq!(got.capacity(), got.len(), "sized exactly");
        }
        for status in [DeliveryStatus::Delivered, DeliveryStatus::Stored] {
            let id = EnvelopeId([9; 16]);
            assert_eq!(sent_text(&id, status), encode_frame(&ServerFrame::Sent { id, status }));
        }
    }

    /// Mutations of a `send` and an `ack`: the fast path and the general decoder
    /// agree on every input, accepted or refused.
    fn seeds() -> Vec<String> {
        vec![
            encode_frame(&ClientFrame::Send {
                id: EnvelopeId([1; 16]),
                to: pk(2),
                body: vec![9; 40],
                claim: None,
            }),
            encode_frame(&ClientFrame::Send {
                id: EnvelopeId([1; 16]),
                to: pk(2),
                body: vec![9; 5],
                claim: Some(InviteIdClaim([3; 16])),
            }),
            encode_frame(&ClientFrame::Ack { id: EnvelopeId([1; 16]), from: pk(3) }),
            r#"{"type":"ack","id":"AQEBAQEBAQEBAQEBAQEBAQ","from":"AwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwM","to":1,"body":null}"#.to_owned(),
        ]
    }

    const JSON_BYTES: &[u8] = b"{}[]\",:-.0123456789eEnulltrfs\\ _A";

    proptest! {
        #[test]
        fn fast_path_agrees_with_the_general_decoder(
            pick in any::<prop::sample::Index>(),
            muts in prop::collection::vec(
                (any::<u8>(), any::<prop::sample::Index>(), any::<u8>(), 1usize..12),
                0..4,
            ),
        ) {
            let all = seeds();
            let mut b = all[pick.index(all.len())].clone().into_bytes();
            for (kind, at, byte, n) in muts {
                let len = b.len();
                let i = at.index(len + 1);
                let j = (i + n).min(len);
                let jb = JSON_BYTES[usize::from(byte) % JSON_BYTES.len()];
                match kind % 5 {
                    0 if i < len => b[i] = jb,
                    1 => b.insert(i, jb),
                    2 => drop(b.drain(i..j)),
                    3 => {
                        let copy = b[i..j].to_vec();
                        b.splice(i..i, copy);
                    }
                    _ => b.truncate(i),
                }
            }
            let s = String::from_utf8_lossy(&b);
            for max in [64, 1 << 16] {
                prop_assert_eq!(fast(&s, max), general(&s, max));
            }
        }
    }
}
