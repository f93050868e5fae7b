//! A message-rate history per mesh for the sparklines: counts of messages (either way) in
//! fixed buckets of [`BUCKET_MS`], the newest last, [`BUCKETS`] of them.

use std::collections::VecDeque;

/// One bucket spans 10 seconds.
pub const BUCKET_MS: u64 = 10_000;
/// Buckets kept: 60, ten minutes.
pub const BUCKETS: usize = 60;

/// Messages per bucket, the newest last; `last` is the index (time / [`BUCKET_MS`]) of the
/// newest bucket.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Rate {
    pub counts: VecDeque<u64>,
    pub last: u64,
}

impl Rate {
    /// Moves the window so its newest bucket holds `now_ms`.
    pub fn advance(&mut self, now_ms: u64) {
        let b = now_ms / BUCKET_MS;
        if self.counts.is_empty() {
            self.counts = std::iter::repeat_n(0, BUCKETS).collect();
            self.last = b;
        }
        if b <= self.last {
            return;
        }
        let steps = (b - self.last).min(BUCKETS as u64);
        for _ in 0..steps {
            self.counts.push_back(0);
        }
        while self.counts.len() > BUCKETS {
            self.counts.pop_front();
        }
        self.last = b;
    }

    /// Counts one message at `at_ms` (ignored when older than the window); `now_ms` is the
    /// dashboard's clock.
    pub fn count(&mut self, at_ms: u64, now_ms: u64) {
        self.advance(now_ms.max(at_ms));
        let b = at_ms / BUCKET_MS;
        let back = self.last.saturating_sub(b) as usize;
        if back < self.counts.len() {
            let i = self.counts.len() - 1 - back;
            self.counts[i] += 1;
        }
    }

    /// The last `n` buckets, oldest first, zero-padded on the left.
    pub fn last_n(&self, n: usize) -> Vec<u64> {
        let mut v = vec![0; n.saturating_sub(self.counts.len())];
        v.extend(self.counts.iter().skip(self.counts.len().saturating_sub(n)));
        v
    }

    /// Messages in the whole window.
    pub fn total(&self) -> u64 {
        self.counts.iter().sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_slide_with_time() {
        let mut r = Rate::default();
        r.count(5_000, 5_000);
        r.count(7_000, 7_000);
        r.count(25_000, 25_000);
        assert_eq!(r.last_n(3), vec![2, 0, 1]);
        r.advance(25_000 + BUCKET_MS * 100);
        assert_eq!(r.total(), 0);
        assert_eq!(r.counts.len(), BUCKETS);
        // A message older than the window is not counted.
        r.count(0, r.last * BUCKET_MS);
        assert_eq!(r.total(), 0);
    }
}
