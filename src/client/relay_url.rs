//! Relay URLs: every spelling a user may paste, reduced to one canonical form.
//!
//! `ws://`, `wss://`, `http://` and `https://` are accepted (http→ws, https→wss);
//! an empty path or `/` means `/ws`; the host is lowercased and a default port
//! dropped. The canonical string is both what we dial and the key under which
//! peers, tokens and queued envelopes are stored, so two spellings of one relay
//! never split a conversation.

use url::Url;

/// Why a relay URL was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum RelayUrlError {
    /// Not a URL.
    #[error(
        "invalid relay URL {0:?}: expected ws://, wss://, http:// or https://HOST[:PORT][/PATH]"
    )]
    Invalid(String),
    /// A scheme other than ws/wss/http/https.
    #[error("unsupported relay URL scheme {0:?} (use ws, wss, http or https)")]
    Scheme(String),
}

/// A canonical relay URL.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RelayUrl {
    url: Url,
}

impl RelayUrl {
    /// Parse and normalise.
    pub fn parse(input: &str) -> Result<Self, RelayUrlError> {
        let invalid = || RelayUrlError::Invalid(input.to_owned());
        let mut url = Url::parse(input.trim()).map_err(|_| invalid())?;
        let scheme = match url.scheme() {
            "ws" | "http" => "ws",
            "wss" | "https" => "wss",
            other => return Err(RelayUrlError::Scheme(other.to_owned())),
        };
        if url.host_str().is_none_or(str::is_empty) {
            return Err(invalid());
        }
        // `set_scheme` refuses http→ws (special → non-special), so rebuild.
        let rest = &url.as_str()[url.scheme().len()..];
        url = Url::parse(&format!("{scheme}{rest}")).map_err(|_| invalid())?;
        if url.path().is_empty() || url.path() == "/" {
            url.set_path("/ws");
        }
        url.set_fragment(None);
        // A port equal to the scheme's default is dropped by the parser already.
        Ok(Self { url })
    }

    /// The URL to dial.
    pub fn as_str(&self) -> &str {
        self.url.as_str()
    }

    /// The host (lowercase), as TLS checks it against the certificate.
    pub fn host(&self) -> String {
        self.url.host_str().unwrap_or_default().to_ascii_lowercase()
    }

    /// The authority signed at login (PROTOCOL.md §3.2): lowercase host, plus
    /// `:port` unless it is the scheme's default; equal to the `Host` header sent.
    pub fn origin(&self) -> String {
        let host = self.url.host_str().unwrap_or_default().to_ascii_lowercase();
        match self.url.port() {
            Some(p) => format!("{host}:{p}"),
            None => host,
        }
    }
}

impl std::fmt::Display for RelayUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_spelling_normalises() {
        let cases = [
            ("ws://127.0.0.1:8787", "ws://127.0.0.1:8787/ws", "127.0.0.1:8787"),
            ("http://127.0.0.1:8787/", "ws://127.0.0.1:8787/ws", "127.0.0.1:8787"),
            ("https://Relay.Example.com", "wss://relay.example.com/ws", "relay.example.com"),
            ("wss://relay.example.com:443/ws", "wss://relay.example.com/ws", "relay.example.com"),
            ("http://x.test:80/custom/path", "ws://x.test/custom/path", "x.test"),
            ("wss://x.test:8443/ws", "wss://x.test:8443/ws", "x.test:8443"),
            (" ws://[::1]:9/ ", "ws://[::1]:9/ws", "[::1]:9"),
        ];
        for (input, url, origin) in cases {
            let r = RelayUrl::parse(input).unwrap();
            assert_eq!(r.as_str(), url, "{input}");
            assert_eq!(r.origin(), origin, "{input}");
        }
    }

    #[test]
    fn bad_urls_are_refused() {
        assert!(matches!(RelayUrl::parse("ftp://x/"), Err(RelayUrlError::Scheme(_))));
        assert!(matches!(RelayUrl::parse("not a url"), Err(RelayUrlError::Invalid(_))));
        assert!(RelayUrl::parse("127.0.0.1:8787").is_err());
    }
}
