//! Login codes and session cookies of the web view, and the checks the
//! daemon's HTTP guard applies to a browser's requests.
//!
//! A login code travels in the URL's fragment (`/ui/#code=…`), which the
//! browser never sends to a server nor puts in a `Referer`; the page posts it
//! once and replaces the URL. Codes and sessions live in the daemon's memory
//! only: a restarted daemon needs a new `agentroom ui`.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::http::{HeaderMap, Method, header};
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

/// How long a login code can be traded: enough to open a browser.
pub const CODE_TTL: Duration = Duration::from_secs(120);
/// Codes not yet traded; the oldest is forgotten beyond this.
const MAX_CODES: usize = 16;
/// Live sessions (browser tabs logged in); the oldest is logged out beyond this.
const MAX_SESSIONS: usize = 32;
/// The header every state-changing request must carry: a page on another
/// origin cannot add it without a CORS preflight, which the daemon never allows.
pub const CSRF_HEADER: &str = "x-agentroom";
/// Cookie name prefix; the port follows, so two homes' views do not clash.
const COOKIE_PREFIX: &str = "agentroom_ui_";

/// 32 random bytes, hex.
fn random_secret() -> Zeroizing<String> {
    let mut bytes = Zeroizing::new([0u8; 32]);
    crate::crypto::CryptoRng::fill(&mut crate::crypto::SystemRng, bytes.as_mut());
    Zeroizing::new(hex::encode(bytes.as_ref()))
}

fn ct_eq(a: &str, b: &str) -> bool {
    bool::from(a.as_bytes().ct_eq(b.as_bytes()))
}

#[derive(Default)]
struct Inner {
    codes: VecDeque<(Zeroizing<String>, Instant)>,
    sessions: VecDeque<Zeroizing<String>>,
}

/// Pending login codes and live sessions (in memory).
#[derive(Clone, Default)]
pub struct Sessions(Arc<Mutex<Inner>>);

impl std::fmt::Debug for Sessions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sessions").finish_non_exhaustive()
    }
}

impl Sessions {
    fn inner(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.0.lock().expect("no thread panics holding the sessions lock")
    }

    /// A new single-use login code.
    pub fn mint_code(&self) -> Zeroizing<String> {
        let code = random_secret();
        let mut inner = self.inner();
        if inner.codes.len() >= MAX_CODES {
            inner.codes.pop_front();
        }
        inner.codes.push_back((code.clone(), Instant::now()));
        code
    }

    /// Trade a code for a new session token; `None` when the code is unknown,
    /// already used or expired (it is removed either way).
    pub fn redeem(&self, code: &str) -> Option<Zeroizing<String>> {
        let mut inner = self.inner();
        inner.codes.retain(|(_, at)| at.elapsed() < CODE_TTL);
        let at = inner.codes.iter().position(|(c, _)| ct_eq(c, code))?;
        inner.codes.remove(at);
        let session = random_secret();
        if inner.sessions.len() >= MAX_SESSIONS {
            inner.sessions.pop_front();
        }
        inner.sessions.push_back(session.clone());
        Some(session)
    }

    /// Whether the request's cookies carry a live session.
    pub fn cookie_ok(&self, headers: &HeaderMap) -> bool {
        let inner = self.inner();
        headers
            .get_all(header::COOKIE)
            .iter()
            .filter_map(|h| h.to_str().ok())
            .flat_map(|h| h.split(';'))
            .filter_map(|kv| kv.trim().split_once('='))
            .filter(|(k, _)| k.starts_with(COOKIE_PREFIX))
            .any(|(_, v)| inner.sessions.iter().any(|s| ct_eq(s, v)))
    }
}

/// The `Set-Cookie` value for a session on `host` (`127.0.0.1:PORT`).
pub(crate) fn set_cookie(host: &str, session: &str) -> String {
    let port: String = host
        .rsplit_once(':')
        .map(|(_, p)| p)
        .unwrap_or("")
        .chars()
        .filter(char::is_ascii_digit)
        .collect();
    format!("{COOKIE_PREFIX}{port}={session}; Path=/; HttpOnly; SameSite=Strict")
}

/// Whether `method` can change state (anything but GET, HEAD, OPTIONS).
pub fn is_write(method: &Method) -> bool {
    !matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS)
}

/// A browser's state-changing request must carry `X-Agentroom: 1` and an
/// `Origin` that is exactly this server (`http://` + its `Host`).
pub fn same_origin_write(headers: &HeaderMap) -> bool {
    let get = |name| headers.get(name).and_then(|h: &header::HeaderValue| h.to_str().ok());
    let marked = get(header::HeaderName::from_static(CSRF_HEADER)) == Some("1");
    let (Some(origin), Some(host)) = (get(header::ORIGIN), get(header::HOST)) else {
        return false;
    };
    marked && origin.strip_prefix("http://") == Some(host)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_code_works_once() {
        let s = Sessions::default();
        let code = s.mint_code();
        let session = s.redeem(&code).expect("fresh code");
        assert!(s.redeem(&code).is_none(), "second use must fail");
        assert!(s.redeem("nonsense").is_none());
        let mut h = HeaderMap::new();
        h.insert(header::COOKIE, format!("x=1; agentroom_ui_8080={}", &*session).parse().unwrap());
        assert!(s.cookie_ok(&h));
        h.insert(header::COOKIE, "agentroom_ui_8080=00".parse().unwrap());
        assert!(!s.cookie_ok(&h));
    }

    #[test]
    fn writes_need_the_header_and_this_origin() {
        let mut h = HeaderMap::new();
        h.insert(header::HOST, "127.0.0.1:9".parse().unwrap());
        h.insert(header::ORIGIN, "http://127.0.0.1:9".parse().unwrap());
        assert!(!same_origin_write(&h), "no X-Agentroom");
        h.insert(CSRF_HEADER, "1".parse().unwrap());
        assert!(same_origin_write(&h));
        h.insert(header::ORIGIN, "http://evil.example".parse().unwrap());
        assert!(!same_origin_write(&h));
        h.insert(header::ORIGIN, "http://127.0.0.1:10".parse().unwrap());
        assert!(!same_origin_write(&h));
        h.remove(header::ORIGIN);
        assert!(!same_origin_write(&h));
    }

    #[test]
    fn cookie_is_http_only_and_strict() {
        let c = set_cookie("127.0.0.1:4242", "ab");
        assert_eq!(c, "agentroom_ui_4242=ab; Path=/; HttpOnly; SameSite=Strict");
    }
}
