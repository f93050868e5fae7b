//! Broker metrics: lock-free counters and a commit-latency histogram, rendered as Prometheus
//! text for `GET /metrics`.

use std::collections::HashMap;
use std::fmt::Write;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use claudemesh_protocol::frames::{CLIENT_TYPES, ErrorCode, SERVER_TYPES};

/// Upper bounds of the commit latency buckets, in seconds.
const LATENCY_BUCKETS: [f64; 12] =
    [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0];

#[derive(Debug, Default)]
pub struct Histogram {
    buckets: [AtomicU64; LATENCY_BUCKETS.len()],
    count: AtomicU64,
    sum_micros: AtomicU64,
}

impl Histogram {
    pub fn observe(&self, d: Duration) {
        let secs = d.as_secs_f64();
        for (i, le) in LATENCY_BUCKETS.iter().enumerate() {
            if secs <= *le {
                self.buckets[i].fetch_add(1, Relaxed);
            }
        }
        self.count.fetch_add(1, Relaxed);
        self.sum_micros.fetch_add(d.as_micros() as u64, Relaxed);
    }
}

/// Every counter the broker exports.
#[derive(Debug)]
pub struct Metrics {
    pub connections: AtomicI64,
    pub sessions: AtomicI64,
    frames_in: HashMap<&'static str, AtomicU64>,
    frames_out: HashMap<&'static str, AtomicU64>,
    errors: HashMap<&'static str, AtomicU64>,
    pub messages_routed: AtomicU64,
    pub messages_queued: AtomicU64,
    pub messages_acked: AtomicU64,
    pub messages_expired: AtomicU64,
    pub queue_depth: AtomicI64,
    pub commit_latency: Histogram,
    pub commit_batches: AtomicU64,
    /// Connections that have not authenticated yet (see [`crate::guard`]).
    pub unauthenticated: AtomicI64,
    /// Unauthenticated connections evicted by a newer one at a cap.
    pub preauth_evicted: AtomicU64,
    /// Connections closed for not authenticating in time, or sending too much first.
    pub preauth_refused: AtomicU64,
    /// Connections dropped for not reading: their outgoing queue passed its byte or frame
    /// bound, or one write took longer than the write timeout.
    pub slow_dropped: AtomicU64,
    /// Times a connection went over its presence budget and was sent `presence_reset`
    /// instead of the events (see [`crate::BrokerConfig::presence_budget`]).
    pub presence_resets: AtomicU64,
    /// Copies pushed to online recipients before a commit that then failed: the sender was
    /// told to send again, and the recipients drop the retry as a duplicate.
    pub pushes_uncommitted: AtomicU64,
}

impl Default for Metrics {
    fn default() -> Self {
        let map = |names: &[&'static str]| names.iter().map(|n| (*n, AtomicU64::new(0))).collect();
        let codes: Vec<&'static str> = ErrorCode::ALL.iter().map(|c| c.as_str()).collect();
        Self {
            connections: AtomicI64::new(0),
            sessions: AtomicI64::new(0),
            frames_in: map(CLIENT_TYPES),
            frames_out: map(SERVER_TYPES),
            errors: map(&codes),
            messages_routed: AtomicU64::new(0),
            messages_queued: AtomicU64::new(0),
            messages_acked: AtomicU64::new(0),
            messages_expired: AtomicU64::new(0),
            queue_depth: AtomicI64::new(0),
            commit_latency: Histogram::default(),
            commit_batches: AtomicU64::new(0),
            unauthenticated: AtomicI64::new(0),
            preauth_evicted: AtomicU64::new(0),
            preauth_refused: AtomicU64::new(0),
            slow_dropped: AtomicU64::new(0),
            presence_resets: AtomicU64::new(0),
            pushes_uncommitted: AtomicU64::new(0),
        }
    }
}

impl Metrics {
    pub fn frame_in(&self, ty: &str) {
        if let Some(c) = self.frames_in.get(ty) {
            c.fetch_add(1, Relaxed);
        }
    }

    pub fn frame_out(&self, ty: &str) {
        if let Some(c) = self.frames_out.get(ty) {
            c.fetch_add(1, Relaxed);
        }
    }

    pub fn error(&self, code: ErrorCode) {
        if let Some(c) = self.errors.get(code.as_str()) {
            c.fetch_add(1, Relaxed);
        }
    }

