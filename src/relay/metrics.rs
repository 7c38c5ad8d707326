//! Relay metrics: one struct of named atomic counters, rendered as Prometheus text.
//!
//! Each field's doc says when it moves. Counters only grow; gauges go both ways.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crate::protocol::ErrorCode;

/// Upper bounds (seconds) of the latency histogram buckets.
const LATENCY_BUCKETS: [f64; 14] =
    [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0, 10.0, 60.0];

/// A fixed-bucket histogram with atomic counts.
#[derive(Debug, Default)]
pub struct Histogram {
    buckets: [AtomicU64; LATENCY_BUCKETS.len()],
    count: AtomicU64,
    sum_micros: AtomicU64,
}

impl Histogram {
    /// Record one observation.
    pub fn observe(&self, d: Duration) {
        let secs = d.as_secs_f64();
        if let Some(i) = LATENCY_BUCKETS.iter().position(|b| secs <= *b) {
            self.buckets[i].fetch_add(1, Ordering::Relaxed);
        }
        self.count.fetch_add(1, Ordering::Relaxed);
        let micros = u64::try_from(d.as_micros()).unwrap_or(u64::MAX);
        self.sum_micros.fetch_add(micros, Ordering::Relaxed);
    }

    fn render(&self, out: &mut String, name: &str, help: &str) {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} histogram");
        let mut cumulative = 0;
        for (b, n) in LATENCY_BUCKETS.iter().zip(&self.buckets) {
            cumulative += n.load(Ordering::Relaxed);
            let _ = writeln!(out, "{name}_bucket{{le=\"{b}\"}} {cumulative}");
        }
        let count = self.count.load(Ordering::Relaxed);
        let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {count}");
        #[allow(clippy::cast_precision_loss)]
        let sum = self.sum_micros.load(Ordering::Relaxed) as f64 / 1e6;
        let _ = writeln!(out, "{name}_sum {sum}\n{name}_count {count}");
    }
}

/// Every relay metric.
#[derive(Debug, Default)]
pub struct Metrics {
    /// Gauge: open WebSocket connections (logged in or not).
    pub connections: AtomicU64,
    /// Accepted WebSocket upgrades.
    pub connections_total: AtomicU64,
    /// Connections refused by the relay-wide or per-address cap.
    pub connections_refused: AtomicU64,
    /// Gauge: connections that completed a login or resume.
    pub sessions: AtomicU64,
    /// Successful logins by signature.
    pub logins: AtomicU64,
    /// Successful resumes by token.
    pub resumes: AtomicU64,
    /// Failed logins/resumes (bad signature, stale ts, bad or expired token, wrong origin).
    pub auth_failures: AtomicU64,
    /// Sockets closed for not logging in in time.
    pub login_timeouts: AtomicU64,
    /// Sockets dropped after two missed pongs.
    pub ping_timeouts: AtomicU64,
    /// Sockets dropped because a write did not finish within the write timeout.
    pub write_timeouts: AtomicU64,
    /// `send` frames accepted for routing.
    pub envelopes_in: AtomicU64,
    /// `deliver` frames written to recipients (live and from the queue).
    pub envelopes_out: AtomicU64,
    /// Envelopes acked by an online recipient before needing the disk.
    pub envelopes_delivered_live: AtomicU64,
    /// Envelopes committed to SQLite (offline/slow recipient, or ack window passed).
    pub envelopes_stored: AtomicU64,
    /// Repeated envelope ids answered without delivering again.
    pub envelopes_duplicate: AtomicU64,
    /// Envelopes deleted by the TTL sweep.
    pub envelopes_expired: AtomicU64,
    /// Sends refused with `queue_full`.
    pub queue_full: AtomicU64,
    /// Gauge: envelopes waiting in SQLite.
    pub pending_total: AtomicU64,
    /// Frames dropped by the rate limiter.
    pub rate_limited: AtomicU64,
    /// Invalid frames (`bad_frame`: not JSON, bad field, binary).
    pub frames_malformed: AtomicU64,
    /// Frames with an unknown `type`.
    pub frames_unknown_type: AtomicU64,
    /// Frames above `max_frame`.
    pub frames_too_large: AtomicU64,
    /// Sends between identities that are not a pair, or failed claims.
    pub not_paired: AtomicU64,
    /// SQLite transactions committed.
    pub store_commits: AtomicU64,
    /// Operations folded into those commits (ops/commits = group-commit batch size).
    pub store_batched_ops: AtomicU64,
    /// Failed transactions.
    pub store_errors: AtomicU64,
    /// PostgreSQL: wake-ups from another node for a recipient connected here.
    pub cross_node_wakeups: AtomicU64,
    /// PostgreSQL: connections closed `replaced` by a newer login on another node.
    pub cluster_replaced: AtomicU64,
    /// Time from accepting a `send` to the recipient's ack (live) or the commit (stored).
    pub delivery_latency: Histogram,
    /// PostgreSQL: from another node's commit to this node hearing of it.
    pub wakeup_latency: Histogram,
    /// PostgreSQL: one round trip (a pooled query or transaction, or a writer batch).
    pub db_roundtrip: Histogram,
    /// Wall time of one store transaction.
    pub commit_latency: Histogram,
}

