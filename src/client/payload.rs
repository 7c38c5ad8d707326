//! The application payload inside a sealed message (PROTOCOL.md §4): UTF-8 JSON
//! with a `kind`. Receivers ignore unknown kinds and unknown fields, so later
//! versions can add both.

use serde::{Deserialize, Serialize};

use crate::protocol::EnvelopeId;

/// Largest text accepted for sending: 144 KiB of UTF-8, what the TypeScript
/// agentroom carries, so its users' long messages still go through.
pub const MAX_TEXT_BYTES: usize = 144 * 1024;

/// Largest serialised payload (JSON escaping can grow a text): 190 KiB seal to
/// ~190.1 KiB, ~253.5 KiB in base64url, inside the 256 KiB frame with the `send`
/// fields. A text under [`MAX_TEXT_BYTES`] whose escaping (quotes, control
/// characters) grows it past this is refused as too large.
pub const MAX_PAYLOAD_BYTES: usize = 190 * 1024;

/// One decoded payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Payload {
    /// A message for the user or the handler.
    Text {
        /// The text.
        text: String,
        /// The envelope this answers.
        reply_to: Option<EnvelopeId>,
    },
    /// The guest's first message after accepting an invite: pairs the two.
    Hello {
        /// Name the guest suggests for itself (informational).
        name: Option<String>,
    },
    /// The host's relay moved (e.g. a new tunnel URL); reconnect there.
    RelayMoved {
        /// New relay URL.
        relay: String,
    },
    /// A kind this version does not know; ignored.
    Unknown {
        /// Its `kind`.
        kind: String,
    },
}

#[derive(Serialize, Deserialize)]
struct Wire {
    kind: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    text: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    reply_to: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    relay: Option<String>,
}

impl Payload {
    /// The `kind` string.
    pub fn kind(&self) -> &str {
        match self {
            Payload::Text { .. } => "text",
            Payload::Hello { .. } => "hello",
            Payload::RelayMoved { .. } => "relay_moved",
            Payload::Unknown { kind } => kind,
        }
    }

    /// Serialise to the JSON bytes that get sealed.
    pub fn to_bytes(&self) -> Vec<u8> {
        let empty = Wire {
            kind: self.kind().to_owned(),
            text: None,
            reply_to: None,
            name: None,
            relay: None,
        };
        let wire = match self {
            Payload::Text { text, reply_to } => {
                Wire { text: Some(text.clone()), reply_to: reply_to.map(|r| r.to_b64u()), ..empty }
            }
            Payload::Hello { name } => Wire { name: name.clone(), ..empty },
            Payload::RelayMoved { relay } => Wire { relay: Some(relay.clone()), ..empty },
            Payload::Unknown { .. } => empty,
        };
        serde_json::to_vec(&wire).expect("a payload is strings and options: always serialises")
    }

    /// Parse decrypted bytes. `None` when they are not a payload at all (not
    /// UTF-8 JSON with a `kind`), or a known kind lacks its required field.
    pub fn parse(bytes: &[u8]) -> Option<Self> {
        let wire: Wire = serde_json::from_slice(bytes).ok()?;
        Some(match wire.kind.as_str() {
            "text" => Payload::Text {
                text: wire.text?,
                reply_to: wire.reply_to.as_deref().and_then(EnvelopeId::from_b64u),
            },
            "hello" => Payload::Hello { name: wire.name },
            "relay_moved" => Payload::RelayMoved { relay: wire.relay? },
            _ => Payload::Unknown { kind: wire.kind },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roundtrip_and_tolerance() {
        let p = Payload::Text { text: "hi ✓".into(), reply_to: Some(EnvelopeId([1; 16])) };
        assert_eq!(Payload::parse(&p.to_bytes()), Some(p));
        let h = Payload::Hello { name: None };
        assert_eq!(Payload::parse(&h.to_bytes()), Some(h));
        assert_eq!(
            Payload::parse(br#"{"kind":"text","text":"x","future":1}"#),
            Some(Payload::Text { text: "x".into(), reply_to: None })
        );
        assert_eq!(
            Payload::parse(br#"{"kind":"poll"}"#),
            Some(Payload::Unknown { kind: "poll".into() })
        );
        assert_eq!(Payload::parse(br#"{"kind":"text"}"#), None);
        assert_eq!(Payload::parse(b"\xff"), None);
    }
}