    /// Prometheus text exposition format.
    pub fn render(&self) -> String {
        let mut out = String::with_capacity(8192);
        let gauge = |out: &mut String, name: &str, help: &str, v: i64| {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {v}");
        };
        let counter = |out: &mut String, name: &str, help: &str, v: u64| {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter\n{name} {v}");
        };
        gauge(
            &mut out,
            "claudemesh_connections",
            "Authenticated WebSocket connections.",
            self.connections.load(Relaxed),
        );
        gauge(
            &mut out,
            "claudemesh_unauthenticated_connections",
            "Connections that have not completed hello or enroll.",
            self.unauthenticated.load(Relaxed),
        );
        counter(
            &mut out,
            "claudemesh_preauth_evicted_total",
            "Unauthenticated connections evicted by a newer one at the total or per-IP cap.",
            self.preauth_evicted.load(Relaxed),
        );
        counter(
            &mut out,
            "claudemesh_preauth_refused_total",
            "Connections closed before authenticating: hello deadline missed or pre-auth byte budget exceeded.",
            self.preauth_refused.load(Relaxed),
        );
        counter(
            &mut out,
            "claudemesh_slow_dropped_total",
            "Connections dropped for not reading: outgoing queue over its byte or frame bound, or a write past the write timeout.",
            self.slow_dropped.load(Relaxed),
        );
        counter(
            &mut out,
            "claudemesh_presence_resets_total",
            "Connections sent presence_reset instead of presence events: presence changed faster than their presence budget.",
            self.presence_resets.load(Relaxed),
        );
        gauge(
            &mut out,
            "claudemesh_sessions",
            "Sessions present (including those in reconnect grace).",
            self.sessions.load(Relaxed),
        );
        gauge(
            &mut out,
            "claudemesh_queue_depth",
            "Messages queued for members, not yet acknowledged.",
            self.queue_depth.load(Relaxed),
        );
        counter(
            &mut out,
            "claudemesh_messages_routed_total",
            "Per-recipient copies pushed to an online member.",
            self.messages_routed.load(Relaxed),
        );
        counter(
            &mut out,
            "claudemesh_pushes_uncommitted_total",
            "Per-recipient copies pushed before a commit that failed (the sender was told to send again).",
            self.pushes_uncommitted.load(Relaxed),
        );
        counter(
            &mut out,
            "claudemesh_messages_queued_total",
            "Per-recipient copies made durable.",
            self.messages_queued.load(Relaxed),
        );
        counter(
            &mut out,
            "claudemesh_messages_acked_total",
            "Per-recipient copies acknowledged by the recipient agent.",
            self.messages_acked.load(Relaxed),
        );
        counter(
            &mut out,
            "claudemesh_messages_expired_total",
            "Per-recipient copies expired undelivered.",
            self.messages_expired.load(Relaxed),
        );
        counter(
            &mut out,
            "claudemesh_commit_batches_total",
            "Store write transactions committed.",
            self.commit_batches.load(Relaxed),
        );
        let labelled =
            |out: &mut String, name: &str, help: &str, label: &str, m: &HashMap<&'static str, AtomicU64>| {
                let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter");
                let mut keys: Vec<_> = m.keys().collect();
                keys.sort();
                for k in keys {
                    let _ = writeln!(out, "{name}{{{label}=\"{k}\"}} {}", m[k].load(Relaxed));
                }
            };
        labelled(
            &mut out,
            "claudemesh_frames_in_total",
            "Frames received, by type.",
            "type",
            &self.frames_in,
        );
        labelled(&mut out, "claudemesh_frames_out_total", "Frames sent, by type.", "type", &self.frames_out);
        labelled(&mut out, "claudemesh_errors_total", "Error frames sent, by code.", "code", &self.errors);
        let h = &self.commit_latency;
        let name = "claudemesh_store_commit_seconds";
        let _ = writeln!(
            out,
            "# HELP {name} Latency of store write-transaction commits.\n# TYPE {name} histogram"
        );
        for (i, le) in LATENCY_BUCKETS.iter().enumerate() {
            let _ = writeln!(out, "{name}_bucket{{le=\"{le}\"}} {}", h.buckets[i].load(Relaxed));
        }
        let count = h.count.load(Relaxed);
        let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {count}");
        let _ = writeln!(out, "{name}_sum {}", h.sum_micros.load(Relaxed) as f64 / 1e6);
        let _ = writeln!(out, "{name}_count {count}");
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_prometheus_text() {
        let m = Metrics::default();
        m.frame_in("send");
        m.frame_in("not-a-type");
        m.error(ErrorCode::RateLimited);
        m.commit_latency.observe(Duration::from_micros(300));
        let text = m.render();
        assert!(text.contains("claudemesh_frames_in_total{type=\"send\"} 1"), "{text}");
        assert!(text.contains("claudemesh_errors_total{code=\"rate_limited\"} 1"));
        assert!(text.contains("claudemesh_store_commit_seconds_bucket{le=\"0.0005\"} 1"));
        assert!(text.contains("claudemesh_store_commit_seconds_bucket{le=\"0.00025\"} 0"));
        assert!(text.contains("claudemesh_store_commit_seconds_count 1"));
    }
}
