//! What the soak reports: the broker's RSS and store size sampled every few seconds, the RSS
//! after warm-up and at the end with a least-squares MB/hour slope, one progress line a
//! minute, and the final summary with the verdict.

use std::sync::Mutex;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Instant;

use super::broker::Gauges;
use super::ledger::Counters;

/// One sample of the broker's memory and store.
#[derive(Debug, Clone, Copy)]
pub struct Sample {
    /// Seconds since traffic started.
    pub t: f64,
    pub rss_kb: u64,
    pub store_bytes: u64,
}

/// Samples taken during the traffic phase.
#[derive(Debug, Default)]
pub struct Samples(Mutex<Vec<Sample>>);

impl Samples {
    pub fn push(&self, s: Sample) {
        if let Ok(mut v) = self.0.lock() {
            v.push(s);
        }
    }

    pub fn all(&self) -> Vec<Sample> {
        self.0.lock().map(|v| v.clone()).unwrap_or_default()
    }

    pub fn last(&self) -> Option<Sample> {
        self.0.lock().ok().and_then(|v| v.last().copied())
    }
}

/// Memory over the run: RSS once warm, at the end, growth and the slope after warm-up.
#[derive(Debug, Clone, Copy, Default)]
pub struct Memory {
    pub warm_mb: f64,
    pub warm_at: f64,
    pub end_mb: f64,
    pub peak_mb: f64,
    pub growth_mb: f64,
    pub slope_mb_per_hour: f64,
    pub samples: usize,
}

fn mb(kb: u64) -> f64 {
    kb as f64 / 1024.0
}

/// The memory figures of `samples`: warm is the first sample at or after `warm_secs`.
pub fn memory(samples: &[Sample], warm_secs: f64) -> Memory {
    let Some(w) = samples.iter().position(|s| s.t >= warm_secs) else { return Memory::default() };
    let after = &samples[w..];
    let (Some(first), Some(last)) = (after.first(), after.last()) else { return Memory::default() };
    let n = after.len() as f64;
    let mean_t = after.iter().map(|s| s.t).sum::<f64>() / n;
    let mean_m = after.iter().map(|s| mb(s.rss_kb)).sum::<f64>() / n;
    let sxx: f64 = after.iter().map(|s| (s.t - mean_t).powi(2)).sum();
    let sxy: f64 = after.iter().map(|s| (s.t - mean_t) * (mb(s.rss_kb) - mean_m)).sum();
    let slope = if sxx > 0.0 { sxy / sxx * 3600.0 } else { 0.0 };
    Memory {
        warm_mb: mb(first.rss_kb),
        warm_at: first.t,
        end_mb: mb(last.rss_kb),
        peak_mb: samples.iter().map(|s| mb(s.rss_kb)).fold(0.0, f64::max),
        growth_mb: mb(last.rss_kb) - mb(first.rss_kb),
        slope_mb_per_hour: slope,
        samples: after.len(),
    }
}

/// One progress line: the totals so far and the broker's latest sample and gauges.
pub fn progress(minute: u64, of: f64, start: Instant, c: &Counters, s: Option<Sample>, g: Option<Gauges>) {
    let secs = start.elapsed().as_secs_f64().max(1e-9);
    let sent = c.sent.load(Relaxed);
    let errors: u64 = c.errors().values().sum();
    let (rss, store) = s.map_or((f64::NAN, f64::NAN), |s| (mb(s.rss_kb), s.store_bytes as f64 / 1e6));
    let g = g.unwrap_or(Gauges {
        connections: f64::NAN,
        sessions: f64::NAN,
        queue_depth: f64::NAN,
        expired: f64::NAN,
    });
    println!(
        "[{minute:>3}/{of:.0} min] sent {sent} ({:.0}/s) acked {} delivered {} redelivered {} repeats {} \
         connects {} (abrupt {}) sessions +{}/-{} errors {errors} | broker rss {rss:.1} MB store {store:.1} MB \
         conns {} sessions {} queued {}",
        sent as f64 / secs,
        c.acked.load(Relaxed),
        c.delivered.load(Relaxed),
        c.redelivered.load(Relaxed),
        c.repeats.load(Relaxed),
        c.connects.load(Relaxed),
        c.abrupt.load(Relaxed),
        c.sessions_opened.load(Relaxed),
        c.sessions_closed.load(Relaxed),
        g.connections,
        g.sessions,
        g.queue_depth,
    );
}

