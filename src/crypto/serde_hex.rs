//! Serde helpers: fixed-size byte arrays as lowercase hex strings.
//!
//! Session state is persisted as JSON by the client; hex keeps it readable next to
//! the vectors (which are hex too). The intermediate string of a secret is wiped.

use serde::{Deserialize, Deserializer, Serializer};
use zeroize::Zeroizing;

/// Serialize `[u8; N]` as lowercase hex.
pub(crate) fn serialize<S: Serializer, const N: usize>(
    bytes: &[u8; N],
    s: S,
) -> Result<S::Ok, S::Error> {
    let text = Zeroizing::new(hex::encode(bytes));
    s.serialize_str(&text)
}

/// Deserialize `[u8; N]` from hex of exactly `2 * N` characters.
pub(crate) fn deserialize<'de, D: Deserializer<'de>, const N: usize>(
    d: D,
) -> Result<[u8; N], D::Error> {
    let text = Zeroizing::new(String::deserialize(d)?);
    let mut out = [0u8; N];
    hex::decode_to_slice(text.as_bytes(), &mut out)
        .map_err(|_| serde::de::Error::custom(format_args!("expected {} hex bytes", N)))?;
    Ok(out)
}

/// `Option<[u8; N]>` as hex or `null`.
pub(crate) mod option {
    use serde::{Deserialize, Deserializer, Serializer};
    use zeroize::Zeroizing;

    pub(crate) fn serialize<S: Serializer, const N: usize>(
        v: &Option<[u8; N]>,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        match v {
            Some(bytes) => s.serialize_some(Zeroizing::new(hex::encode(bytes)).as_str()),
            None => s.serialize_none(),
        }
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>, const N: usize>(
        d: D,
    ) -> Result<Option<[u8; N]>, D::Error> {
        let Some(text) = Option::<String>::deserialize(d)? else { return Ok(None) };
        let text = Zeroizing::new(text);
        let mut out = [0u8; N];
        hex::decode_to_slice(text.as_bytes(), &mut out)
            .map_err(|_| serde::de::Error::custom(format_args!("expected {} hex bytes", N)))?;
        Ok(Some(out))
    }
}