impl Metrics {
    /// Count a frame-level error by code.
    pub fn count_error(&self, code: ErrorCode) {
        let c = match code {
            ErrorCode::BadFrame => &self.frames_malformed,
            ErrorCode::UnknownType => &self.frames_unknown_type,
            ErrorCode::TooLarge => &self.frames_too_large,
            ErrorCode::RateLimited => &self.rate_limited,
            ErrorCode::QueueFull => &self.queue_full,
            ErrorCode::NotPaired
            | ErrorCode::InviteUnknown
            | ErrorCode::InviteExpired
            | ErrorCode::InviteClaimed
            | ErrorCode::InviteRevoked => &self.not_paired,
            ErrorCode::AuthFailed | ErrorCode::TokenExpired | ErrorCode::AuthRequired => {
                &self.auth_failures
            }
            ErrorCode::LoginTimeout => &self.login_timeouts,
            ErrorCode::TooManyConnections => &self.connections_refused,
            _ => return,
        };
        c.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn observe_commit(&self, d: Duration) {
        self.commit_latency.observe(d);
    }

    /// Prometheus text exposition (format 0.0.4).
    pub fn render(&self) -> String {
        let mut out = String::with_capacity(4096);
        let g = |out: &mut String, name: &str, kind: &str, help: &str, v: &AtomicU64| {
            let _ = writeln!(
                out,
                "# HELP agentroom_relay_{name} {help}\n# TYPE agentroom_relay_{name} {kind}\nagentroom_relay_{name} {}",
                v.load(Ordering::Relaxed)
            );
        };
        g(&mut out, "connections", "gauge", "Open WebSocket connections.", &self.connections);
        g(&mut out, "sessions", "gauge", "Logged-in connections.", &self.sessions);
        g(
            &mut out,
            "connections_total",
            "counter",
            "Accepted WebSocket connections.",
            &self.connections_total,
        );
        g(
            &mut out,
            "connections_refused_total",
            "counter",
            "Connections refused by a cap.",
            &self.connections_refused,
        );
        g(&mut out, "logins_total", "counter", "Logins by signature.", &self.logins);
        g(&mut out, "resumes_total", "counter", "Resumes by session token.", &self.resumes);
        g(
            &mut out,
            "auth_failures_total",
            "counter",
            "Failed logins and resumes.",
            &self.auth_failures,
        );
        g(
            &mut out,
            "login_timeouts_total",
            "counter",
            "Sockets closed without a login.",
            &self.login_timeouts,
        );
        g(
            &mut out,
            "ping_timeouts_total",
            "counter",
            "Sockets dropped after missed pongs.",
            &self.ping_timeouts,
        );
        g(
            &mut out,
            "write_timeouts_total",
            "counter",
            "Sockets dropped because a write did not finish in time (peer not reading).",
            &self.write_timeouts,
        );
        g(
            &mut out,
            "envelopes_in_total",
            "counter",
            "Envelopes accepted from senders.",
            &self.envelopes_in,
        );
        g(
            &mut out,
            "envelopes_out_total",
            "counter",
            "Envelopes written to recipients.",
            &self.envelopes_out,
        );
        g(
            &mut out,
            "envelopes_delivered_live_total",
            "counter",
            "Envelopes acked before touching disk.",
            &self.envelopes_delivered_live,
        );
        g(
            &mut out,
            "envelopes_stored_total",
            "counter",
            "Envelopes committed to SQLite.",
            &self.envelopes_stored,
        );
        g(
            &mut out,
            "envelopes_duplicate_total",
            "counter",
            "Repeated envelope ids suppressed.",
            &self.envelopes_duplicate,
        );
        g(
            &mut out,
            "envelopes_expired_total",
            "counter",
            "Envelopes removed by the TTL sweep.",
            &self.envelopes_expired,
        );
        g(
            &mut out,
            "queue_full_total",
            "counter",
            "Sends refused with queue_full.",
            &self.queue_full,
        );
        g(&mut out, "queue_depth", "gauge", "Envelopes waiting in SQLite.", &self.pending_total);
        g(
            &mut out,
            "rate_limited_total",
            "counter",
            "Frames dropped by the rate limiter.",
            &self.rate_limited,
        );
        g(
            &mut out,
            "frames_malformed_total",
            "counter",
            "Malformed or binary frames.",
            &self.frames_malformed,
        );
        g(
            &mut out,
            "frames_unknown_type_total",
            "counter",
            "Frames of unknown type.",
            &self.frames_unknown_type,
        );
        g(
            &mut out,
            "frames_too_large_total",
            "counter",
            "Frames above max_frame.",
            &self.frames_too_large,
        );
        g(
            &mut out,
            "not_paired_total",
            "counter",
            "Sends refused for pairing or invite reasons.",
            &self.not_paired,
        );
        g(&mut out, "store_commits_total", "counter", "SQLite transactions.", &self.store_commits);
        g(
            &mut out,
            "store_ops_total",
            "counter",
            "Operations in those transactions.",
            &self.store_batched_ops,
        );
        g(
            &mut out,
            "store_errors_total",
            "counter",
            "Failed SQLite transactions.",
            &self.store_errors,
        );
        g(
            &mut out,
            "cross_node_wakeups_total",
            "counter",
            "Wake-ups from another node for a recipient connected here (PostgreSQL).",
            &self.cross_node_wakeups,
        );
        g(
            &mut out,
            "cluster_replaced_total",
            "counter",
            "Connections replaced by a newer login on another node (PostgreSQL).",
            &self.cluster_replaced,
        );
        self.wakeup_latency.render(
            &mut out,
            "agentroom_relay_wakeup_latency_seconds",
            "From another node's commit to this node's wake-up (PostgreSQL).",
        );
        self.db_roundtrip.render(
            &mut out,
            "agentroom_relay_db_roundtrip_seconds",
            "One PostgreSQL round trip: a pooled query or transaction, or a writer batch.",
        );
        self.delivery_latency.render(
            &mut out,
            "agentroom_relay_delivery_latency_seconds",
            "From send accepted to recipient ack (live) or commit (stored).",
        );
        self.commit_latency.render(
            &mut out,
            "agentroom_relay_commit_seconds",
            "Duration of one SQLite group commit.",
        );
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counters_and_histogram() {
        let m = Metrics::default();
        m.count_error(ErrorCode::BadFrame);
        m.delivery_latency.observe(Duration::from_micros(300));
        let t = m.render();
        assert!(t.contains("agentroom_relay_frames_malformed_total 1\n"));
        assert!(t.contains("agentroom_relay_delivery_latency_seconds_bucket{le=\"0.0005\"} 1\n"));
        assert!(t.contains("agentroom_relay_delivery_latency_seconds_bucket{le=\"0.00025\"} 0\n"));
        assert!(t.contains("agentroom_relay_delivery_latency_seconds_count 1\n"));
    }
}
