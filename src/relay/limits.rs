//! Connection caps (relay-wide and per address), the per-address login rate and the
//! per-identity token bucket.

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

    /// Whether the bucket has refilled to its burst by `now` (it is then as good as new).
    fn is_full(&self, now: Instant) -> bool {
        let dt = now.saturating_duration_since(self.last).as_secs_f64();
        self.tokens + dt * self.rate >= self.burst
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

/// Login attempts per client address: one token bucket each. IPv6 addresses share
/// the bucket of their /64, since one host usually holds a whole /64.
#[derive(Debug)]
pub(crate) struct LoginLimiter {
    rate: u32,
    burst: u32,
    buckets: Mutex<HashMap<IpAddr, TokenBucket>>,
}

/// Buckets kept before full (idle) ones are dropped: an idle bucket is the same as
/// a new one, so forgetting it changes nothing but memory.
const LOGIN_BUCKETS_BEFORE_PRUNE: usize = 4096;

impl LoginLimiter {
    /// `None` when rate limits are off.
    pub(crate) fn new(enabled: bool, rate: u32, burst: u32) -> Option<Self> {
        enabled.then(|| Self { rate, burst, buckets: Mutex::new(HashMap::new()) })
    }

    /// Take one login attempt for `ip`; `false` means refuse it.
    pub(crate) fn allow(&self, ip: IpAddr, now: Instant) -> bool {
        let key = match ip {
            IpAddr::V6(v6) if v6.to_ipv4_mapped().is_none() => {
                IpAddr::V6((u128::from(v6) & !u128::from(u64::MAX)).into())
            }
            IpAddr::V6(v6) => IpAddr::V4(v6.to_ipv4_mapped().expect("checked in the arm above")),
            v4 => v4,
        };
        // A poisoned lock only means another thread panicked mid-update of a
        // counter; the map is still usable.
        let mut buckets = self.buckets.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if buckets.len() >= LOGIN_BUCKETS_BEFORE_PRUNE {
            buckets.retain(|_, b| !b.is_full(now));
        }
        buckets.entry(key).or_insert_with(|| TokenBucket::new(self.rate, self.burst, now)).take(now)
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
    fn logins_limited_per_address_and_per_ipv6_64() {
        let t0 = Instant::now();
        let l = LoginLimiter::new(true, 1, 3).unwrap();
        let a: IpAddr = "2001:db8::1".parse().unwrap();
        let same_64: IpAddr = "2001:db8::ffff:2".parse().unwrap();
        let other: IpAddr = "2001:db8:0:1::1".parse().unwrap();
        assert!(l.allow(a, t0) && l.allow(same_64, t0) && l.allow(a, t0));
        assert!(!l.allow(same_64, t0), "the /64 shares one bucket");
        assert!(l.allow(other, t0), "another /64 has its own");
        assert!(l.allow(a, t0 + Duration::from_millis(1100)), "refills at the rate");
        assert!(LoginLimiter::new(false, 1, 3).is_none());
    }

    #[test]
    fn idle_login_buckets_are_pruned() {
        let t0 = Instant::now();
        let l = LoginLimiter::new(true, 1, 2).unwrap();
        for i in 0..u32::try_from(LOGIN_BUCKETS_BEFORE_PRUNE).unwrap() {
            assert!(l.allow(IpAddr::from(i.to_be_bytes()), t0));
        }
        let later = t0 + Duration::from_secs(5);
        assert!(l.allow([10, 9, 9, 9].into(), later));
        assert_eq!(l.buckets.lock().unwrap().len(), 1, "refilled buckets are forgotten");
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
