//! Finding the public URL in cloudflared's output.
//!
//! A quick tunnel announces itself on stderr with a box like this (each line prefixed
//! with an RFC 3339 time and `INF`):
//!
//! ```text
//! 2026-06-01T10:00:00Z INF Requesting new quick Tunnel on trycloudflare.com...
//! 2026-06-01T10:00:02Z INF +--------------------------------------------------------------------------------------------+
//! 2026-06-01T10:00:02Z INF |  Your quick Tunnel has been created! Visit it at (it may take some time to be reachable):  |
//! 2026-06-01T10:00:02Z INF |  https://seasonal-deck-organisms-sf.trycloudflare.com                                      |
//! 2026-06-01T10:00:02Z INF +--------------------------------------------------------------------------------------------+
//! ```
//!
//! Two rules, so that a change of wording upstream does not strand us and the
//! preamble's own links (`https://www.cloudflare.com/website-terms/`,
//! `https://developers.cloudflare.com/...`) are never mistaken for the tunnel:
//! 1. after the "quick Tunnel has been created" header, the first `http(s)://` URL in
//!    a box line is the tunnel URL (this is how the stand-in `fake-cloudflared`
//!    announces its loopback proxy);
//! 2. anywhere, an `https://<name>.trycloudflare.com` URL is the tunnel URL.

use url::Url;

/// The header line that opens the URL box.
const BOX_HEADER: &str = "quick Tunnel has been created";
/// Lines after the header in which the URL must appear (the real box puts it on
/// the very next line).
const BOX_LINES: u8 = 3;
/// The quick-tunnel domain.
const QUICK_TUNNEL_SUFFIX: &str = ".trycloudflare.com";

/// Feed it cloudflared's output line by line; it returns the tunnel URL once seen.
#[derive(Debug, Default)]
pub(crate) struct BannerParser {
    /// Box lines still to look at after the header, if the header was seen.
    box_lines_left: u8,
}

impl BannerParser {
    /// Looks at one line of output (stdout or stderr, newline stripped).
    pub(crate) fn feed(&mut self, line: &str) -> Option<Url> {
        if line.contains(BOX_HEADER) {
            self.box_lines_left = BOX_LINES;
            return None;
        }
        if self.box_lines_left > 0 {
            self.box_lines_left -= 1;
            if let Some(url) = urls_in(line).find(|u| u.host_str().is_some()) {
                self.box_lines_left = 0;
                return Some(url);
            }
        }
        urls_in(line).find(is_quick_tunnel)
    }
}

fn is_quick_tunnel(url: &Url) -> bool {
    url.scheme() == "https"
        && url.host_str().is_some_and(|h| {
            h.strip_suffix(QUICK_TUNNEL_SUFFIX).is_some_and(|name| {
                !name.is_empty()
                    && !name.contains('.')
                    && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
            })
        })
}

/// Every `http://` or `https://` URL in `line`, cut at the first character that
/// cannot be part of one (space, `|`, quotes, ...).
fn urls_in(line: &str) -> impl Iterator<Item = Url> + '_ {
    let mut rest = line;
    std::iter::from_fn(move || {
        loop {
            let start = match (rest.find("https://"), rest.find("http://")) {
                (Some(a), Some(b)) => a.min(b),
                (Some(a), None) | (None, Some(a)) => a,
                (None, None) => return None,
            };
            let candidate = &rest[start..];
            let end = candidate
                .find(|c: char| c.is_whitespace() || matches!(c, '|' | '"' | '\'' | '<' | '>'))
                .unwrap_or(candidate.len());
            rest = &candidate[end..];
            let text = candidate[..end].trim_end_matches(['.', ',', ')']);
            if let Ok(url) = Url::parse(text) {
                return Some(url);
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The real banner of cloudflared 2026.x, timestamps and padding included.
    const REAL: &str = "\
2026-06-01T10:00:00Z INF Thank you for trying Cloudflare Tunnel. Doing so, without a Cloudflare account, is a quick way to experiment and try it out. However, be aware that these account-less Tunnels have no uptime guarantee, are subject to the Cloudflare Online Services Terms of Use (https://www.cloudflare.com/website-terms/), and Cloudflare reserves the right to investigate your use of Tunnels for violations of such terms. If you intend to use Tunnels in production you should use a pre-created named tunnel by following: https://developers.cloudflare.com/cloudflare-one/connections/connect-apps
2026-06-01T10:00:00Z INF Requesting new quick Tunnel on trycloudflare.com...
2026-06-01T10:00:02Z INF +--------------------------------------------------------------------------------------------+
2026-06-01T10:00:02Z INF |  Your quick Tunnel has been created! Visit it at (it may take some time to be reachable):  |
2026-06-01T10:00:02Z INF |  https://seasonal-deck-organisms-sf.trycloudflare.com                                      |
2026-06-01T10:00:02Z INF +--------------------------------------------------------------------------------------------+
2026-06-01T10:00:02Z INF Version 2026.6.1
2026-06-01T10:00:03Z INF Registered tunnel connection connIndex=0 ip=198.41.200.13 location=ams01 protocol=quic";

    fn first_url(text: &str) -> Option<(usize, Url)> {
        let mut parser = BannerParser::default();
        text.lines().enumerate().find_map(|(i, l)| parser.feed(l).map(|u| (i, u)))
    }

    #[test]
    fn finds_the_url_in_the_real_banner_and_not_before() {
        let (line, url) = first_url(REAL).unwrap();
        assert_eq!(line, 4);
        assert_eq!(url.as_str(), "https://seasonal-deck-organisms-sf.trycloudflare.com/");
    }

    #[test]
    fn the_fake_loopback_url_counts_inside_the_box_only() {
        let boxed = "INF |  Your quick Tunnel has been created! Visit it at:  |\nINF |  http://127.0.0.1:41234  |";
        assert_eq!(first_url(boxed).unwrap().1.as_str(), "http://127.0.0.1:41234/");
        assert!(first_url("INF listening on http://127.0.0.1:41234").is_none());
    }

    #[test]
    fn a_bare_trycloudflare_url_is_enough() {
        let text = "some new wording: https://a-b-c.trycloudflare.com, enjoy";
        assert_eq!(first_url(text).unwrap().1.as_str(), "https://a-b-c.trycloudflare.com/");
    }

    #[test]
    fn lookalikes_are_ignored() {
        for line in [
            "https://trycloudflare.com/",
            "https://evil.com/x.trycloudflare.com",
            "https://a.b.trycloudflare.com",
            "http://plain.trycloudflare.com",
            "https://api.trycloudflare.com.evil.net",
            "Requesting new quick Tunnel on trycloudflare.com...",
        ] {
            assert!(first_url(line).is_none(), "{line}");
        }
    }

    #[test]
    fn garbage_never_panics() {
        let mut parser = BannerParser::default();
        for line in ["https://", "http://[", "|  http://:::: |", "\u{fffd}https://\u{fffd}"] {
            let _ = parser.feed(BOX_HEADER);
            let _ = parser.feed(line);
        }
    }
}