/// Everything the final summary states.
#[derive(Debug, Clone, Default)]
pub struct Summary {
    pub minutes: f64,
    pub participants: usize,
    pub rate: f64,
    pub mem: Memory,
    /// RSS after the drain, MB.
    pub after_drain_mb: f64,
    pub store_mb: f64,
    pub expected_pairs: u64,
    pub loss: u64,
    pub loss_examples: Vec<(String, usize)>,
    pub drained: u64,
    pub leftover: u64,
    pub unreachable: usize,
    pub end_gauges: Option<Gauges>,
    /// What the broker logged at warn level or above.
    pub log: crate::child::LogSummary,
}

/// Prints the summary; returns whether the run passed (no loss, no repeats).
pub fn summary(s: &Summary, c: &Counters) -> bool {
    let repeats = c.repeats.load(Relaxed);
    let m = &s.mem;
    println!();
    println!(
        "== soak summary: {:.1} min, {} participants, ~{:.0} msg/s target ==",
        s.minutes, s.participants, s.rate
    );
    println!(
        "memory   broker rss warm {:.1} MB (at {:.0} s), end of traffic {:.1} MB, peak {:.1} MB, after drain {:.1} MB",
        m.warm_mb, m.warm_at, m.end_mb, m.peak_mb, s.after_drain_mb
    );
    println!(
        "         growth {:+.1} MB, slope {:+.1} MB/hour (least squares over {} samples after warm-up); store {:.1} MB",
        m.growth_mb, m.slope_mb_per_hour, m.samples, s.store_mb
    );
    println!(
        "traffic  sent {} acked {} (recipient pairs {}) delivered {} redelivered {} client_acks {}",
        c.sent.load(Relaxed),
        c.acked.load(Relaxed),
        s.expected_pairs,
        c.delivered.load(Relaxed),
        c.redelivered.load(Relaxed),
        c.client_acks.load(Relaxed),
    );
    println!(
        "churn    connects {} (failed {}), left gracefully {}, dropped abruptly {}, ended by broker {}, \
         sessions opened {} closed {}, presence events {}",
        c.connects.load(Relaxed),
        c.connect_failures.load(Relaxed),
        c.graceful.load(Relaxed),
        c.abrupt.load(Relaxed),
        c.dropped_by_broker.load(Relaxed),
        c.sessions_opened.load(Relaxed),
        c.sessions_closed.load(Relaxed),
        c.presence_events.load(Relaxed),
    );
    let errors = c.errors();
    let listed: Vec<String> = errors.iter().map(|(k, v)| format!("{k}={v}")).collect();
    println!("errors   {}", if listed.is_empty() { "none".to_string() } else { listed.join(" ") });
    if let Some(e) = c.first_error() {
        println!("         first: {e}");
    }
    println!(
        "drain    {} pushes in the final drain, {} in the verification pass, {} members could not reconnect",
        s.drained, s.leftover, s.unreachable
    );
    if let Some(g) = s.end_gauges {
        println!(
            "broker   at the end: connections {} sessions {} queue depth {} expired {}; log: {} warnings, {} errors, {} fell behind",
            g.connections,
            g.sessions,
            g.queue_depth,
            g.expired,
            s.log.warnings,
            s.log.errors,
            s.log.fell_behind
        );
    }
    if let Some(w) = &s.log.first {
        println!("         first warning: {w}");
    }
    if c.malformed.load(Relaxed) > 0 {
        println!("         {} pushes or acks carried a malformed msg_id", c.malformed.load(Relaxed));
    }
    println!("loss     {}", s.loss);
    for (id, who) in &s.loss_examples {
        println!("         e.g. {id} never reached participant {who}");
    }
    println!("repeats  {repeats}");
    // A push in the verification pass is a message the final drain acknowledged that came back:
    // a repeat the time-based rule could not see.
    let pass = s.loss == 0 && repeats == 0 && s.unreachable == 0 && s.leftover == 0;
    println!("verdict  {}", if pass { "PASS" } else { "FAIL" });
    pass
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slope_of_a_line_in_mb_per_hour() {
        // 1 MB per minute from 60 s on: 60 MB/hour, 9 MB of growth over 9 minutes.
        let samples: Vec<Sample> = (0..=60u32)
            .map(|i| Sample {
                t: f64::from(i) * 10.0,
                rss_kb: 10_240 + u64::from(i) * 1024 / 6,
                store_bytes: 0,
            })
            .collect();
        let m = memory(&samples, 60.0);
        assert!((m.slope_mb_per_hour - 60.0).abs() < 0.5, "{m:?}");
        assert!((m.warm_mb - 11.0).abs() < 0.01, "{m:?}");
        assert!((m.growth_mb - 9.0).abs() < 0.1, "{m:?}");
        assert_eq!(memory(&samples[..3], 60.0).samples, 0);
    }
}
