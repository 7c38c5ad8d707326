//! Unpadded base64url (RFC 4648 §5), the encoding of every binary field on the wire.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

/// Encode bytes as unpadded base64url.
pub fn encode(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// Decode unpadded base64url; `None` on any invalid character or padding.
pub fn decode(s: &str) -> Option<Vec<u8>> {
    URL_SAFE_NO_PAD.decode(s).ok()
}

/// Append the unpadded base64url of `bytes` to `out` (no allocation of its own).
pub fn encode_into(bytes: &[u8], out: &mut String) {
    URL_SAFE_NO_PAD.encode_string(bytes, out);
}

/// Longest array [`decode_array`] decodes (a signature), plus the decoder's slack.
const ARRAY_BUF: usize = 96;

/// Decode exactly `N` bytes (at most 64), on the stack: ids and keys are decoded
/// on every frame. Anything longer than `N` bytes is refused, as is invalid input.
pub fn decode_array<const N: usize>(s: &str) -> Option<[u8; N]> {
    let mut buf = [0u8; ARRAY_BUF];
    // Refuses (OutputSliceTooSmall) input that could decode past the buffer.
    let n = URL_SAFE_NO_PAD.decode_slice(s, &mut buf).ok()?;
    if n != N {
        return None;
    }
    buf[..N].try_into().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decode_array_takes_exactly_n_bytes_and_nothing_invalid() {
        let id = [7u8; 16];
        assert_eq!(decode_array::<16>(&encode(&id)), Some(id));
        let sig = [9u8; 64];
        assert_eq!(decode_array::<64>(&encode(&sig)), Some(sig));
        assert_eq!(decode_array::<16>(&encode(&[7u8; 15])), None);
        assert_eq!(decode_array::<16>(&encode(&[7u8; 17])), None);
        assert_eq!(decode_array::<16>(&encode(&[7u8; 500])), None);
        assert_eq!(decode_array::<16>("AQID="), None);
        assert_eq!(decode_array::<1>("AR"), None, "trailing bits set");
        let mut s = String::from("x");
        encode_into(&[1, 2, 3], &mut s);
        assert_eq!(s, "xAQID");
    }
}

/// serde adapter: `Vec<u8>` as unpadded base64url.
pub mod bytes {
    use serde::{Deserialize, Deserializer, Serializer};

    /// Serialize as base64url.
    pub fn serialize<S: Serializer>(v: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&super::encode(v))
    }

    /// Deserialize from base64url.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let s = <&str>::deserialize(d)?;
        super::decode(s).ok_or_else(|| serde::de::Error::custom("invalid base64url"))
    }
}
