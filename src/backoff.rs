//! The one backoff helper: exponential delays from `initial` doubling to `max`,
//! optionally jittered, reset after a success. Relay links (reconnects) and the
//! tunnel supervisors (restarts) both step through it.

use std::time::Duration;

use crate::crypto::{CryptoRng, SystemRng};

/// Exponential backoff state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    initial: Duration,
    max: Duration,
    next: Duration,
    jitter: bool,
}

impl Backoff {
    /// Delays from `initial`, doubling up to `max`, exactly.
    pub const fn new(initial: Duration, max: Duration) -> Self {
        Self { initial, max, next: initial, jitter: false }
    }

    /// The same, each delay drawn uniformly from [d/2, d] ("equal jitter"), so
    /// clients that failed together do not come back together.
    pub const fn jittered(initial: Duration, max: Duration) -> Self {
        Self { initial, max, next: initial, jitter: true }
    }

    /// The delay to wait now; doubles the next one (capped).
    pub fn next_delay(&mut self) -> Duration {
        let delay = self.next.min(self.max);
        self.next = self.next.saturating_mul(2).min(self.max);
        if self.jitter { jitter(delay) } else { delay }
    }

    /// Back to `initial` (after a success, or a run that stayed up).
    pub fn reset(&mut self) {
        self.next = self.initial;
    }
}

/// Uniform in [d/2, d].
pub fn jitter(d: Duration) -> Duration {
    let mut b = [0u8; 4];
    SystemRng.fill(&mut b);
    let frac = f64::from(u32::from_le_bytes(b)) / f64::from(u32::MAX);
    d.mul_f64(0.5 + frac / 2.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_caps_and_resets() {
        let (a, b) = (Duration::from_millis(250), Duration::from_secs(30));
        let mut plain = Backoff::new(a, b);
        let got: Vec<u64> =
            (0..10).map(|_| u64::try_from(plain.next_delay().as_millis()).unwrap()).collect();
        assert_eq!(got, [250, 500, 1000, 2000, 4000, 8000, 16000, 30000, 30000, 30000]);
        plain.reset();
        assert_eq!(plain.next_delay(), a);

        let mut j = Backoff::jittered(a, b);
        let mut cap = a;
        for _ in 0..40 {
            let d = j.next_delay();
            assert!(d >= cap / 2 && d <= cap, "{d:?} vs {cap:?}");
            cap = (cap * 2).min(b);
        }
    }
}
