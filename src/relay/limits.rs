//! Connection caps (relay-wide and per address) and the per-identity token bucket.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Instant;

/// Counts open connections, overall and per client address.
#[derive(Debug)]
pub(crate) struct ConnLimiter {
    max_total: usize,
    max_per_ip: usize,
    inner: Mutex<(usize, HashMap<IpAddr, usize>)>,
}

/// A connection slot; released when dropped.
#[derive(Debug)]
pub(crate) struct ConnSlot {
    limiter: Arc<ConnLimiter>,
    ip: IpAddr,
}

impl ConnLimiter {
    pub(crate) fn new(max_total: usize, max_per_ip: usize) -> Arc<Self> {
        Arc::new(Self { max_total, max_per_ip, inner: Mutex::new((0, HashMap::new())) })
    }

    /// Take a slot for `ip`, or `None` when either cap is reached.
    pub(crate) fn acquire(self: &Arc<Self>, ip: IpAddr) -> Option<ConnSlot> {
        let mut g = self.inner.lock().ok()?;
        let (total, per_ip) = &mut *g;
        let n = per_ip.get(&ip).copied().unwrap_or(0);
        if *total >= self.max_total || n >= self.max_per_ip {
            return None;
        }
        *total += 1;
        per_ip.insert(ip, n + 1);
        Some(ConnSlot { limiter: Arc::clone(self), ip })
    }
}

impl Drop for ConnSlot {
    fn drop(&mut self) {
        if let Ok(mut g) = self.limiter.inner.lock() {
            let (total, per_ip) = &mut *g;
            *total = total.saturating_sub(1);
            if let Some(n) = per_ip.get_mut(&self.ip) {
                *n -= 1;
                if *n == 0 {
                    per_ip.remove(&self.ip);
                }
            }
        }
    }
}

/// A token bucket: `rate` tokens per second, at most `burst` saved up.
#[derive(Debug)]
pub(crate) struct TokenBucket {
    rate: f64,
    burst: f64,
    tokens: f64,
    last: Instant,
}

impl TokenBucket {
    pub(crate) fn new(rate: u32, burst: u32, now: Instant) -> Self {
        Self { rate: f64::from(rate), burst: f64::from(burst), tokens: f64::from(burst), last: now }
    }

    /// Take one token; `false` means the frame must be refused.
    pub(crate) fn take(&mut self, now: Instant) -> bool {
        let dt = now.saturating_duration_since(self.last).as_secs_f64();
        self.last = now;
        self.tokens = (self.tokens + dt * self.rate).min(self.burst);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// The client's address: the socket peer, or with `trust_proxy` the last
/// `X-Forwarded-For` entry (the one our own proxy appended; earlier entries are
/// whatever the client claimed).
pub(crate) fn client_ip(
    peer: IpAddr,
    headers: &axum::http::HeaderMap,
    trust_proxy: bool,
) -> IpAddr {
    if !trust_proxy {
        return peer;
    }
    headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .next_back()
        .and_then(|s| s.trim().parse::<IpAddr>().ok())
        .unwrap_or(peer)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn caps_and_release() {
        let l = ConnLimiter::new(3, 2);
        let a: IpAddr = [10, 0, 0, 1].into();
        let b: IpAddr = [10, 0, 0, 2].into();
        let s1 = l.acquire(a).unwrap();
        let _s2 = l.acquire(a).unwrap();
        assert!(l.acquire(a).is_none(), "per-ip cap");
        let _s3 = l.acquire(b).unwrap();
        assert!(l.acquire(b).is_none(), "total cap");
        drop(s1);
        assert!(l.acquire(a).is_some());
    }

    #[test]
    fn bucket_refills() {
        let t0 = Instant::now();
        let mut b = TokenBucket::new(10, 2, t0);
        assert!(b.take(t0) && b.take(t0));
        assert!(!b.take(t0));
        assert!(b.take(t0 + Duration::from_millis(150)));
    }

    #[test]
    fn forwarded_for_only_when_trusted() {
        let mut h = axum::http::HeaderMap::new();
        h.insert("x-forwarded-for", "1.1.1.1, 2.2.2.2".parse().unwrap());
        let peer: IpAddr = [127, 0, 0, 1].into();
        assert_eq!(client_ip(peer, &h, false), peer);
        assert_eq!(client_ip(peer, &h, true), IpAddr::from([2, 2, 2, 2]));
    }
}
